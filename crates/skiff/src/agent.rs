//! `skiff agent`: the node agent on its own — joining a server with `--server` and
//! `--token`, or with a ready `--kubeconfig` — and the agent `skiff server` runs for
//! its own machine. Flags shared by both are in [`NodeArgs`]; [`run_embedded`] is the
//! server's way in.
//!
//! Joining (see `apiserver::join`): the token pins the cluster CA, the agent makes its
//! own keys and gets them certified by the server; the kubeconfig, certificates and
//! keys are kept in `<data-dir>/agent/` and reused while `join.json` there matches the
//! server, node name, node IP and CA.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use tokio::sync::watch;

/// The agent's directory under the data dir.
pub fn agent_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agent")
}

/// Flags about this node, shared by `skiff agent` and `skiff server`.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// The Node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's InternalIP (default: the address of the interface of the default route).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// A CRI socket to use instead of starting the agent's own containerd.
    #[arg(long)]
    pub container_runtime_endpoint: Option<PathBuf>,
    /// The cluster DNS server pods resolve through (default: the 10th address of the
    /// service CIDR).
    #[arg(long)]
    pub cluster_dns: Option<IpAddr>,
    /// Name of the pod bridge (tests use one of their own).
    #[arg(long, default_value = "skiff0", hide = true)]
    pub cni_bridge: String,
    /// Give pods no default route and do not masquerade their traffic (tests).
    #[arg(long, hide = true)]
    pub no_egress_masquerade: bool,
    /// Port of the node API (0 picks a free one).
    #[arg(long, default_value_t = 10250, hide = true)]
    pub node_api_port: u16,
    /// First CrashLoopBackOff delay, e.g. `10s` or `500ms`.
    #[arg(long, default_value = "10s", value_parser = parse_duration, hide = true)]
    pub crash_backoff_base: Duration,
    /// Node status and Lease period, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = parse_duration, hide = true)]
    pub node_status_interval: Duration,
    /// A container log bigger than this is rotated (a quantity: `10Mi`, `500Ki`).
    #[arg(long, default_value = "10Mi", value_parser = parse_size)]
    pub container_log_max_size: u64,
    /// More destinations pods route through the bridge gateway (tests without
    /// egress give their node network), repeatable.
    #[arg(long = "pod-route", hide = true)]
    pub pod_routes: Vec<String>,
    /// Do not let NodePorts answer on 127.0.0.1 (which needs
    /// `net.ipv4.conf.all.route_localnet=1`).
    #[arg(long, hide = true)]
    pub no_localhost_nodeports: bool,
    /// Log files kept per container, the current one included (at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..))]
    pub container_log_max_files: u16,
}

/// A size given as a Kubernetes quantity (`10Mi`, `500Ki`, `1000000`).
fn parse_size(s: &str) -> Result<u64, String> {
    api::quantity::value(s)
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?}: want a positive size such as 10Mi"))
}

/// Flags of `skiff agent`.
#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The server to join, `https://HOST:6443` (with --token).
    #[arg(long, env = "SKIFF_URL")]
    pub server: Option<String>,
    /// The join token, from `<data-dir>/token` on the server.
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Instead of joining: a kubeconfig with this node's credentials.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Directory for all state; the agent's is `<data-dir>/agent`.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The cluster's pod network.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// The Service network.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    /// The cluster DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Do not run the service proxy on this node.
    #[arg(long)]
    pub disable_proxy: bool,
    /// Remove the service proxy's iptables chains and nftables table of this data
    /// dir and exit.
    #[arg(long)]
    pub cleanup: bool,
    /// How the service proxy programs the kernel: `nftables` (one table of our own,
    /// fast with many Services) or `iptables` (kube-proxy's iptables layout).
    #[arg(long, default_value_t = service_proxy::ProxyMode::Nftables)]
    pub proxy_mode: service_proxy::ProxyMode,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `10s`, `500ms`, `2m` or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| s.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?}: want a duration like 10s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m)")),
    };
    if !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The host name, lower case, as the Node's default name.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_lowercase()
}

/// The source address of the default route, found without sending anything (a UDP
/// socket's connect only picks a route); loopback when there is none.
pub fn default_node_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        // TEST-NET-1: never answered, and connect() on UDP sends no packet.
        socket.connect("192.0.2.1:9")?;
        Ok(socket.local_addr()?.ip())
    };
    probe().unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The 10th address of an IPv4 CIDR (the cluster DNS Service's by convention).
pub fn tenth_address(cidr: &str) -> anyhow::Result<IpAddr> {
    let base = cidr.split('/').next().unwrap_or_default();
    let ip: std::net::Ipv4Addr = base
        .parse()
        .with_context(|| format!("{cidr:?} is not an IPv4 CIDR"))?;
    Ok(IpAddr::from(std::net::Ipv4Addr::from(u32::from(ip) + 10)))
}

/// Credentials of the node API.
pub struct NodeApiCredentials {
    /// PEM serving certificate.
    pub cert: String,
    /// PEM serving key.
    pub key: String,
    /// PEM of the CA whose client certificates may call it.
    pub client_ca: String,
}

/// What the agent needs beyond its flags.
pub struct AgentSetup {
    /// Where the agent keeps its state (`<data-dir>/agent`).
    pub dir: PathBuf,
    /// The cluster's pod network.
    pub cluster_cidr: String,
    /// The Service network.
    pub service_cidr: String,
    /// The cluster DNS domain.
    pub cluster_domain: String,
    /// The node API's credentials.
    pub credentials: NodeApiCredentials,
}

/// The agent's configuration from its flags.
pub fn config(node: &NodeArgs, setup: AgentSetup) -> anyhow::Result<kubelet::AgentConfig> {
    let node_name = node.node_name.clone().unwrap_or_else(hostname);
    if node_name.is_empty() {
        bail!("no --node-name given and the host name is empty");
    }
    let cluster_dns = match node.cluster_dns {
        Some(ip) => ip,
        None => tenth_address(&setup.service_cidr)?,
    };
    if node.cni_bridge.is_empty() || node.cni_bridge.len() > 15 {
        bail!(
            "--cni-bridge {:?}: want 1 to 15 characters",
            node.cni_bridge
        );
    }
    Ok(kubelet::AgentConfig {
        node_name,
        dir: setup.dir,
        runtime_endpoint: node.container_runtime_endpoint.clone(),
        node_ip: node.node_ip.unwrap_or_else(default_node_ip),
        cluster_cidr: setup.cluster_cidr,
        service_cidr: setup.service_cidr,
        cluster_dns,
        cluster_domain: setup.cluster_domain,
        cni_bridge: node.cni_bridge.clone(),
        egress_masquerade: !node.no_egress_masquerade,
        pod_routes: node.pod_routes.clone(),
        node_api_port: node.node_api_port,
        serving_cert: setup.credentials.cert,
        serving_key: setup.credentials.key,
        client_ca: setup.credentials.client_ca,
        crash_backoff_base: node.crash_backoff_base,
        crash_backoff_max: Duration::from_secs(300),
        status_interval: node.node_status_interval,
        container_logs: kubelet::logs::LogRotation {
            max_size: node.container_log_max_size,
            max_files: usize::from(node.container_log_max_files),
        },
        extra_metrics: kubelet::ExtraMetrics::default(),
    })
}

/// The agent directory's lock: two agents never share a directory, and `skiff
/// killall` refuses to run under a live agent.
pub type AgentLock = crate::pidlock::PidLock;

/// Takes the agent directory's lock, or says which process holds it.
pub fn lock(dir: &Path) -> anyhow::Result<AgentLock> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    AgentLock::take(&dir.join("agent.lock"), |pid| {
        format!(
            "a node agent (pid {pid}) is already using {}",
            dir.display()
        )
    })
}

/// The service proxy's chain prefix for the agent in `dir`: `SKIFF-` for the default
/// data dir, else one derived from the directory, so that agents of several data dirs
/// on one machine (tests) keep their chains apart.
pub fn proxy_prefix(dir: &Path) -> String {
    if dir == Path::new("/var/lib/skiff/agent") {
        return "SKIFF-".into();
    }
    // FNV-1a of the directory: stable across restarts.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in dir.as_os_str().as_encoded_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("SK{:05X}-", hash & 0xF_FFFF)
}

/// The service proxy's configuration for the node agent `config`.
fn proxy_config(
    config: &kubelet::AgentConfig,
    localhost_nodeports: bool,
) -> anyhow::Result<service_proxy::ProxyConfig> {
    let cidr = |flag: &str, v: &str| -> anyhow::Result<service_proxy::Ipv4Cidr> {
        v.parse()
            .map_err(|e| anyhow::anyhow!("{flag} {v:?}: {e} (the service proxy handles IPv4)"))
    };
    let node_ips = match config.node_ip {
        IpAddr::V4(ip) => vec![ip],
        IpAddr::V6(_) => Vec::new(),
    };
    Ok(service_proxy::ProxyConfig {
        prefix: proxy_prefix(&config.dir),
        node_name: config.node_name.clone(),
        node_ips,
        service_cidrs: vec![cidr("--service-cidr", &config.service_cidr)?],
        cluster_cidr: Some(cidr("--cluster-cidr", &config.cluster_cidr)?),
        localhost_nodeports,
        ..service_proxy::ProxyConfig::default()
    })
}

/// Runs the node agent, and the service proxy beside it when `proxy`.
async fn run_node(
    client: kube::Client,
    mut config: kubelet::AgentConfig,
    proxy: Option<service_proxy::ProxyConfig>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if let Some(pc) = &proxy {
        // The proxy's sync times and rule counts on the node API's /metrics.
        let metrics = pc.metrics.clone();
        config.extra_metrics =
            kubelet::ExtraMetrics::new(move || metrics.snapshot().to_prometheus());
    }
    let proxy = proxy.map(|pc| {
        let (client, shutdown) = (client.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = service_proxy::run(client, pc, shutdown).await {
                tracing::error!(error = %e, "the service proxy stopped");
            }
        })
    });
    let result = kubelet::run(client, config, shutdown).await;
    if let Some(task) = proxy {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(result?)
}

/// Runs `skiff agent` until SIGTERM/SIGINT.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let dir = agent_dir(&args.data_dir);
    let _lock = lock(&dir)?;
    if args.cleanup {
        let prefix = proxy_prefix(&dir);
        for line in service_proxy::cleanup(&prefix)? {
            println!("removed {line}");
        }
        println!("no service proxy rule of {} is left", dir.display());
        return Ok(());
    }
    let node_ip = args.node.node_ip.unwrap_or_else(default_node_ip);
    let node_name = args.node.node_name.clone().unwrap_or_else(hostname);
    let (kubeconfig_path, credentials) = match (&args.server, &args.kubeconfig) {
        (Some(server), _) => {
            let token = args
                .token
                .as_deref()
                .context("--server needs --token: the token from <data-dir>/token on the server")?;
            joined(&dir, server, token, &node_name, node_ip)
                .await
                .with_context(|| format!("joining {server}"))?
        }
        (None, Some(path)) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let client_ca = kubeconfig_ca(&kubeconfig)?;
            let (cert, key) = self_signed(&node_name, node_ip)?;
            let credentials = NodeApiCredentials {
                cert,
                key,
                client_ca,
            };
            (path.clone(), credentials)
        }
        (None, None) => bail!(
            "give --server https://HOST:6443 and --token (from <data-dir>/token on the server) to join a cluster, or --kubeconfig"
        ),
    };
    let client = crate::components::client_from(&kubeconfig_path).await?;
    let mut node = args.node.clone();
    node.node_ip = Some(node_ip);
    node.node_name = Some(node_name);
    let config = config(
        &node,
        AgentSetup {
            dir,
            cluster_cidr: args.cluster_cidr,
            service_cidr: args.service_cidr,
            cluster_domain: args.cluster_domain,
            credentials,
        },
    )?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });
    let proxy = if args.disable_proxy {
        None
    } else {
        let mut pc = proxy_config(&config, !args.node.no_localhost_nodeports)?;
        pc.mode = args.proxy_mode;
        Some(pc)
    };
    run_node(client, config, proxy, stop_rx).await
}

/// This node's credentials from joining `server`: the ones kept in `dir` when
/// `join.json` there says they were made for the same server, node, IP and CA, else new
/// ones from the server. Returns the kubeconfig's path and the node API's credentials.
async fn joined(
    dir: &Path,
    server: &str,
    token: &str,
    node_name: &str,
    node_ip: IpAddr,
) -> anyhow::Result<(PathBuf, NodeApiCredentials)> {
    let token = apiserver::join::JoinToken::parse(token)?;
    let Some(ca_hash) = token.ca_hash.clone() else {
        bail!(apiserver::join::JoinError::BareToken);
    };
    let kubeconfig = dir.join("kubeconfig.yaml");
    let (ca_path, cert_path, key_path, record_path) = (
        dir.join("ca.crt"),
        dir.join("serving.crt"),
        dir.join("serving.key"),
        dir.join("join.json"),
    );
    let record = serde_json::json!({
        "server": server,
        "nodeName": node_name,
        "nodeIP": node_ip.to_string(),
        "caHash": ca_hash,
    });
    let kept = fs::read(&record_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    if kept.as_ref() == Some(&record)
        && kubeconfig.is_file()
        && let (Ok(client_ca), Ok(cert), Ok(key)) = (
            fs::read_to_string(&ca_path),
            fs::read_to_string(&cert_path),
            fs::read_to_string(&key_path),
        )
        && token.pins(&client_ca)
    {
        tracing::info!(dir = %dir.display(), "reusing this node's credentials from an earlier join");
        return Ok((
            kubeconfig,
            NodeApiCredentials {
                cert,
                key,
                client_ca,
            },
        ));
    }
    let host = hostname();
    let hostnames: Vec<String> = [host]
        .into_iter()
        .filter(|h| !h.is_empty() && h != node_name)
        .collect();
    let password = node_password(dir)?;
    let credentials =
        apiserver::join::join(server, &token, node_name, node_ip, &hostnames, &password).await?;
    apiserver::write_kubeconfig(
        &kubeconfig,
        server,
        &credentials.ca_cert,
        &credentials.client_cert,
        &credentials.client_key,
        0o600,
    )?;
    write_private(&ca_path, &credentials.ca_cert)?;
    write_private(&cert_path, &credentials.serving_cert)?;
    write_private(&key_path, &credentials.serving_key)?;
    write_private(&record_path, &serde_json::to_string_pretty(&record)?)?;
    tracing::info!(node = %node_name, server, "joined: certificates issued by the cluster CA kept in {}", dir.display());
    Ok((
        kubeconfig,
        NodeApiCredentials {
            cert: credentials.serving_cert,
            key: credentials.serving_key,
            client_ca: credentials.ca_cert,
        },
    ))
}

/// This machine's node password (`<agent dir>/node-password`), made at the first join
/// and kept: the server ties the node name to it.
fn node_password(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("node-password");
    if let Ok(kept) = fs::read_to_string(&path)
        && kept.trim().len() >= 16
    {
        return Ok(kept.trim().to_owned());
    }
    let password: String = (0..32)
        .map(|_| format!("{:x}", rand::random::<u8>() & 0x0f))
        .collect();
    write_private(&path, &password)?;
    Ok(password)
}

/// Writes a file only root may read.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("signal received, stopping the agent (pods keep running)");
}

/// The CA of the kubeconfig's current cluster, PEM.
fn kubeconfig_ca(kubeconfig: &kube::config::Kubeconfig) -> anyhow::Result<String> {
    use base64::Engine as _;
    let cluster = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .context("the kubeconfig names no cluster")?;
    if let Some(data) = &cluster.certificate_authority_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .context("the kubeconfig's certificate-authority-data is not base64")?;
        return String::from_utf8(bytes).context("the kubeconfig's CA is not PEM");
    }
    if let Some(path) = &cluster.certificate_authority {
        return fs::read_to_string(path).with_context(|| format!("reading the CA {path}"));
    }
    bail!("the kubeconfig has no certificate authority for the node API's clients")
}

/// A self-signed serving certificate for the node API, as the kubelet makes one when
/// it is given none.
fn self_signed(node_name: &str, node_ip: IpAddr) -> anyhow::Result<(String, String)> {
    let mut params = rcgen::CertificateParams::new(vec![node_name.to_owned()])
        .context("node API certificate names")?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(node_ip));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{node_name}@skiff"));
    let key = rcgen::KeyPair::generate().context("generating the node API key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the node API certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What `skiff server` hands its agent.
pub struct Embedded {
    /// The server's data dir.
    pub data_dir: PathBuf,
    /// The API server's URL.
    pub url: String,
    /// The cluster CA (PEM) and its key, to sign the agent's certificates.
    pub ca_cert: String,
    /// The cluster CA's key (PEM).
    pub ca_key: String,
    /// The cluster's pod network.
    pub cluster_cidr: String,
    /// The Service network.
    pub service_cidr: String,
    /// The cluster DNS domain.
    pub cluster_domain: String,
    /// This node's flags.
    pub node: NodeArgs,
}

/// Prepares the server's own agent: its lock, a client certificate for
/// `system:node:<name>` in `<data-dir>/agent/kubeconfig.yaml`, a node API serving
/// certificate signed by the cluster CA. Returns the lock and the configuration.
pub fn prepare_embedded(
    embedded: &Embedded,
) -> anyhow::Result<(AgentLock, PathBuf, kubelet::AgentConfig)> {
    let dir = agent_dir(&embedded.data_dir);
    let lock = lock(&dir)?;
    let node_name = embedded.node.node_name.clone().unwrap_or_else(hostname);
    let node_ip = embedded.node.node_ip.unwrap_or_else(default_node_ip);
    let user = format!("system:node:{node_name}");
    let (client_cert, client_key) = apiserver::sign_client_cert(
        &embedded.ca_cert,
        &embedded.ca_key,
        &user,
        &["system:nodes"],
    )?;
    let kubeconfig = dir.join("kubeconfig.yaml");
    apiserver::write_kubeconfig(
        &kubeconfig,
        &embedded.url,
        &embedded.ca_cert,
        &client_cert,
        &client_key,
        0o600,
    )?;
    let mut sans = vec![node_ip.to_string(), node_name.clone()];
    let host = hostname();
    if !host.is_empty() && host != node_name {
        sans.push(host);
    }
    let (cert, key) =
        apiserver::sign_serving_cert(&embedded.ca_cert, &embedded.ca_key, &user, &sans)?;
    let mut node = embedded.node.clone();
    node.node_ip = Some(node_ip);
    node.node_name = Some(node_name);
    let config = config(
        &node,
        AgentSetup {
            dir,
            cluster_cidr: embedded.cluster_cidr.clone(),
            service_cidr: embedded.service_cidr.clone(),
            cluster_domain: embedded.cluster_domain.clone(),
            credentials: NodeApiCredentials {
                cert,
                key,
                client_ca: embedded.ca_cert.clone(),
            },
        },
    )?;
    Ok((lock, kubeconfig, config))
}

/// Runs the server's own agent until `shutdown`, once the API server answers.
pub async fn run_embedded(
    lock: AgentLock,
    kubeconfig: PathBuf,
    config: kubelet::AgentConfig,
    proxy: Option<bool>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let _lock = lock;
    let client = crate::components::client_from(&kubeconfig).await?;
    crate::components::wait_ready(&client).await?;
    let proxy = match proxy {
        Some(localhost_nodeports) => Some(proxy_config(&config, localhost_nodeports)?),
        None => None,
    };
    run_node(client, config, proxy, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
    }

    #[test]
    fn the_cluster_dns_is_the_tenth_service_address() {
        assert_eq!(
            tenth_address("10.43.0.0/16").expect("valid"),
            IpAddr::from([10, 43, 0, 10])
        );
    }
}
