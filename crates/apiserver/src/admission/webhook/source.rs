//! The webhooks in force, and what matching and calling them needs, kept in
//! memory: the Mutating/ValidatingWebhookConfigurations (parsed once per stored
//! version, clients included), namespace labels (for namespace selectors), and
//! Services with their EndpointSlices (for `clientConfig.service`). Listed from the
//! store once, on the first request that could go to a webhook, then followed
//! through the API server's watch cache, as Kubernetes feeds its webhook source
//! and namespace lister from informers; requests never read the store for them
//! (a namespace missing from the view is read once, as Kubernetes does).
//!
//! One view per API server, found by its watch cache: the server's shared state
//! has no slot for it, so the views live in a small registry here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use api::status::ApiError;
use serde_json::Value;
use store::{EventKind, ListOptions, Revision, Store};
use tokio::sync::{OnceCell, broadcast, watch};

use super::client::{Destination, Target};
use super::hook::{self, Hook};
use crate::serve::State;
use crate::watch_cache::{Change, WatchCache};

/// Store key prefixes of what the view follows.
#[derive(Debug, Clone)]
struct Prefixes {
    mutating: String,
    validating: String,
    namespaces: String,
    services: String,
    slices: String,
}

impl Prefixes {
    fn of(state: &State) -> Prefixes {
        let prefix = |group: &str, version: &str, plural: &str| {
            state
                .registry
                .lookup(group, version, plural)
                .map(|r| r.key_prefix())
                .unwrap_or_else(|| {
                    let g = if group.is_empty() { "core" } else { group };
                    format!("/registry/{g}/{plural}/")
                })
        };
        const ADMISSION: &str = "admissionregistration.k8s.io";
        Prefixes {
            mutating: prefix(ADMISSION, "v1", "mutatingwebhookconfigurations"),
            validating: prefix(ADMISSION, "v1", "validatingwebhookconfigurations"),
            namespaces: prefix("", "v1", "namespaces"),
            services: prefix("", "v1", "services"),
            slices: prefix("discovery.k8s.io", "v1", "endpointslices"),
        }
    }

    fn all(&self) -> [&str; 5] {
        [
            &self.mutating,
            &self.validating,
            &self.namespaces,
            &self.services,
            &self.slices,
        ]
    }

    fn follows(&self, key: &str) -> bool {
        self.all().iter().any(|p| key.starts_with(p))
    }
}

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

fn flatten(configs: &BTreeMap<String, Vec<Arc<Hook>>>) -> Arc<Vec<Arc<Hook>>> {
    Arc::new(configs.values().flatten().cloned().collect())
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
    fn apply(&mut self, prefixes: &Prefixes, key: &str, object: Option<&Value>) {
        if let Some(name) = key.strip_prefix(&prefixes.mutating) {
            match object {
                Some(o) => self
                    .mutating_configs
                    .insert(name.to_string(), hook::parse(name, o)),
                None => self.mutating_configs.remove(name),
            };
            self.mutating = flatten(&self.mutating_configs);
        } else if let Some(name) = key.strip_prefix(&prefixes.validating) {
            match object {
                Some(o) => self
                    .validating_configs
                    .insert(name.to_string(), hook::parse(name, o)),
                None => self.validating_configs.remove(name),
            };
            self.validating = flatten(&self.validating_configs);
        } else if let Some(name) = key.strip_prefix(&prefixes.namespaces) {
            match object {
                Some(o) => self
                    .namespaces
                    .insert(name.to_string(), crate::object::labels(o)),
                None => self.namespaces.remove(name),
            };
        } else if let Some((ns, name)) = key
            .strip_prefix(&prefixes.services)
            .and_then(|r| r.split_once('/'))
        {
            let k = (ns.to_string(), name.to_string());
            match object {
                Some(o) => self.services.insert(k, service_view(o)),
                None => self.services.remove(&k),
            };
        } else if let Some((ns, name)) = key
            .strip_prefix(&prefixes.slices)
            .and_then(|r| r.split_once('/'))
        {
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
        prefixes: Prefixes,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Source>, store::StoreError> {
        let (view, revision) = list_all(store.as_ref(), &prefixes).await?;
        let source = Arc::new(Source {
            view: RwLock::new(view),
        });
        tokio::spawn(
            source
                .clone()
                .follow(store, watch_cache, prefixes, revision, shutdown),
        );
        Ok(source)
    }

    async fn follow(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        watch_cache: Arc<WatchCache>,
        prefixes: Prefixes,
        mut applied: Revision,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            match watch_cache.subscribe(applied) {
                Some(sub) => {
                    self.take(&prefixes, &mut applied, &sub.backlog);
                    self.run_live(&prefixes, &mut applied, sub.live, &mut shutdown)
                        .await;
                    if *shutdown.borrow() {
                        return;
                    }
                }
                None => tracing::debug!(
                    revision = applied,
                    "webhook configurations fell behind the watch cache"
                ),
            }
            // Relist: the watch cache was reset or this follower fell behind.
            loop {
                match list_all(store.as_ref(), &prefixes).await {
                    Ok((view, revision)) => {
                        *self.view.write().unwrap_or_else(|e| e.into_inner()) = view;
                        applied = revision;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listing webhook configurations failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.changed() => return,
                        }
                    }
                }
            }
        }
    }

    /// Applies live changes a burst at a time until the subscription ends
    /// (lagged or reset) or shutdown.
    async fn run_live(
        &self,
        prefixes: &Prefixes,
        applied: &mut Revision,
        mut live: broadcast::Receiver<Arc<Change>>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        loop {
            let first = tokio::select! {
                r = live.recv() => r,
                _ = shutdown.changed() => return,
            };
            let Ok(first) = first else {
                return;
            };
            let mut burst = vec![first];
            let mut ended = false;
            loop {
                match live.try_recv() {
                    Ok(c) => burst.push(c),
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(_) => {
                        ended = true;
                        break;
                    }
                }
            }
            self.take(prefixes, applied, &burst);
            if ended {
                return;
            }
        }
    }

    /// Applies the changes newer than `applied` under one write lock.
    fn take(&self, prefixes: &Prefixes, applied: &mut Revision, changes: &[Arc<Change>]) {
        let relevant = |c: &Change| c.revision > *applied && prefixes.follows(&c.key);
        if changes.iter().any(|c| relevant(c)) {
            let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
            for c in changes.iter().filter(|c| relevant(c)) {
                let object = (c.kind != EventKind::Deleted).then_some(&c.object);
                view.apply(prefixes, &c.key, object);
            }
        }
        if let Some(last) = changes.iter().map(|c| c.revision).max() {
            *applied = (*applied).max(last);
        }
    }
}

/// Lists every followed object at one revision.
async fn list_all(
    store: &dyn Store,
    prefixes: &Prefixes,
) -> Result<(View, Revision), store::StoreError> {
    let mut view = View::default();
    let mut at = None;
    for prefix in prefixes.all() {
        let res = store
            .list(&ListOptions {
                prefix: prefix.to_string(),
                revision: at,
                ..Default::default()
            })
            .await?;
        at = Some(res.revision);
        for kv in &res.items {
            if let Ok(obj) = crate::storage::decode(kv) {
                view.apply(prefixes, &kv.key, Some(&obj));
            }
        }
    }
    Ok((view, at.unwrap_or_default()))
}

type Slot = Arc<OnceCell<Arc<Source>>>;

/// The views of the API servers in this process, by watch cache.
static SOURCES: Mutex<Vec<(Weak<WatchCache>, Slot)>> = Mutex::new(Vec::new());

/// The view of `state`'s API server, started on first use.
pub(crate) async fn of(state: &State) -> Result<Arc<Source>, ApiError> {
    let slot = {
        let mut sources = SOURCES.lock().unwrap_or_else(|e| e.into_inner());
        sources.retain(|(cache, _)| cache.strong_count() > 0);
        let ours = Arc::as_ptr(&state.watch_cache);
        match sources.iter().find(|(cache, _)| cache.as_ptr() == ours) {
            Some((_, slot)) => slot.clone(),
            None => {
                let slot = Slot::default();
                sources.push((Arc::downgrade(&state.watch_cache), slot.clone()));
                slot
            }
        }
    };
    slot.get_or_try_init(|| {
        Source::start(
            state.storage.store.clone(),
            state.watch_cache.clone(),
            Prefixes::of(state),
            state.shutdown.clone(),
        )
    })
    .await
    .cloned()
    .map_err(|e| ApiError::internal(format!("listing webhook configurations failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    fn prefixes() -> Prefixes {
        Prefixes {
            mutating: "/registry/admissionregistration.k8s.io/mutatingwebhookconfigurations/"
                .into(),
            validating: "/registry/admissionregistration.k8s.io/validatingwebhookconfigurations/"
                .into(),
            namespaces: "/registry/core/namespaces/".into(),
            services: "/registry/core/services/".into(),
            slices: "/registry/discovery.k8s.io/endpointslices/".into(),
        }
    }

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
        let p = prefixes();
        put(
            store.as_ref(),
            &format!("{}b", p.validating),
            config("b.example.com"),
        )
        .await;
        let from = store.current_revision().await.expect("revision");
        let (_stop, shutdown) = watch::channel(false);
        let cache = WatchCache::start(store.clone(), from, shutdown.clone());
        let source = Source::start(store.clone(), cache, p.clone(), shutdown)
            .await
            .expect("starts");
        let names =
            |s: &Source| -> Vec<String> { s.validating().iter().map(|h| h.name.clone()).collect() };
        assert_eq!(names(&source), ["b.example.com"]);
        put(
            store.as_ref(),
            &format!("{}a", p.validating),
            config("a.example.com"),
        )
        .await;
        eventually("the new configuration", || names(&source).len() == 2).await;
        assert_eq!(names(&source), ["a.example.com", "b.example.com"]);
        store
            .delete(&format!("{}b", p.validating), None)
            .await
            .expect("delete");
        eventually("the deletion", || names(&source) == ["a.example.com"]).await;
        assert!(source.mutating().is_empty());

        put(
            store.as_ref(),
            &format!("{}team-a", p.namespaces),
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
    fn services_resolve_to_a_ready_endpoint_of_the_named_port() {
        let p = prefixes();
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
            &p,
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
            &p,
            "/registry/discovery.k8s.io/endpointslices/hooks/svc-abc",
            Some(&slice),
        );
        assert_eq!(
            view.resolve("hooks", "svc", 443),
            Ok("127.0.0.1:8443".parse().expect("addr"))
        );
        view.apply(
            &p,
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
