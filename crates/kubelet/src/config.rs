//! What an agent is told: who it is, where its state lives, the cluster's networks,
//! and the credentials of its node API.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Configuration of one node agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Node's name (default: the host name).
    pub node_name: String,
    /// The agent's state directory, `<data-dir>/agent`: containerd's own dir,
    /// `images/`, pod directories (volumes, logs), CNI configuration.
    pub dir: PathBuf,
    /// A CRI socket to use instead of starting our own containerd.
    pub runtime_endpoint: Option<PathBuf>,
    /// The node's InternalIP: where other nodes and the API server reach it.
    pub node_ip: IpAddr,
    /// The cluster's pod network (routes through the bridge gateway).
    pub cluster_cidr: String,
    /// The Service network (routes through the bridge gateway).
    pub service_cidr: String,
    /// The cluster DNS server written into pods' resolv.conf.
    pub cluster_dns: IpAddr,
    /// The cluster DNS domain, `cluster.local`.
    pub cluster_domain: String,
    /// Name of the pod bridge (`skiff0`; tests use a name of their own).
    pub cni_bridge: String,
    /// Give pods a default route and masquerade their traffic leaving the node
    /// (on for users; off in every test so test pods reach only the cluster).
    pub egress_masquerade: bool,
    /// More destinations pods reach through the bridge gateway besides the cluster
    /// and Service CIDRs (tests without egress: their own node network, so pods can
    /// answer traffic the service proxy masqueraded to a node address).
    pub pod_routes: Vec<String>,
    /// Where the node API listens (port 10250 by default; 0 picks a free port,
    /// published in the Node's `status.daemonEndpoints`).
    pub node_api_port: u16,
    /// PEM of the node API's serving certificate (chain) and key.
    pub serving_cert: String,
    /// PEM of the node API's serving key.
    pub serving_key: String,
    /// PEM of the CA whose client certificates may call the node API (the API
    /// server's kubelet-client certificate is signed by it).
    pub client_ca: String,
    /// First CrashLoopBackOff delay (10 s in Kubernetes; tests make it short).
    pub crash_backoff_base: Duration,
    /// Longest CrashLoopBackOff delay (5 min in Kubernetes).
    pub crash_backoff_max: Duration,
    /// Node status heartbeat and Lease renewal period (10 s).
    pub status_interval: Duration,
    /// When container logs are rotated and how many files are kept.
    pub container_logs: crate::logs::LogRotation,
    /// More metrics the node API serves on `/metrics` (the service proxy's).
    pub extra_metrics: ExtraMetrics,
}

/// Prometheus text of components running beside the agent, rendered on each scrape of
/// the node API's `/metrics`.
#[derive(Clone, Default)]
pub struct ExtraMetrics(Option<std::sync::Arc<dyn Fn() -> String + Send + Sync>>);

impl ExtraMetrics {
    /// Metrics rendered by `render`.
    pub fn new(render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        ExtraMetrics(Some(std::sync::Arc::new(render)))
    }

    /// The text now (empty when there is none).
    pub fn render(&self) -> String {
        self.0.as_ref().map(|f| f()).unwrap_or_default()
    }
}

impl std::fmt::Debug for ExtraMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ExtraMetrics(..)"
        } else {
            "ExtraMetrics(none)"
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A configuration as `skiff server` would make it, for unit tests.
    pub(crate) fn example() -> AgentConfig {
        AgentConfig {
            node_name: "node-1".into(),
            dir: PathBuf::from("/var/lib/skiff/agent"),
            runtime_endpoint: None,
            node_ip: IpAddr::from([192, 168, 1, 10]),
            cluster_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.43.0.0/16".into(),
            cluster_dns: IpAddr::from([10, 43, 0, 10]),
            cluster_domain: "cluster.local".into(),
            cni_bridge: "skiff0".into(),
            egress_masquerade: true,
            node_api_port: 10250,
            serving_cert: String::new(),
            serving_key: String::new(),
            client_ca: String::new(),
            crash_backoff_base: Duration::from_secs(10),
            crash_backoff_max: Duration::from_secs(300),
            status_interval: Duration::from_secs(10),
            container_logs: crate::logs::LogRotation::default(),
            extra_metrics: ExtraMetrics::default(),
            pod_routes: Vec::new(),
        }
    }
}
