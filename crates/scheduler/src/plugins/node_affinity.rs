//! NodeAffinity: `spec.nodeSelector` and required node affinity filter nodes
//! (operators In, NotIn, Exists, DoesNotExist, Gt, Lt; `matchFields` on
//! `metadata.name`); preferred node affinity terms score them (weight 2).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, PreferredSchedulingTerm,
};

use crate::cache::{Cache, NodeInfo};
use crate::framework::{Code, CycleState, MAX_NODE_SCORE, Plugin, Status, default_normalize};
use crate::pod_info::PodInfo;

/// The plugin.
pub struct NodeAffinity;

/// Kubernetes' reason.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(b)) => {
                    if op == "Gt" {
                        v > b
                    } else {
                        v < b
                    }
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether one node selector term matches (all expressions and fields; an empty
/// term matches nothing).
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name)))
}

/// Whether a node selector (terms ORed) matches.
pub fn selector_matches(sel: &NodeSelector, labels: &BTreeMap<String, String>, name: &str) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, labels, name))
}

/// Whether the pod's nodeSelector and required node affinity match the node.
pub fn pod_matches_node(pod: &Pod, node: &NodeInfo) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let labels = node.labels();
    if let Some(sel) = spec.node_selector.as_ref()
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    required_selector(spec).is_none_or(|r| selector_matches(r, labels, &node.name))
}

/// The pod's required node affinity (`requiredDuringSchedulingIgnoredDuringExecution`).
pub fn required_selector(spec: &PodSpec) -> Option<&NodeSelector> {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
}

/// The pod's preferred node affinity terms.
fn preferred_terms(pod: &PodInfo) -> &[PreferredSchedulingTerm] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or_default()
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filters(&self) -> bool {
        true
    }

    fn scores(&self) -> bool {
        true
    }

    /// Skip, as Kubernetes does, when the pod has neither a nodeSelector nor
    /// required node affinity.
    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &Cache) -> Status {
        let Some(spec) = pod.pod.spec.as_ref() else {
            return Status::skip();
        };
        if spec.node_selector.is_none() && required_selector(spec).is_none() {
            return Status::skip();
        }
        Status::success()
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod_matches_node(&pod.pod, node) {
            Status::success()
        } else {
            Status::new(Code::UnschedulableAndUnresolvable, REASON)
        }
    }

    /// Skip, as Kubernetes does, when the pod has no preferred node affinity.
    fn pre_score(&self, _: &mut CycleState, pod: &PodInfo, _: &Cache, _: &[&NodeInfo]) -> Status {
        if preferred_terms(pod).is_empty() {
            return Status::skip();
        }
        Status::success()
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        preferred_terms(pod)
            .iter()
            .filter(|p| p.weight != 0 && term_matches(&p.preference, node.labels(), &node.name))
            .map(|p| i64::from(p.weight))
            .sum()
    }

    fn normalize(&self, _: &CycleState, scores: &mut [i64]) {
        default_normalize(MAX_NODE_SCORE, false, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn term(v: serde_json::Value) -> NodeSelectorTerm {
        serde_json::from_value(v).expect("term")
    }

    fn labels() -> BTreeMap<String, String> {
        [("zone", "a"), ("cores", "8")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator_matches_as_kubernetes_does() {
        let l = labels();
        let ok =
            |e: serde_json::Value| term_matches(&term(json!({"matchExpressions": [e]})), &l, "n1");
        assert!(ok(
            json!({"key": "zone", "operator": "In", "values": ["a", "b"]})
        ));
        assert!(!ok(
            json!({"key": "zone", "operator": "NotIn", "values": ["a"]})
        ));
        assert!(ok(
            json!({"key": "missing", "operator": "NotIn", "values": ["a"]})
        ));
        assert!(ok(json!({"key": "zone", "operator": "Exists"})));
        assert!(ok(json!({"key": "missing", "operator": "DoesNotExist"})));
        assert!(ok(
            json!({"key": "cores", "operator": "Gt", "values": ["4"]})
        ));
        assert!(!ok(
            json!({"key": "cores", "operator": "Lt", "values": ["4"]})
        ));
        assert!(!ok(
            json!({"key": "zone", "operator": "Gt", "values": ["4"]})
        ));
    }

    #[test]
    fn match_fields_select_the_node_by_name_and_empty_terms_match_nothing() {
        let l = labels();
        let t = term(
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
        );
        assert!(term_matches(&t, &l, "n1"));
        assert!(!term_matches(&t, &l, "n2"));
        assert!(!term_matches(&term(json!({})), &l, "n1"));
    }
}
