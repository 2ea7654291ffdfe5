//! The CronJob controller (Kubernetes' `pkg/controller/cronjob`): creates a Job for
//! each schedule time of a CronJob (`<cronjob>-<minutes since the epoch>`), honours
//! `concurrencyPolicy`, `startingDeadlineSeconds`, `suspend` and `timeZone`, keeps
//! `status.active`/`lastScheduleTime`/`lastSuccessfulTime`, and deletes finished Jobs
//! beyond the history limits. The decisions live in [`plan`], on an injectable clock.

use std::sync::Arc;
use std::time::Duration;

use events::Recorder;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use crate::informers::{itself, owners};
use crate::{Context, Error};

mod clock;
mod plan;
mod schedule;

use clock::{Clock, RealClock};

/// The CronJob controller's state.
struct CronJobController {
    client: kube::Client,
    jobs: Store<Job>,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let client = ctx.client.clone();
    let cronjobs = ctx.informers.get::<CronJob>().await;
    let jobs = ctx.informers.get::<Job>().await;
    let queue =
        futures::stream::select(cronjobs.trigger(itself), jobs.trigger(owners::<CronJob, _>));
    let (cronjobs, jobs) = (cronjobs.store(), jobs.store());
    let cc = Arc::new(CronJobController {
        recorder: crate::events::recorder(&client, "cronjob-controller"),
        client,
        jobs,
        clock: Arc::new(RealClock),
    });
    crate::informers::reconcile_all(
        "cronjob",
        cronjobs,
        queue,
        cc,
        Duration::from_secs(5),
        reconcile,
    )
    .await;
    Ok(())
}

fn api_err(context: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Api { context, source }
}

#[tracing::instrument(skip_all, fields(object = %format!("{}/{}", cj.namespace().unwrap_or_default(), cj.name_any())))]
async fn reconcile(cj: Arc<CronJob>, cc: Arc<CronJobController>) -> Result<Action, Error> {
    let ns = cj.namespace().unwrap_or_default();
    let uid = cj.uid().unwrap_or_default();
    let owned: Vec<Arc<Job>> = cc
        .jobs
        .state()
        .into_iter()
        .filter(|j| {
            j.namespace().as_deref() == Some(ns.as_str())
                && j.owner_references()
                    .iter()
                    .any(|r| r.controller == Some(true) && r.uid == uid)
        })
        .collect();
    let job_api: Api<Job> = Api::namespaced(cc.client.clone(), &ns);
    // Active Jobs the cache lacks: confirm with the API before dropping them.
    let mut missing = Vec::new();
    for r in cj.status.iter().flat_map(|s| s.active.iter().flatten()) {
        let Some(name) = &r.name else { continue };
        if owned.iter().any(|j| j.name_any() == *name) {
            continue;
        }
        if job_api
            .get_opt(name)
            .await
            .map_err(api_err(format!("getting job {ns}/{name}")))?
            .is_none()
        {
            missing.push(name.clone());
        }
    }
    let refs: Vec<&Job> = owned.iter().map(|j| j.as_ref()).collect();
    let p = plan::plan(&cj, &refs, &missing, cc.clock.as_ref());
    for n in &p.notes {
        cc.event(&cj, n.warning, n.reason, n.message.clone(), None)
            .await;
    }
    for name in &p.delete_active {
        delete_job(&cc, &cj, &job_api, name).await?;
    }
    let mut active = p.active.clone();
    if let Some(job) = &p.create {
        match job_api.create(&PostParams::default(), job).await {
            Ok(created) => {
                tracing::debug!(job = %created.name_any(), "created job");
                cc.event(
                    &cj,
                    false,
                    "SuccessfulCreate",
                    format!("Created job {}", created.name_any()),
                    Some(created.object_ref(&())),
                )
                .await;
                active.push(k8s_openapi::api::core::v1::ObjectReference {
                    api_version: Some("batch/v1".into()),
                    kind: Some("Job".into()),
                    name: Some(created.name_any()),
                    namespace: created.namespace(),
                    uid: created.uid(),
                    resource_version: created.resource_version(),
                    ..Default::default()
                });
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::debug!("job for this schedule time already exists");
            }
            Err(source) => {
                cc.event(
                    &cj,
                    true,
                    "FailedCreate",
                    format!("Error creating job: {source}"),
                    None,
                )
                .await;
                return Err(api_err(format!(
                    "creating job for cronjob {ns}/{}",
                    cj.name_any()
                ))(source));
            }
        }
    }
    // Status before history cleanup, as Kubernetes does.
    let mut status = cj.status.clone().unwrap_or_default();
    status.active = (!active.is_empty()).then_some(active);
    status.last_schedule_time = p.last_schedule_time.map(Time);
    status.last_successful_time = p.last_successful_time.map(Time);
    if cj.status.as_ref() != Some(&status) {
        let mut next = (*cj).clone();
        next.status = Some(status);
        next.metadata.managed_fields = None;
        Api::<CronJob>::namespaced(cc.client.clone(), &ns)
            .replace_status(&cj.name_any(), &PostParams::default(), &next)
            .await
            .map_err(api_err(format!(
                "updating status of cronjob {ns}/{}",
                cj.name_any()
            )))?;
    }
    for name in &p.delete_history {
        delete_job(&cc, &cj, &job_api, name).await?;
    }
    Ok(match p.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

async fn delete_job(
    cc: &CronJobController,
    cj: &CronJob,
    api: &Api<Job>,
    name: &str,
) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            cc.event(
                cj,
                false,
                "SuccessfulDelete",
                format!("Deleted job {name}"),
                Some(related_job(cj, name)),
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => {
            cc.event(
                cj,
                true,
                "FailedDelete",
                format!("Deleted job: {source}"),
                None,
            )
            .await;
            Err(api_err(format!("deleting job {name}"))(source))
        }
    }
}

impl CronJobController {
    async fn event(
        &self,
        cj: &CronJob,
        warning: bool,
        reason: &str,
        note: String,
        related: Option<k8s_openapi::api::core::v1::ObjectReference>,
    ) {
        let regarding = cj.object_ref(&());
        crate::events::record(
            &self.recorder,
            &regarding,
            crate::events::event_type(warning),
            reason,
            note,
            related,
        )
        .await;
    }
}

fn related_job(cj: &CronJob, name: &str) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: Some(name.into()),
        namespace: cj.namespace(),
        ..Default::default()
    }
}
