//! `skiff scheduler` and `skiff controller-manager`: the control-plane API clients on
//! their own, against any server (`--kubeconfig`), with leader election so that
//! several instances can run side by side. `skiff server` runs the same code in its
//! own process through [`spawn_embedded`].

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use tokio::sync::watch;

/// Flags shared by the standalone components.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Kubeconfig of the API server to use.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// Run under leader election (set false to run unconditionally).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
}

/// Flags of `skiff controller-manager`.
#[derive(Args, Debug, Clone)]
pub struct ControllerManagerArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Controllers to run: `*` for all, `name` to add, `-name` to remove.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// Pod network split into per-node CIDRs by node IPAM.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// Seconds without a node Lease renewal before the node is marked unreachable.
    #[arg(long, default_value_t = 40)]
    pub node_monitor_grace_period: u64,
    #[command(flatten)]
    pub eviction: EvictionArgs,
    /// The cluster CA (PEM) to publish as `kube-root-ca.crt` in every namespace
    /// (default: the CA of --kubeconfig's cluster).
    #[arg(long)]
    pub root_ca_file: Option<PathBuf>,
}

/// How fast pods are evicted from failed nodes (kube-controller-manager's flags).
#[derive(Args, Debug, Clone)]
pub struct EvictionArgs {
    /// Nodes per second whose pods are evicted, in a zone with enough healthy nodes.
    #[arg(long, default_value_t = 0.1)]
    pub node_eviction_rate: f64,
    /// Nodes per second whose pods are evicted in a large unhealthy zone.
    #[arg(long, default_value_t = 0.01)]
    pub secondary_node_eviction_rate: f64,
    /// Share of not-Ready nodes (more than two) that makes a zone unhealthy.
    #[arg(long, default_value_t = 0.55)]
    pub unhealthy_zone_threshold: f64,
    /// Unhealthy zones up to this many nodes stop evicting.
    #[arg(long, default_value_t = 50)]
    pub large_cluster_size_threshold: usize,
}

impl EvictionArgs {
    /// The controllers' settings.
    pub fn limits(&self) -> controllers::EvictionLimits {
        controllers::EvictionLimits {
            rate: self.node_eviction_rate,
            secondary_rate: self.secondary_node_eviction_rate,
            unhealthy_zone_threshold: self.unhealthy_zone_threshold,
            large_cluster_size: self.large_cluster_size_threshold,
        }
    }
}

/// Flags of `skiff scheduler`.
#[derive(Args, Debug, Clone)]
pub struct SchedulerArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A kube client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("using kubeconfig {}", kubeconfig.display()))?;
    Ok(kube::Client::try_from(cfg)?)
}

fn identity(role: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}_{role}_{}", host.trim(), std::process::id())
}

fn shutdown_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
        let _ = tx.send(true);
    });
    rx
}

fn controller_config(args: &ControllerManagerArgs) -> controllers::ControllerManagerConfig {
    controllers::ControllerManagerConfig {
        controllers: args.controllers.clone(),
        cluster_cidr: args.cluster_cidr.clone(),
        node_monitor_grace_period: std::time::Duration::from_secs(args.node_monitor_grace_period),
        node_eviction: args.eviction.limits(),
        leader_elect: args.client.leader_elect,
        identity: identity("controller-manager"),
        ..Default::default()
    }
}

/// The CA `skiff controller-manager` publishes: `--root-ca-file`, else the one
/// the kubeconfig trusts for its current cluster.
fn root_ca(args: &ControllerManagerArgs) -> anyhow::Result<Option<String>> {
    if let Some(path) = &args.root_ca_file {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading --root-ca-file {}", path.display()))?;
        return Ok(Some(pem));
    }
    let path = &args.client.kubeconfig;
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let context = kc
        .current_context
        .as_ref()
        .and_then(|name| kc.contexts.iter().find(|c| &c.name == name))
        .and_then(|c| c.context.as_ref());
    let cluster = context
        .and_then(|c| kc.clusters.iter().find(|cl| cl.name == c.cluster))
        .and_then(|c| c.cluster.as_ref());
    let Some(cluster) = cluster else {
        return Ok(None);
    };
    if let Some(data) = &cluster.certificate_authority_data {
        use base64::Engine as _;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .context("decoding the kubeconfig's certificate-authority-data")?;
        return Ok(Some(
            String::from_utf8(pem).context("the kubeconfig's CA is not PEM")?,
        ));
    }
    match &cluster.certificate_authority {
        Some(file) => Ok(Some(std::fs::read_to_string(file).with_context(|| {
            format!("reading the kubeconfig's certificate-authority {file}")
        })?)),
        None => Ok(None),
    }
}

/// Runs `skiff controller-manager`.
pub async fn run_controller_manager(args: ControllerManagerArgs) -> anyhow::Result<()> {
    controllers::selected(&args.controllers)?;
    let client = client_from(&args.client.kubeconfig).await?;
    let config = controllers::ControllerManagerConfig {
        root_ca: root_ca(&args)?,
        ..controller_config(&args)
    };
    controllers::run(client, config, shutdown_on_signal()).await?;
    Ok(())
}

/// Runs `skiff scheduler`.
pub async fn run_scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let client = client_from(&args.client.kubeconfig).await?;
    let cfg = scheduler::SchedulerConfig {
        leader_elect: args.client.leader_elect,
        identity: identity("scheduler"),
    };
    scheduler::run(client, cfg, shutdown_on_signal()).await?;
    Ok(())
}

/// Waits for the server's /readyz (its bootstrap objects exist then).
pub(crate) async fn wait_ready(client: &kube::Client) -> anyhow::Result<()> {
    for _ in 0..600 {
        let req = http::Request::get("/readyz").body(Vec::new())?;
        if client
            .request_text(req)
            .await
            .is_ok_and(|t| t.trim() == "ok")
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("the API server did not become ready within 30 s")
}

/// Starts the scheduler and controller manager inside `skiff server`, as API clients
/// of the server, each with its own identity: the scheduler through
/// `scheduler_kubeconfig`, the controllers (and the service load balancer's status)
/// through `controller_kubeconfig`.
pub async fn spawn_embedded(
    scheduler_kubeconfig: &Path,
    controller_kubeconfig: &Path,
    controller_config: controllers::ControllerManagerConfig,
    disabled: &[String],
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let client = client_from(controller_kubeconfig).await?;
    let scheduler_client = client_from(scheduler_kubeconfig).await?;
    wait_ready(&client).await?;
    let mut tasks = Vec::new();
    if !disabled.iter().any(|d| d == "scheduler") {
        let cfg = scheduler::SchedulerConfig {
            leader_elect: true,
            identity: identity("scheduler"),
        };
        let (c, s) = (scheduler_client, shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = scheduler::run(c, cfg, s).await {
                tracing::error!(error = %e, "scheduler stopped");
            }
        }));
    }
    if !disabled.iter().any(|d| d == "proxy") {
        // LoadBalancer Services get the nodes' addresses as their ingress (k3s's
        // service load balancer role).
        let (c, s) = (client.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = service_proxy::run_load_balancer_status(c, s).await {
                tracing::error!(error = %e, "the service load balancer stopped");
            }
        }));
    }
    if !disabled.iter().any(|d| d == "controllers") {
        let cfg = controllers::ControllerManagerConfig {
            identity: identity("controller-manager"),
            ..controller_config
        };
        let (c, s) = (client, shutdown);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = controllers::run(c, cfg, s).await {
                tracing::error!(error = %e, "controller manager stopped");
            }
        }));
    }
    Ok(tasks)
}
