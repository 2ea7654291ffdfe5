//! Shared informers, as kube-controller-manager's SharedInformerFactory has them: one
//! watch and one reflector cache per kind for the whole controller manager, however
//! many controllers read that kind. Each controller subscribes a handler that turns
//! changes into work for its queue; the handler runs after the cache has applied the
//! change, so a worker that reads the cache sees at least that state.
//!
//! Without sharing, every controller kept its own pod watch and its own copy of every
//! pod (a dozen of each in one process).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context as TaskContext, Poll};

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What a cached kind must be.
pub(crate) trait Cached:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<K> Cached for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

/// A change an informer saw, after its cache applied it.
#[derive(Debug)]
pub(crate) enum Change<'a, K> {
    /// Added or modified.
    Applied {
        /// The object as it is now.
        obj: &'a K,
        /// The cached object before this change; `None` at first sight.
        old: Option<&'a K>,
    },
    /// Deleted (last state known).
    Deleted(&'a K),
    /// A (re)list finished: every cached object should be looked at again.
    Resynced,
}

impl<K> Clone for Change<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Change<'_, K> {}

impl<'a, K> Change<'a, K> {
    /// The object the change is about (none for a resync).
    pub(crate) fn object(&self) -> Option<&'a K> {
        match *self {
            Change::Applied { obj, .. } | Change::Deleted(obj) => Some(obj),
            Change::Resynced => None,
        }
    }
}

type Handler<K> = Box<dyn FnMut(Change<'_, K>) + Send>;

struct Subscribers<K> {
    /// The first list has been applied and announced.
    synced: bool,
    next_id: u64,
    handlers: Vec<(u64, Handler<K>)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One watch of a kind, its cache, and the handlers subscribed to its changes.
pub(crate) struct Informer<K: Cached> {
    store: Store<K>,
    subscribers: Arc<Mutex<Subscribers<K>>>,
    /// Turns true once the first list is in the cache.
    synced: tokio::sync::watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl<K: Cached> Drop for Informer<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<K: Cached> Informer<K> {
    /// Starts watching `api` (with `config`) into a new cache.
    pub(crate) fn start(api: Api<K>, config: watcher::Config) -> Arc<Self> {
        let (store, mut writer) = reflector::store::<K>();
        let subscribers = Arc::new(Mutex::new(Subscribers {
            synced: false,
            next_id: 0,
            handlers: Vec::new(),
        }));
        let cache = store.clone();
        let subs = subscribers.clone();
        let (synced_tx, synced) = tokio::sync::watch::channel(false);
        let what = std::any::type_name::<K>();
        let task = tokio::spawn(async move {
            let stream = watcher::watcher(api, config).default_backoff();
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::debug!(what, error = %e, "watch failed; retrying");
                        continue;
                    }
                };
                let old = match &ev {
                    Event::Apply(o) | Event::InitApply(o) => cache.get(&ObjectRef::from_obj(o)),
                    _ => None,
                };
                writer.apply_watcher_event(&ev);
                let mut subs = lock(&subs);
                let change = match &ev {
                    Event::Apply(o) | Event::InitApply(o) => Change::Applied {
                        obj: o,
                        old: old.as_deref(),
                    },
                    Event::Delete(o) => Change::Deleted(o),
                    Event::InitDone => {
                        subs.synced = true;
                        synced_tx.send_replace(true);
                        Change::Resynced
                    }
                    Event::Init => continue,
                };
                for (_, handler) in subs.handlers.iter_mut() {
                    handler(change);
                }
            }
        });
        Arc::new(Self {
            store,
            subscribers,
            synced,
            task,
        })
    }

    /// Waits until the first list is in the cache. (kube-runtime's
    /// `Store::wait_until_ready` wakes only one of several concurrent waiters, so
    /// shared caches are handed out only once synced, and then it never waits.)
    pub(crate) async fn synced(&self) {
        let _ = self.synced.clone().wait_for(|s| *s).await;
    }

    /// The cache (a reader; cheap to clone).
    pub(crate) fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Calls `handler` for every change from now on, until the returned subscription
    /// is dropped. A late subscriber first sees every cached object as applied, then a
    /// resync, as if it had watched from the start. Handlers must be quick (they only
    /// queue work) and must not subscribe.
    pub(crate) fn subscribe(
        &self,
        mut handler: impl FnMut(Change<'_, K>) + Send + 'static,
    ) -> Subscription {
        let mut subs = lock(&self.subscribers);
        if subs.synced {
            for obj in self.store.state() {
                handler(Change::Applied {
                    obj: &obj,
                    old: None,
                });
            }
            handler(Change::Resynced);
        }
        let id = subs.next_id;
        subs.next_id += 1;
        subs.handlers.push((id, Box::new(handler)));
        let weak: Weak<Mutex<Subscribers<K>>> = Arc::downgrade(&self.subscribers);
        Subscription(Some(Box::new(move || {
            if let Some(subs) = weak.upgrade() {
                lock(&subs).handlers.retain(|(i, _)| *i != id);
            }
        })))
    }

    /// A stream of reconcile requests: `map` turns each applied or deleted object
    /// into the objects of kind `O` to reconcile. For `kube::runtime::applier`.
    pub(crate) fn trigger<O, I>(&self, mut map: impl FnMut(&K) -> I + Send + 'static) -> Trigger<O>
    where
        O: Resource<DynamicType = ()> + 'static,
        I: IntoIterator<Item = ObjectRef<O>>,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let subscription = self.subscribe(move |c| {
            if let Some(obj) = c.object() {
                for r in map(obj) {
                    let _ = tx.send(r);
                }
            }
        });
        Trigger {
            rx,
            _subscription: subscription,
        }
    }
}

/// Keeps a handler subscribed; unsubscribes it when dropped.
#[must_use = "the handler is unsubscribed when this is dropped"]
pub(crate) struct Subscription(Option<Box<dyn FnOnce() + Send>>);

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(unsubscribe) = self.0.take() {
            unsubscribe();
        }
    }
}

/// Reconcile requests from an informer's changes (see [`Informer::trigger`]).
pub(crate) struct Trigger<O: Resource<DynamicType = ()>> {
    rx: mpsc::UnboundedReceiver<ObjectRef<O>>,
    _subscription: Subscription,
}

impl<O: Resource<DynamicType = ()>> Stream for Trigger<O> {
    type Item = Result<ObjectRef<O>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|r| r.map(Ok))
    }
}

/// The object itself, for [`Informer::trigger`].
pub(crate) fn itself<K: Resource<DynamicType = ()>>(obj: &K) -> Option<ObjectRef<K>> {
    Some(ObjectRef::from_obj(obj))
}

/// The owners of kind `O` named in an object's ownerReferences, for
/// [`Informer::trigger`] (as kube-runtime's `trigger_owners`).
pub(crate) fn owners<O, K>(obj: &K) -> Vec<ObjectRef<O>>
where
    O: Resource<DynamicType = ()>,
    K: Resource,
{
    let meta = obj.meta();
    meta.owner_references
        .iter()
        .flatten()
        .filter(|r| r.kind == O::kind(&()) && r.api_version == O::api_version(&()))
        .map(|r| {
            let o = ObjectRef::new(&r.name);
            match &meta.namespace {
                Some(ns) => o.within(ns),
                None => o,
            }
        })
        .collect()
}

/// The shared informers of one controller manager, one per kind, started on first
/// use and watching every namespace.
pub(crate) struct Informers {
    client: kube::Client,
    started: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Informers {
    /// No informers yet; they will watch through `client`.
    pub(crate) fn new(client: kube::Client) -> Self {
        Self {
            client,
            started: Mutex::new(HashMap::new()),
        }
    }

    /// The informer of kind `K`, started now if no controller asked for it before,
    /// once its cache holds the first list (kube-controller-manager's
    /// WaitForCacheSync).
    pub(crate) async fn get<K: Cached>(&self) -> Arc<Informer<K>> {
        let informer = self.start::<K>();
        informer.synced().await;
        informer
    }

    fn start<K: Cached>(&self) -> Arc<Informer<K>> {
        let mut started = lock(&self.started);
        if let Some(found) = started
            .get(&TypeId::of::<K>())
            .and_then(|a| a.clone().downcast::<Informer<K>>().ok())
        {
            return found;
        }
        let informer = Informer::start(
            Api::<K>::all(self.client.clone()),
            watcher::Config::default(),
        );
        started.insert(TypeId::of::<K>(), informer.clone());
        informer
    }
}

/// Background work of one controller run, stopped together when the run ends (the
/// controller manager aborts `run`, which drops this).
#[derive(Default)]
pub(crate) struct Tasks {
    handles: Vec<JoinHandle<()>>,
    subscriptions: Vec<Subscription>,
}

impl Tasks {
    /// Spawns `fut` as a task owned by this set.
    pub(crate) fn spawn(&mut self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.handles.push(tokio::spawn(fut));
    }

    /// Keeps a handler subscribed as long as `self` lives.
    pub(crate) fn hold(&mut self, s: Subscription) {
        self.subscriptions.push(s);
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.handles {
            t.abort();
        }
    }
}

/// Reconciles, with `reconcile`, every object of `store` that `queue` names, until the
/// queue ends (kube-runtime's applier); a failed sync is logged and retried after
/// `retry`. The loop every workload controller runs.
pub(crate) async fn reconcile_all<K, C, F, Fut, Q>(
    what: &'static str,
    store: kube::runtime::reflector::Store<K>,
    queue: Q,
    ctx: Arc<C>,
    retry: std::time::Duration,
    reconcile: F,
) where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    C: Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<C>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action, crate::Error>>
        + Send
        + 'static,
    Q: futures::Stream<Item = Result<ObjectRef<K>, Infallible>> + Send + 'static,
{
    use futures::StreamExt as _;
    kube::runtime::applier(
        move |obj, ctx| Box::pin(reconcile(obj, ctx)),
        move |obj: Arc<K>, err: &crate::Error, _| {
            let name = obj.meta().name.clone().unwrap_or_default();
            tracing::debug!(object = %name, error = %err, "{what} sync failed; retrying");
            kube::runtime::controller::Action::requeue(retry)
        },
        ctx,
        store,
        queue,
        kube::runtime::controller::Config::default(),
    )
    .for_each(|_| async {})
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    #[test]
    fn owners_names_only_owners_of_the_asked_kind() {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("ns".into());
        pod.metadata.owner_references = Some(vec![
            OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web-1".into(),
                ..Default::default()
            },
            OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: "j".into(),
                ..Default::default()
            },
        ]);
        let refs = owners::<ReplicaSet, _>(&pod);
        assert_eq!(refs, vec![ObjectRef::new("web-1").within("ns")]);
    }
}
