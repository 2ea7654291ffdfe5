//! The StatefulSet controller (Kubernetes' `pkg/controller/statefulset`): pods with
//! stable names `<set>-<ordinal>`, hostnames and storage, created in order
//! (`OrderedReady`: ordinal N only once 0..N-1 are Running and Ready; removed highest
//! first, one at a time) or all at once (`Parallel`); rolling updates from the
//! highest ordinal down to `partition`, one pod at a time, or `OnDelete`; claims
//! from `volumeClaimTemplates`; ControllerRevisions for the template history.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::Api;
use kube::runtime::controller::{Action, trigger_owners, trigger_self};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, applier, watcher};
use kube::{Resource, ResourceExt};

use crate::job::expectations::Expectations;
use crate::{Context, Error};

pub(crate) mod history;
mod pods;
mod sync;

/// The StatefulSet controller's state.
pub(crate) struct SetController {
    client: kube::Client,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    claims: Store<PersistentVolumeClaim>,
    recorder: Recorder,
    expectations: Expectations,
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let client = ctx.client.clone();
    let wc = watcher::Config::default;
    let (sets, set_writer) = reflector::store::<StatefulSet>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (revisions, rev_writer) = reflector::store::<ControllerRevision>();
    let (claims, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let set_events = watcher(Api::<StatefulSet>::all(client.clone()), wc())
        .default_backoff()
        .reflect(set_writer)
        .touched_objects();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), wc())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let rev_events = watcher(Api::<ControllerRevision>::all(client.clone()), wc())
        .default_backoff()
        .reflect(rev_writer)
        .touched_objects();
    let claim_events = watcher(Api::<PersistentVolumeClaim>::all(client.clone()), wc())
        .default_backoff()
        .reflect(claim_writer)
        .touched_objects()
        .map(|r| r.map(|_| ()));
    // Claims only need a cache; drive their watch without triggering.
    let claim_task = tokio::spawn(claim_events.for_each(|_| async {}));
    let queue = futures::stream::select(
        futures::stream::select(
            trigger_self(set_events, ()),
            trigger_owners::<StatefulSet, _>(pod_events, (), ()),
        ),
        trigger_owners::<StatefulSet, _>(rev_events, (), ()),
    );
    let sc = Arc::new(SetController {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "statefulset-controller".into(),
                instance: None,
            },
        ),
        client,
        pods,
        revisions,
        claims,
        expectations: Expectations::default(),
    });
    applier(
        |set, sc| Box::pin(reconcile(set, sc)),
        |set: Arc<StatefulSet>, err: &Error, _| {
            tracing::debug!(object = %set.name_any(), error = %err, "statefulset sync failed; retrying");
            Action::requeue(Duration::from_secs(2))
        },
        sc,
        sets,
        queue,
        kube::runtime::controller::Config::default(),
    )
    .for_each(|_| async {})
    .await;
    claim_task.abort();
    Ok(())
}

#[tracing::instrument(skip_all, fields(object = %format!("{}/{}", set.namespace().unwrap_or_default(), set.name_any())))]
async fn reconcile(set: Arc<StatefulSet>, sc: Arc<SetController>) -> Result<Action, Error> {
    let _ = sc.pods.wait_until_ready().await;
    let _ = sc.revisions.wait_until_ready().await;
    let _ = sc.claims.wait_until_ready().await;
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    sync::sync(&set, &sc).await
}

impl SetController {
    async fn event(
        &self,
        set: &StatefulSet,
        warning: bool,
        reason: &str,
        note: String,
        related: Option<k8s_openapi::api::core::v1::ObjectReference>,
    ) {
        let regarding = set.object_ref(&());
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
