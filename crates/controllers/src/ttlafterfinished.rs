//! The TTL-after-finished controller (Kubernetes' `pkg/controller/ttlafterfinished`):
//! deletes a Job `ttlSecondsAfterFinished` seconds after it finished (Complete or
//! Failed), with foreground propagation so its pods go first.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::applier;
use kube::runtime::controller::Action;

use crate::informers::itself;
use crate::{Context, Error};

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let client = ctx.client.clone();
    let jobs = ctx.informers.get::<Job>().await;
    let trigger = jobs.trigger(itself);
    applier(
        |job, client| Box::pin(reconcile(job, client)),
        |job: Arc<Job>, err: &Error, _| {
            tracing::debug!(object = %job.name_any(), error = %err, "ttl-after-finished failed; retrying");
            Action::requeue(Duration::from_secs(5))
        },
        Arc::new(client),
        jobs.store(),
        trigger,
        kube::runtime::controller::Config::default(),
    )
    .for_each(|_| async {})
    .await;
    Ok(())
}

/// When `job` finished: the time of its Complete or Failed condition.
pub(crate) fn finish_time(job: &Job) -> Option<jiff::Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or_else(jiff::Timestamp::now)
        })
}

/// How long until `job` expires at `now`: `None` when it never does.
pub(crate) fn time_left(job: &Job, now: jiff::Timestamp) -> Option<Duration> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finish_time(job)?;
    let expire_ms = finished.as_millisecond() + i64::from(ttl) * 1000;
    Some(Duration::from_millis(
        (expire_ms - now.as_millisecond()).max(0) as u64,
    ))
}

#[tracing::instrument(skip_all, fields(object = %format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any())))]
async fn reconcile(job: Arc<Job>, client: Arc<kube::Client>) -> Result<Action, Error> {
    let Some(left) = time_left(&job, jiff::Timestamp::now()) else {
        return Ok(Action::await_change());
    };
    if !left.is_zero() {
        return Ok(Action::requeue(left));
    }
    // Check the freshest copy before deleting, as Kubernetes does.
    let ns = job.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced((*client).clone(), &ns);
    let Some(fresh) = api
        .get_opt(&job.name_any())
        .await
        .map_err(|source| Error::Api {
            context: format!("getting job {ns}/{}", job.name_any()),
            source,
        })?
    else {
        return Ok(Action::await_change());
    };
    match time_left(&fresh, jiff::Timestamp::now()) {
        Some(l) if l.is_zero() => {}
        Some(l) => return Ok(Action::requeue(l)),
        None => return Ok(Action::await_change()),
    }
    tracing::debug!(reason = "TTLExpired", "deleting finished job");
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: fresh.uid(),
            resource_version: fresh.resource_version(),
        }),
        ..DeleteParams::foreground()
    };
    match api.delete(&fresh.name_any(), &dp).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(source) => Err(Error::Api {
            context: format!("deleting expired job {ns}/{}", fresh.name_any()),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_expires_ttl_seconds_after_its_finished_condition() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "spec": {"ttlSecondsAfterFinished": 100, "template": {}},
            "status": {"conditions": [{"type": "Complete", "status": "True",
                                        "lastTransitionTime": "2024-01-01T00:00:00Z"}]}
        }))
        .expect("job");
        let at = |s: &str| s.parse::<jiff::Timestamp>().expect("ts");
        assert_eq!(
            time_left(&job, at("2024-01-01T00:00:40Z")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            time_left(&job, at("2024-01-01T00:05:00Z")),
            Some(Duration::ZERO)
        );
        let mut running = job.clone();
        running.status = None;
        assert_eq!(time_left(&running, at("2024-01-01T00:05:00Z")), None);
    }
}
