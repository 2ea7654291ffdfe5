//! The deployment controller: rolls a Deployment's pod template out through
//! ReplicaSets, one per template (named `<deployment>-<pod-template-hash>`), with the
//! RollingUpdate or Recreate strategy; keeps revisions for `kubectl rollout
//! history/undo`; reports progress and availability conditions that `kubectl
//! rollout status` reads.
//!
//! Layout follows `pkg/controller/deployment`: [`sync`] (new ReplicaSet, scaling,
//! cleanup), [`claim`] (ReplicaSet ownership), [`rolling`], [`recreate`],
//! [`rollback`], [`progress`] (status and conditions), [`util`] (hash, revisions,
//! annotations, arithmetic).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};

mod claim;
mod progress;
mod recreate;
mod rollback;
mod rolling;
mod sync;
mod util;

use crate::replicaset::informer::{Change, Enqueue, Queue, Tasks, informer, run_queue};
use crate::replicaset::pods::controller_of;
use crate::{Context, Error};

/// Enqueues the deployment controlling `rs`, or, for an orphan, every deployment
/// in its namespace whose selector matches it.
fn route_replica_set(
    rs: &ReplicaSet,
    deployments: &Store<Deployment>,
    queue: &Enqueue<Deployment>,
) {
    let ns = rs.metadata.namespace.as_deref();
    if let Some(r) = controller_of(&rs.metadata) {
        if r.kind == "Deployment" && r.api_version == "apps/v1" {
            queue.add_named(ns, &r.name);
        }
        return;
    }
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    for d in deployments.state() {
        if d.metadata.namespace.as_deref() != ns {
            continue;
        }
        let sel = d.spec.as_ref().map(|s| &s.selector);
        if api::selector::LabelSelector::from_optional_label_selector(sel)
            .is_ok_and(|s| !s.is_empty() && s.matches(&labels))
        {
            queue.add(ObjectRef::from_obj(&*d));
        }
    }
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let client = ctx.client.clone();
    let mut tasks = Tasks::default();
    let queue: Queue<Deployment> = Queue::new();

    let enqueue = queue.sender();
    let deployments = ctx.informers.get::<Deployment>().await;
    let all = deployments.store();
    tasks.hold(deployments.subscribe(move |c| match c {
        Change::Applied { obj, .. } => enqueue.add(ObjectRef::from_obj(obj)),
        Change::Deleted(_) => {}
        Change::Resynced => {
            for d in all.state() {
                enqueue.add(ObjectRef::from_obj(&*d));
            }
        }
    }));
    let d_store = deployments.store();

    let enqueue = queue.sender();
    let deployments = d_store.clone();
    let rs_store = informer(
        &ctx.informers,
        &mut tasks,
        move |c: Change<'_, ReplicaSet>| match c {
            Change::Applied { obj, .. } | Change::Deleted(obj) => {
                route_replica_set(obj, &deployments, &enqueue)
            }
            Change::Resynced => {}
        },
    )
    .await;

    // Recreate waits for old pods to be gone: a pod's deletion wakes its deployment.
    let enqueue = queue.sender();
    let replica_sets = rs_store.clone();
    let pod_store = informer(&ctx.informers, &mut tasks, move |c: Change<'_, Pod>| {
        let Change::Deleted(pod) = c else { return };
        let Some(r) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else {
            return;
        };
        let mut key = ObjectRef::<ReplicaSet>::new(&r.name);
        if let Some(ns) = pod.metadata.namespace.as_deref() {
            key = key.within(ns);
        }
        if let Some(rs) = replica_sets.get(&key)
            && let Some(d) = controller_of(&rs.metadata).filter(|d| d.kind == "Deployment")
        {
            enqueue.add_named(pod.metadata.namespace.as_deref(), &d.name);
        }
    })
    .await;

    let sync_ctx = Arc::new(sync::Ctx::new(client, rs_store.clone(), pod_store.clone()));
    run_queue(
        d_store.clone(),
        queue,
        sync_ctx,
        sync::reconcile,
        sync::error_policy,
    )
    .await;
    drop(tasks);
    Ok(())
}
