//! The replicaset controller, which also runs the replication controller (as
//! kube-controller-manager's RC manager is the ReplicaSet manager on another kind):
//! both keep `spec.replicas` pods from `spec.template` alive, adopt matching orphan
//! pods, release pods that stop matching, and report counts in their status.
//!
//! One pod informer feeds both loops; each kind has its own informer, queue and
//! expectations. Layout follows `pkg/controller/replicaset`: [`sync`] is one reconcile,
//! [`pods`] the pod facts and deletion order, `crate::expectations` the cache-lag guard,
//! [`owner`] what differs between the two kinds, [`informer`] the watch plumbing
//! (shared with the deployment controller).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::runtime::reflector::{ObjectRef, Store};

pub(crate) mod events;
pub(crate) mod informer;
pub(crate) mod owner;
pub(crate) mod pods;
pub(crate) mod sync;

use crate::expectations::Expectations;
use informer::{Change, Enqueue, Queue, Tasks, informer, run_queue};
use owner::Replicated;

use crate::{Context, Error};

/// Where pod changes go for one kind of replica controller.
struct PodRoute<K: Replicated> {
    owners: Store<K>,
    queue: Enqueue<K>,
}

impl<K: Replicated> PodRoute<K> {
    /// Enqueues the controllers a pod change concerns (expectations are checked
    /// against the cache when they sync).
    fn route(&self, pod: &Pod, gone: bool) {
        let ns = pod.metadata.namespace.as_deref();
        if let Some(r) = pods::controller_of(&pod.metadata) {
            if r.kind != K::kind(&()) || r.api_version != K::api_version(&()) {
                return;
            }
            self.queue.add_named(ns, &r.name);
            return;
        }
        if gone || pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        // An orphan: every controller whose selector matches may adopt it.
        let labels = pods::labels(&pod.metadata);
        for owner in self.owners.state() {
            if owner.meta().namespace.as_deref() == ns
                && owner.selector().is_ok_and(|s| s.matches(&labels))
            {
                self.queue.add(ObjectRef::from_obj(&*owner));
            }
        }
    }
}

async fn owner_informer<K: Replicated>(
    ctx: &Context,
    queue: &Queue<K>,
    expectations: Arc<Expectations>,
    tasks: &mut Tasks,
) -> Store<K> {
    let enqueue = queue.sender();
    let shared = ctx.informers.get::<K>().await;
    let store = shared.store();
    tasks.hold(shared.subscribe(move |c| match c {
        Change::Applied { obj, .. } => enqueue.add(ObjectRef::from_obj(obj)),
        Change::Deleted(obj) => expectations.forget(&sync::key_of(obj)),
        Change::Resynced => {
            for o in store.state() {
                enqueue.add(ObjectRef::from_obj(&*o));
            }
        }
    }));
    shared.store()
}

/// Runs the ReplicaSet and ReplicationController controllers until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let client = ctx.client.clone();
    let mut tasks = Tasks::default();
    let rs_queue: Queue<ReplicaSet> = Queue::new();
    let rc_queue: Queue<ReplicationController> = Queue::new();
    let rs_expect = Arc::new(Expectations::default());
    let rc_expect = Arc::new(Expectations::default());
    let rs_store = owner_informer(&ctx, &rs_queue, rs_expect.clone(), &mut tasks).await;
    let rc_store = owner_informer(&ctx, &rc_queue, rc_expect.clone(), &mut tasks).await;

    let rs_route = PodRoute {
        owners: rs_store.clone(),
        queue: rs_queue.sender(),
    };
    let rc_route = PodRoute {
        owners: rc_store.clone(),
        queue: rc_queue.sender(),
    };
    let pod_store = informer(
        &ctx.informers,
        &mut tasks,
        move |c: Change<'_, Pod>| match c {
            Change::Applied { obj, .. } => {
                rs_route.route(obj, false);
                rc_route.route(obj, false);
            }
            Change::Deleted(obj) => {
                rs_route.route(obj, true);
                rc_route.route(obj, true);
            }
            Change::Resynced => {}
        },
    )
    .await;

    let rs_ctx = Arc::new(sync::Ctx::new(
        client.clone(),
        pod_store.clone(),
        rs_store.clone(),
        rs_expect,
    ));
    let rc_ctx = Arc::new(sync::Ctx::new(
        client.clone(),
        pod_store.clone(),
        rc_store.clone(),
        rc_expect,
    ));
    let rs_loop = run_queue(
        rs_store.clone(),
        rs_queue,
        rs_ctx,
        sync::reconcile::<ReplicaSet>,
        sync::error_policy::<ReplicaSet>,
    );
    let rc_loop = run_queue(
        rc_store.clone(),
        rc_queue,
        rc_ctx,
        sync::reconcile::<ReplicationController>,
        sync::error_policy::<ReplicationController>,
    );
    tokio::join!(rs_loop, rc_loop);
    drop(tasks);
    Ok(())
}
