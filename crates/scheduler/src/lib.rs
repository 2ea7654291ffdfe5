//! Skiff's scheduler (kube-scheduler's role): watches pending pods and nodes through
//! the API, filters and scores nodes with Kubernetes' default plugins, preempts
//! lower-priority pods when nothing fits, and binds pods with `pods/binding`.
//!
//! - [`cache`]: nodes and the pods on them, updated incrementally from watch events.
//! - [`queue`]: active, backoff and unschedulable pods.
//! - [`schedule_one`]: one attempt over the plugins in [`plugins`].
//! - [`preemption`]: choosing victims.
//!
//! Runs only while it holds the `kube-system/kube-scheduler` Lease (when
//! `leader_elect`).

use tokio::sync::watch;

pub mod cache;
mod effects;
pub mod framework;
pub mod perf;
pub mod plugins;
pub mod pod_info;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod schedule_one;
mod session;

pub use session::SCHEDULER_NAME;

/// Configuration of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Run under leader election on the `kube-scheduler` Lease.
    pub leader_elect: bool,
    /// This instance's identity.
    pub identity: String,
}

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{0}")]
    Api(#[from] kube::Error),
    /// Leader election failed for good.
    #[error("leader election: {0}")]
    Election(#[from] leader_election::ElectionError),
}

/// Runs the scheduler until `shutdown` turns true; with `leader_elect`, schedules
/// only while holding the Lease and starts afresh after regaining it.
pub async fn run(
    client: kube::Client,
    config: SchedulerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    if !config.leader_elect {
        tokio::select! {
            r = session::run(client, &config) => return r,
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        }
    }
    let (tx, mut leading) = watch::channel(false);
    let lease = leader_election::LeaseConfig::new("kube-scheduler", &config.identity);
    let election = tokio::spawn(leader_election::run(
        client.clone(),
        lease,
        tx,
        shutdown.clone(),
    ));
    loop {
        tokio::select! {
            r = leading.wait_for(|l| *l) => if r.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
        }
        tracing::info!(identity = %config.identity, "leading; scheduling");
        let mut lost = leading.clone();
        tokio::select! {
            r = session::run(client.clone(), &config) => r?,
            _ = lost.wait_for(|l| !*l) => tracing::info!("lost leadership; stopped scheduling"),
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    match election.await {
        Ok(r) => r?,
        Err(e) => tracing::debug!(error = %e, "election task ended"),
    }
    Ok(())
}
