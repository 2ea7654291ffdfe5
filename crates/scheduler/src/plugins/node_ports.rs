//! NodePorts: a pod's host ports must be free on the node.

use crate::cache::NodeInfo;
use crate::framework::{Code, CycleState, Plugin, Status};
use crate::pod_info::PodInfo;

/// The plugin.
pub struct NodePorts;

/// Kubernetes' reason.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filters(&self) -> bool {
        true
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let clash = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| want.conflicts(used)));
        if clash {
            Status::new(Code::Unschedulable, REASON)
        } else {
            Status::success()
        }
    }
}
