//! NodeAffinity: `spec.nodeSelector` and required node affinity filter nodes
//! (operators In, NotIn, Exists, DoesNotExist, Gt, Lt; `matchFields` on
//! `metadata.name`); preferred node affinity terms score them (weight 2).

use k8s_openapi::api::core::v1::{NodeSelector, Pod, PodSpec, PreferredSchedulingTerm};

use crate::cache::{Cache, NodeInfo};
use crate::framework::{Code, CycleState, MAX_NODE_SCORE, Plugin, Status, default_normalize};
use crate::pod_info::PodInfo;

/// The plugin.
pub struct NodeAffinity;

/// Kubernetes' reason.
pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub use api::selector::node::{selector_matches, term_matches};

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
