//! Work queues over the shared informers: a handler subscribed to an informer turns
//! changes into reconcile requests, and a small work queue (kube-runtime's
//! `applier`) runs the reconciler with per-object backoff.
//!
//! The deployment controller uses the same pieces.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::Resource;
use kube::runtime::controller::{Action, Config as ApplierConfig, applier};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::mpsc;

use crate::Error;
use crate::informers::{Cached, Informers};

pub(crate) use crate::informers::{Change, Tasks};

/// Subscribes `handler` to the shared informer of kind `K` for as long as `tasks`
/// lives, and returns its cache.
pub(crate) async fn informer<K: Cached>(
    informers: &Informers,
    tasks: &mut Tasks,
    handler: impl FnMut(Change<'_, K>) + Send + 'static,
) -> Store<K> {
    let informer = informers.get::<K>().await;
    tasks.hold(informer.subscribe(handler));
    informer.store()
}

/// A work queue of objects to reconcile.
pub(crate) struct Queue<K: Resource<DynamicType = ()>> {
    tx: mpsc::UnboundedSender<ObjectRef<K>>,
    rx: Option<mpsc::UnboundedReceiver<ObjectRef<K>>>,
}

impl<K: Resource<DynamicType = ()>> Queue<K> {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self { tx, rx: Some(rx) }
    }

    /// A handle that adds to the queue.
    pub(crate) fn sender(&self) -> Enqueue<K> {
        Enqueue(self.tx.clone())
    }
}

/// Adds objects to a [`Queue`].
pub(crate) struct Enqueue<K: Resource<DynamicType = ()>>(mpsc::UnboundedSender<ObjectRef<K>>);

impl<K: Resource<DynamicType = ()>> Clone for Enqueue<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: Resource<DynamicType = ()>> Enqueue<K> {
    /// Asks for `r` to be reconciled.
    pub(crate) fn add(&self, r: ObjectRef<K>) {
        let _ = self.0.send(r);
    }

    /// Asks for the object named `name` in `ns` to be reconciled.
    pub(crate) fn add_named(&self, ns: Option<&str>, name: &str) {
        let mut r = ObjectRef::new(name);
        if let Some(ns) = ns {
            r = r.within(ns);
        }
        self.add(r);
    }
}

/// Per-object exponential backoff for failed reconciles (5 ms doubling, at most
/// 60 s), like kube-controller-manager's rate-limited queues.
#[derive(Default)]
pub(crate) struct Backoff(Mutex<HashMap<String, u32>>);

impl Backoff {
    /// The delay before retrying `key` after one more failure.
    pub(crate) fn failed(&self, key: &str) -> Duration {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.to_string()).or_insert(0);
        *n = (*n + 1).min(20);
        Duration::from_millis(5u64 << *n).min(Duration::from_secs(60))
    }

    /// Forgets failures of `key` after a success.
    pub(crate) fn succeeded(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// Runs `reconcile` for every object taken from `queue` that is in `store`, until
/// the queue closes. The shared informers hand out caches only once they hold
/// their first list, so no decision is taken from a half-filled cache.
pub(crate) async fn run_queue<K, C, F, Fut>(
    store: Store<K>,
    mut queue: Queue<K>,
    ctx: Arc<C>,
    reconcile: F,
    error_policy: fn(Arc<K>, &Error, Arc<C>) -> Action,
) where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Debug + Unpin,
    C: Send + Sync + 'static,
    F: FnMut(Arc<K>, Arc<C>) -> Fut,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let Some(rx) = queue.rx.take() else { return };
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(Ok::<_, Infallible>);
    let mut reconcile = reconcile;
    let results = applier(
        move |obj, ctx| Box::pin(reconcile(obj, ctx)),
        error_policy,
        ctx,
        store,
        stream,
        ApplierConfig::default(),
    );
    let mut results = std::pin::pin!(results);
    while let Some(r) = results.next().await {
        if let Err(e) = r {
            tracing::debug!(error = %e, "reconcile failed");
        }
    }
}
