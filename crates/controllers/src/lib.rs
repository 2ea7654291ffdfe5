//! Skiff's controller manager (kube-controller-manager's role). Every controller is
//! an API client through the `kube` crate: it watches objects, compares them with what
//! should be, and writes the difference back through the API. Controllers are
//! level-triggered (`reconcile(object) -> Action`), idempotent, and never told why
//! they run.
//!
//! [`run`] starts the controllers named in [`ControllerManagerConfig::controllers`]
//! (all by default, `-name` to leave one out, as kube-controller-manager's
//! `--controllers`), under leader election on the `kube-controller-manager` Lease.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

mod error;
mod events;
mod expectations;
pub use error::Error;
pub use nodelifecycle::EvictionLimits;

mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod endpointslice;
mod garbagecollector;
mod horizontalpodautoscaling;
mod informers;
mod job;
mod namespace;
mod nodeipam;
mod nodelifecycle;
mod persistentvolume;
mod podgc;
mod queue;
mod replicaset;
mod resourcequota;
mod rootcacertpublisher;
mod serviceaccount;
mod statefulset;
mod storageprotection;
mod ttlafterfinished;

/// Configuration of the controller manager.
#[derive(Debug, Clone)]
pub struct ControllerManagerConfig {
    /// Controllers to run: `*` for all, names to add, `-name` to remove.
    pub controllers: Vec<String>,
    /// Pod network, split into one /24 per node by node IPAM.
    pub cluster_cidr: String,
    /// Size of each node's pod CIDR.
    pub node_cidr_mask_size: u8,
    /// A node whose Lease is older than this is NotReady/Unknown.
    pub node_monitor_grace_period: Duration,
    /// How fast pods are evicted from failed nodes, per zone.
    pub node_eviction: EvictionLimits,
    /// Terminated pods kept before pod GC deletes the oldest.
    pub terminated_pod_gc_threshold: usize,
    /// The cluster CA (PEM) published as `kube-root-ca.crt` in every namespace
    /// (kube-controller-manager's `--root-ca-file`); none: nothing is published.
    pub root_ca: Option<String>,
    /// Run under leader election.
    pub leader_elect: bool,
    /// This instance's identity for leader election.
    pub identity: String,
}

impl Default for ControllerManagerConfig {
    fn default() -> Self {
        Self {
            controllers: vec!["*".into()],
            cluster_cidr: "10.42.0.0/16".into(),
            node_cidr_mask_size: 24,
            node_monitor_grace_period: Duration::from_secs(40),
            node_eviction: EvictionLimits::default(),
            terminated_pod_gc_threshold: 12500,
            root_ca: None,
            leader_elect: true,
            identity: format!("controller-manager-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

/// What every controller gets.
pub(crate) struct Context {
    pub client: kube::Client,
    pub config: ControllerManagerConfig,
    /// One watch and cache per kind, shared by every controller.
    pub informers: informers::Informers,
}

type Starter = fn(Arc<Context>) -> tokio::task::JoinHandle<Result<(), Error>>;

/// The controllers by name, in start order.
const REGISTRY: &[(&str, Starter)] = &[
    ("namespace", |c| tokio::spawn(namespace::run(c))),
    ("serviceaccount", |c| tokio::spawn(serviceaccount::run(c))),
    ("root-ca-cert-publisher", |c| {
        tokio::spawn(rootcacertpublisher::run(c))
    }),
    ("garbagecollector", |c| {
        tokio::spawn(garbagecollector::run(c))
    }),
    ("replicaset", |c| tokio::spawn(replicaset::run(c))),
    ("deployment", |c| tokio::spawn(deployment::run(c))),
    ("statefulset", |c| tokio::spawn(statefulset::run(c))),
    ("daemonset", |c| tokio::spawn(daemonset::run(c))),
    ("job", |c| tokio::spawn(job::run(c))),
    ("cronjob", |c| tokio::spawn(cronjob::run(c))),
    ("ttl-after-finished", |c| {
        tokio::spawn(ttlafterfinished::run(c))
    }),
    ("endpoints", |c| tokio::spawn(endpoints::run(c))),
    ("endpointslice", |c| tokio::spawn(endpointslice::run(c))),
    ("nodeipam", |c| tokio::spawn(nodeipam::run(c))),
    ("nodelifecycle", |c| tokio::spawn(nodelifecycle::run(c))),
    ("podgc", |c| tokio::spawn(podgc::run(c))),
    ("disruption", |c| tokio::spawn(disruption::run(c))),
    ("horizontalpodautoscaling", |c| {
        tokio::spawn(horizontalpodautoscaling::run(c))
    }),
    ("resourcequota", |c| tokio::spawn(resourcequota::run(c))),
    ("persistentvolume-binder", |c| {
        tokio::spawn(persistentvolume::run(c))
    }),
    ("persistentvolume-protection", |c| {
        tokio::spawn(storageprotection::run(c))
    }),
];

/// Names of all controllers.
pub fn controller_names() -> Vec<&'static str> {
    REGISTRY.iter().map(|(n, _)| *n).collect()
}

/// Resolves `--controllers` into the names to run; unknown names are an error.
pub fn selected(spec: &[String]) -> Result<Vec<&'static str>, Error> {
    let mut out: Vec<&'static str> = Vec::new();
    let all = spec.iter().any(|s| s == "*");
    for (name, _) in REGISTRY {
        let named = spec.iter().any(|s| s == name);
        let removed = spec.iter().any(|s| s.strip_prefix('-') == Some(name));
        if (all || named) && !removed {
            out.push(name);
        }
    }
    for s in spec {
        let n = s.trim_start_matches('-');
        if n != "*" && !REGISTRY.iter().any(|(r, _)| *r == n) {
            return Err(Error::UnknownController(n.to_string()));
        }
    }
    Ok(out)
}

async fn run_controllers(
    ctx: Arc<Context>,
    names: Vec<&'static str>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = Vec::new();
    for (name, start) in REGISTRY.iter().filter(|(n, _)| names.contains(n)) {
        tracing::info!(controller = name, "starting controller");
        tasks.push((*name, start(ctx.clone())));
    }
    let _ = stop.wait_for(|s| *s).await;
    for (name, t) in tasks {
        t.abort();
        tracing::debug!(controller = name, "stopped controller");
    }
}

/// Runs the controller manager until `shutdown` turns true.
pub async fn run(
    client: kube::Client,
    config: ControllerManagerConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let names = selected(&config.controllers)?;
    let leader_elect = config.leader_elect;
    let identity = config.identity.clone();
    let ctx = Arc::new(Context {
        informers: informers::Informers::new(client.clone()),
        client: client.clone(),
        config,
    });
    if !leader_elect {
        run_controllers(ctx, names, shutdown).await;
        return Ok(());
    }
    let (lead_tx, mut lead_rx) = watch::channel(false);
    let election = tokio::spawn(leader_election::run(
        client,
        leader_election::LeaseConfig::new("kube-controller-manager", &identity),
        lead_tx,
        shutdown.clone(),
    ));
    let mut shutdown = shutdown;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            r = lead_rx.wait_for(|l| *l) => { if r.is_err() { break; } }
        }
        if *shutdown.borrow() {
            break;
        }
        // Leading: run until leadership is lost or shutdown.
        let (stop_tx, stop_rx) = watch::channel(false);
        let running = tokio::spawn(run_controllers(ctx.clone(), names.clone(), stop_rx));
        let mut lead = lead_rx.clone();
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => {}
            _ = lead.wait_for(|l| !*l) => tracing::warn!("leadership lost; stopping controllers"),
        }
        let _ = stop_tx.send(true);
        let _ = running.await;
        if *shutdown.borrow() {
            break;
        }
    }
    let _ = election.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_flag_selects_like_kube_controller_manager() {
        let all = selected(&["*".into()]).expect("valid");
        assert_eq!(all.len(), REGISTRY.len());
        let some = selected(&["*".into(), "-cronjob".into()]).expect("valid");
        assert!(!some.contains(&"cronjob"));
        assert_eq!(selected(&["job".into()]).expect("valid"), vec!["job"]);
        assert!(selected(&["nope".into()]).is_err());
    }
}
