//! PodTopologySpread: `topologySpreadConstraints` with `DoNotSchedule` filter nodes
//! by skew (maxSkew, minDomains, nodeAffinityPolicy/nodeTaintsPolicy); those with
//! `ScheduleAnyway` score nodes (weight 2).
//!
//! A pod without constraints gets kube-scheduler's system defaults when it belongs
//! to a ReplicaSet, StatefulSet or ReplicationController: spread over hostnames
//! (maxSkew 3) and zones (maxSkew 5), ScheduleAnyway, counting the pods of the same
//! controller. (kube-scheduler merges the selectors of the Services and controllers
//! selecting the pod; for controller-owned pods that is the controller's pods, which
//! is what the owner reference names without watching Services and controllers.)
//! Nodes lacking a default constraint's key are scored on the other keys only.

use std::collections::{BTreeSet, HashMap};

use api::selector::LabelSelector;
use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

use super::node_affinity::pod_matches_node;
use super::taint_toleration::untolerated;
use crate::cache::{Cache, NodeInfo};
use crate::framework::{Code, CycleState, MAX_NODE_SCORE, Plugin, Status};
use crate::pod_info::PodInfo;

/// The plugin.
pub struct PodTopologySpread;

/// Reason when the skew would grow past maxSkew.
pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
/// Reason when a node lacks a constraint's topology key.
pub const MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const KEY: &str = "PodTopologySpread";
const SCORE_KEY: &str = "PodTopologySpread/score";
const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";
/// The system default constraints: (topology key, maxSkew).
const SYSTEM_DEFAULTS: [(&str, i64); 2] = [(HOSTNAME, 3), (ZONE, 5)];
/// Controllers whose pods are spread by default.
const SPREAD_OWNERS: [&str; 3] = ["ReplicaSet", "StatefulSet", "ReplicationController"];

/// Which pods a constraint counts.
enum Selects {
    /// Pods matching the constraint's label selector.
    Labels(LabelSelector),
    /// Pods of the controller with this UID (system defaults).
    Controller(String),
}

/// A compiled constraint.
struct Constraint {
    max_skew: i64,
    min_domains: i64,
    key: String,
    selects: Selects,
    honor_affinity: bool,
    honor_taints: bool,
}

impl Constraint {
    fn counts(&self, p: &PodInfo) -> bool {
        match &self.selects {
            Selects::Labels(selector) => selector.matches(p.labels()),
            Selects::Controller(uid) => controller_uid(p) == Some(uid.as_str()),
        }
    }
}

/// The UID of the pod's controller when it is one whose pods are spread by default.
fn controller_uid(p: &PodInfo) -> Option<&str> {
    p.pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && SPREAD_OWNERS.contains(&o.kind.as_str()))
        .map(|o| o.uid.as_str())
}

/// The pod's constraints with `whenUnsatisfiable == when`, and whether they are the
/// system defaults.
fn constraints(pod: &PodInfo, when: &str) -> (Vec<Constraint>, bool) {
    let declared = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty());
    if !declared {
        let defaults = match controller_uid(pod) {
            Some(uid) if when == "ScheduleAnyway" => SYSTEM_DEFAULTS
                .iter()
                .map(|(key, max_skew)| Constraint {
                    max_skew: *max_skew,
                    min_domains: 1,
                    key: (*key).to_owned(),
                    selects: Selects::Controller(uid.to_owned()),
                    honor_affinity: true,
                    honor_taints: false,
                })
                .collect(),
            _ => Vec::new(),
        };
        return (defaults, true);
    }
    let labels = pod.labels();
    let declared = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c: &&TopologySpreadConstraint| c.when_unsatisfiable == when)
        .map(|c| {
            let mut sel = c.label_selector.clone().unwrap_or_default();
            for k in c.match_label_keys.iter().flatten() {
                if let Some(v) = labels.get(k) {
                    sel.match_expressions.get_or_insert_with(Vec::new).push(
                        LabelSelectorRequirement {
                            key: k.clone(),
                            operator: "In".into(),
                            values: Some(vec![v.clone()]),
                        },
                    );
                }
            }
            let selector = if c.label_selector.is_none() {
                LabelSelector::nothing()
            } else {
                LabelSelector::from_label_selector(&sel)
                    .unwrap_or_else(|_| LabelSelector::nothing())
            };
            Constraint {
                max_skew: i64::from(c.max_skew),
                min_domains: i64::from(c.min_domains.unwrap_or(1)),
                key: c.topology_key.clone(),
                selects: Selects::Labels(selector),
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect();
    (declared, false)
}

fn count_matching(c: &Constraint, pod: &PodInfo, node: &NodeInfo) -> i64 {
    let ns = pod.namespace();
    node.pods
        .values()
        .filter(|p| {
            p.namespace() == ns && p.pod.metadata.deletion_timestamp.is_none() && c.counts(p)
        })
        .count() as i64
}

fn eligible(c: &Constraint, pod: &PodInfo, node: &NodeInfo) -> bool {
    (!c.honor_affinity || pod_matches_node(&pod.pod, node))
        && (!c.honor_taints || untolerated(pod, node).is_none())
}

struct FilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: domain value -> matching pods.
    counts: Vec<HashMap<String, i64>>,
}

struct ScoreState {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
    /// Nodes must carry every key to be scored (false for the system defaults,
    /// where a node is scored on the keys it has).
    require_all: bool,
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn filters(&self) -> bool {
        true
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, cache: &Cache) -> Status {
        let (cs, _) = constraints(pod, "DoNotSchedule");
        if cs.is_empty() {
            return Status::skip();
        }
        let mut counts = vec![HashMap::new(); cs.len()];
        for node in cache.nodes() {
            let labels = node.labels();
            if !cs.iter().all(|c| labels.contains_key(&c.key)) {
                continue;
            }
            for (i, c) in cs.iter().enumerate() {
                if !eligible(c, pod, node) {
                    continue;
                }
                let v = labels[&c.key].clone();
                *counts[i].entry(v).or_insert(0) += count_matching(c, pod, node);
            }
        }
        state.write(
            KEY,
            FilterState {
                constraints: cs,
                counts,
            },
        );
        Status::success()
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<FilterState>(KEY) else {
            return Status::success();
        };
        let labels = node.labels();
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.key) else {
                return Status::new(Code::UnschedulableAndUnresolvable, MISSING_LABEL);
            };
            let counts = &s.counts[i];
            let mut min = counts.values().copied().min().unwrap_or(0);
            if (counts.len() as i64) < c.min_domains {
                min = 0;
            }
            let self_match = i64::from(c.counts(pod));
            let here = counts.get(value).copied().unwrap_or(0);
            if here + self_match - min > c.max_skew {
                return Status::new(Code::Unschedulable, REASON);
            }
        }
        Status::success()
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cache: &Cache,
        feasible: &[&NodeInfo],
    ) -> Status {
        let (cs, system_default) = constraints(pod, "ScheduleAnyway");
        if cs.is_empty() {
            return Status::skip();
        }
        let require_all = !system_default;
        let has_all = |labels: &std::collections::BTreeMap<String, String>| {
            cs.iter().all(|c| labels.contains_key(&c.key))
        };
        let mut domains: Vec<BTreeSet<String>> = vec![BTreeSet::new(); cs.len()];
        let mut hostname_nodes = 0usize;
        for node in feasible {
            let labels = node.labels();
            if require_all && !has_all(labels) {
                continue;
            }
            hostname_nodes += 1;
            for (i, c) in cs.iter().enumerate() {
                if let Some(v) = labels.get(&c.key) {
                    domains[i].insert(v.clone());
                }
            }
        }
        let mut counts = vec![HashMap::new(); cs.len()];
        for node in cache.nodes() {
            let labels = node.labels();
            if require_all && !has_all(labels) {
                continue;
            }
            for (i, c) in cs.iter().enumerate() {
                let Some(v) = labels.get(&c.key) else {
                    continue;
                };
                if c.key == HOSTNAME || !domains[i].contains(v) || !eligible(c, pod, node) {
                    continue;
                }
                *counts[i].entry(v.clone()).or_insert(0) += count_matching(c, pod, node);
            }
        }
        let weights = cs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.key == HOSTNAME {
                    hostname_nodes
                } else {
                    domains[i].len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        state.write(
            SCORE_KEY,
            ScoreState {
                constraints: cs,
                counts,
                weights,
                require_all,
            },
        );
        Status::success()
    }

    /// -1 marks a node without the topology keys (scored 0 after normalizing).
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = state.read::<ScoreState>(SCORE_KEY) else {
            return 0;
        };
        let labels = node.labels();
        let has_all = s.constraints.iter().all(|c| labels.contains_key(&c.key));
        if s.require_all && !has_all {
            return -1;
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.key) else {
                continue;
            };
            let n = if c.key == HOSTNAME {
                count_matching(c, pod, node)
            } else {
                s.counts[i].get(value).copied().unwrap_or(0)
            };
            score += n as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    fn normalize(&self, state: &CycleState, scores: &mut [i64]) {
        if state.read::<ScoreState>(SCORE_KEY).is_none() {
            return;
        }
        let valid = scores.iter().copied().filter(|s| *s >= 0);
        let min = valid.clone().min().unwrap_or(0);
        let max = valid.max().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if *s < 0 {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::cache::Cache;
    use crate::plugins::default_profile;
    use crate::pod_info::PodInfo;
    use crate::schedule_one::{Framework, Nominated};

    fn owned(name: &str, owner_uid: &str) -> Arc<PodInfo> {
        let p = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner_uid,
                "uid": owner_uid, "controller": true}]},
            "spec": {"containers": [{"name": "c"}]}}))
        .expect("pod");
        Arc::new(PodInfo::new(Arc::new(p), 0))
    }

    fn two_nodes() -> Cache {
        let mut c = Cache::default();
        for name in ["n1", "n2"] {
            let node = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}});
            c.apply_node(Arc::new(serde_json::from_value(node).expect("node")));
        }
        c
    }

    #[test]
    fn replica_set_pods_spread_over_hostnames_by_default() {
        // The same load on both nodes, but n1 runs this ReplicaSet's pods.
        let mut c = two_nodes();
        c.apply_pod(owned("a-1", "rs-a"), "n1");
        c.apply_pod(owned("a-2", "rs-a"), "n1");
        c.apply_pod(owned("b-1", "rs-b"), "n2");
        c.apply_pod(owned("b-2", "rs-b"), "n2");
        let mut fw = Framework::new(default_profile());
        let mut rng = rand::rng();
        for _ in 0..20 {
            let (d, _) = fw
                .schedule(&c, &owned("a-3", "rs-a"), &Nominated::new(), &mut rng)
                .expect("fits");
            assert_eq!(d.node, "n2", "spread away from the ReplicaSet's pods");
            let (d, _) = fw
                .schedule(&c, &owned("b-3", "rs-b"), &Nominated::new(), &mut rng)
                .expect("fits");
            assert_eq!(d.node, "n1");
        }
    }

    #[test]
    fn pods_without_a_controller_get_no_default_spreading() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "c"}]}}),
        )
        .expect("pod");
        let (cs, system) = super::constraints(&PodInfo::new(Arc::new(pod), 0), "ScheduleAnyway");
        assert!(system && cs.is_empty());
        let (cs, _) = super::constraints(&owned("x", "rs"), "ScheduleAnyway");
        let keys: Vec<(&str, i64)> = cs.iter().map(|c| (c.key.as_str(), c.max_skew)).collect();
        assert_eq!(
            keys,
            [
                ("kubernetes.io/hostname", 3),
                ("topology.kubernetes.io/zone", 5)
            ]
        );
        let (cs, _) = super::constraints(&owned("x", "rs"), "DoNotSchedule");
        assert!(cs.is_empty(), "defaults never filter");
    }
}
