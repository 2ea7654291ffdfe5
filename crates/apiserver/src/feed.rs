//! Following stored objects the way informers do: list some store prefixes once at
//! one revision, then apply the API server's watch-cache changes under those
//! prefixes a burst at a time; relist only when the watch cache was reset or the
//! follower fell behind it. No polling, no store reads per request. In-memory
//! indexes (flow-control configuration, RBAC, admission policies and webhooks, the
//! node authorizer's graph) implement [`Index`] and are kept by [`follow`]; those
//! that let callers wait until they have seen a revision keep a [`Watermark`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use store::{EventKind, ListOptions, Revision, Store};
use tokio::sync::{broadcast, watch};

use crate::watch_cache::{Change, WatchCache};

/// An in-memory view built from the objects under some store prefixes.
pub(crate) trait Index: Send + Sync + 'static {
    /// The store key prefixes the view is built from.
    fn prefixes(&self) -> &'static [&'static str];
    /// Replaces the whole view with a fresh listing.
    fn reset(&self, objects: Vec<(String, Value)>, revision: Revision);
    /// Applies a burst of changes under the prefixes (`None`: deleted), in order.
    fn apply(&self, changes: &[(&str, Option<&Value>)], revision: Revision);
    /// The view has seen every change up to `revision` (called after each burst,
    /// whether or not it touched the view).
    fn observed(&self, _revision: Revision) {}
    /// Work that follows from the view (status writes, ...): awaited by the follower
    /// after each listing and each live burst, before it takes more changes.
    fn settle(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The last store revision a view has seen (of any object), for callers that wait
/// until it has caught up with a write.
pub(crate) struct Watermark(watch::Sender<Revision>);

impl Default for Watermark {
    fn default() -> Self {
        Self(watch::channel(0).0)
    }
}

impl Watermark {
    /// Raises the mark to `revision` (it never goes down).
    pub(crate) fn raise(&self, revision: Revision) {
        self.0.send_if_modified(|r| {
            let newer = revision > *r;
            if newer {
                *r = revision;
            }
            newer
        });
    }

    /// The revision seen last.
    pub(crate) fn get(&self) -> Revision {
        *self.0.borrow()
    }

    /// Waits (at most `within`) until the mark reaches `revision`; false on timeout.
    pub(crate) async fn wait_for(&self, revision: Revision, within: Duration) -> bool {
        let mut rx = self.0.subscribe();
        tokio::time::timeout(within, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Lists `index`'s objects into it, then keeps it in step with `watch_cache`
/// until `shutdown` (in a task of its own).
pub(crate) async fn follow<I: Index>(
    index: Arc<I>,
    store: Arc<dyn Store>,
    watch_cache: Arc<WatchCache>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), store::StoreError> {
    let (objects, revision) = list_all(store.as_ref(), index.prefixes()).await?;
    index.reset(objects, revision);
    index.observed(revision);
    tokio::spawn(run(index, store, watch_cache, revision, shutdown));
    Ok(())
}

/// Every object under `prefixes`, listed at one revision.
async fn list_all(
    store: &dyn Store,
    prefixes: &[&str],
) -> Result<(Vec<(String, Value)>, Revision), store::StoreError> {
    let mut out = Vec::new();
    let mut at = None;
    for prefix in prefixes {
        let res = store
            .list(&ListOptions {
                prefix: (*prefix).into(),
                revision: at,
                ..Default::default()
            })
            .await?;
        at = Some(res.revision);
        for kv in &res.items {
            if let Ok(obj) = crate::storage::decode(kv) {
                out.push((kv.key.clone(), obj));
            }
        }
    }
    let revision = match at {
        Some(r) => r,
        None => store.current_revision().await?,
    };
    Ok((out, revision))
}

async fn run<I: Index>(
    index: Arc<I>,
    store: Arc<dyn Store>,
    watch_cache: Arc<WatchCache>,
    mut applied: Revision,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        index.settle().await;
        match watch_cache.subscribe(applied) {
            Some(sub) => {
                take(index.as_ref(), &mut applied, &sub.backlog);
                run_live(index.as_ref(), &mut applied, sub.live, &mut shutdown).await;
                if *shutdown.borrow() {
                    return;
                }
            }
            None => tracing::debug!(revision = applied, "follower fell behind the watch cache"),
        }
        // Relist: the watch cache was reset or we fell behind.
        loop {
            match list_all(store.as_ref(), index.prefixes()).await {
                Ok((objects, revision)) => {
                    index.reset(objects, revision);
                    index.observed(revision);
                    applied = revision;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, prefixes = ?index.prefixes(), "relisting failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }
}

/// Applies the changes newer than `applied` under the index's prefixes.
fn take<I: Index>(index: &I, applied: &mut Revision, burst: &[Arc<Change>]) {
    let prefixes = index.prefixes();
    let mut changes: Vec<(&str, Option<&Value>)> = Vec::new();
    for c in burst {
        if c.revision <= *applied {
            continue;
        }
        *applied = c.revision;
        if prefixes.iter().any(|p| c.key.starts_with(p)) {
            let object = (c.kind != EventKind::Deleted).then_some(&c.object);
            changes.push((&c.key, object));
        }
    }
    if !changes.is_empty() {
        index.apply(&changes, *applied);
    }
    index.observed(*applied);
}

/// Applies live changes, a burst at a time, until the subscription ends (lagged or
/// reset) or shutdown.
async fn run_live<I: Index>(
    index: &I,
    applied: &mut Revision,
    mut live: broadcast::Receiver<Arc<Change>>,
    shutdown: &mut watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            r = live.recv() => r,
            _ = shutdown.changed() => return,
        };
        let Ok(first) = first else {
            return;
        };
        let mut burst = vec![first];
        let mut ended = false;
        loop {
            match live.try_recv() {
                Ok(c) => burst.push(c),
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        take(index, applied, &burst);
        if ended {
            return;
        }
        index.settle().await;
    }
}
