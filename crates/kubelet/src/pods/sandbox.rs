//! A pod's sandbox as the kubelet describes it to CRI: metadata, hostname, DNS,
//! hostPort mappings, the per-pod cgroup from its QoS class, namespaces, labels; and
//! the pod's directory and `/etc/hosts` file on the host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cri::v1;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::labels;
use crate::{AgentConfig, Error};

/// The longest host name a pod gets (the kubelet truncates pod names to it).
const HOSTNAME_MAX: usize = 63;

/// A pod's Quality of Service class, as Kubernetes computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Qos {
    /// Every container has cpu and memory limits equal to its requests.
    Guaranteed,
    /// Some requests or limits, not Guaranteed.
    Burstable,
    /// No requests or limits at all.
    BestEffort,
}

impl Qos {
    /// The class of `pod`: its containers and init containers together.
    pub(crate) fn of(pod: &Pod) -> Qos {
        let Some(spec) = &pod.spec else {
            return Qos::BestEffort;
        };
        let containers = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten());
        let mut any = false;
        let mut guaranteed = true;
        for c in containers {
            let resources = c.resources.clone().unwrap_or_default();
            let requests = resources.requests.unwrap_or_default();
            let limits = resources.limits.unwrap_or_default();
            for name in ["cpu", "memory"] {
                let request = requests.get(name).filter(|q| !is_zero(q));
                let limit = limits.get(name).filter(|q| !is_zero(q));
                if request.is_some() || limit.is_some() {
                    any = true;
                }
                match (request, limit) {
                    (_, None) => guaranteed = false,
                    (Some(r), Some(l)) if quantity(r) != quantity(l) => guaranteed = false,
                    _ => {}
                }
            }
        }
        match (any, guaranteed) {
            (false, _) => Qos::BestEffort,
            (true, true) => Qos::Guaranteed,
            (true, false) => Qos::Burstable,
        }
    }

    /// The name in `status.qosClass`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        }
    }
}

fn is_zero(q: &Quantity) -> bool {
    quantity(q) == 0.0
}

/// A quantity's value as a number (`100m` is 0.1, `64Mi` is 67108864).
pub(crate) fn quantity(q: &Quantity) -> f64 {
    let s = q.0.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    // An exponent ("1e3") is part of the number.
    let (number, suffix) = if suffix.starts_with(['e', 'E'])
        && suffix.len() > 1
        && suffix[1..]
            .chars()
            .all(|c| c.is_ascii_digit() || c == '-' || c == '+')
    {
        (s, "")
    } else {
        (number, suffix)
    };
    let value: f64 = number.parse().unwrap_or(0.0);
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        _ => 1.0,
    };
    value * factor
}

/// The pod's cgroup, kubelet style: `/kubepods/pod<uid>` for Guaranteed pods,
/// `/kubepods/<qos>/pod<uid>` for the others.
pub(crate) fn cgroup_parent(qos: Qos, uid: &str) -> String {
    match qos {
        Qos::Guaranteed => format!("/kubepods/pod{uid}"),
        Qos::Burstable => format!("/kubepods/burstable/pod{uid}"),
        Qos::BestEffort => format!("/kubepods/besteffort/pod{uid}"),
    }
}

/// Every cgroup a pod with `uid` may have (its QoS class is not known any more).
pub(crate) fn cgroup_candidates(uid: &str) -> [String; 3] {
    [
        cgroup_parent(Qos::Guaranteed, uid),
        cgroup_parent(Qos::Burstable, uid),
        cgroup_parent(Qos::BestEffort, uid),
    ]
}

/// `<dir>/pods`, where each pod has a directory named by its UID.
pub(crate) fn pods_dir(dir: &Path) -> PathBuf {
    dir.join("pods")
}

/// A pod's directory on the host.
pub(crate) fn pod_dir(dir: &Path, uid: &str) -> PathBuf {
    pods_dir(dir).join(uid)
}

/// The pod's name, namespace and UID.
pub(crate) fn identity(pod: &Pod) -> (String, String, String) {
    (
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

/// Whether the pod shares the node's network namespace.
pub(crate) fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The pod's host name: `spec.hostname` or its name, cut to 63 characters.
pub(crate) fn hostname(pod: &Pod) -> String {
    let spec_hostname = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty());
    let name = spec_hostname.unwrap_or_else(|| identity(pod).0);
    let mut name: String = name.chars().take(HOSTNAME_MAX).collect();
    while name.ends_with(['-', '.']) {
        name.pop();
    }
    name
}

/// The labels every sandbox and container of the pod carries.
pub(crate) fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let (name, namespace, uid) = identity(pod);
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert(labels::POD_NAME.into(), name);
    labels.insert(labels::POD_NAMESPACE.into(), namespace);
    labels.insert(labels::POD_UID.into(), uid);
    labels.insert(labels::MANAGED_BY.into(), labels::MANAGED_BY_VALUE.into());
    labels
}

/// The namespaces of the pod: the node's network when hostNetwork, a PID namespace
/// per container (or the pod's with shareProcessNamespace, the node's with hostPID).
pub(crate) fn namespace_options(pod: &Pod) -> v1::NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    let network = if flag(|s| s.host_network) {
        v1::NamespaceMode::Node
    } else {
        v1::NamespaceMode::Pod
    };
    let pid = if flag(|s| s.host_pid) {
        v1::NamespaceMode::Node
    } else if flag(|s| s.share_process_namespace) {
        v1::NamespaceMode::Pod
    } else {
        v1::NamespaceMode::Container
    };
    let ipc = if flag(|s| s.host_ipc) {
        v1::NamespaceMode::Node
    } else {
        v1::NamespaceMode::Pod
    };
    v1::NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ipc: ipc as i32,
        ..Default::default()
    }
}

/// The DNS settings of the pod's resolv.conf, as the kubelet derives them from
/// `dnsPolicy` (ClusterFirst by default; Default and hostNetwork pods use the node's).
fn dns_config(config: &AgentConfig, pod: &Pod) -> Option<v1::DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let custom = spec.dns_config.clone().unwrap_or_default();
    let (_, namespace, _) = identity(pod);
    let domain = &config.cluster_domain;
    let mut dns = match policy {
        "None" => v1::DnsConfig::default(),
        "Default" => return host_dns(),
        "ClusterFirst" if host_network(pod) => return host_dns(),
        _ => v1::DnsConfig {
            servers: vec![config.cluster_dns.to_string()],
            searches: vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.clone(),
            ],
            options: vec!["ndots:5".into()],
        },
    };
    dns.servers.extend(custom.nameservers.unwrap_or_default());
    dns.searches.extend(custom.searches.unwrap_or_default());
    for option in custom.options.unwrap_or_default() {
        let text = match option.value {
            Some(v) => format!("{}:{v}", option.name.unwrap_or_default()),
            None => option.name.unwrap_or_default(),
        };
        let key = text.split(':').next().unwrap_or_default().to_owned();
        dns.options
            .retain(|o| o.split(':').next() != Some(key.as_str()));
        dns.options.push(text);
    }
    Some(dns)
}

/// None: the runtime copies the node's resolv.conf.
fn host_dns() -> Option<v1::DnsConfig> {
    None
}

/// The hostPorts of the pod's containers.
fn port_mappings(pod: &Pod) -> Vec<v1::PortMapping> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let containers: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut mappings = Vec::new();
    for c in containers {
        for port in c.ports.iter().flatten() {
            let Some(host_port) = port.host_port.filter(|p| *p > 0) else {
                continue;
            };
            let protocol = match port.protocol.as_deref() {
                Some("UDP") => v1::Protocol::Udp,
                Some("SCTP") => v1::Protocol::Sctp,
                _ => v1::Protocol::Tcp,
            };
            mappings.push(v1::PortMapping {
                protocol: protocol as i32,
                container_port: port.container_port,
                host_port,
                host_ip: port.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    mappings
}

/// The sandbox config of `pod`, attempt `attempt`.
pub(crate) fn config(
    config: &AgentConfig,
    pod: &Pod,
    attempt: u32,
) -> Result<v1::PodSandboxConfig, Error> {
    let (name, namespace, uid) = identity(pod);
    if uid.is_empty() {
        return Err(Error::Invalid(format!("pod {namespace}/{name} has no UID")));
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let security = spec.security_context.clone().unwrap_or_default();
    let mut annotations: HashMap<String, String> = pod
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    annotations.insert(
        "io.kubernetes.pod.terminationGracePeriod".into(),
        spec.termination_grace_period_seconds
            .unwrap_or(30)
            .to_string(),
    );
    let sysctls = security
        .sysctls
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name, s.value))
        .collect();
    Ok(v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name,
            namespace,
            uid: uid.clone(),
            attempt,
        }),
        hostname: if host_network(pod) {
            String::new()
        } else {
            hostname(pod)
        },
        log_directory: pod_dir(&config.dir, &uid)
            .join("logs")
            .to_string_lossy()
            .into_owned(),
        dns_config: dns_config(config, pod),
        port_mappings: port_mappings(pod),
        labels: pod_labels(pod),
        annotations,
        linux: Some(v1::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(Qos::of(pod), &uid),
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: security.run_as_user.map(|value| v1::Int64Value { value }),
                run_as_group: security.run_as_group.map(|value| v1::Int64Value { value }),
                supplemental_groups: security
                    .supplemental_groups
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .chain(security.fs_group)
                    .collect(),
                privileged: spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                    .any(|c| {
                        c.security_context
                            .as_ref()
                            .and_then(|s| s.privileged)
                            .unwrap_or(false)
                    }),
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The pod's `/etc/hosts`, as the kubelet writes it: localhost entries, the pod's own
/// address with its host name (and FQDN when it has a subdomain), then hostAliases.
pub(crate) fn hosts_file(config: &AgentConfig, pod: &Pod, pod_ip: &str) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file.\n");
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    let spec = pod.spec.clone().unwrap_or_default();
    let hostname = hostname(pod);
    if !pod_ip.is_empty() {
        match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(subdomain) => {
                let (_, namespace, _) = identity(pod);
                out.push_str(&format!(
                    "{pod_ip}\t{hostname}.{subdomain}.{namespace}.svc.{}\t{hostname}\n",
                    config.cluster_domain
                ));
            }
            None => out.push_str(&format!("{pod_ip}\t{hostname}\n")),
        }
    }
    let aliases = spec.host_aliases.unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.unwrap_or_default();
            if names.is_empty() {
                continue;
            }
            out.push_str(&format!("{}\t{}\n", alias.ip, names.join("\t")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: serde_json::Value) -> Pod {
        serde_json::from_value(yaml).expect("a pod")
    }

    fn web() -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        assert_eq!(Qos::of(&web()), Qos::BestEffort);
        let burstable = pod(serde_json::json!({
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]},
        }));
        assert_eq!(Qos::of(&burstable), Qos::Burstable);
        let guaranteed = pod(serde_json::json!({
            "spec": {"containers": [{"name": "c", "resources": {
                "requests": {"cpu": "1", "memory": "64Mi"},
                "limits": {"cpu": "1000m", "memory": "64Mi"}}}]},
        }));
        assert_eq!(Qos::of(&guaranteed), Qos::Guaranteed);
        assert_eq!(cgroup_parent(Qos::of(&guaranteed), "u"), "/kubepods/podu");
        assert_eq!(
            cgroup_parent(Qos::BestEffort, "u"),
            "/kubepods/besteffort/podu"
        );
    }

    #[test]
    fn quantities_are_read_with_their_suffixes() {
        assert_eq!(quantity(&Quantity("100m".into())), 0.1);
        assert_eq!(quantity(&Quantity("64Mi".into())), 67_108_864.0);
        assert_eq!(quantity(&Quantity("1G".into())), 1e9);
        assert_eq!(quantity(&Quantity("2".into())), 2.0);
        assert_eq!(quantity(&Quantity("1e3".into())), 1000.0);
    }

    #[test]
    fn cluster_first_pods_search_their_namespace_first() {
        let config = crate::config::tests::example();
        let dns = dns_config(&config, &web()).expect("cluster DNS");
        assert_eq!(dns.servers, ["10.43.0.10"]);
        assert_eq!(
            dns.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(dns.options, ["ndots:5"]);
    }

    #[test]
    fn the_hosts_file_names_the_pod_and_its_aliases() {
        let config = crate::config::tests::example();
        let pod = pod(serde_json::json!({
            "metadata": {"name": "db-0", "namespace": "shop", "uid": "u"},
            "spec": {"hostname": "db-0", "subdomain": "db", "containers": [],
                     "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo", "bar"]}]},
        }));
        let hosts = hosts_file(&config, &pod, "10.42.0.5");
        assert!(
            hosts.contains("10.42.0.5\tdb-0.db.shop.svc.cluster.local\tdb-0\n"),
            "{hosts}"
        );
        assert!(hosts.contains("10.1.2.3\tfoo\tbar\n"), "{hosts}");
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
    }

    #[test]
    fn the_sandbox_carries_the_pod_labels_log_dir_and_cgroup() {
        let config = crate::config::tests::example();
        let sandbox = config_for(&config);
        assert_eq!(sandbox.labels[labels::POD_UID], "u-1");
        assert_eq!(sandbox.hostname, "web-1");
        assert_eq!(sandbox.log_directory, "/var/lib/skiff/agent/pods/u-1/logs");
        let linux = sandbox.linux.expect("linux");
        assert_eq!(linux.cgroup_parent, "/kubepods/besteffort/podu-1");
        let ns = linux
            .security_context
            .and_then(|s| s.namespace_options)
            .expect("namespaces");
        assert_eq!(ns.pid, v1::NamespaceMode::Container as i32);
    }

    fn config_for(config: &AgentConfig) -> v1::PodSandboxConfig {
        super::config(config, &web(), 0).expect("a sandbox config")
    }
}
