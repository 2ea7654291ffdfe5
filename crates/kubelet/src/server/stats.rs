//! `GET /stats/summary`: the kubelet's Summary API (stats/v1alpha1), the part that
//! metrics consumers read: the node's CPU and memory (from /proc), and each running
//! pod's and container's CPU and memory from the runtime's sandbox stats.

use std::collections::HashMap;
use std::sync::Mutex;

use cri::{Rpc, v1};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::Failure;
use crate::labels;

/// The nanoseconds one clock tick of /proc/stat stands for (USER_HZ is 100 on Linux).
const NANOS_PER_TICK: u64 = 10_000_000;

/// The previous reading of the node's CPU time, to turn it into a rate.
#[derive(Debug, Default)]
pub(crate) struct CpuSampler {
    last: Mutex<Option<(Timestamp, u64)>>,
}

impl CpuSampler {
    /// The node's cumulative CPU time (ns) now, and its rate (nanocores) since the
    /// previous call (`None` on the first).
    fn sample(&self, now: Timestamp) -> Option<(u64, Option<u64>)> {
        let total = node_cpu_nanos()?;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let rate = last.and_then(|(then, before)| {
            let elapsed = now.duration_since(then).as_nanos();
            (elapsed > 0 && total >= before)
                .then(|| (u128::from(total - before) * 1_000_000_000 / elapsed as u128) as u64)
        });
        *last = Some((now, total));
        Some((total, rate))
    }
}

/// The CPU time all cores spent busy since boot, from the `cpu` line of /proc/stat.
fn node_cpu_nanos() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: u64 = fields
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| *v)
        .sum();
    Some(busy * NANOS_PER_TICK)
}

/// The node's memory from /proc/meminfo, in bytes: (total, available, free,
/// inactive file).
fn node_memory() -> Option<(u64, u64, u64, u64)> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        info.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib * 1024)
    };
    Some((
        field("MemTotal")?,
        field("MemAvailable")?,
        field("MemFree")?,
        field("Inactive(file)").unwrap_or(0),
    ))
}

fn time_of(nanos: i64) -> String {
    Timestamp::from_nanosecond(i128::from(nanos))
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

fn value(v: &Option<v1::UInt64Value>) -> Value {
    v.as_ref().map_or(Value::Null, |v| json!(v.value))
}

fn cpu(usage: &Option<v1::CpuUsage>) -> Value {
    usage.as_ref().map_or(Value::Null, |c| {
        json!({
            "time": time_of(c.timestamp),
            "usageNanoCores": value(&c.usage_nano_cores),
            "usageCoreNanoSeconds": value(&c.usage_core_nano_seconds),
        })
    })
}

fn memory(usage: &Option<v1::MemoryUsage>) -> Value {
    usage.as_ref().map_or(Value::Null, |m| {
        json!({
            "time": time_of(m.timestamp),
            "availableBytes": value(&m.available_bytes),
            "usageBytes": value(&m.usage_bytes),
            "workingSetBytes": value(&m.working_set_bytes),
            "rssBytes": value(&m.rss_bytes),
            "pageFaults": value(&m.page_faults),
            "majorPageFaults": value(&m.major_page_faults),
        })
    })
}

/// Builds the summary of this node and its running pods.
pub(crate) async fn summary(
    runtime: &cri::Runtime,
    node_name: &str,
    sampler: &CpuSampler,
) -> Result<Value, Failure> {
    let managed = HashMap::from([(
        labels::MANAGED_BY.to_owned(),
        labels::MANAGED_BY_VALUE.to_owned(),
    )]);
    let ready: HashMap<String, i64> = runtime
        .list_sandboxes(managed.clone())
        .await?
        .into_iter()
        .filter(|s| s.state == v1::PodSandboxState::SandboxReady as i32)
        .map(|s| (s.id, s.created_at))
        .collect();
    let stats = runtime
        .runtime()
        .list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest {
            filter: Some(v1::PodSandboxStatsFilter {
                id: String::new(),
                label_selector: managed,
            }),
        })
        .await
        .rpc("ListPodSandboxStats")?
        .stats;
    let mut pods = Vec::new();
    for pod in stats {
        let Some(attributes) = &pod.attributes else {
            continue;
        };
        let Some(created) = ready.get(&attributes.id) else {
            continue;
        };
        let metadata = attributes.metadata.clone().unwrap_or_default();
        let linux = pod.linux.unwrap_or_default();
        let containers: Vec<Value> = linux
            .containers
            .iter()
            .map(|c| {
                let name = c
                    .attributes
                    .as_ref()
                    .and_then(|a| a.labels.get(labels::CONTAINER_NAME).cloned())
                    .unwrap_or_default();
                json!({
                    "name": name,
                    "startTime": time_of(*created),
                    "cpu": cpu(&c.cpu),
                    "memory": memory(&c.memory),
                })
            })
            .collect();
        pods.push(json!({
            "podRef": {
                "name": metadata.name,
                "namespace": metadata.namespace,
                "uid": metadata.uid,
            },
            "startTime": time_of(*created),
            "containers": containers,
            "cpu": cpu(&linux.cpu),
            "memory": memory(&linux.memory),
        }));
    }
    let now = Timestamp::now();
    let mut node = json!({"nodeName": node_name});
    if let Some((total, rate)) = sampler.sample(now) {
        node["cpu"] = json!({
            "time": now.to_string(),
            "usageNanoCores": rate,
            "usageCoreNanoSeconds": total,
        });
    }
    if let Some((total, available, free, inactive_file)) = node_memory() {
        let usage = total.saturating_sub(free);
        node["memory"] = json!({
            "time": now.to_string(),
            "availableBytes": available,
            "usageBytes": usage,
            "workingSetBytes": usage.saturating_sub(inactive_file),
        });
    }
    Ok(json!({"node": node, "pods": pods}))
}
