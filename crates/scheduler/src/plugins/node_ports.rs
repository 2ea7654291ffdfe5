//! NodePorts: a pod's host ports must be free on the node.

use crate::cache::{Cache, NodeInfo};
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

    /// Skip, as Kubernetes does, when the pod asks for no host port.
    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &Cache) -> Status {
        if pod.host_ports.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
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
