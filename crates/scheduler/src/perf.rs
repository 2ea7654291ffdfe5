//! The scheduling cycle measured alone, for benchmarks (`cargo bench -p scheduler`
//! and `skiff bench scheduler`): the shape of Kubernetes' scheduler_perf
//! SchedulingBasic — identical nodes in three zones and small pending pods — run
//! through the real cache and the default plugins, without an API server.

use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::cache::Cache;
use crate::pod_info::PodInfo;
use crate::schedule_one::{Framework, Nominated};

/// Benchmark node number `i`: 4 cpu, 32Gi, 110 pods, Ready, in one of three zones.
pub fn bench_node(i: usize) -> Result<Node, serde_json::Error> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node-{i:05}"), "labels": {"kubernetes.io/hostname": format!("node-{i:05}"), "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
        "status": {
            "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "bench"}]
        }
    }))
}

/// Benchmark pending pod number `i`: one container requesting 10m cpu and 16Mi.
pub fn bench_pod(i: usize) -> Result<Pod, serde_json::Error> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("p-{i:06}"), "namespace": "default", "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    }))
}

/// Result of [`decisions_per_second`].
#[derive(Debug, Clone, Copy)]
pub struct CycleResult {
    /// Scheduling decisions per second.
    pub decisions_per_second: f64,
    /// Pods that found a node (all of them when the cluster is big enough).
    pub placed: usize,
}

/// Schedules `pods` benchmark pods over `nodes` benchmark nodes, one after another,
/// each assumed onto its chosen node as the scheduler does before binding.
pub fn decisions_per_second(nodes: usize, pods: usize) -> Result<CycleResult, serde_json::Error> {
    let mut cache = Cache::default();
    for i in 0..nodes {
        cache.apply_node(Arc::new(bench_node(i)?));
    }
    let mut fw = Framework::new(crate::plugins::default_profile());
    let nominated = Nominated::new();
    let mut rng = rand::rngs::SmallRng::from_os_rng();
    let infos: Vec<Arc<PodInfo>> = (0..pods)
        .map(|i| Ok(Arc::new(PodInfo::new(Arc::new(bench_pod(i)?), 0))))
        .collect::<Result<_, serde_json::Error>>()?;
    let start = Instant::now();
    let mut placed = 0usize;
    for pi in infos {
        if let Ok((d, _)) = fw.schedule(&cache, &pi, &nominated, &mut rng) {
            cache.assume_pod(pi, &d.node);
            placed += 1;
        }
    }
    Ok(CycleResult {
        decisions_per_second: pods as f64 / start.elapsed().as_secs_f64(),
        placed,
    })
}
