//! What a container's environment is, computed the way the kubelet does it
//! (`makeEnvironmentVariables`): service link variables, then `envFrom`, then the
//! `env` entries in order, with `$(VAR)` expansion against what is defined before.
//!
//! The logic runs against [`Objects`], so it is testable without an API server;
//! [`ApiObjects`] reads through the API.

mod expand;
mod fields;
mod services;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, Pod, Secret, Service};
use kube::Api;
use kube::api::ListParams;

pub(crate) use fields::{Allocatable, needs_allocatable, resource_value, volume_field};

use crate::Error;

/// What [`container_env`] needs besides the container: the API client to read
/// ConfigMaps, Secrets, Services and the Node, and the pod's runtime facts.
#[allow(dead_code)]
pub(crate) struct EnvContext<'a> {
    /// Client for ConfigMaps, Secrets, Services and the Node.
    pub client: &'a kube::Client,
    /// The pod the container belongs to.
    pub pod: &'a Pod,
    /// The pod's IP; several (dual stack) separated by commas, the primary first.
    pub pod_ip: &'a str,
    /// The node's IP; several separated by commas, the primary first.
    pub host_ip: &'a str,
    /// The node's name (its allocatable is the default of missing limits).
    pub node_name: &'a str,
}

/// The API objects an environment (or a volume) is made from. Not-found is
/// `Ok(None)`; any other failure is an error.
pub(crate) trait Objects {
    /// A ConfigMap.
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, Error>;
    /// A Secret.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, Error>;
    /// The Services of `namespace`, and the `kubernetes` Service of `default`.
    async fn services(&self, namespace: &str) -> Result<Vec<Service>, Error>;
    /// The node's `status.allocatable`.
    async fn allocatable(&self) -> Result<Allocatable, Error>;
}

/// [`Objects`] read through the API, no caching.
pub(crate) struct ApiObjects<'a> {
    /// The client.
    pub client: &'a kube::Client,
    /// The node whose allocatable is asked for.
    pub node_name: &'a str,
}

impl Objects for ApiObjects<'_> {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, Error> {
        Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| Error::api(format!("getting configmap {namespace}/{name}"), e))
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| Error::api(format!("getting secret {namespace}/{name}"), e))
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, Error> {
        let list = |ns: &str| {
            let api = Api::<Service>::namespaced(self.client.clone(), ns);
            let what = format!("listing services of namespace {ns}");
            async move {
                api.list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .map_err(|e| Error::api(what, e))
            }
        };
        let mut out = list(namespace).await?;
        let (master_ns, master) = services::MASTER_SERVICE;
        if namespace != master_ns {
            let api = Api::<Service>::namespaced(self.client.clone(), master_ns);
            let svc = api
                .get_opt(master)
                .await
                .map_err(|e| Error::api(format!("getting service {master_ns}/{master}"), e))?;
            out.extend(svc);
        }
        Ok(out)
    }

    async fn allocatable(&self) -> Result<Allocatable, Error> {
        let node = Api::<Node>::all(self.client.clone())
            .get(self.node_name)
            .await
            .map_err(|e| Error::api(format!("getting node {}", self.node_name), e))?;
        Ok(node.status.and_then(|s| s.allocatable).unwrap_or_default())
    }
}

/// The environment of `container`, in Kubernetes' order and semantics.
#[allow(dead_code)]
pub(crate) async fn container_env(
    ctx: &EnvContext<'_>,
    container: &Container,
) -> Result<Vec<(String, String)>, Error> {
    let objects = ApiObjects {
        client: ctx.client,
        node_name: ctx.node_name,
    };
    resolve(&objects, ctx.pod, ctx.pod_ip, ctx.host_ip, container).await
}

/// `$(VAR)` expansion of `s` against `env`, for command and args: `$$` is `$`, an
/// undefined reference stays as written.
#[allow(dead_code)]
pub(crate) fn expand(s: &str, env: &[(String, String)]) -> String {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    expand::expand_with(s, |name| map.get(name).copied())
}

/// Like [`expand`], and the names of references that are undefined or empty
/// (`subPathExpr` refuses those).
pub(crate) fn expand_strict(s: &str, env: &[(String, String)]) -> (String, Vec<String>) {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let missing = std::cell::RefCell::new(Vec::new());
    let out = expand::expand_with(s, |name| match map.get(name) {
        Some(v) if !v.is_empty() => Some(*v),
        _ => {
            missing.borrow_mut().push(name.to_string());
            Some("")
        }
    });
    let mut missing = missing.into_inner();
    missing.sort();
    missing.dedup();
    (out, missing)
}

/// An environment under construction: each name once, in the order first defined,
/// a later definition replacing the value.
#[derive(Default)]
struct EnvList {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl EnvList {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.vars[i].1.as_str())
    }
}

/// Whether `name` is a C identifier-like environment variable name as the kubelet
/// accepts from `envFrom` (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
pub(crate) fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_');
    match chars.next() {
        Some(c) if ok_first(c) => chars.all(|c| ok_first(c) || c.is_ascii_digit()),
        _ => false,
    }
}

/// The kubelet's not-found error of its ConfigMap/Secret managers.
fn not_found(kind: &str, name: &str) -> Error {
    Error::Invalid(format!("{kind} \"{name}\" not found"))
}

fn split_ips(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The environment of `container` of `pod` from `objects`; `pod_ip` and `host_ip`
/// are comma-separated lists, the primary first.
pub(crate) async fn resolve(
    objects: &impl Objects,
    pod: &Pod,
    pod_ip: &str,
    host_ip: &str,
    container: &Container,
) -> Result<Vec<(String, String)>, Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.as_ref();
    let links = spec.and_then(|s| s.enable_service_links).unwrap_or(true);
    let all_services = objects.services(ns).await?;
    let linked = services::linked_services(&all_services, ns, links);
    let mut env = EnvList::default();
    for (k, v) in services::service_env(&linked) {
        env.set(k, v);
    }

    let mut config_maps: BTreeMap<String, Option<ConfigMap>> = BTreeMap::new();
    let mut secrets: BTreeMap<String, Option<Secret>> = BTreeMap::new();

    for from in container.env_from.as_deref().unwrap_or_default() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let mut invalid = Vec::new();
        let mut add = |k: &str, v: String| {
            let name = format!("{prefix}{k}");
            if is_env_var_name(&name) {
                env.set(name, v);
            } else {
                invalid.push(name);
            }
        };
        let (kind, name) = if let Some(r) = &from.config_map_ref {
            let cm = cached(&mut config_maps, &r.name, || {
                objects.config_map(ns, &r.name)
            })
            .await?;
            let Some(cm) = cm else {
                if r.optional.unwrap_or(false) {
                    continue;
                }
                return Err(not_found("configmap", &r.name));
            };
            for (k, v) in cm.data.iter().flatten() {
                add(k, v.clone());
            }
            ("configMap", &r.name)
        } else if let Some(r) = &from.secret_ref {
            let s = cached(&mut secrets, &r.name, || objects.secret(ns, &r.name)).await?;
            let Some(s) = s else {
                if r.optional.unwrap_or(false) {
                    continue;
                }
                return Err(not_found("secret", &r.name));
            };
            for (k, v) in s.data.iter().flatten() {
                add(k, String::from_utf8_lossy(&v.0).into_owned());
            }
            ("secret", &r.name)
        } else {
            continue;
        };
        if !invalid.is_empty() {
            invalid.sort();
            tracing::warn!(
                pod = %format!("{ns}/{}", pod.metadata.name.as_deref().unwrap_or_default()),
                reason = "InvalidEnvironmentVariableNames",
                "Keys [{}] from the EnvFrom {kind} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", "),
            );
        }
    }

    let pod_ips = split_ips(pod_ip);
    let host_ips = split_ips(host_ip);
    let mut allocatable: Option<Allocatable> = None;
    for var in container.env.as_deref().unwrap_or_default() {
        let literal = var.value.as_deref().unwrap_or_default();
        let value = if !literal.is_empty() {
            expand::expand_with(literal, |name| env.get(name))
        } else if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                fields::env_field(pod, f, &pod_ips, &host_ips).map_err(Error::Invalid)?
            } else if let Some(r) = &from.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(name) => find_container(pod, name)
                        .ok_or_else(|| Error::Invalid(format!("container {name} not found")))?,
                    None => container,
                };
                if allocatable.is_none() && needs_allocatable(&r.resource, target) {
                    allocatable = Some(objects.allocatable().await?);
                }
                let empty = Allocatable::new();
                resource_value(r, target, allocatable.as_ref().unwrap_or(&empty))
                    .map_err(Error::Invalid)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional.unwrap_or(false);
                let cm = cached(&mut config_maps, &r.name, || {
                    objects.config_map(ns, &r.name)
                })
                .await?;
                let Some(cm) = cm else {
                    if optional {
                        continue;
                    }
                    return Err(not_found("configmap", &r.name));
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(Error::Invalid(format!(
                            "couldn't find key {} in ConfigMap {ns}/{}",
                            r.key, r.name
                        )));
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                let s = cached(&mut secrets, &r.name, || objects.secret(ns, &r.name)).await?;
                let Some(s) = s else {
                    if optional {
                        continue;
                    }
                    return Err(not_found("secret", &r.name));
                };
                match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                    None if optional => continue,
                    None => {
                        return Err(Error::Invalid(format!(
                            "couldn't find key {} in Secret {ns}/{}",
                            r.key, r.name
                        )));
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), value);
    }
    Ok(env.vars)
}

/// A container of `pod` by name, init containers included.
pub(crate) fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// An object fetched once per environment.
async fn cached<T: Clone, F: Future<Output = Result<Option<T>, Error>>>(
    cache: &mut BTreeMap<String, Option<T>>,
    name: &str,
    fetch: impl FnOnce() -> F,
) -> Result<Option<T>, Error> {
    if let Some(v) = cache.get(name) {
        return Ok(v.clone());
    }
    let v = fetch().await?;
    cache.insert(name.to_string(), v.clone());
    Ok(v)
}
