//! A pod with what the scheduler derives from it once: requests, priority, host
//! ports and compiled pod (anti-)affinity terms.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use api::selector::LabelSelector;
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};

use crate::resources::{Resource, pod_requests};

/// `namespace/name` of a pod.
pub type PodKey = String;

/// The key of a pod.
pub fn pod_key(pod: &Pod) -> PodKey {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Labels of every namespace, by name (for `namespaceSelector`).
pub type NamespaceLabels = std::collections::HashMap<String, BTreeMap<String, String>>;

/// A compiled pod (anti-)affinity term.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    /// Namespaces the term selects pods in (the pod's own when none are given).
    pub namespaces: BTreeSet<String>,
    /// `namespaceSelector: {}`: every namespace.
    pub all_namespaces: bool,
    /// A non-empty `namespaceSelector`: namespaces whose labels match, too.
    pub namespace_selector: Option<LabelSelector>,
    /// The label selector (`labelSelector` + `matchLabelKeys`).
    pub selector: LabelSelector,
    /// The node label that defines the topology domain.
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(pod: &Pod, term: &PodAffinityTerm) -> AffinityTerm {
        let own_ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut namespaces: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        let empty_selector = |s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
        };
        let all_namespaces = term.namespace_selector.as_ref().is_some_and(empty_selector);
        let namespace_selector = term
            .namespace_selector
            .as_ref()
            .filter(|s| !empty_selector(s))
            .map(|s| {
                LabelSelector::from_label_selector(s).unwrap_or_else(|_| LabelSelector::nothing())
            });
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.insert(own_ns);
        }
        let mut selector = term.label_selector.clone().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        for key in term.match_label_keys.iter().flatten() {
            if let Some(v) = labels.get(key) {
                selector
                    .match_expressions
                    .get_or_insert_with(Vec::new)
                    .push(
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                            key: key.clone(),
                            operator: "In".into(),
                            values: Some(vec![v.clone()]),
                        },
                    );
            }
        }
        let selector = if term.label_selector.is_none() && term.match_label_keys.is_none() {
            LabelSelector::nothing()
        } else {
            LabelSelector::from_label_selector(&selector)
                .unwrap_or_else(|_| LabelSelector::nothing())
        };
        AffinityTerm {
            namespaces,
            all_namespaces,
            namespace_selector,
            selector,
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether `pod` is selected by this term; `namespaces` gives the labels a
    /// `namespaceSelector` is matched against.
    pub fn matches(&self, pod: &Pod, namespaces: &NamespaceLabels) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let in_namespace = self.all_namespaces
            || self.namespaces.contains(ns)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| namespaces.get(ns).is_some_and(|labels| s.matches(labels)));
        in_namespace
            && self
                .selector
                .matches(pod.metadata.labels.as_ref().unwrap_or(&Default::default()))
    }
}

/// A host port a container asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// Host IP (`0.0.0.0` when empty).
    pub ip: String,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The port.
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports clash (same protocol and port, and same IP or a wildcard).
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A pod and everything the scheduler derives from it.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The pod.
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: PodKey,
    /// Effective priority (spec.priority or its PriorityClass).
    pub priority: i32,
    /// Requests used for fitting.
    pub requests: Resource,
    /// Requests with the scoring defaults for unset cpu/memory.
    pub non_zero_requests: Resource,
    /// Host ports of all containers.
    pub host_ports: Vec<HostPort>,
    /// Required pod affinity terms.
    pub required_affinity: Vec<AffinityTerm>,
    /// Required pod anti-affinity terms.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// Preferred pod affinity terms with weights.
    pub preferred_affinity: Vec<(i32, AffinityTerm)>,
    /// Preferred pod anti-affinity terms with weights.
    pub preferred_anti_affinity: Vec<(i32, AffinityTerm)>,
}

impl PodInfo {
    /// Derives everything from `pod` with its resolved `priority`.
    pub fn new(pod: Arc<Pod>, priority: i32) -> PodInfo {
        let spec = pod.spec.as_ref();
        let mut host_ports = Vec::new();
        for c in spec.into_iter().flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        }) {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|hp| *hp > 0) {
                    host_ports.push(HostPort {
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|ip| !ip.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        port: hp,
                    });
                }
            }
        }
        let aff = spec.and_then(|s| s.affinity.as_ref());
        let pa = aff.and_then(|a| a.pod_affinity.as_ref());
        let paa = aff.and_then(|a| a.pod_anti_affinity.as_ref());
        let req = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(&pod, t))
                .collect()
        };
        let required_affinity = req(pa.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let required_anti_affinity = req(paa.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_affinity = pa
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .map(|w| (w.weight, AffinityTerm::new(&pod, &w.pod_affinity_term)))
            .collect();
        let preferred_anti_affinity = paa
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .map(|w| (w.weight, AffinityTerm::new(&pod, &w.pod_affinity_term)))
            .collect();
        PodInfo {
            key: pod_key(&pod),
            priority,
            requests: pod_requests(&pod, false),
            non_zero_requests: pod_requests(&pod, true),
            host_ports,
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            pod,
        }
    }

    /// Whether the pod has any pod affinity or anti-affinity.
    pub fn has_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    /// The pod's labels.
    pub fn labels(&self) -> &std::collections::BTreeMap<String, String> {
        static EMPTY: std::sync::OnceLock<std::collections::BTreeMap<String, String>> =
            std::sync::OnceLock::new();
        self.pod
            .metadata
            .labels
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or_default()
    }
}
