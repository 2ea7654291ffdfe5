//! TaintToleration: a pod must tolerate a node's NoSchedule and NoExecute taints;
//! among feasible nodes, fewer untolerated PreferNoSchedule taints score higher.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::cache::{Cache, NodeInfo};
use crate::framework::{Code, CycleState, MAX_NODE_SCORE, Plugin, Status, default_normalize};
use crate::pod_info::PodInfo;

/// The plugin.
pub struct TaintToleration;

const PRE_SCORE_KEY: &str = "PreScoreTaintToleration";

/// The pod's tolerations that can tolerate a PreferNoSchedule taint.
struct PreScoreState(Vec<Toleration>);

/// Whether `t` tolerates `taint` (`Toleration.ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            key == taint.key
                && t.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// The first NoSchedule/NoExecute taint of the node that the pod does not tolerate.
pub fn untolerated<'a>(pod: &PodInfo, node: &'a NodeInfo) -> Option<&'a Taint> {
    let tols = tolerations(pod);
    node.taints.iter().find(|taint| {
        (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tols.iter().any(|t| tolerates(t, taint))
    })
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filters(&self) -> bool {
        true
    }

    fn scores(&self) -> bool {
        true
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match untolerated(pod, node) {
            None => Status::success(),
            Some(taint) => Status::new(
                Code::UnschedulableAndUnresolvable,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    taint.key,
                    taint.value.as_deref().unwrap_or_default()
                ),
            ),
        }
    }

    /// Skips when no feasible node has a taint: every node would score the same,
    /// which cannot change the choice.
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &Cache,
        nodes: &[&NodeInfo],
    ) -> Status {
        if nodes.iter().all(|n| n.taints.is_empty()) {
            return Status::skip();
        }
        let prefer_no_schedule: Vec<Toleration> = tolerations(pod)
            .iter()
            .filter(|t| {
                t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
            })
            .cloned()
            .collect();
        state.write(PRE_SCORE_KEY, PreScoreState(prefer_no_schedule));
        Status::success()
    }

    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> i64 {
        if node.taints.is_empty() {
            return 0;
        }
        let tols = state
            .read::<PreScoreState>(PRE_SCORE_KEY)
            .map(|s| s.0.as_slice())
            .unwrap_or_default();
        node.taints
            .iter()
            .filter(|taint| taint.effect == "PreferNoSchedule")
            .filter(|taint| !tols.iter().any(|t| tolerates(t, taint)))
            .count() as i64
    }

    fn normalize(&self, _: &CycleState, scores: &mut [i64]) {
        default_normalize(MAX_NODE_SCORE, true, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn tol(
        key: Option<&str>,
        op: Option<&str>,
        value: Option<&str>,
        effect: Option<&str>,
    ) -> Toleration {
        Toleration {
            key: key.map(Into::into),
            operator: op.map(Into::into),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn tolerations_match_taints_as_kubernetes_does() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(
            &tol(Some("dedicated"), None, Some("gpu"), Some("NoSchedule")),
            &t
        ));
        assert!(tolerates(
            &tol(Some("dedicated"), Some("Exists"), None, None),
            &t
        ));
        assert!(tolerates(&tol(None, Some("Exists"), None, None), &t));
        assert!(!tolerates(
            &tol(Some("dedicated"), None, Some("cpu"), None),
            &t
        ));
        assert!(!tolerates(
            &tol(Some("dedicated"), Some("Exists"), None, Some("NoExecute")),
            &t
        ));
        assert!(!tolerates(
            &tol(Some("other"), Some("Exists"), None, None),
            &t
        ));
    }
}
