//! Skiff's scheduler (being written): binds pending pods to nodes through the API.

use tokio::sync::watch;

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
}

/// Runs the scheduler until `shutdown` turns true.
pub async fn run(
    _client: kube::Client,
    _config: SchedulerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let _ = shutdown.wait_for(|s| *s).await;
    Ok(())
}
