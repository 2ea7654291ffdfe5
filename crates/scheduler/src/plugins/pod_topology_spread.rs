//! PodTopologySpread: `topologySpreadConstraints` with `DoNotSchedule` filter nodes
//! by skew (maxSkew, minDomains, nodeAffinityPolicy/nodeTaintsPolicy); those with
//! `ScheduleAnyway` score nodes (weight 2).

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

/// A compiled constraint.
struct Constraint {
    max_skew: i64,
    min_domains: i64,
    key: String,
    selector: LabelSelector,
    honor_affinity: bool,
    honor_taints: bool,
}

fn constraints(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    let labels = pod.labels();
    pod.pod
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
                selector,
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

fn count_matching(c: &Constraint, pod: &PodInfo, node: &NodeInfo) -> i64 {
    let ns = pod.namespace();
    node.pods
        .values()
        .filter(|p| {
            p.namespace() == ns
                && p.pod.metadata.deletion_timestamp.is_none()
                && c.selector.matches(p.labels())
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
        let cs = constraints(pod, "DoNotSchedule");
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
            let self_match = i64::from(c.selector.matches(pod.labels()));
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
        let cs = constraints(pod, "ScheduleAnyway");
        if cs.is_empty() {
            return Status::skip();
        }
        let mut domains: Vec<BTreeSet<String>> = vec![BTreeSet::new(); cs.len()];
        let mut hostname_nodes = 0usize;
        for node in feasible {
            let labels = node.labels();
            if !cs.iter().all(|c| labels.contains_key(&c.key)) {
                continue;
            }
            hostname_nodes += 1;
            for (i, c) in cs.iter().enumerate() {
                domains[i].insert(labels[&c.key].clone());
            }
        }
        let mut counts = vec![HashMap::new(); cs.len()];
        for node in cache.nodes() {
            let labels = node.labels();
            if !cs.iter().all(|c| labels.contains_key(&c.key)) {
                continue;
            }
            for (i, c) in cs.iter().enumerate() {
                let v = &labels[&c.key];
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
        if !s.constraints.iter().all(|c| labels.contains_key(&c.key)) {
            return -1;
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let n = if c.key == HOSTNAME {
                count_matching(c, pod, node)
            } else {
                s.counts[i].get(&labels[&c.key]).copied().unwrap_or(0)
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
