//! The webhooks in force, and what matching and calling them needs, kept in
//! memory: the Mutating/ValidatingWebhookConfigurations (parsed once per stored
//! version, clients included), namespace labels (for namespace selectors), and
//! Services with their EndpointSlices (for `clientConfig.service`). Listed from the
//! store once, on the first request that could go to a webhook, then followed
//! through the API server's watch cache ([`crate::feed`]), as Kubernetes feeds its webhook source
//! and namespace lister from informers; requests never read the store for them
//! (a namespace missing from the view is read once, as Kubernetes does).
//! One view per API server ([`PerServer`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use api::status::ApiError;
use serde_json::Value;
use store::{Revision, Store};
use tokio::sync::watch;

use super::client::{Destination, Target};
use super::hook::{self, Hook};
use crate::admission::per_server::PerServer;
use crate::serve::State;
use crate::watch_cache::WatchCache;

/// Store key prefixes of what the view follows (`ResourceInfo::key_prefix` of
/// each resource).
const MUTATING: &str = "/registry/admissionregistration.k8s.io/mutatingwebhookconfigurations/";
const VALIDATING: &str = "/registry/admissionregistration.k8s.io/validatingwebhookconfigurations/";
const NAMESPACES: &str = "/registry/core/namespaces/";
const SERVICES: &str = "/registry/core/services/";
const SLICES: &str = "/registry/discovery.k8s.io/endpointslices/";

/// A Service, as far as resolving a webhook needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceView {
    /// `spec.type` (`ClusterIP` when unset).
    kind: String,
    /// `(name, port)` of `spec.ports`.
    ports: Vec<(String, i64)>,
}

/// An EndpointSlice, as far as resolving a webhook needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SliceView {
    /// Its `kubernetes.io/service-name` label.
    service: String,
    /// `(name, port)` of `ports`.
    ports: Vec<(String, u16)>,
    /// Addresses of the endpoints not marked unready.
    ready: Vec<IpAddr>,
}

/// Everything followed, as of one revision.
#[derive(Default)]
struct View {
    /// Configurations by name: their webhooks in order.
    mutating_configs: BTreeMap<String, Vec<Arc<Hook>>>,
    validating_configs: BTreeMap<String, Vec<Arc<Hook>>>,
    /// All webhooks, configurations in name order (rebuilt on change).
    mutating: Arc<Vec<Arc<Hook>>>,
    validating: Arc<Vec<Arc<Hook>>>,
    namespaces: HashMap<String, BTreeMap<String, String>>,
    services: HashMap<(String, String), ServiceView>,
    /// EndpointSlices by (namespace, slice name).
    slices: HashMap<(String, String), SliceView>,
    /// Slice names by (namespace, service).
    by_service: HashMap<(String, String), BTreeSet<String>>,
}

/// Sets (with `None` removes) one configuration, then rebuilds `all` from them.
fn set_config(
    configs: &mut BTreeMap<String, Vec<Arc<Hook>>>,
    all: &mut Arc<Vec<Arc<Hook>>>,
    name: &str,
    object: Option<&Value>,
) {
    match object {
        Some(o) => configs.insert(name.to_string(), hook::parse(name, o)),
        None => configs.remove(name),
    };
    *all = Arc::new(configs.values().flatten().cloned().collect());
}

fn service_view(obj: &Value) -> ServiceView {
    ServiceView {
        kind: obj
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string(),
        ports: obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ports| {
                ports
                    .iter()
                    .map(|p| {
                        (
                            p.get("name")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                            p.get("port").and_then(Value::as_i64).unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn slice_view(obj: &Value) -> Option<SliceView> {
    let service = obj
        .pointer("/metadata/labels/kubernetes.io~1service-name")
        .and_then(Value::as_str)?
        .to_string();
    let ports = obj
        .get("ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| {
                    let port = u16::try_from(p.get("port")?.as_u64()?).ok()?;
                    let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
                    Some((name.to_string(), port))
                })
                .collect()
        })
        .unwrap_or_default();
    let ready = obj
        .get("endpoints")
        .and_then(Value::as_array)
        .map(|endpoints| {
            endpoints
                .iter()
                .filter(|e| e.pointer("/conditions/ready") != Some(&Value::Bool(false)))
                .filter_map(|e| e.get("addresses")?.as_array())
                .flatten()
                .filter_map(|a| a.as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    Some(SliceView {
        service,
        ports,
        ready,
    })
}

impl View {
    /// Applies one object (`None`: deleted) stored under `key`.
    fn apply(&mut self, key: &str, object: Option<&Value>) {
        if let Some(name) = key.strip_prefix(MUTATING) {
            set_config(&mut self.mutating_configs, &mut self.mutating, name, object);
        } else if let Some(name) = key.strip_prefix(VALIDATING) {
            set_config(
                &mut self.validating_configs,
                &mut self.validating,
                name,
                object,
            );
        } else if let Some(name) = key.strip_prefix(NAMESPACES) {
            match object {
                Some(o) => self
                    .namespaces
                    .insert(name.to_string(), crate::object::labels(o)),
                None => self.namespaces.remove(name),
            };
        } else if let Some((ns, name)) = key.strip_prefix(SERVICES).and_then(|r| r.split_once('/'))
        {
            let k = (ns.to_string(), name.to_string());
            match object {
                Some(o) => self.services.insert(k, service_view(o)),
                None => self.services.remove(&k),
            };
        } else if let Some((ns, name)) = key.strip_prefix(SLICES).and_then(|r| r.split_once('/')) {
            let k = (ns.to_string(), name.to_string());
            if let Some(old) = self.slices.remove(&k)
                && let Some(names) = self.by_service.get_mut(&(ns.to_string(), old.service))
            {
                names.remove(name);
            }
            if let Some(view) = object.and_then(slice_view) {
                self.by_service
                    .entry((ns.to_string(), view.service.clone()))
                    .or_default()
                    .insert(name.to_string());
                self.slices.insert(k, view);
            }
        }
    }

    /// A ready endpoint of the Service behind `port` (kube-apiserver's
    /// `ResolveEndpoint`, from EndpointSlices), or why there is none.
    fn resolve(&self, namespace: &str, name: &str, port: u16) -> Result<SocketAddr, String> {
        let key = (namespace.to_string(), name.to_string());
        let service = self
            .services
            .get(&key)
            .ok_or_else(|| format!("service {name:?} not found"))?;
        if !matches!(
            service.kind.as_str(),
            "ClusterIP" | "NodePort" | "LoadBalancer"
        ) {
            return Err(format!("unsupported service type {:?}", service.kind));
        }
        let (port_name, _) = service
            .ports
            .iter()
            .find(|(_, p)| *p == i64::from(port))
            .ok_or_else(|| format!("no service port {port} found for service {name:?}"))?;
        let candidates: Vec<SocketAddr> = self
            .by_service
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|slice| self.slices.get(&(namespace.to_string(), slice.clone())))
            .filter_map(|s| {
                let (_, p) = s.ports.iter().find(|(n, _)| n == port_name)?;
                Some(s.ready.iter().map(move |ip| SocketAddr::new(*ip, *p)))
            })
            .flatten()
            .collect();
        if candidates.is_empty() {
            return Err(format!("no endpoints available for service {name:?}"));
        }
        Ok(candidates[rand::random_range(0..candidates.len())])
    }
}

/// The followed view of one API server; see the module docs.
pub(crate) struct Source {
    view: RwLock<View>,
}

impl Source {
    /// The mutating webhooks in call order.
    pub(crate) fn mutating(&self) -> Arc<Vec<Arc<Hook>>> {
        self.read().mutating.clone()
    }

    /// The validating webhooks.
    pub(crate) fn validating(&self) -> Arc<Vec<Arc<Hook>>> {
        self.read().validating.clone()
    }

    /// The labels of a namespace the view knows.
    pub(crate) fn namespace_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.read().namespaces.get(name).cloned()
    }

    /// Where to connect for a webhook at `target`.
    pub(crate) fn destination(&self, target: &Target) -> Destination {
        match target {
            Target::Url { host, port, .. } => match host.parse::<IpAddr>() {
                Ok(ip) => Destination::Addr(SocketAddr::new(ip, *port)),
                Err(_) => Destination::Lookup(host.clone(), *port),
            },
            Target::Service {
                namespace,
                name,
                port,
                ..
            } => match self.read().resolve(namespace, name, *port) {
                Ok(addr) => Destination::Addr(addr),
                Err(why) => Destination::Unresolved(why),
            },
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists what is followed, then follows `watch_cache` until `shutdown`.
    async fn start(
        store: Arc<dyn Store>,
        watch_cache: Arc<WatchCache>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Source>, store::StoreError> {
        let source = Arc::new(Source {
            view: RwLock::default(),
        });
        crate::feed::follow(source.clone(), store, watch_cache, shutdown).await?;
        Ok(source)
    }
}

impl crate::feed::Index for Source {
    fn prefixes(&self) -> &'static [&'static str] {
        &[MUTATING, VALIDATING, NAMESPACES, SERVICES, SLICES]
    }

    fn reset(&self, objects: Vec<(String, Value)>, _revision: Revision) {
        let mut view = View::default();
        for (key, obj) in &objects {
            view.apply(key, Some(obj));
        }
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = view;
    }

    /// Applies the burst under one write lock.
    fn apply(&self, changes: &[(&str, Option<&Value>)], _revision: Revision) {
        let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
        for (key, object) in changes {
            view.apply(key, *object);
        }
    }
}

/// The views of the API servers in this process.
static SOURCES: PerServer<Source> = PerServer::new();

/// The view of `state`'s API server, started on first use.
pub(crate) async fn of(state: &State) -> Result<Arc<Source>, ApiError> {
    SOURCES
        .get_or_try_init(&state.watch_cache, || {
            Source::start(
                state.storage.store.clone(),
                state.watch_cache.clone(),
                state.shutdown.clone(),
            )
        })
        .await
        .map_err(|e| ApiError::internal(format!("listing webhook configurations failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;
    use std::time::Duration;

    fn config(hook: &str) -> Value {
        json!({"metadata": {"name": "x"}, "webhooks": [{
            "name": hook,
            "clientConfig": {"service": {"namespace": "hooks", "name": "svc", "port": 443}},
            "sideEffects": "None", "admissionReviewVersions": ["v1"],
        }]})
    }

    async fn put(store: &dyn Store, key: &str, obj: Value) -> Revision {
        store
            .create(key, Bytes::from(obj.to_string()))
            .await
            .expect("create")
            .mod_revision
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what} did not happen");
    }

    #[tokio::test]
    async fn configurations_are_listed_then_followed_in_name_order() {
        let store: Arc<dyn Store> = Arc::new(store::MemoryStore::new());
        put(
            store.as_ref(),
            &format!("{VALIDATING}b"),
            config("b.example.com"),
        )
        .await;
        let from = store.current_revision().await.expect("revision");
        let (_stop, shutdown) = watch::channel(false);
        let cache = WatchCache::start(store.clone(), from, shutdown.clone());
        let source = Source::start(store.clone(), cache, shutdown)
            .await
            .expect("starts");
        let names =
            |s: &Source| -> Vec<String> { s.validating().iter().map(|h| h.name.clone()).collect() };
        assert_eq!(names(&source), ["b.example.com"]);
        put(
            store.as_ref(),
            &format!("{VALIDATING}a"),
            config("a.example.com"),
        )
        .await;
        eventually("the new configuration", || names(&source).len() == 2).await;
        assert_eq!(names(&source), ["a.example.com", "b.example.com"]);
        store
            .delete(&format!("{VALIDATING}b"), None)
            .await
            .expect("delete");
        eventually("the deletion", || names(&source) == ["a.example.com"]).await;
        assert!(source.mutating().is_empty());

        put(
            store.as_ref(),
            &format!("{NAMESPACES}team-a"),
            json!({"metadata": {"name": "team-a", "labels": {"env": "prod"}}}),
        )
        .await;
        eventually("the namespace", || {
            source.namespace_labels("team-a").is_some()
        })
        .await;
        assert_eq!(
            source.namespace_labels("team-a"),
            Some(BTreeMap::from([("env".into(), "prod".into())]))
        );
    }

    #[test]
    fn the_followed_prefixes_are_where_the_resources_are_stored() {
        let registry = api::resource::Registry::builtin();
        let stored = |group: &str, plural: &str| {
            registry
                .lookup(group, "v1", plural)
                .map(|r| r.key_prefix())
                .expect("a built-in resource")
        };
        let admission = "admissionregistration.k8s.io";
        assert_eq!(stored(admission, "mutatingwebhookconfigurations"), MUTATING);
        assert_eq!(
            stored(admission, "validatingwebhookconfigurations"),
            VALIDATING
        );
        assert_eq!(stored("", "namespaces"), NAMESPACES);
        assert_eq!(stored("", "services"), SERVICES);
        assert_eq!(stored("discovery.k8s.io", "endpointslices"), SLICES);
    }

    #[test]
    fn services_resolve_to_a_ready_endpoint_of_the_named_port() {
        let mut view = View::default();
        let target = Target::service("hooks", "svc", 443, "/x");
        let source = |v: View| Source {
            view: RwLock::new(v),
        };
        assert_eq!(
            view.resolve("hooks", "svc", 443),
            Err("service \"svc\" not found".into())
        );
        view.apply(
            "/registry/core/services/hooks/svc",
            Some(&json!({"spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}})),
        );
        assert_eq!(
            view.resolve("hooks", "svc", 444),
            Err("no service port 444 found for service \"svc\"".into())
        );
        assert_eq!(
            view.resolve("hooks", "svc", 443),
            Err("no endpoints available for service \"svc\"".into())
        );
        let slice = json!({
            "metadata": {"labels": {"kubernetes.io/service-name": "svc"}},
            "ports": [{"name": "https", "port": 8443}],
            "endpoints": [
                {"addresses": ["127.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["127.0.0.1"], "conditions": {"ready": true}},
            ],
        });
        view.apply(
            "/registry/discovery.k8s.io/endpointslices/hooks/svc-abc",
            Some(&slice),
        );
        assert_eq!(
            view.resolve("hooks", "svc", 443),
            Ok("127.0.0.1:8443".parse().expect("addr"))
        );
        view.apply(
            "/registry/discovery.k8s.io/endpointslices/hooks/svc-abc",
            None,
        );
        let src = source(view);
        assert_eq!(
            src.destination(&target),
            Destination::Unresolved("no endpoints available for service \"svc\"".into())
        );
    }
}
