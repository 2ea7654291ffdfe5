//! The in-memory index the answers come from, updated one watch event at a time.

use std::{
    collections::hash_map::Entry,
    net::IpAddr,
    sync::{Arc, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use hickory_proto::rr::Name;
use k8s_openapi::api::{
    core::v1::{Namespace, Service},
    discovery::v1::EndpointSlice,
};
use rustc_hash::FxHashMap;

use crate::{DnsConfig, Error};

pub(crate) mod objects;

use objects::{ServiceEntry, SliceEntry};

/// IP → the objects holding it, `(namespace, name)`, in arrival order.
pub(crate) type IpRefs = FxHashMap<IpAddr, Vec<(Box<str>, Box<str>)>>;

/// An [`Index`] shared between the watchers that write it and the server that reads it.
pub type SharedIndex = Arc<RwLock<Index>>;

/// Services, EndpointSlices and Namespaces of the cluster, kept as DNS needs them.
///
/// Every update costs time in proportion to the one object changed: services and
/// slices sit in hash maps by namespace and name, cluster IPs and endpoint IPs in hash
/// maps by address (for PTR). A question looks up by name or address and then touches
/// only the one service's slices. Names are compared in lowercase.
#[derive(Debug)]
pub struct Index {
    pub(crate) zone: Zone,
    pub(crate) synced: bool,
    /// Unix time of the last change: the SOA serial, as CoreDNS keeps it.
    pub(crate) serial: u32,
    pub(crate) namespaces: FxHashMap<Box<str>, NamespaceEntry>,
    /// Cluster IP → the services holding it, `(namespace, name)`, in arrival order.
    pub(crate) cluster_ips: IpRefs,
    /// Endpoint IP → the slices holding it ready, `(namespace, slice name)`.
    pub(crate) endpoint_ips: IpRefs,
}

/// The cluster zone's fixed facts.
#[derive(Debug)]
pub(crate) struct Zone {
    /// The cluster domain, lowercase, fully qualified.
    pub(crate) domain: Name,
    /// Its labels, lowercase, left to right.
    pub(crate) labels: Vec<Box<str>>,
    pub(crate) ttl: u32,
    pub(crate) nameservers: Vec<IpAddr>,
    /// `ns.dns.<domain>`: the SOA's MNAME and the NS target.
    pub(crate) ns_name: Name,
    /// `hostmaster.<domain>`: the SOA's RNAME.
    pub(crate) hostmaster: Name,
}

/// One namespace's objects, and whether the Namespace itself exists.
#[derive(Debug, Default)]
pub(crate) struct NamespaceEntry {
    /// The Namespace object has been seen (and not deleted).
    pub(crate) exists: bool,
    pub(crate) services: FxHashMap<Box<str>, ServiceEntry>,
    pub(crate) slices: FxHashMap<Box<str>, SliceEntry>,
    /// Service name → names of its slices.
    pub(crate) slices_of: FxHashMap<Box<str>, Vec<Box<str>>>,
}

impl NamespaceEntry {
    fn is_empty(&self) -> bool {
        !self.exists && self.services.is_empty() && self.slices.is_empty()
    }

    /// The slices of a service, in no particular order.
    pub(crate) fn slices_of(&self, service: &str) -> impl Iterator<Item = &SliceEntry> {
        self.slices_of
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|name| self.slices.get(name))
    }
}

impl Index {
    /// An empty index for `config.domain`, `config.ttl` and `config.nameservers`. It
    /// answers SERVFAIL for cluster names until [`Index::set_synced`] is called.
    pub fn new(config: &DnsConfig) -> Result<Self, Error> {
        let invalid = |source| Error::InvalidDomain {
            domain: config.domain.clone(),
            source,
        };
        let mut domain = Name::from_ascii(config.domain.trim_end_matches('.'))
            .map_err(invalid)?
            .to_lowercase();
        domain.set_fqdn(true);
        let labels = domain
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned().into_boxed_str())
            .collect();
        let ns_name = Name::from_ascii("ns.dns")
            .and_then(|n| n.append_domain(&domain))
            .map_err(invalid)?;
        let hostmaster = Name::from_ascii("hostmaster")
            .and_then(|n| n.append_domain(&domain))
            .map_err(invalid)?;
        Ok(Self {
            zone: Zone {
                domain,
                labels,
                ttl: config.ttl,
                nameservers: config.nameservers.clone(),
                ns_name,
                hostmaster,
            },
            synced: false,
            serial: now(),
            namespaces: FxHashMap::default(),
            cluster_ips: FxHashMap::default(),
            endpoint_ips: FxHashMap::default(),
        })
    }

    /// Marks the index as holding the whole cluster (every watch has listed once), or not.
    pub fn set_synced(&mut self, synced: bool) {
        self.synced = synced;
    }

    /// Whether [`Index::set_synced`] marked the index complete.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The number of services held.
    pub fn service_count(&self) -> usize {
        self.namespaces.values().map(|ns| ns.services.len()).sum()
    }

    /// Adds or replaces a Namespace (only its existence matters).
    pub fn apply_namespace(&mut self, namespace: &Namespace) {
        let Some(name) = namespace.metadata.name.as_deref() else {
            return;
        };
        self.namespace_mut(name).exists = true;
        self.touch();
    }

    /// Removes a Namespace; its services stay until they are deleted themselves.
    pub fn delete_namespace(&mut self, name: &str) {
        let key = name.to_ascii_lowercase();
        if let Some(ns) = self.namespaces.get_mut(key.as_str()) {
            ns.exists = false;
            if ns.is_empty() {
                self.namespaces.remove(key.as_str());
            }
        }
        self.touch();
    }

    /// Adds or replaces a Service.
    pub fn apply_service(&mut self, service: &Service) {
        let (Some(ns), Some(name)) = (
            service.metadata.namespace.as_deref(),
            service.metadata.name.as_deref(),
        ) else {
            return;
        };
        let (ns, name) = (lower(ns), lower(name));
        let entry = ServiceEntry::from_service(service);
        let new_ips = entry.cluster_ips().to_vec();
        let old = self.namespace_mut(&ns).services.insert(name.clone(), entry);
        if let Some(old) = old {
            for ip in old.cluster_ips() {
                remove_ref(&mut self.cluster_ips, ip, &ns, &name);
            }
        }
        for ip in new_ips {
            add_ref(&mut self.cluster_ips, ip, &ns, &name);
        }
        self.touch();
    }

    /// Removes a Service (its slices stay until they are deleted themselves).
    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        let (ns, name) = (lower(namespace), lower(name));
        let Some(entry) = self.namespaces.get_mut(&ns) else {
            return;
        };
        if let Some(old) = entry.services.remove(&name) {
            for ip in old.cluster_ips() {
                remove_ref(&mut self.cluster_ips, ip, &ns, &name);
            }
        }
        self.forget_if_empty(&ns);
        self.touch();
    }

    /// Adds or replaces an EndpointSlice. Slices without a
    /// `kubernetes.io/service-name` label, and FQDN slices, are ignored.
    pub fn apply_endpoint_slice(&mut self, slice: &EndpointSlice) {
        let (Some(ns), Some(name)) = (
            slice.metadata.namespace.as_deref(),
            slice.metadata.name.as_deref(),
        ) else {
            return;
        };
        let Some(entry) = SliceEntry::from_slice(slice) else {
            // It may have lost its label: forget what it said before.
            self.delete_endpoint_slice(ns, name);
            return;
        };
        let (ns, name) = (lower(ns), lower(name));
        let new_ips: Vec<IpAddr> = entry.endpoints.iter().map(|e| e.ip).collect();
        let service = entry.service.clone();
        let ns_entry = self.namespace_mut(&ns);
        let old = ns_entry.slices.insert(name.clone(), entry);
        if let Some(old) = old.as_ref().filter(|o| o.service != service) {
            unlink_slice(ns_entry, &old.service, &name);
        }
        if old.as_ref().is_none_or(|o| o.service != service) {
            ns_entry
                .slices_of
                .entry(service)
                .or_default()
                .push(name.clone());
        }
        if let Some(old) = old {
            for ep in &old.endpoints {
                remove_ref(&mut self.endpoint_ips, &ep.ip, &ns, &name);
            }
        }
        for ip in new_ips {
            add_ref(&mut self.endpoint_ips, ip, &ns, &name);
        }
        self.touch();
    }

    /// Removes an EndpointSlice.
    pub fn delete_endpoint_slice(&mut self, namespace: &str, name: &str) {
        let (ns, name) = (lower(namespace), lower(name));
        let Some(ns_entry) = self.namespaces.get_mut(&ns) else {
            return;
        };
        if let Some(old) = ns_entry.slices.remove(&name) {
            unlink_slice(ns_entry, &old.service, &name);
            for ep in &old.endpoints {
                remove_ref(&mut self.endpoint_ips, &ep.ip, &ns, &name);
            }
        }
        self.forget_if_empty(&ns);
        self.touch();
    }

    /// `(namespace, name)` of every service (for resyncs after a re-list).
    pub(crate) fn service_keys(&self) -> Vec<(String, String)> {
        self.namespaces
            .iter()
            .flat_map(|(ns, e)| e.services.keys().map(|n| (ns.to_string(), n.to_string())))
            .collect()
    }

    /// `(namespace, name)` of every slice.
    pub(crate) fn slice_keys(&self) -> Vec<(String, String)> {
        self.namespaces
            .iter()
            .flat_map(|(ns, e)| e.slices.keys().map(|n| (ns.to_string(), n.to_string())))
            .collect()
    }

    /// Names of every existing namespace.
    pub(crate) fn namespace_keys(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .filter(|(_, e)| e.exists)
            .map(|(ns, _)| ns.to_string())
            .collect()
    }

    fn namespace_mut(&mut self, ns: &str) -> &mut NamespaceEntry {
        let key = lower(ns);
        match self.namespaces.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(NamespaceEntry::default()),
        }
    }

    fn forget_if_empty(&mut self, ns: &str) {
        if self
            .namespaces
            .get(ns)
            .is_some_and(NamespaceEntry::is_empty)
        {
            self.namespaces.remove(ns);
        }
    }

    fn touch(&mut self) {
        self.serial = now();
    }
}

fn unlink_slice(ns_entry: &mut NamespaceEntry, service: &str, slice: &str) {
    if let Some(names) = ns_entry.slices_of.get_mut(service) {
        names.retain(|n| &**n != slice);
        if names.is_empty() {
            ns_entry.slices_of.remove(service);
        }
    }
}

fn add_ref(map: &mut IpRefs, ip: IpAddr, ns: &str, name: &str) {
    let refs = map.entry(ip).or_default();
    if !refs.iter().any(|(n, m)| &**n == ns && &**m == name) {
        refs.push((ns.into(), name.into()));
    }
}

fn remove_ref(map: &mut IpRefs, ip: &IpAddr, ns: &str, name: &str) {
    if let Some(refs) = map.get_mut(ip) {
        refs.retain(|(n, m)| !(&**n == ns && &**m == name));
        if refs.is_empty() {
            map.remove(ip);
        }
    }
}

fn lower(s: &str) -> Box<str> {
    s.to_ascii_lowercase().into_boxed_str()
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}
