//! The StatefulSet controller (Kubernetes' `pkg/controller/statefulset`): pods with
//! stable names `<set>-<ordinal>`, hostnames and storage, created in order
//! (`OrderedReady`: ordinal N only once 0..N-1 are Running and Ready; removed highest
//! first, one at a time) or all at once (`Parallel`); rolling updates from the
//! highest ordinal down to `partition`, one pod at a time, or `OnDelete`; claims
//! from `volumeClaimTemplates`; ControllerRevisions for the template history.

use std::sync::Arc;
use std::time::Duration;

use events::Recorder;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use crate::expectations::Expectations;
use crate::informers::{itself, owners};
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
    let inf = &ctx.informers;
    let (sets, pods) = (inf.get::<StatefulSet>().await, inf.get::<Pod>().await);
    let revisions = inf.get::<ControllerRevision>().await;
    // Claims only need a cache.
    let claims = inf.get::<PersistentVolumeClaim>().await.store();
    let queue = futures::stream::select(
        futures::stream::select(sets.trigger(itself), pods.trigger(owners::<StatefulSet, _>)),
        revisions.trigger(owners::<StatefulSet, _>),
    );
    let (sets, pods, revisions) = (sets.store(), pods.store(), revisions.store());
    let sc = Arc::new(SetController {
        recorder: crate::events::recorder(&client, "statefulset-controller"),
        client,
        pods,
        revisions,
        claims,
        expectations: Expectations::default(),
    });
    crate::informers::reconcile_all(
        "statefulset",
        sets,
        queue,
        sc,
        Duration::from_secs(2),
        reconcile,
    )
    .await;
    Ok(())
}

#[tracing::instrument(skip_all, fields(object = %format!("{}/{}", set.namespace().unwrap_or_default(), set.name_any())))]
async fn reconcile(set: Arc<StatefulSet>, sc: Arc<SetController>) -> Result<Action, Error> {
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
