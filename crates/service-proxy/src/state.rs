//! The proxy's view of the cluster, kept up to date one object at a time (the role
//! of kube-proxy's change trackers): Services and EndpointSlices go in, and only the
//! Services whose own object or slices changed are turned into service ports again.
//! Backends then render only what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{ServicePort, ports_of, slice_service};

/// A Service's key: `namespace/name`.
type Key = String;

fn key(namespace: &str, name: &str) -> Key {
    format!("{namespace}/{name}")
}

/// Services and EndpointSlices by name, and the service ports computed from them.
///
/// Feed it with [`ServiceState::apply_service`], [`ServiceState::apply_slice`] and
/// the deletes, or all at once with [`ServiceState::sync_from`]; a backend asks for
/// the ports and recomputes nothing that did not change.
#[derive(Debug, Default, Clone)]
pub struct ServiceState {
    node_name: String,
    services: BTreeMap<Key, Arc<Service>>,
    /// Slices by `namespace/slice-name`.
    slices: BTreeMap<Key, Arc<EndpointSlice>>,
    /// Slice keys by the key of their Service.
    slices_of: BTreeMap<Key, BTreeSet<Key>>,
    /// Service ports by Service key (Services without ports are absent).
    ports: BTreeMap<Key, Arc<Vec<ServicePort>>>,
    /// Services whose ports must be computed again.
    dirty: BTreeSet<Key>,
    /// Bumped whenever a Service's ports change (backends compare it).
    generation: u64,
}

impl ServiceState {
    /// An empty state for the node `node_name` (endpoints there are local).
    pub fn new(node_name: &str) -> Self {
        Self {
            node_name: node_name.to_owned(),
            ..Self::default()
        }
    }

    /// A state holding exactly `services` and `slices`.
    pub fn from_objects<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        node_name: &str,
    ) -> Self {
        let mut state = Self::new(node_name);
        for service in services {
            state.apply_service(Arc::new(service.clone()));
        }
        for slice in slices {
            state.apply_slice(Arc::new(slice.clone()));
        }
        state
    }

    /// Adds or replaces a Service.
    pub fn apply_service(&mut self, service: Arc<Service>) {
        let (Some(namespace), Some(name)) = (
            service.metadata.namespace.as_deref(),
            service.metadata.name.as_deref(),
        ) else {
            return;
        };
        let key = key(namespace, name);
        self.dirty.insert(key.clone());
        self.services.insert(key, service);
    }

    /// Removes the Service `namespace/name`.
    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        let key = key(namespace, name);
        if self.services.remove(&key).is_some() {
            self.dirty.insert(key);
        }
    }

    /// Adds or replaces an EndpointSlice.
    pub fn apply_slice(&mut self, slice: Arc<EndpointSlice>) {
        let (Some(namespace), Some(name)) = (
            slice.metadata.namespace.as_deref(),
            slice.metadata.name.as_deref(),
        ) else {
            return;
        };
        let slice_key = key(namespace, name);
        self.forget_slice(&slice_key);
        if let Some((namespace, service)) = slice_service(&slice) {
            let service_key = key(namespace, service);
            self.slices_of
                .entry(service_key.clone())
                .or_default()
                .insert(slice_key.clone());
            self.dirty.insert(service_key);
        }
        self.slices.insert(slice_key, slice);
    }

    /// Removes the EndpointSlice `namespace/name`.
    pub fn delete_slice(&mut self, namespace: &str, name: &str) {
        let slice_key = key(namespace, name);
        self.forget_slice(&slice_key);
        self.slices.remove(&slice_key);
    }

    /// Unlinks a slice from the Service it belonged to (marking that one dirty).
    fn forget_slice(&mut self, slice_key: &str) {
        let Some(old) = self.slices.get(slice_key) else {
            return;
        };
        let Some((namespace, service)) = slice_service(old) else {
            return;
        };
        let service_key = key(namespace, service);
        if let Some(keys) = self.slices_of.get_mut(&service_key) {
            keys.remove(slice_key);
            if keys.is_empty() {
                self.slices_of.remove(&service_key);
            }
        }
        self.dirty.insert(service_key);
    }

    /// Makes the state hold exactly `services` and `slices` (e.g. a watch cache's
    /// contents), touching only objects that differ: the same `Arc`, or the same
    /// `resourceVersion`, counts as unchanged.
    pub fn sync_from(&mut self, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) {
        let mut seen = BTreeSet::new();
        for service in services {
            let Some(key) = object_key(&service.metadata) else {
                continue;
            };
            let unchanged = self
                .services
                .get(&key)
                .is_some_and(|old| same(&old.metadata, &service.metadata, old, service));
            if !unchanged {
                self.apply_service(service.clone());
            }
            seen.insert(key);
        }
        let gone: Vec<Key> = self
            .services
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if self.services.remove(&key).is_some() {
                self.dirty.insert(key);
            }
        }

        let mut seen = BTreeSet::new();
        for slice in slices {
            let Some(key) = object_key(&slice.metadata) else {
                continue;
            };
            let unchanged = self
                .slices
                .get(&key)
                .is_some_and(|old| same(&old.metadata, &slice.metadata, old, slice));
            if !unchanged {
                self.apply_slice(slice.clone());
            }
            seen.insert(key);
        }
        let gone: Vec<Key> = self
            .slices
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.forget_slice(&key);
            self.slices.remove(&key);
        }
    }

    /// Changes the node whose endpoints are local; every Service is computed again.
    pub fn set_node_name(&mut self, node_name: &str) {
        if self.node_name != node_name {
            self.node_name = node_name.to_owned();
            self.dirty.extend(self.services.keys().cloned());
        }
    }

    /// How many Services are known.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Computes the ports of every dirty Service; returns the keys whose ports
    /// actually changed.
    pub(crate) fn refresh(&mut self) -> BTreeSet<Key> {
        let mut changed = BTreeSet::new();
        for key in std::mem::take(&mut self.dirty) {
            let ports = self.services.get(&key).map(|service| {
                let slices: Vec<&EndpointSlice> = self
                    .slices_of
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .filter_map(|k| self.slices.get(k).map(AsRef::as_ref))
                    .collect();
                ports_of(service, &slices, &self.node_name)
            });
            let ports = ports.filter(|p| !p.is_empty());
            let old = self.ports.get(&key);
            if old.map(|o| o.as_slice()) == ports.as_deref() {
                continue;
            }
            match ports {
                Some(ports) => {
                    self.ports.insert(key.clone(), Arc::new(ports));
                }
                None => {
                    self.ports.remove(&key);
                }
            }
            changed.insert(key);
        }
        if !changed.is_empty() {
            self.generation += 1;
        }
        changed
    }

    /// The service ports by Service key, current after [`ServiceState::refresh`].
    pub(crate) fn ports(&self) -> &BTreeMap<Key, Arc<Vec<ServicePort>>> {
        &self.ports
    }

    /// Every service port, sorted by name and protocol (as [`crate::desired`] orders
    /// them).
    pub(crate) fn sorted_ports(&self) -> Vec<&ServicePort> {
        let mut all: Vec<&ServicePort> = self.ports.values().flat_map(|p| p.iter()).collect();
        all.sort_by(|a, b| (&a.name, a.protocol).cmp(&(&b.name, b.protocol)));
        all
    }
}

fn object_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Key> {
    Some(key(meta.namespace.as_deref()?, meta.name.as_deref()?))
}

/// Whether two versions of an object are the same: one `Arc`, or one
/// `resourceVersion` (objects from the API always have one).
fn same<T>(
    old_meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    new_meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    old: &Arc<T>,
    new: &Arc<T>,
) -> bool {
    Arc::ptr_eq(old, new)
        || (old_meta.resource_version.is_some()
            && old_meta.resource_version == new_meta.resource_version
            && old_meta.uid == new_meta.uid)
}
