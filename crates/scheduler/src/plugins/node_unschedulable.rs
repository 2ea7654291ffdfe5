//! NodeUnschedulable: nodes with `spec.unschedulable` take only pods tolerating
//! the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use super::taint_toleration::tolerates;
use crate::cache::NodeInfo;
use crate::framework::{Code, CycleState, Plugin, Status};
use crate::pod_info::PodInfo;

/// The plugin.
pub struct NodeUnschedulable;

/// Kubernetes' reason.
pub const REASON: &str = "node(s) were unschedulable";

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filters(&self) -> bool {
        true
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.unschedulable {
            return Status::success();
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tolerations = pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_ref());
        if tolerations
            .into_iter()
            .flatten()
            .any(|t| tolerates(t, &taint))
        {
            return Status::success();
        }
        Status::new(Code::UnschedulableAndUnresolvable, REASON)
    }
}
