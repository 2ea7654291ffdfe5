//! The Node object of this machine: registration (labels, addresses, capacity,
//! nodeInfo), its status with conditions computed from real readings, and the node
//! Lease in `kube-node-lease` — the kubelet's heartbeats.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::{AgentConfig, Error};

/// The kubelet version this agent reports (`kubectl get nodes` VERSION column).
pub const KUBELET_VERSION: &str = "v1.33.0-skiff";
/// Pods a node takes, as the kubelet's default `maxPods`.
const MAX_PODS: &str = "110";
/// The node status is written at least this often even when nothing changed
/// (the kubelet's `nodeStatusReportFrequency`).
const REPORT_AT_LEAST_EVERY: Duration = Duration::from_secs(300);
/// The Lease's duration (the kubelet's default).
const LEASE_DURATION_SECONDS: i32 = 40;
/// The namespace of node Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Memory pressure below this much available memory (the kubelet's hard eviction
/// threshold `memory.available<100Mi`).
const MEMORY_AVAILABLE_MIN: u64 = 100 * 1024 * 1024;
/// Disk pressure below this share of the agent's file system free (`nodefs.available<10%`).
const DISK_AVAILABLE_MIN_PERCENT: u64 = 10;
/// PID pressure above this share of `pid_max` in use.
const PID_USED_MAX_PERCENT: u64 = 90;

/// What the node status says about the agent itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Health {
    /// Empty when ready; else why not (the Ready condition's message).
    pub(crate) not_ready: Option<String>,
}

/// Creates the Node or brings an existing one's labels up to date, then writes its
/// first status.
pub(crate) async fn register(
    client: &Client,
    config: &AgentConfig,
    runtime: &cri::Runtime,
    api_port: u16,
) -> Result<Node, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let labels = labels(config);
    let node = Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %config.node_name, "node registered"),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = serde_json::json!({ "metadata": { "labels": labels } });
            nodes
                .patch(
                    &config.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(|e| Error::api(format!("updating node {}", config.node_name), e))?;
            tracing::info!(node = %config.node_name, "node already registered; labels updated");
        }
        Err(e) => {
            return Err(Error::api(
                format!("registering node {}", config.node_name),
                e,
            ));
        }
    }
    let health = Health {
        not_ready: Some("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized".into()),
    };
    let mut reporter = StatusReporter::new(config, runtime.clone(), api_port).await;
    reporter.report(client, &health, true).await?;
    nodes
        .get(&config.node_name)
        .await
        .map_err(|e| Error::api(format!("reading node {}", config.node_name), e))
}

/// The Node's labels as the kubelet sets them. A node may not give itself a role
/// (NodeRestriction): `skiff server` labels its own node
/// `node-role.kubernetes.io/control-plane`.
fn labels(config: &AgentConfig) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "kubernetes.io/hostname".to_owned(),
            config.node_name.clone(),
        ),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("kubernetes.io/arch".to_owned(), arch().to_owned()),
        ("beta.kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("beta.kubernetes.io/arch".to_owned(), arch().to_owned()),
    ])
}

/// Waits until the node IPAM controller gave the Node a pod CIDR; `None` on shutdown.
pub(crate) async fn wait_pod_cidr(
    client: &Client,
    name: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<String>, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut logged = false;
    loop {
        match nodes.get(name).await {
            Ok(node) => {
                if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()) {
                    return Ok(Some(cidr));
                }
                if !logged {
                    tracing::info!(node = %name, "waiting for the node's pod CIDR");
                    logged = true;
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading the node for its pod CIDR"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = crate::stopped(shutdown) => return Ok(None),
        }
    }
}

/// Writes node status when it changes (and at least every 5 minutes) and renews the
/// Lease every `status_interval`, until shutdown. `health` says whether the runtime
/// and network are ready, as the agent sees them.
pub(crate) async fn heartbeat(
    client: Client,
    config: AgentConfig,
    runtime: cri::Runtime,
    api_port: u16,
    network_ready: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reporter = StatusReporter::new(&config, runtime.clone(), api_port).await;
    let mut lease = LeaseRenewer::new(&config);
    loop {
        let network_was_up = *network_ready.borrow();
        let health = health(&runtime, network_was_up).await;
        if let Err(e) = reporter.report(&client, &health, false).await {
            tracing::warn!(error = %e, "cannot update node status");
        }
        if let Err(e) = lease.renew(&client).await {
            tracing::warn!(error = %e, "cannot renew the node lease");
        }
        // Report Ready as soon as the network comes up (once it is, or its sender is
        // gone, only the period counts).
        let mut network = network_ready.clone();
        let network_up = async move {
            if network.wait_for(|up| *up).await.is_err() || network_was_up {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(config.status_interval) => {}
            _ = network_up => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
    }
}

/// Whether the runtime answers and says it is ready, and the pod network is set up.
async fn health(runtime: &cri::Runtime, network_ready: bool) -> Health {
    let not_ready = match runtime.unready_conditions().await {
        Err(e) => Some(format!("container runtime is down: {e}")),
        Ok(conditions) if !conditions.is_empty() => {
            let described: Vec<String> = conditions
                .iter()
                .map(|c| {
                    format!(
                        "{}=false reason:{} message:{}",
                        c.r#type, c.reason, c.message
                    )
                })
                .collect();
            let network = conditions.iter().any(|c| c.r#type == "NetworkReady");
            Some(format!(
                "container runtime{} not ready: {}",
                if network { " network" } else { "" },
                described.join(", ")
            ))
        }
        Ok(_) if !network_ready => Some(
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:waiting for the node's pod CIDR".into(),
        ),
        Ok(_) => None,
    };
    Health { not_ready }
}

/// Builds and writes node status, remembering what was last written.
struct StatusReporter {
    name: String,
    node_ip: String,
    dir: std::path::PathBuf,
    api_port: u16,
    node_info: NodeSystemInfo,
    last: Option<(NodeStatus, Instant)>,
}

impl StatusReporter {
    async fn new(config: &AgentConfig, runtime: cri::Runtime, api_port: u16) -> StatusReporter {
        let runtime_version = match runtime.version().await {
            Ok(v) => format!("{}://{}", v.runtime_name, v.runtime_version),
            Err(_) => "containerd://unknown".to_owned(),
        };
        StatusReporter {
            name: config.node_name.clone(),
            node_ip: config.node_ip.to_string(),
            dir: config.dir.clone(),
            api_port,
            node_info: node_info(runtime_version),
            last: None,
        }
    }

    /// Writes the status if it differs from the last one written (conditions compared
    /// without their heartbeat times), or `force`, or 5 minutes passed.
    async fn report(&mut self, client: &Client, health: &Health, force: bool) -> Result<(), Error> {
        let now = Time(jiff::Timestamp::now());
        let conditions = conditions(health, &self.dir);
        let mut status = NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: self.node_ip.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: self.name.clone(),
                },
            ]),
            capacity: Some(capacity(&self.dir)),
            allocatable: Some(capacity(&self.dir)),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(self.api_port),
                }),
            }),
            node_info: Some(self.node_info.clone()),
            conditions: Some(conditions),
            ..Default::default()
        };
        // Memory and disk readings move all the time: compare what matters.
        let comparable = |s: &NodeStatus| {
            let mut s = s.clone();
            s.capacity = None;
            s.allocatable = None;
            for c in s.conditions.iter_mut().flatten() {
                c.last_heartbeat_time = None;
                c.last_transition_time = None;
            }
            s
        };
        if let Some((last, at)) = &self.last {
            let unchanged = comparable(last) == comparable(&status)
                && last.capacity.as_ref().map(|c| c.get("cpu"))
                    == status.capacity.as_ref().map(|c| c.get("cpu"));
            if unchanged && !force && at.elapsed() < REPORT_AT_LEAST_EVERY {
                return Ok(());
            }
            // Keep the transition time of conditions whose status did not change.
            for c in status.conditions.iter_mut().flatten() {
                if let Some(old) = last
                    .conditions
                    .iter()
                    .flatten()
                    .find(|o| o.type_ == c.type_ && o.status == c.status)
                {
                    c.last_transition_time = old.last_transition_time.clone();
                }
            }
        }
        for c in status.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = Some(now.clone());
            if c.last_transition_time.is_none() {
                c.last_transition_time = Some(now.clone());
            }
        }
        let nodes: Api<Node> = Api::all(client.clone());
        let patch = serde_json::json!({ "status": status });
        nodes
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::api(format!("updating status of node {}", self.name), e))?;
        if self.last.as_ref().map(|(l, _)| ready_of(l)) != Some(ready_of(&status)) {
            tracing::info!(node = %self.name, ready = ready_of(&status), "node status");
        }
        self.last = Some((status, Instant::now()));
        Ok(())
    }
}

fn ready_of(status: &NodeStatus) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Ready and the pressure conditions, from readings taken now.
fn conditions(health: &Health, dir: &Path) -> Vec<NodeCondition> {
    let condition = |type_: &str, status: bool, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    };
    let memory_pressure = memory_available().is_some_and(|a| a < MEMORY_AVAILABLE_MIN);
    let disk_pressure = disk(dir).is_some_and(|(total, available)| {
        total > 0 && available * 100 / total < DISK_AVAILABLE_MIN_PERCENT
    });
    let pid_pressure = pids_used_percent().is_some_and(|used| used > PID_USED_MAX_PERCENT);
    vec![
        if memory_pressure {
            condition(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            condition(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if disk_pressure {
            condition(
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            )
        } else {
            condition(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            )
        },
        if pid_pressure {
            condition(
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            )
        } else {
            condition(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            )
        },
        match &health.not_ready {
            None => condition(
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status",
            ),
            Some(why) => condition("Ready", false, "KubeletNotReady", why),
        },
    ]
}

/// cpu, memory, ephemeral-storage and pods of this machine.
fn capacity(dir: &Path) -> BTreeMap<String, Quantity> {
    let mut capacity = BTreeMap::new();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    capacity.insert("cpu".to_owned(), Quantity(cpus.to_string()));
    if let Some(kib) = meminfo("MemTotal") {
        capacity.insert("memory".to_owned(), Quantity(format!("{kib}Ki")));
    }
    if let Some((total, _)) = disk(dir) {
        capacity.insert("ephemeral-storage".to_owned(), Quantity(total.to_string()));
    }
    capacity.insert("pods".to_owned(), Quantity(MAX_PODS.to_owned()));
    capacity
}

/// Total bytes of this machine's memory.
pub(crate) fn memory_total() -> Option<u64> {
    meminfo("MemTotal").map(|kib| kib * 1024)
}

/// A `/proc/meminfo` field in KiB.
fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn memory_available() -> Option<u64> {
    meminfo("MemAvailable").map(|kib| kib * 1024)
}

/// Total and available bytes of the file system holding `dir`.
fn disk(dir: &Path) -> Option<(u64, u64)> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    let frsize = stat.fragment_size();
    Some((stat.blocks() * frsize, stat.blocks_available() * frsize))
}

fn pids_used_percent() -> Option<u64> {
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let used = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count() as u64;
    (max > 0).then(|| used * 100 / max)
}

/// The Kubernetes name of this machine's architecture.
pub(crate) fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn node_info(container_runtime_version: String) -> NodeSystemInfo {
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let value = line.strip_prefix("PRETTY_NAME=")?;
                Some(value.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| "Linux".to_owned());
    let machine_id = read_trimmed("/etc/machine-id");
    NodeSystemInfo {
        architecture: arch().to_owned(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        container_runtime_version,
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
        kube_proxy_version: String::new(),
        kubelet_version: KUBELET_VERSION.to_owned(),
        system_uuid: {
            let uuid = read_trimmed("/sys/class/dmi/id/product_uuid");
            if uuid.is_empty() {
                machine_id.clone()
            } else {
                uuid
            }
        },
        machine_id,
        operating_system: "linux".to_owned(),
        os_image,
        swap: None,
    }
}

/// Renews `kube-node-lease/<node>`, creating it when missing.
struct LeaseRenewer {
    name: String,
    owner: Option<OwnerReference>,
}

impl LeaseRenewer {
    fn new(config: &AgentConfig) -> LeaseRenewer {
        LeaseRenewer {
            name: config.node_name.clone(),
            owner: None,
        }
    }

    async fn renew(&mut self, client: &Client) -> Result<(), Error> {
        if self.owner.is_none() {
            let nodes: Api<Node> = Api::all(client.clone());
            if let Ok(node) = nodes.get(&self.name).await
                && let Some(uid) = node.metadata.uid
            {
                self.owner = Some(OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: self.name.clone(),
                    uid,
                    ..Default::default()
                });
            }
        }
        let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
        let now = MicroTime(jiff::Timestamp::now());
        let spec = LeaseSpec {
            holder_identity: Some(self.name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(now),
            ..Default::default()
        };
        let what = || format!("renewing lease {LEASE_NAMESPACE}/{}", self.name);
        match leases
            .get_opt(&self.name)
            .await
            .map_err(|e| Error::api(what(), e))?
        {
            Some(mut lease) => {
                lease.spec = Some(spec);
                leases
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map_err(|e| Error::api(what(), e))?;
            }
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(LEASE_NAMESPACE.into()),
                        owner_references: self.owner.clone().map(|o| vec![o]),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                leases
                    .create(&PostParams::default(), &lease)
                    .await
                    .map_err(|e| Error::api(what(), e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_node_says_so_as_the_kubelet_does() {
        let conditions = conditions(&Health { not_ready: None }, Path::new("/"));
        let ready = conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
    }

    #[test]
    fn capacity_names_cpu_memory_storage_and_pods() {
        let capacity = capacity(Path::new("/"));
        for key in ["cpu", "memory", "ephemeral-storage", "pods"] {
            assert!(capacity.contains_key(key), "{key} missing: {capacity:?}");
        }
        assert_eq!(capacity["pods"].0, "110");
    }

    #[test]
    fn node_info_reads_the_machine() {
        let info = node_info("containerd://1.6.20".into());
        assert!(!info.kernel_version.is_empty());
        assert!(!info.boot_id.is_empty());
        assert_eq!(info.operating_system, "linux");
        assert_eq!(info.kubelet_version, KUBELET_VERSION);
    }
}
