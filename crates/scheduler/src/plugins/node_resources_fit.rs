//! NodeResourcesFit: the pod's requests must fit in the node's allocatable minus
//! what its pods request (`Insufficient cpu`, `Too many pods`); among feasible
//! nodes the least allocated scores highest (LeastAllocated, cpu and memory).

use crate::cache::NodeInfo;
use crate::framework::{Code, CycleState, MAX_NODE_SCORE, Plugin, Status};
use crate::pod_info::PodInfo;
use crate::resources::Resource;

/// The plugin.
pub struct NodeResourcesFit;

/// The reasons a pod does not fit on a node, in Kubernetes' order.
pub fn insufficient(req: &Resource, node: &NodeInfo) -> Vec<String> {
    let mut out = Vec::new();
    let alloc = &node.allocatable;
    let used = &node.requested;
    if node.pods.len() as i64 >= alloc.allowed_pod_number {
        out.push("Too many pods".to_string());
    }
    if req.milli_cpu == 0 && req.memory == 0 && req.ephemeral_storage == 0 && req.scalar.is_empty()
    {
        return out;
    }
    if req.milli_cpu > 0 && req.milli_cpu > alloc.milli_cpu.saturating_sub(used.milli_cpu) {
        out.push("Insufficient cpu".to_string());
    }
    if req.memory > 0 && req.memory > alloc.memory.saturating_sub(used.memory) {
        out.push("Insufficient memory".to_string());
    }
    if req.ephemeral_storage > 0
        && req.ephemeral_storage
            > alloc
                .ephemeral_storage
                .saturating_sub(used.ephemeral_storage)
    {
        out.push("Insufficient ephemeral-storage".to_string());
    }
    for (name, q) in &req.scalar {
        if *q == 0 {
            continue;
        }
        let free = alloc
            .scalar
            .get(name)
            .copied()
            .unwrap_or(0)
            .saturating_sub(used.scalar.get(name).copied().unwrap_or(0));
        if *q > free {
            out.push(format!("Insufficient {name}"));
        }
    }
    out
}

/// `(capacity - requested) * 100 / capacity`, 0 when over capacity.
fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    match (capacity - requested).checked_mul(MAX_NODE_SCORE) {
        Some(free) => free / capacity,
        // Only for capacities near the end of the i64 range.
        None => {
            (i128::from(capacity - requested) * i128::from(MAX_NODE_SCORE) / i128::from(capacity))
                as i64
        }
    }
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filters(&self) -> bool {
        true
    }

    fn scores(&self) -> bool {
        true
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let reasons = insufficient(&pod.requests, node);
        if reasons.is_empty() {
            Status::success()
        } else {
            Status {
                code: Code::Unschedulable,
                reasons,
                plugin: "",
            }
        }
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let (mut sum, mut weights) = (0, 0);
        let pairs = [
            (
                node.non_zero_requested
                    .milli_cpu
                    .saturating_add(pod.non_zero_requests.milli_cpu),
                node.allocatable.milli_cpu,
            ),
            (
                node.non_zero_requested
                    .memory
                    .saturating_add(pod.non_zero_requests.memory),
                node.allocatable.memory,
            ),
        ];
        for (req, cap) in pairs {
            if cap == 0 {
                continue;
            }
            sum += least_requested(req, cap);
            weights += 1;
        }
        if weights == 0 { 0 } else { sum / weights }
    }
}

/// NodeResourcesBalancedAllocation: nodes whose cpu and memory would be used in
/// similar fractions score higher.
pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_score(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &crate::cache::Cache,
        _: &[&NodeInfo],
    ) -> Status {
        if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
            return Status::skip();
        }
        Status::success()
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let pairs = [
            (
                node.requested
                    .milli_cpu
                    .saturating_add(pod.requests.milli_cpu),
                node.allocatable.milli_cpu,
            ),
            (
                node.requested.memory.saturating_add(pod.requests.memory),
                node.allocatable.memory,
            ),
        ];
        // Two resources: the standard deviation of their fractions is half the gap.
        let mut fractions = pairs
            .iter()
            .filter(|(_, cap)| *cap != 0)
            .map(|(req, cap)| (*req as f64 / *cap as f64).min(1.0));
        let std = match (fractions.next(), fractions.next()) {
            (Some(a), Some(b)) => (a - b).abs() / 2.0,
            _ => 0.0,
        };
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cpu: i64, pods: i64, used_cpu: i64) -> NodeInfo {
        NodeInfo {
            allocatable: Resource {
                milli_cpu: cpu,
                memory: 1 << 30,
                allowed_pod_number: pods,
                ..Default::default()
            },
            requested: Resource {
                milli_cpu: used_cpu,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn insufficient_resources_are_named_as_kubernetes_names_them() {
        let req = Resource {
            milli_cpu: 2000,
            memory: 2 << 30,
            scalar: [("example.com/gpu".to_string(), 1)].into(),
            ..Default::default()
        };
        assert_eq!(
            insufficient(&req, &node(1000, 0, 0)),
            vec![
                "Too many pods",
                "Insufficient cpu",
                "Insufficient memory",
                "Insufficient example.com/gpu"
            ]
        );
        let small = Resource {
            milli_cpu: 500,
            ..Default::default()
        };
        assert!(insufficient(&small, &node(1000, 10, 500)).is_empty());
        assert_eq!(
            insufficient(&small, &node(1000, 10, 600)),
            vec!["Insufficient cpu"]
        );
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        assert_eq!(least_requested(0, 4000), 100);
        assert_eq!(least_requested(1000, 4000), 75);
        assert_eq!(least_requested(5000, 4000), 0);
    }
}
