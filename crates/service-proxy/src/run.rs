//! The proxy's run loop: reflectors for Services, EndpointSlices and our Node; a full
//! sync at start and every `sync_period`, incremental syncs after changes at most
//! once per `min_sync_period`.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::watcher;
use tokio::sync::{Notify, watch};
use tokio::time::{Duration, sleep_until};

use crate::cache::{Cache, stopped};
use crate::{
    Backend, Commands, Dataplane, Error, IptablesDataplane, NftBackend, NodeView, ProxyConfig,
    ProxyMode, ServiceState, SyncReport,
};

/// How soon a failed sync is retried (as a full sync).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Runs the proxy until `shutdown` turns true. Rules stay in place when it stops
/// (traffic keeps flowing); [`crate::cleanup`] removes them.
pub async fn run(
    client: kube::Client,
    config: ProxyConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    config.validate()?;
    let exec = Commands::with_prefix(config.command_prefix.clone());
    let iptables = Backend::new(exec.clone(), &config.prefix)?;
    let localhost = config.localhost_nodeports;
    let (iptables, prepared) = blocking(move || {
        let result = iptables.prepare(localhost);
        (iptables, result)
    })
    .await?;
    prepared?;
    // Rules of the other mode (an earlier run) would capture the same traffic.
    let (mode, prefix) = (config.mode, config.prefix.clone());
    let other = exec.clone();
    let removed = blocking(move || match mode {
        ProxyMode::Nftables => crate::iptables::cleanup_iptables(&other, &prefix),
        ProxyMode::Iptables => crate::nft::cleanup_table(&other, &prefix),
    })
    .await?;
    match removed {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(mode = %config.mode, removed = removed.len(), "removed the other proxy mode's rules");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot remove the other proxy mode's rules"),
    }
    let mut dataplane: Box<dyn Dataplane> = match config.mode {
        ProxyMode::Iptables => Box::new(IptablesDataplane::new(iptables, &config)),
        ProxyMode::Nftables => Box::new(NftBackend::new(exec, &config)?),
    };
    let mut state = ServiceState::new(&config.node_name);

    let changed = Arc::new(Notify::new());
    let services: Cache<Service> = Cache::start(
        Api::all(client.clone()),
        watcher::Config::default(),
        changed.clone(),
    );
    let slices: Cache<EndpointSlice> = Cache::start(
        Api::all(client.clone()),
        watcher::Config::default(),
        changed.clone(),
    );
    let nodes: Cache<Node> = Cache::start(
        Api::all(client),
        watcher::Config::default().fields(&format!("metadata.name={}", config.node_name)),
        changed.clone(),
    );
    tokio::select! {
        _ = stopped(&mut shutdown) => return Ok(()),
        _ = async { services.synced().await; slices.synced().await; nodes.synced().await } => {}
    }
    tracing::info!(prefix = %config.prefix, node = %config.node_name, "service proxy caches synced");

    let mut next_full = Instant::now();
    loop {
        let started = Instant::now();
        let full = started >= next_full;
        let node = nodes
            .state()
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some(config.node_name.as_str()));
        let view = NodeView::new(&config, node.as_deref());
        state.sync_from(&services.state(), &slices.state());
        let (returned, result) = sync(dataplane, state, view, full).await?;
        (dataplane, state) = returned;
        let took = started.elapsed();
        match result {
            Ok(report) => {
                config.metrics.synced(took, &report);
                tracing::debug!(
                    mode = %config.mode,
                    full = report.full,
                    took_ms = took.as_millis() as u64,
                    chains_written = report.chains_written,
                    chains_deleted = report.chains_deleted,
                    elements_written = report.elements_written,
                    hooks_added = report.hooks_added,
                    hooks_removed = report.hooks_removed,
                    "rules synced"
                );
                if report.full {
                    next_full = Instant::now() + config.sync_period;
                }
            }
            Err(e) => {
                config.metrics.failed(took);
                tracing::warn!(error = %e, "syncing service rules failed; retrying");
                next_full = Instant::now() + RETRY_AFTER;
            }
        }

        tokio::select! {
            _ = stopped(&mut shutdown) => return Ok(()),
            _ = sleep_until(next_full.into()) => {}
            _ = changed.notified() => {
                tokio::select! {
                    _ = stopped(&mut shutdown) => return Ok(()),
                    _ = sleep_until((started + config.min_sync_period).into()) => {}
                }
            }
        }
    }
}

type Returned = (Box<dyn Dataplane>, ServiceState);

/// Syncs on a blocking thread; hands the dataplane and the state back.
async fn sync(
    mut dataplane: Box<dyn Dataplane>,
    mut state: ServiceState,
    view: NodeView,
    full: bool,
) -> Result<(Returned, Result<SyncReport, Error>), Error> {
    blocking(move || {
        let result = dataplane.sync(&mut state, &view, full);
        ((dataplane, state), result)
    })
    .await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::TaskFailed(e.to_string()))
}
