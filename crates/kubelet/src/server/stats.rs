//! `GET /stats/summary`: the kubelet's Summary API (stats/v1alpha1), the part that
//! metrics consumers read: the node's CPU and memory (from /proc), and each running
//! pod's and container's CPU and memory from the runtime's sandbox stats; and
//! `GET /metrics/resource`: the same readings as the kubelet's resource metrics in
//! the Prometheus text format (what metrics-server scrapes).

use std::collections::HashMap;
use std::fmt::Write as _;
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

/// One reading of the node and its running pods.
pub(crate) struct Readings {
    node_name: String,
    /// When the node was read.
    at: Timestamp,
    /// Cumulative busy CPU time (ns) and its rate (nanocores) since the last reading.
    node_cpu: Option<(u64, Option<u64>)>,
    /// (total, available, free, inactive file) bytes.
    node_memory: Option<(u64, u64, u64, u64)>,
    pods: Vec<PodReading>,
}

struct PodReading {
    name: String,
    namespace: String,
    uid: String,
    /// Sandbox creation, ns since the epoch.
    created: i64,
    cpu: Option<v1::CpuUsage>,
    memory: Option<v1::MemoryUsage>,
    containers: Vec<ContainerReading>,
}

struct ContainerReading {
    name: String,
    cpu: Option<v1::CpuUsage>,
    memory: Option<v1::MemoryUsage>,
}

/// Reads the node and the runtime's stats of every running pod of ours.
pub(crate) async fn read(
    runtime: &cri::Runtime,
    node_name: &str,
    sampler: &CpuSampler,
) -> Result<Readings, Failure> {
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
        let containers = linux
            .containers
            .into_iter()
            .map(|c| ContainerReading {
                name: c
                    .attributes
                    .as_ref()
                    .and_then(|a| a.labels.get(labels::CONTAINER_NAME).cloned())
                    .unwrap_or_default(),
                cpu: c.cpu,
                memory: c.memory,
            })
            .collect();
        pods.push(PodReading {
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            created: *created,
            cpu: linux.cpu,
            memory: linux.memory,
            containers,
        });
    }
    let at = Timestamp::now();
    Ok(Readings {
        node_name: node_name.to_owned(),
        at,
        node_cpu: sampler.sample(at),
        node_memory: node_memory(),
        pods,
    })
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

/// The Summary API document (stats/v1alpha1) of a reading.
pub(crate) fn summary(r: &Readings) -> Value {
    let pods: Vec<Value> = r
        .pods
        .iter()
        .map(|p| {
            let containers: Vec<Value> = p
                .containers
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "startTime": time_of(p.created),
                        "cpu": cpu(&c.cpu),
                        "memory": memory(&c.memory),
                    })
                })
                .collect();
            json!({
                "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                "startTime": time_of(p.created),
                "containers": containers,
                "cpu": cpu(&p.cpu),
                "memory": memory(&p.memory),
            })
        })
        .collect();
    let mut node = json!({"nodeName": r.node_name});
    if let Some((total, rate)) = r.node_cpu {
        node["cpu"] = json!({
            "time": r.at.to_string(),
            "usageNanoCores": rate,
            "usageCoreNanoSeconds": total,
        });
    }
    if let Some((total, available, free, inactive_file)) = r.node_memory {
        let usage = total.saturating_sub(free);
        node["memory"] = json!({
            "time": r.at.to_string(),
            "availableBytes": available,
            "usageBytes": usage,
            "workingSetBytes": usage.saturating_sub(inactive_file),
        });
    }
    json!({"node": node, "pods": pods})
}

/// A label value in the Prometheus text format (backslash, quote and newline escaped).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family of `/metrics/resource`: its samples as (labels, value, time in
/// ms since the epoch).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, String, i64)>,
}

/// The kubelet's `/metrics/resource` of a reading: node, pod and container CPU
/// seconds and memory working set, container start times, and `resource_scrape_error`.
/// Samples carry their reading's timestamp in milliseconds, as the kubelet's do.
pub(crate) fn resource_metrics(r: &Readings) -> String {
    let ms = |nanos: i64| nanos / 1_000_000;
    let node_ms = r.at.as_millisecond();
    let seconds = |nanos: u64| (nanos as f64 / 1e9).to_string();
    let cpu_of = |c: &Option<v1::CpuUsage>| {
        c.as_ref().and_then(|c| {
            Some((
                seconds(c.usage_core_nano_seconds.as_ref()?.value),
                ms(c.timestamp),
            ))
        })
    };
    let memory_of = |m: &Option<v1::MemoryUsage>| {
        m.as_ref().and_then(|m| {
            Some((
                m.working_set_bytes.as_ref()?.value.to_string(),
                ms(m.timestamp),
            ))
        })
    };
    let pod_labels = |p: &PodReading| {
        format!(
            "{{namespace=\"{}\",pod=\"{}\"}}",
            label(&p.namespace),
            label(&p.name)
        )
    };
    let container_labels = |p: &PodReading, c: &ContainerReading| {
        format!(
            "{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}",
            label(&c.name),
            label(&p.namespace),
            label(&p.name)
        )
    };
    let containers = || {
        r.pods
            .iter()
            .flat_map(|p| p.containers.iter().map(move |c| (p, c)))
    };
    let node_working_set = r.node_memory.map(|(total, _, free, inactive_file)| {
        total.saturating_sub(free).saturating_sub(inactive_file)
    });
    let families = [
        Family {
            name: "container_cpu_usage_seconds_total",
            kind: "counter",
            help: "Cumulative cpu time consumed by the container in core-seconds",
            samples: containers()
                .filter_map(|(p, c)| cpu_of(&c.cpu).map(|(v, t)| (container_labels(p, c), v, t)))
                .collect(),
        },
        Family {
            name: "container_memory_working_set_bytes",
            kind: "gauge",
            help: "Current working set of the container in bytes",
            samples: containers()
                .filter_map(|(p, c)| {
                    memory_of(&c.memory).map(|(v, t)| (container_labels(p, c), v, t))
                })
                .collect(),
        },
        Family {
            name: "container_start_time_seconds",
            kind: "gauge",
            help: "Start time of the container since unix epoch in seconds",
            samples: containers()
                .map(|(p, c)| {
                    let start = (p.created as f64 / 1e9).to_string();
                    (container_labels(p, c), start, node_ms)
                })
                .collect(),
        },
        Family {
            name: "node_cpu_usage_seconds_total",
            kind: "counter",
            help: "Cumulative cpu time consumed by the node in core-seconds",
            samples: r
                .node_cpu
                .map(|(total, _)| (String::new(), seconds(total), node_ms))
                .into_iter()
                .collect(),
        },
        Family {
            name: "node_memory_working_set_bytes",
            kind: "gauge",
            help: "Current working set of the node in bytes",
            samples: node_working_set
                .map(|w| (String::new(), w.to_string(), node_ms))
                .into_iter()
                .collect(),
        },
        Family {
            name: "pod_cpu_usage_seconds_total",
            kind: "counter",
            help: "Cumulative cpu time consumed by the pod in core-seconds",
            samples: r
                .pods
                .iter()
                .filter_map(|p| cpu_of(&p.cpu).map(|(v, t)| (pod_labels(p), v, t)))
                .collect(),
        },
        Family {
            name: "pod_memory_working_set_bytes",
            kind: "gauge",
            help: "Current working set of the pod in bytes",
            samples: r
                .pods
                .iter()
                .filter_map(|p| memory_of(&p.memory).map(|(v, t)| (pod_labels(p), v, t)))
                .collect(),
        },
    ];
    let mut out = String::new();
    for f in &families {
        let _ = writeln!(
            out,
            "# HELP {0} [STABLE] {1}\n# TYPE {0} {2}",
            f.name, f.help, f.kind
        );
        for (labels, value, at) in &f.samples {
            let _ = writeln!(out, "{}{labels} {value} {at}", f.name);
        }
    }
    out.push_str(&resource_scrape_error(0));
    out
}

fn resource_scrape_error(value: u8) -> String {
    format!(
        "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n# TYPE resource_scrape_error gauge\nresource_scrape_error {value}\n"
    )
}

/// `/metrics/resource` when the runtime could not be read: only the error flag.
pub(crate) fn resource_scrape_failed() -> String {
    resource_scrape_error(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Readings {
        let cpu = |secs: u64, at: i64| {
            Some(v1::CpuUsage {
                timestamp: at,
                usage_core_nano_seconds: Some(v1::UInt64Value {
                    value: secs * 1_000_000_000 + 500_000_000,
                }),
                usage_nano_cores: None,
            })
        };
        let memory = |bytes: u64, at: i64| {
            Some(v1::MemoryUsage {
                timestamp: at,
                working_set_bytes: Some(v1::UInt64Value { value: bytes }),
                ..Default::default()
            })
        };
        Readings {
            node_name: "n1".into(),
            at: Timestamp::from_second(1_700_000_000).expect("timestamp"),
            node_cpu: Some((3_000_000_000, None)),
            node_memory: Some((1000, 0, 400, 100)),
            pods: vec![PodReading {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u".into(),
                created: 1_699_999_000_000_000_000,
                cpu: cpu(2, 1_700_000_000_000_000_000),
                memory: memory(4096, 1_700_000_000_000_000_000),
                containers: vec![ContainerReading {
                    name: "app\"x".into(),
                    cpu: cpu(1, 1_700_000_000_000_000_000),
                    memory: memory(2048, 1_700_000_000_000_000_000),
                }],
            }],
        }
    }

    #[test]
    fn resource_metrics_name_every_series_as_the_kubelet_does() {
        let text = resource_metrics(&reading());
        for line in [
            "container_cpu_usage_seconds_total{container=\"app\\\"x\",namespace=\"default\",pod=\"web\"} 1.5 1700000000000",
            "container_memory_working_set_bytes{container=\"app\\\"x\",namespace=\"default\",pod=\"web\"} 2048 1700000000000",
            "container_start_time_seconds{container=\"app\\\"x\",namespace=\"default\",pod=\"web\"} 1699999000 1700000000000",
            "node_cpu_usage_seconds_total 3 1700000000000",
            "node_memory_working_set_bytes 500 1700000000000",
            "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"} 2.5 1700000000000",
            "pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"} 4096 1700000000000",
            "resource_scrape_error 0",
            "# TYPE container_cpu_usage_seconds_total counter",
            "# TYPE pod_memory_working_set_bytes gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn the_summary_carries_the_same_reading() {
        let s = summary(&reading());
        assert_eq!(s["node"]["nodeName"], "n1");
        assert_eq!(s["node"]["memory"]["workingSetBytes"], 500);
        assert_eq!(s["pods"][0]["podRef"]["name"], "web");
        assert_eq!(
            s["pods"][0]["containers"][0]["memory"]["workingSetBytes"],
            2048
        );
    }
}
