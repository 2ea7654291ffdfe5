//! Leader election on a `coordination.k8s.io/v1` Lease (client-go's leaderelection):
//! a candidate takes the Lease when it is free or expired, renews it every
//! `retry_period`, and gives up leadership when it cannot renew within
//! `renew_deadline`. Updates are compare-and-swap on the Lease's resourceVersion, so
//! two candidates never both believe they lead.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// Timing and identity of one candidate.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Lease name, e.g. `kube-scheduler`.
    pub name: String,
    /// Lease namespace (kube-system).
    pub namespace: String,
    /// This candidate's identity (hostname + unique suffix).
    pub identity: String,
    /// How long a lease is valid without renewal (15 s in Kubernetes).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up (10 s).
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew (2 s).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// Kubernetes' default timings for a lease `name` in kube-system.
    pub fn new(name: &str, identity: &str) -> Self {
        Self {
            name: name.into(),
            namespace: "kube-system".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why election stopped.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The API failed in a way retrying will not fix.
    #[error("lease {name}: {source}")]
    Api {
        /// Lease name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renew) = spec.renew_time.as_ref() else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    now.as_second() > renew.0.as_second() + secs
}

/// Tries once to acquire or renew; true when this candidate holds the lease now.
async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let existing = api.get_opt(&cfg.name).await?;
    let Some(mut lease) = existing else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let mine = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
    if !mine
        && !expired(spec, now)
        && spec
            .holder_identity
            .as_deref()
            .is_some_and(|h| !h.is_empty())
    {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(cfg.identity.clone());
        spec.acquire_time = Some(now_micro());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(now_micro());
    spec.lease_duration_seconds = Some(cfg.lease_duration.as_secs() as i32);
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs the election until `shutdown` fires. `leading` is set to true while this
/// candidate holds the lease and false otherwise; callers run their work only while
/// it is true (and should stop at once when it turns false).
pub async fn run(
    client: kube::Client,
    cfg: LeaseConfig,
    leading: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ElectionError> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_renew = tokio::time::Instant::now();
    loop {
        match try_acquire_or_renew(&api, &cfg).await {
            Ok(true) => {
                last_renew = tokio::time::Instant::now();
                if !*leading.borrow() {
                    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                    let _ = leading.send(true);
                }
            }
            Ok(false) => {
                if *leading.borrow() {
                    tracing::warn!(lease = %cfg.name, "lost the lease to another candidate");
                    let _ = leading.send(false);
                }
            }
            Err(e) => {
                tracing::debug!(lease = %cfg.name, error = %e, "lease attempt failed");
                if *leading.borrow() && last_renew.elapsed() > cfg.renew_deadline {
                    tracing::warn!(lease = %cfg.name, "could not renew within the deadline; stepping down");
                    let _ = leading.send(false);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.retry_period) => {}
            _ = shutdown.changed() => {
                if *leading.borrow() {
                    // Release: let another candidate take over without waiting for expiry.
                    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await
                        && let Some(spec) = lease.spec.as_mut()
                        && spec.holder_identity.as_deref() == Some(cfg.identity.as_str())
                    {
                        spec.holder_identity = None;
                        spec.renew_time = None;
                        let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
                    }
                    let _ = leading.send(false);
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_not_renewed_within_its_duration_is_expired() {
        let now = Timestamp::now();
        let spec = LeaseSpec {
            renew_time: Some(MicroTime(
                Timestamp::from_second(now.as_second() - 20).expect("ts"),
            )),
            lease_duration_seconds: Some(15),
            ..Default::default()
        };
        assert!(expired(&spec, now));
        let fresh = LeaseSpec {
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(15),
            ..Default::default()
        };
        assert!(!expired(&fresh, now));
        assert!(expired(&LeaseSpec::default(), now));
    }
}
