//! Skiff's node agent, the kubelet's role: it registers its Node, renews the node
//! Lease, runs the pods bound to it in containerd through CRI v1 (crate `cri`), with
//! pod networking through CNI, reports pod status, and serves the node API (logs,
//! exec, attach, port-forward) that the API server proxies to.
//!
//! It is an API client like every other component: it watches and writes objects
//! through the API with the `kube` crate, never the datastore.
//!
//! Layout: [`config`] what an agent is told; `node` registration, status and lease;
//! `network` the CNI configuration and routes; `images` the pause image and the
//! images directory; `pods` the per-pod workers and status; `volumes` and `env` what
//! a container gets from its pod spec; [`server`] the node API on port 10250;
//! `labels` the CRI labels that tie sandboxes and containers to pods.

pub mod config;
mod env;
mod error;
mod images;
mod labels;
pub mod logs;
mod network;
mod node;
mod pods;
mod provisioner;
pub mod server;
mod volumes;

pub use config::{AgentConfig, ExtraMetrics};
pub use error::Error;
pub use network::{
    NetworkState, PeerRoute, leftovers as network_leftovers, remove as remove_network,
};
pub use node::KUBELET_VERSION;
pub use pods::leftover_cgroups;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// How long CRI requests may take by default (the kubelet's runtime request timeout).
const RUNTIME_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Resolves once `shutdown` turns true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// containerd's directory under the agent's: `<dir>/containerd`.
pub fn containerd_dir(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("containerd")
}

/// The settings of the agent's own containerd for the agent directory `dir`.
pub fn containerd_config(dir: &std::path::Path) -> cri::containerd::Config {
    cri::containerd::Config::new(containerd_dir(dir), network::cni_conf_dir(dir))
}

/// Runs the agent until `shutdown` turns true. Shutting the agent down does not stop
/// pods: their containers keep running and are adopted at the next start.
///
/// Start order: containerd (ours, or the one at `runtime_endpoint`), the pause image
/// and the images directory, the node API, the Node object, then — once the Node has a
/// pod CIDR — the CNI configuration; pod workers start right after registration and
/// create sandboxes once the network is configured.
pub async fn run(
    client: kube::Client,
    config: AgentConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&config.dir)
        .map_err(|e| Error::io(format!("creating {}", config.dir.display()), e))?;
    let (containerd, runtime) = match &config.runtime_endpoint {
        Some(socket) => (
            None,
            cri::Runtime::connect(socket, RUNTIME_REQUEST_TIMEOUT).await?,
        ),
        None => {
            let containerd = cri::containerd::Containerd::start(containerd_config(&config.dir))
                .await
                .map_err(|e| Error::Invalid(format!("cannot start containerd: {e}")))?;
            let runtime = containerd.runtime().clone();
            (Some(containerd), runtime)
        }
    };
    images::ensure_pause(&runtime, &config.dir).await?;
    let mut image_dir = images::ImageDir::open(&config.dir)?;
    image_dir.import_new(&runtime).await;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(image_dir.watch(runtime.clone(), shutdown.clone()));

    let api = server::bind(&config, runtime.clone()).await?;
    let api_port = api.port();
    {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = api.serve(shutdown).await {
                tracing::error!(error = %e, "the node API stopped");
            }
        });
    }

    node::register(&client, &config, &runtime, api_port).await?;
    let (network_tx, network_ready) = watch::channel(network::configured(&config.dir));
    tasks.spawn(node::heartbeat(
        client.clone(),
        config.clone(),
        runtime.clone(),
        api_port,
        network_ready.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(logs::run(
        runtime.clone(),
        config.container_logs,
        shutdown.clone(),
    ));
    tasks.spawn(provisioner::run(
        client.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(network::peer_routes(
        client.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    {
        let (client, config, mut shutdown) = (client.clone(), config.clone(), shutdown.clone());
        tasks.spawn(async move {
            match node::wait_pod_cidr(&client, &config.node_name, &mut shutdown).await {
                Ok(Some(cidr)) => match network::setup(&config, &cidr) {
                    Ok(()) => {
                        let _ = network_tx.send(true);
                    }
                    Err(e) => tracing::error!(error = %e, "cannot set up the pod network"),
                },
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "cannot read the node's pod CIDR"),
            }
        });
    }
    let ctx = Arc::new(pods::Ctx::new(
        client.clone(),
        config.clone(),
        runtime.clone(),
        network_ready,
    ));
    {
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = pods::run(ctx, shutdown).await {
                tracing::error!(error = %e, "the pod workers stopped");
            }
        });
    }
    tracing::info!(
        node = %config.node_name,
        node_api_port = api_port,
        startup_ms = started.elapsed().as_millis() as u64,
        "node agent running"
    );

    stopped(&mut shutdown).await;
    while tokio::time::timeout(Duration::from_secs(10), tasks.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
    tasks.abort_all();
    if let Some(containerd) = containerd {
        containerd.stop().await;
    }
    tracing::info!(node = %config.node_name, "node agent stopped; pods keep running");
    Ok(())
}
