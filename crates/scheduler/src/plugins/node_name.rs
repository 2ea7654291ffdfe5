//! NodeName: a pod naming a node in `spec.nodeName` fits only there.

use crate::cache::NodeInfo;
use crate::framework::{Code, CycleState, Plugin, Status};
use crate::pod_info::PodInfo;

/// The plugin.
pub struct NodeName;

/// Kubernetes' reason.
pub const REASON: &str = "node(s) didn't match the requested node name";

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn filters(&self) -> bool {
        true
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(n) if !n.is_empty() && n != node.name => {
                Status::new(Code::UnschedulableAndUnresolvable, REASON)
            }
            _ => Status::success(),
        }
    }
}
