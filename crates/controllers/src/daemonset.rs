//! The DaemonSet controller (Kubernetes' `pkg/controller/daemon`): one pod per
//! eligible node (node selector, required node affinity, taints against tolerations
//! plus the automatic daemon tolerations), each pinned to its node by required node
//! affinity `matchFields metadata.name` so the default scheduler binds it; rolling
//! updates within `maxUnavailable`/`maxSurge`, or `OnDelete`; ControllerRevisions;
//! reacts to nodes coming and going.

use std::sync::Arc;
use std::time::Duration;

use events::Recorder;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::expectations::Expectations;
use crate::informers::{itself, owners, reconcile_all};
use crate::{Context, Error};

mod placement;
mod sync;

/// How soon a failed sync is retried.
const RETRY: Duration = Duration::from_secs(2);

/// The DaemonSet controller's state.
pub(crate) struct DaemonController {
    client: kube::Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    recorder: Recorder,
    expectations: Expectations,
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let client = ctx.client.clone();
    let inf = &ctx.informers;
    let (sets, pods) = (inf.get::<DaemonSet>().await, inf.get::<Pod>().await);
    let (nodes, revisions) = (
        inf.get::<Node>().await,
        inf.get::<ControllerRevision>().await,
    );
    let all_sets = sets.store();
    let queue = futures::stream::select(
        futures::stream::select(sets.trigger(itself), pods.trigger(owners::<DaemonSet, _>)),
        futures::stream::select(
            // Any node change may change where daemon pods belong.
            nodes.trigger(move |_: &Node| {
                all_sets
                    .state()
                    .iter()
                    .map(|s| ObjectRef::from_obj(s.as_ref()))
                    .collect::<Vec<_>>()
            }),
            revisions.trigger(owners::<DaemonSet, _>),
        ),
    );
    let (sets, pods) = (sets.store(), pods.store());
    let (nodes, revisions) = (nodes.store(), revisions.store());
    let dc = Arc::new(DaemonController {
        recorder: crate::events::recorder(&client, "daemonset-controller"),
        client,
        pods,
        nodes,
        revisions,
        expectations: Expectations::default(),
    });
    reconcile_all("daemonset", sets, queue, dc, RETRY, reconcile).await;
    Ok(())
}

#[tracing::instrument(skip_all, fields(object = %format!("{}/{}", ds.namespace().unwrap_or_default(), ds.name_any())))]
async fn reconcile(ds: Arc<DaemonSet>, dc: Arc<DaemonController>) -> Result<Action, Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    sync::sync(&ds, &dc).await
}

impl DaemonController {
    async fn event(
        &self,
        ds: &DaemonSet,
        warning: bool,
        reason: &str,
        note: String,
        related: Option<k8s_openapi::api::core::v1::ObjectReference>,
    ) {
        let regarding = ds.object_ref(&());
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
