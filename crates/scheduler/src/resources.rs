//! Resource amounts of pods and nodes, computed as Kubernetes does
//! (`component-helpers/resource.PodRequests`): the larger of the sum of the app
//! containers (plus restartable init containers) and the largest init container,
//! plus the pod overhead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use api::quantity;

/// Default cpu request (millicores) of a container without one, for scoring only.
pub(crate) const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Default memory request (bytes) of a container without one, for scoring only.
pub(crate) const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource the scheduler accounts for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Number of pods (allocatable only).
    pub allowed_pod_number: i64,
    /// Extended and hugepages resources by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// From a resource list (`requests`, `limits`, `allocatable`, `overhead`).
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list.into_iter().flatten() {
            r.set(name, &q.0);
        }
        r
    }

    fn set(&mut self, name: &str, q: &str) {
        match name {
            "cpu" => self.milli_cpu = quantity::milli_value(q).unwrap_or(0),
            "memory" => self.memory = quantity::value(q).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = quantity::value(q).unwrap_or(0),
            "pods" => self.allowed_pod_number = quantity::value(q).unwrap_or(0),
            n if is_scalar(n) => {
                self.scalar
                    .insert(n.to_string(), quantity::value(q).unwrap_or(0));
            }
            _ => {}
        }
    }

    /// Adds `other` to `self`, saturating: absurd requests (`cpu: 1E`) must not
    /// wrap a node's sum around to a small number.
    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        self.allowed_pod_number = self
            .allowed_pod_number
            .saturating_add(other.allowed_pod_number);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    /// Subtracts `other` from `self`, saturating. After a saturated [`Resource::add`]
    /// the difference is not exact: see [`Resource::is_saturated`].
    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        self.allowed_pod_number = self
            .allowed_pod_number
            .saturating_sub(other.allowed_pod_number);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_sub(*v);
        }
    }

    /// Whether some amount sits at the end of the `i64` range, so that a sum
    /// built with [`Resource::add`] may have lost part of what was added.
    pub fn is_saturated(&self) -> bool {
        let at_end = |v: i64| v == i64::MAX || v == i64::MIN;
        at_end(self.milli_cpu)
            || at_end(self.memory)
            || at_end(self.ephemeral_storage)
            || at_end(self.allowed_pod_number)
            || self.scalar.values().any(|v| at_end(*v))
    }

    /// The element-wise maximum of `self` and `other`.
    fn max_with(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }
}

/// Extended resources (`example.com/gpu`), hugepages and attachable volumes.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

fn container_requests(c: &Container, non_zero: bool) -> Resource {
    let res = c.resources.as_ref();
    let mut r = Resource::from_list(res.and_then(|r| r.requests.as_ref()));
    // A container with limits but no requests gets requests = limits (API defaulting);
    // do it here too in case the server did not.
    let limits = Resource::from_list(res.and_then(|r| r.limits.as_ref()));
    let has = |name: &str| {
        res.and_then(|r| r.requests.as_ref())
            .is_some_and(|m| m.contains_key(name))
    };
    if !has("cpu") {
        r.milli_cpu = limits.milli_cpu;
    }
    if !has("memory") {
        r.memory = limits.memory;
    }
    if !has("ephemeral-storage") {
        r.ephemeral_storage = limits.ephemeral_storage;
    }
    for (k, v) in &limits.scalar {
        r.scalar.entry(k.clone()).or_insert(*v);
    }
    if non_zero {
        if !has("cpu") && r.milli_cpu == 0 {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") && r.memory == 0 {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// What a pod requests: `max(sum(containers) + sum(sidecars), max(init containers
/// with the sidecars started before them)) + overhead`. With `non_zero`, containers
/// without a cpu or memory request count 100m / 200Mi (the scoring defaults).
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource::default();
    };
    let mut reqs = Resource::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            init_max.max_with(&sidecars);
        } else {
            let mut with = r;
            with.add(&sidecars);
            init_max.max_with(&with);
        }
    }
    reqs.add(&sidecars);
    reqs.max_with(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add(&Resource::from_list(Some(overhead)));
    }
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": v})).expect("pod")
    }

    #[test]
    fn requests_are_the_larger_of_app_containers_and_init_containers_plus_overhead() {
        let p = pod(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "1", "example.com/gpu": "1"}}},
            ],
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "2", "memory": "64Mi"}}},
            ],
            "overhead": {"cpu": "100m"},
        }));
        let r = pod_requests(&p, false);
        assert_eq!(r.milli_cpu, 2100);
        assert_eq!(r.memory, 128 * 1024 * 1024);
        assert_eq!(r.scalar.get("example.com/gpu"), Some(&1));
    }

    #[test]
    fn sidecar_init_containers_add_to_the_app_containers() {
        let p = pod(json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "1"}}},
            ],
        }));
        assert_eq!(pod_requests(&p, false).milli_cpu, 1500);
    }

    #[test]
    fn containers_without_requests_count_defaults_only_for_scoring() {
        let p = pod(json!({"containers": [{"name": "a"}]}));
        assert_eq!(pod_requests(&p, false).milli_cpu, 0);
        let nz = pod_requests(&p, true);
        assert_eq!(nz.milli_cpu, 100);
        assert_eq!(nz.memory, 200 * 1024 * 1024);
    }

    #[test]
    fn limits_without_requests_count_as_requests() {
        let p = pod(json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "2"}}}]}));
        assert_eq!(pod_requests(&p, false).milli_cpu, 2000);
    }
}
