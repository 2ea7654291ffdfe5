//! The DaemonSet controller (Kubernetes' `pkg/controller/daemon`): one pod per
//! eligible node (node selector, required node affinity, taints against tolerations
//! plus the automatic daemon tolerations), each pinned to its node by required node
//! affinity `matchFields metadata.name` so the default scheduler binds it; rolling
//! updates within `maxUnavailable`/`maxSurge`, or `OnDelete`; ControllerRevisions;
//! reacts to nodes coming and going.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::controller::{Action, trigger_owners, trigger_self, trigger_with};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, applier, watcher};
use kube::{Resource, ResourceExt};

use crate::job::expectations::Expectations;
use crate::{Context, Error};

mod placement;
mod sync;

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
    let wc = watcher::Config::default;
    let (sets, set_writer) = reflector::store::<DaemonSet>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (nodes, node_writer) = reflector::store::<Node>();
    let (revisions, rev_writer) = reflector::store::<ControllerRevision>();
    let set_events = watcher(Api::<DaemonSet>::all(client.clone()), wc())
        .default_backoff()
        .reflect(set_writer)
        .touched_objects();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), wc())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let node_events = watcher(Api::<Node>::all(client.clone()), wc())
        .default_backoff()
        .reflect(node_writer)
        .touched_objects();
    let rev_events = watcher(Api::<ControllerRevision>::all(client.clone()), wc())
        .default_backoff()
        .reflect(rev_writer)
        .touched_objects();
    let all_sets = sets.clone();
    let queue = futures::stream::select(
        futures::stream::select(
            trigger_self(set_events, ()),
            trigger_owners::<DaemonSet, _>(pod_events, (), ()),
        ),
        futures::stream::select(
            // Any node change may change where daemon pods belong.
            trigger_with(node_events, move |_: Node| {
                all_sets
                    .state()
                    .iter()
                    .map(|s| ObjectRef::from_obj(s.as_ref()))
                    .collect::<Vec<_>>()
            }),
            trigger_owners::<DaemonSet, _>(rev_events, (), ()),
        ),
    );
    let dc = Arc::new(DaemonController {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "daemonset-controller".into(),
                instance: None,
            },
        ),
        client,
        pods,
        nodes,
        revisions,
        expectations: Expectations::default(),
    });
    applier(
        |ds, dc| Box::pin(reconcile(ds, dc)),
        |ds: Arc<DaemonSet>, err: &Error, _| {
            tracing::debug!(object = %ds.name_any(), error = %err, "daemonset sync failed; retrying");
            Action::requeue(Duration::from_secs(2))
        },
        dc,
        sets,
        queue,
        kube::runtime::controller::Config::default(),
    )
    .for_each(|_| async {})
    .await;
    Ok(())
}

#[tracing::instrument(skip_all, fields(object = %format!("{}/{}", ds.namespace().unwrap_or_default(), ds.name_any())))]
async fn reconcile(ds: Arc<DaemonSet>, dc: Arc<DaemonController>) -> Result<Action, Error> {
    let _ = dc.pods.wait_until_ready().await;
    let _ = dc.nodes.wait_until_ready().await;
    let _ = dc.revisions.wait_until_ready().await;
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
