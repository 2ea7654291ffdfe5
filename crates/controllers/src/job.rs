//! The Job controller (Kubernetes' `pkg/controller/job`): runs pods from a Job's
//! template until enough of them succeed, or the Job fails.
//!
//! Pods carry the `batch.kubernetes.io/job-tracking` finalizer. A finished pod is
//! first recorded by UID in `status.uncountedTerminatedPods`, then its finalizer is
//! removed, then it moves into `status.succeeded`/`status.failed`: every pod is
//! counted exactly once, also when pods are deleted right after they finish.
//!
//! Indexed Jobs give each pod a completion index (annotation and label
//! `batch.kubernetes.io/job-completion-index`, env `JOB_COMPLETION_INDEX`, hostname
//! `<job>-<index>`) and report `status.completedIndexes`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use events::{EventType, Recorder};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::informers::{itself, owners};
use crate::{Context, Error};

mod conditions;
mod indexes;
pub(crate) mod pod_state;
mod pods;
mod sync;

use crate::expectations::Expectations;

/// Finalizer the Job controller puts on its pods until it has counted them.
pub(crate) const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label with an Indexed Job pod's completion index.
pub(crate) const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// The Job controller's state: caches, recorder and what it is waiting to see.
pub(crate) struct JobController {
    client: kube::Client,
    pods: Store<Pod>,
    recorder: Recorder,
    expectations: Expectations,
    /// Pods (by UID) whose tracking finalizer this controller removed and whose
    /// update the cache may not show yet.
    finalizer_removed: Mutex<HashSet<String>>,
    /// When each Job (by UID) last saw a new pod failure, for the pod backoff.
    last_failure: Mutex<HashMap<String, Instant>>,
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let client = ctx.client.clone();
    let jobs = ctx.informers.get::<Job>().await;
    let pods = ctx.informers.get::<Pod>().await;
    let queue = futures::stream::select(jobs.trigger(itself), pods.trigger(owners::<Job, _>));
    let (jobs, pods) = (jobs.store(), pods.store());
    let jc = Arc::new(JobController {
        recorder: crate::events::recorder(&client, "job-controller"),
        client,
        pods,
        expectations: Expectations::default(),
        finalizer_removed: Mutex::new(HashSet::new()),
        last_failure: Mutex::new(HashMap::new()),
    });
    let sweeper = tokio::spawn(release_orphans(jc.clone(), jobs.clone()));
    crate::informers::reconcile_all("job", jobs, queue, jc, Duration::from_secs(2), reconcile)
        .await;
    sweeper.abort();
    Ok(())
}

#[tracing::instrument(skip_all, fields(object = %format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any())))]
async fn reconcile(job: Arc<Job>, jc: Arc<JobController>) -> Result<Action, Error> {
    let ns = job.namespace().unwrap_or_default();
    let key = format!("{ns}/{}", job.name_any());
    let Some(uid) = job.uid() else {
        return Ok(Action::await_change());
    };
    let pods: Vec<Arc<Pod>> = pod_state::owned_pods(&jc.pods, &ns, &uid);
    if !jc.expectations.satisfied(&key, |n| {
        pod_state::seen(pods.iter().map(|p| p.as_ref()), n)
    }) {
        tracing::debug!("waiting for the cache to see earlier pod writes");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    jc.prune_removed(&pods);
    if job.metadata.deletion_timestamp.is_some() {
        for p in &pods {
            jc.remove_finalizer(p).await?;
        }
        return Ok(Action::await_change());
    }
    sync::sync(&job, &pods, &jc, &key).await
}

impl JobController {
    fn pod_api(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Drops remembered finalizer removals the cache now shows.
    fn prune_removed(&self, pods: &[Arc<Pod>]) {
        let mut removed = self
            .finalizer_removed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        removed.retain(|uid| {
            pods.iter()
                .any(|p| p.uid().as_deref() == Some(uid.as_str()) && has_tracking_finalizer(p))
        });
    }

    fn was_removed(&self, uid: &str) -> bool {
        self.finalizer_removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(uid)
    }

    /// Removes the tracking finalizer from `pod` (no-op without it).
    async fn remove_finalizer(&self, pod: &Pod) -> Result<(), Error> {
        if !has_tracking_finalizer(pod) {
            return Ok(());
        }
        let ns = pod.namespace().unwrap_or_default();
        let rest: Vec<&String> = pod
            .finalizers()
            .iter()
            .filter(|f| *f != TRACKING_FINALIZER)
            .collect();
        let patch = json!({"metadata": {
            "finalizers": rest,
            "resourceVersion": pod.resource_version(),
        }});
        match self
            .pod_api(&ns)
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::Api {
                    context: format!("removing finalizer from pod {ns}/{}", pod.name_any()),
                    source,
                });
            }
        }
        if let Some(uid) = pod.uid() {
            self.finalizer_removed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(uid);
        }
        Ok(())
    }

    /// Records an event about `job`; failures to record are only logged.
    async fn event(
        &self,
        job: &Job,
        type_: EventType,
        reason: &str,
        note: String,
        related: Option<k8s_openapi::api::core::v1::ObjectReference>,
    ) {
        let regarding = job.object_ref(&());
        crate::events::record(&self.recorder, &regarding, type_, reason, note, related).await;
    }
}

/// True when the pod still carries the Job tracking finalizer.
pub(crate) fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// Releases pods whose Job is gone: nobody else would remove their finalizer.
async fn release_orphans(jc: Arc<JobController>, jobs: Store<Job>) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let live: HashSet<String> = jobs.state().iter().filter_map(|j| j.uid()).collect();
        for pod in jc.pods.state() {
            if !has_tracking_finalizer(&pod) {
                continue;
            }
            let owner = pod
                .owner_references()
                .iter()
                .find(|r| r.controller == Some(true) && r.kind == "Job")
                .map(|r| r.uid.clone());
            if owner.is_none_or(|u| !live.contains(&u)) {
                // The Job may be brand new and not cached yet: check the API.
                let ns = pod.namespace().unwrap_or_default();
                let name = pod
                    .owner_references()
                    .iter()
                    .find(|r| r.kind == "Job")
                    .map(|r| r.name.clone());
                if let Some(n) = name
                    && let Ok(Some(j)) = Api::<Job>::namespaced(jc.client.clone(), &ns)
                        .get_opt(&n)
                        .await
                    && pod_state::controller_uid(&pod) == j.uid().as_deref()
                {
                    continue;
                }
                if let Err(e) = jc.remove_finalizer(&pod).await {
                    tracing::debug!(error = %e, "releasing orphaned job pod");
                }
            }
        }
    }
}
