//! The scheduler's view of the cluster (pkg/scheduler/backend/cache): one
//! [`NodeInfo`] per node with the pods bound or assumed there and their summed
//! requests, kept up to date incrementally from watch events. Pods the scheduler has
//! sent for binding are *assumed* on their node until the watch confirms them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};
use rustc_hash::FxHashMap;

use crate::pod_info::{HostPort, PodInfo, PodKey};
use crate::resources::Resource;

/// Maps keyed by pod: pod names come from users, so the hasher is seeded per map
/// (foldhash) rather than fixed (FxHash), and still cheap on short strings.
pub type PodMap<V> = HashMap<PodKey, V, foldhash::fast::RandomState>;

/// A node and the pods on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The node object (None while pods still point at a deleted node).
    pub node: Option<Arc<Node>>,
    /// Node name.
    pub name: String,
    /// `spec.unschedulable` of the node object.
    pub unschedulable: bool,
    /// `spec.taints` of the node object, copied out so filters need not chase the
    /// object on every node they visit.
    pub taints: Vec<Taint>,
    /// Pods bound or assumed here, by key.
    pub pods: PodMap<Arc<PodInfo>>,
    /// Number of pods here with any pod affinity/anti-affinity.
    pub pods_with_affinity: usize,
    /// Number of pods here with required anti-affinity.
    pub pods_with_required_anti_affinity: usize,
    /// Sum of the pods' requests.
    pub requested: Resource,
    /// Sum of the pods' requests with scoring defaults for unset cpu/memory.
    pub non_zero_requested: Resource,
    /// `status.allocatable`.
    pub allocatable: Resource,
    /// Host ports in use.
    pub used_ports: Vec<HostPort>,
    /// Bumped on every change.
    pub generation: u64,
}

impl NodeInfo {
    fn new(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// The node's labels.
    pub fn labels(&self) -> &std::collections::BTreeMap<String, String> {
        static EMPTY: std::sync::OnceLock<std::collections::BTreeMap<String, String>> =
            std::sync::OnceLock::new();
        self.node
            .as_ref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }

    /// Sets the node object.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = Resource::from_list(
            node.status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref())),
        );
        let spec = node.spec.as_ref();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.node = Some(node);
        self.generation += 1;
    }

    /// Adds a pod's requests and ports.
    pub fn add_pod(&mut self, pi: Arc<PodInfo>) {
        count_requests(&mut self.requested, &mut self.non_zero_requested, &pi);
        self.used_ports.extend(pi.host_ports.iter().cloned());
        if pi.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pi.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        if let Some(old) = self.pods.insert(pi.key.clone(), pi) {
            self.forget(&old);
        }
        self.generation += 1;
    }

    /// Removes a pod; returns it when it was here.
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let old = self.pods.remove(key)?;
        self.forget(&old);
        self.generation += 1;
        Some(old)
    }

    fn forget(&mut self, pi: &PodInfo) {
        if self.requested.is_saturated() || self.non_zero_requested.is_saturated() {
            // A saturated sum cannot be taken apart: add up the pods still here.
            let (mut requested, mut non_zero) = (Resource::default(), Resource::default());
            for p in self.pods.values() {
                count_requests(&mut requested, &mut non_zero, p);
            }
            self.requested = requested;
            self.non_zero_requested = non_zero;
        } else {
            self.requested.sub(&pi.requests);
            self.requested.allowed_pod_number -= 1;
            self.non_zero_requested.sub(&pi.non_zero_requests);
        }
        for hp in &pi.host_ports {
            if let Some(i) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(i);
            }
        }
        if pi.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pi.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
    }
}

/// Adds a pod's requests (and one pod) to a node's sums.
fn count_requests(requested: &mut Resource, non_zero: &mut Resource, pi: &PodInfo) {
    requested.add(&pi.requests);
    requested.allowed_pod_number += 1;
    non_zero.add(&pi.non_zero_requests);
}

#[derive(Debug, Clone)]
struct PodState {
    node: String,
    assumed: bool,
}

/// What changed in the cache, for moving unschedulable pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing relevant.
    None,
    /// A pod was added to or updated on a node.
    PodAdded,
    /// A pod left a node (deleted, finished or moved).
    PodRemoved,
    /// A node was added or changed in a way that can matter for scheduling.
    NodeChanged,
}

/// All nodes and the pods on them.
#[derive(Debug, Default)]
pub struct Cache {
    /// Node infos in stable slots (a freed slot is reused): scheduling walks
    /// `order` by position, with no name lookups.
    slots: Vec<Option<NodeInfo>>,
    free: Vec<usize>,
    /// Node name -> slot.
    index: FxHashMap<String, usize>,
    /// Pods with affinity or anti-affinity terms, over all nodes.
    pods_with_affinity: usize,
    /// Pods with required anti-affinity terms, over all nodes.
    pods_with_required_anti_affinity: usize,
    /// Slots of nodes that have a Node object, in insertion order.
    order: Vec<usize>,
    pods: PodMap<PodState>,
    /// Image name -> (size in bytes, number of nodes having it).
    images: HashMap<String, (i64, usize)>,
    /// Namespace labels, for affinity terms' `namespaceSelector`.
    namespaces: crate::pod_info::NamespaceLabels,
    /// Claims, volumes and classes, for VolumeBinding (none in bare caches).
    volume_stores: Option<VolumeStoresSlot>,
    /// Volumes chosen for claims by binds in flight, with the resourceVersion the
    /// volume store showed then: until the store shows another version, the volume
    /// is taken (Kubernetes' assume cache), so two pods cannot pick it.
    assumed_volumes: HashMap<String, String>,
}

/// The volume stores, printed without their contents.
#[derive(Clone)]
struct VolumeStoresSlot(crate::plugins::volume_binding::VolumeStores);

impl std::fmt::Debug for VolumeStoresSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VolumeStores")
    }
}

fn node_images(node: &Node) -> Vec<(String, i64)> {
    node.status
        .as_ref()
        .and_then(|s| s.images.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|img| {
            let size = img.size_bytes.unwrap_or(0);
            img.names.iter().flatten().map(move |n| (n.clone(), size))
        })
        .collect()
}

fn scheduling_relevant(a: &Node, b: &Node) -> bool {
    a.metadata.labels != b.metadata.labels
        || a.spec.as_ref().map(|s| (&s.taints, s.unschedulable))
            != b.spec.as_ref().map(|s| (&s.taints, s.unschedulable))
        || a.status.as_ref().map(|s| &s.allocatable) != b.status.as_ref().map(|s| &s.allocatable)
        || a.status.as_ref().map(|s| &s.images) != b.status.as_ref().map(|s| &s.images)
}

impl Cache {
    /// The slot of `name`, made (empty) when the node is not known yet.
    fn slot_of(&mut self, name: &str) -> usize {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let info = Some(NodeInfo::new(name));
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = info;
                i
            }
            None => {
                self.slots.push(info);
                self.slots.len() - 1
            }
        };
        self.index.insert(name.to_string(), i);
        i
    }

    fn info_mut(&mut self, slot: usize) -> &mut NodeInfo {
        self.slots[slot].get_or_insert_with(|| NodeInfo::new(""))
    }

    /// Frees the slot of a node that has neither a Node object nor pods.
    fn release_if_unused(&mut self, slot: usize) {
        let unused = self.slots[slot]
            .as_ref()
            .is_some_and(|n| n.node.is_none() && n.pods.is_empty());
        if unused {
            if let Some(info) = self.slots[slot].take() {
                self.index.remove(&info.name);
            }
            self.free.push(slot);
        }
    }

    /// Adds or updates a node.
    pub fn apply_node(&mut self, node: Arc<Node>) -> Change {
        let name = node.metadata.name.clone().unwrap_or_default();
        let slot = self.slot_of(&name);
        let info = self.info_mut(slot);
        let change = match info.node.as_ref() {
            None => Change::NodeChanged,
            Some(old) if scheduling_relevant(old, &node) => Change::NodeChanged,
            Some(_) => Change::None,
        };
        let had_node = info.node.is_some();
        let old_images = info
            .node
            .as_ref()
            .map(|n| node_images(n))
            .unwrap_or_default();
        let new_images = node_images(&node);
        info.set_node(node);
        if !had_node {
            self.order.push(slot);
        }
        if old_images != new_images {
            for (img, _) in &old_images {
                if let Some(e) = self.images.get_mut(img) {
                    e.1 -= 1;
                    if e.1 == 0 {
                        self.images.remove(img);
                    }
                }
            }
            for (img, size) in new_images {
                let e = self.images.entry(img).or_insert((size, 0));
                e.0 = size;
                e.1 += 1;
            }
        }
        change
    }

    /// Removes a node (its pods stay accounted until they go).
    pub fn remove_node(&mut self, name: &str) {
        let Some(&slot) = self.index.get(name) else {
            return;
        };
        let Some(node) = self.info_mut(slot).node.take() else {
            return;
        };
        for (img, _) in node_images(&node) {
            if let Some(e) = self.images.get_mut(&img) {
                e.1 -= 1;
                if e.1 == 0 {
                    self.images.remove(&img);
                }
            }
        }
        self.order.retain(|s| *s != slot);
        self.release_if_unused(slot);
    }

    /// Adds or updates a pod bound to `node` (confirming an assumed pod).
    pub fn apply_pod(&mut self, pi: Arc<PodInfo>, node: &str) -> Change {
        let mut change = Change::PodAdded;
        if let Some(old) = self.pods.get(&pi.key)
            && old.node != node
        {
            let old_node = old.node.clone();
            self.remove_from_node(&pi.key, &old_node);
            change = Change::PodRemoved;
        }
        self.pods.insert(
            pi.key.clone(),
            PodState {
                node: node.to_string(),
                assumed: false,
            },
        );
        let slot = self.slot_of(node);
        let info = self.info_mut(slot);
        let before = (
            info.pods_with_affinity,
            info.pods_with_required_anti_affinity,
        );
        info.add_pod(pi);
        let after = (
            info.pods_with_affinity,
            info.pods_with_required_anti_affinity,
        );
        self.count_affinity(before, after);
        change
    }

    /// Assumes a pod on `node` before its binding is confirmed.
    pub fn assume_pod(&mut self, pi: Arc<PodInfo>, node: &str) {
        self.apply_pod(pi.clone(), node);
        if let Some(s) = self.pods.get_mut(&pi.key) {
            s.assumed = true;
        }
    }

    /// Whether the pod is assumed (binding in flight, not yet seen bound).
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|s| s.assumed)
    }

    /// Whether the pod is in the cache (bound or assumed).
    pub fn contains_pod(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// Removes a pod (deleted, finished, or a failed binding).
    pub fn remove_pod(&mut self, key: &str) -> Change {
        let Some(state) = self.pods.remove(key) else {
            return Change::None;
        };
        self.remove_from_node(key, &state.node);
        Change::PodRemoved
    }

    fn remove_from_node(&mut self, key: &str, node: &str) {
        let Some(&slot) = self.index.get(node) else {
            return;
        };
        let info = self.info_mut(slot);
        let before = (
            info.pods_with_affinity,
            info.pods_with_required_anti_affinity,
        );
        info.remove_pod(key);
        let after = (
            info.pods_with_affinity,
            info.pods_with_required_anti_affinity,
        );
        self.count_affinity(before, after);
        self.release_if_unused(slot);
    }

    /// Moves the cluster-wide affinity counts by one node's change.
    fn count_affinity(&mut self, before: (usize, usize), after: (usize, usize)) {
        self.pods_with_affinity = (self.pods_with_affinity + after.0).saturating_sub(before.0);
        self.pods_with_required_anti_affinity =
            (self.pods_with_required_anti_affinity + after.1).saturating_sub(before.1);
    }

    /// Pods with affinity or anti-affinity terms on any node (InterPodAffinity skips
    /// its per-node work when there are none).
    pub fn pods_with_affinity(&self) -> usize {
        self.pods_with_affinity
    }

    /// Pods with required anti-affinity terms on any node.
    pub fn pods_with_required_anti_affinity(&self) -> usize {
        self.pods_with_required_anti_affinity
    }

    /// Keys of all pods in the cache that are not assumed.
    pub fn bound_pod_keys(&self) -> Vec<PodKey> {
        self.pods
            .iter()
            .filter(|(_, s)| !s.assumed)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Names of all nodes with a Node object, in insertion order.
    pub fn node_names(&self) -> impl Iterator<Item = &String> {
        self.nodes().map(|n| &n.name)
    }

    /// Number of nodes with a Node object.
    pub fn num_nodes(&self) -> usize {
        self.order.len()
    }

    /// Uses these claims, volumes and classes for VolumeBinding.
    pub fn set_volume_stores(&mut self, stores: crate::plugins::volume_binding::VolumeStores) {
        self.volume_stores = Some(VolumeStoresSlot(stores));
    }

    /// The claims, volumes and classes, when watched.
    pub fn volume_stores(&self) -> Option<&crate::plugins::volume_binding::VolumeStores> {
        self.volume_stores.as_ref().map(|s| &s.0)
    }

    /// Takes the volume `name`, seen at `resource_version`, for a bind in flight.
    /// Assumptions the store has moved past (or whose volume is gone) are dropped.
    pub fn assume_volume(&mut self, name: &str, resource_version: &str) {
        if let Some(stores) = self.volume_stores.as_ref().map(|s| &s.0) {
            self.assumed_volumes.retain(|n, rv| {
                stores
                    .volumes
                    .get(&kube::runtime::reflector::ObjectRef::new(n))
                    .is_some_and(|pv| pv.metadata.resource_version.as_deref() == Some(rv))
            });
        }
        self.assumed_volumes
            .insert(name.to_string(), resource_version.to_string());
    }

    /// Gives back a volume whose bind failed.
    pub fn forget_volume(&mut self, name: &str) {
        self.assumed_volumes.remove(name);
    }

    /// Whether `pv`, as the store shows it, is taken by a bind in flight.
    pub fn volume_assumed(&self, pv: &k8s_openapi::api::core::v1::PersistentVolume) -> bool {
        pv.metadata
            .name
            .as_ref()
            .and_then(|n| self.assumed_volumes.get(n))
            .is_some_and(|rv| pv.metadata.resource_version.as_deref() == Some(rv))
    }

    /// Labels of every namespace.
    pub fn namespaces(&self) -> &crate::pod_info::NamespaceLabels {
        &self.namespaces
    }

    /// Records a namespace's labels; returns whether they changed.
    pub fn apply_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) -> bool {
        if self.namespaces.get(name) == Some(&labels) {
            return false;
        }
        self.namespaces.insert(name.to_owned(), labels);
        true
    }

    /// Forgets a namespace.
    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    /// Names of the namespaces known.
    pub fn namespace_names(&self) -> impl Iterator<Item = &String> {
        self.namespaces.keys()
    }

    /// A node's info.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        let slot = *self.index.get(name)?;
        self.slots[slot].as_ref().filter(|n| n.node.is_some())
    }

    /// The node at `position` (0..[`Self::num_nodes`]) in insertion order: how
    /// scheduling walks the nodes round-robin without name lookups.
    pub fn node_at(&self, position: usize) -> Option<&NodeInfo> {
        let slot = *self.order.get(position)?;
        self.slots[slot].as_ref()
    }

    /// All node infos that have a Node object, in insertion order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.order.iter().filter_map(|s| self.slots[*s].as_ref())
    }

    /// Image size and the number of nodes that have it.
    pub fn image(&self, name: &str) -> Option<(i64, usize)> {
        self.images.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))
            .expect("node"),
        )
    }

    fn pod(name: &str, cpu: &str) -> Arc<PodInfo> {
        let p = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}},
                "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}))
        .expect("pod");
        Arc::new(PodInfo::new(Arc::new(p), 0))
    }

    #[test]
    fn absurd_requests_saturate_a_node_and_leave_it_exact_when_removed() {
        let mut c = Cache::default();
        c.apply_node(node("n1"));
        c.apply_pod(pod("small", "1"), "n1");
        c.apply_pod(pod("huge-1", "9000P"), "n1");
        c.apply_pod(pod("huge-2", "9000P"), "n1");
        let n = c.node("n1").expect("n1");
        assert_eq!(
            n.requested.milli_cpu,
            i64::MAX,
            "the sum stays at the top instead of wrapping to a small or negative number"
        );
        c.remove_pod("default/huge-1");
        c.remove_pod("default/huge-2");
        let n = c.node("n1").expect("n1");
        assert_eq!(n.requested.milli_cpu, 1000, "only the small pod is left");
        assert_eq!(n.requested.allowed_pod_number, 1);
    }

    #[test]
    fn assumed_pods_count_until_removed_and_confirming_does_not_double_count() {
        let mut c = Cache::default();
        assert_eq!(c.apply_node(node("n1")), Change::NodeChanged);
        c.assume_pod(pod("a", "1"), "n1");
        assert!(c.is_assumed("default/a"));
        assert_eq!(c.node("n1").expect("n1").requested.milli_cpu, 1000);
        c.apply_pod(pod("a", "1"), "n1");
        assert!(!c.is_assumed("default/a"));
        let n = c.node("n1").expect("n1");
        assert_eq!(n.requested.milli_cpu, 1000);
        assert_eq!(n.requested.allowed_pod_number, 1);
        assert_eq!(n.used_ports.len(), 1);
        assert_eq!(c.remove_pod("default/a"), Change::PodRemoved);
        let n = c.node("n1").expect("n1");
        assert_eq!(n.requested.milli_cpu, 0);
        assert!(n.used_ports.is_empty());
    }

    #[test]
    fn deleted_node_keeps_its_pods_until_they_go() {
        let mut c = Cache::default();
        c.apply_node(node("n1"));
        c.apply_pod(pod("a", "1"), "n1");
        c.remove_node("n1");
        assert_eq!(c.num_nodes(), 0);
        assert!(c.node("n1").is_none());
        c.apply_node(node("n1"));
        assert_eq!(c.node("n1").expect("n1").requested.milli_cpu, 1000);
    }

    #[test]
    fn status_only_node_updates_are_not_scheduling_relevant() {
        let mut c = Cache::default();
        c.apply_node(node("n1"));
        assert_eq!(c.apply_node(node("n1")), Change::None);
    }
}
