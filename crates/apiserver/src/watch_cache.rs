//! The watch cache: one store watch over all of `/registry/` feeds every API watch.
//! Each change is decoded once and its JSON encoded once, then shared by all
//! watchers (kube-apiserver's cacher). A ring of recent changes lets watches resume
//! from a recent resourceVersion without touching the store; older resumes fall
//! back to a store watch of their own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use store::{EventKind, Revision, Store};
use tokio::sync::{broadcast, watch};

/// Changes kept for resuming watches.
const RING: usize = 10_000;
/// Changes a watcher may fall behind before it is closed (it then resumes).
const BUFFER: usize = 16_384;

/// One change, decoded once.
pub(crate) struct Change {
    pub kind: EventKind,
    pub revision: Revision,
    pub key: String,
    /// The object (as stored, with its resourceVersion).
    pub object: Value,
    /// The stored bytes of the object before this change, if known: decoded only
    /// for watches with selectors (see [`Change::prev`]).
    prev_raw: Option<Bytes>,
    prev: OnceLock<Option<Value>>,
    json: OnceLock<Bytes>,
}

impl Change {
    /// Decodes a store event (None when the stored bytes are not JSON).
    pub(crate) fn decode(ev: store::Event) -> Option<Arc<Self>> {
        let object = crate::storage::decode(&ev.kv).ok()?;
        Some(Arc::new(Change {
            kind: ev.kind,
            revision: ev.kv.mod_revision,
            key: ev.kv.key,
            object,
            prev_raw: ev.prev_value,
            prev: OnceLock::new(),
            json: OnceLock::new(),
        }))
    }

    /// The object before this change, if known, decoded on first use.
    pub(crate) fn prev(&self) -> Option<&Value> {
        self.prev
            .get_or_init(|| {
                self.prev_raw
                    .as_ref()
                    .and_then(|p| serde_json::from_slice::<Value>(p).ok())
            })
            .as_ref()
    }

    /// The object's JSON, encoded on first use and shared afterwards.
    pub(crate) fn json(&self) -> &Bytes {
        self.json
            .get_or_init(|| Bytes::from(serde_json::to_vec(&self.object).unwrap_or_default()))
    }
}

struct Ring {
    changes: VecDeque<Arc<Change>>,
    /// Changes with revision > floor are all in `changes` (or still to come).
    floor: Revision,
    sender: broadcast::Sender<Arc<Change>>,
}

/// Shared by the API server; see the module docs.
pub(crate) struct WatchCache {
    ring: Mutex<Ring>,
}

/// What a watcher gets when it joins: the buffered changes after its revision, then
/// live ones.
pub(crate) struct Subscription {
    pub backlog: Vec<Arc<Change>>,
    pub live: broadcast::Receiver<Arc<Change>>,
}

impl WatchCache {
    /// Starts following the store from `from`.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        from: Revision,
        mut shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let (sender, _) = broadcast::channel(BUFFER);
        let cache = Arc::new(Self {
            ring: Mutex::new(Ring {
                changes: VecDeque::new(),
                floor: from,
                sender,
            }),
        });
        let c = cache.clone();
        tokio::spawn(async move {
            let mut last = from;
            loop {
                let stream = match store.watch("/registry/", last).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "watch cache cannot watch the store; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                            _ = shutdown.changed() => return,
                        }
                    }
                };
                let mut stream = stream;
                loop {
                    let next = tokio::select! {
                        n = stream.next() => n,
                        _ = shutdown.changed() => return,
                    };
                    match next {
                        Some(Ok(ev)) => {
                            last = ev.kv.mod_revision;
                            c.publish(ev);
                        }
                        Some(Err(store::StoreError::Compacted { .. })) => {
                            // History we had not seen is gone: start afresh, ending
                            // every watcher so they resume (or relist) correctly.
                            match store.current_revision().await {
                                Ok(r) => {
                                    last = r;
                                    c.reset(r);
                                }
                                Err(_) => break,
                            }
                            break;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "watch cache stream failed; resuming");
                            break;
                        }
                        None => break,
                    }
                }
            }
        });
        cache
    }

    fn publish(&self, ev: store::Event) {
        let Some(change) = Change::decode(ev) else {
            return;
        };
        let mut ring = self.ring.lock().expect("watch cache lock");
        if ring.changes.len() == RING
            && let Some(old) = ring.changes.pop_front()
        {
            ring.floor = old.revision;
        }
        ring.changes.push_back(change.clone());
        let _ = ring.sender.send(change);
    }

    fn reset(&self, revision: Revision) {
        let mut ring = self.ring.lock().expect("watch cache lock");
        ring.changes.clear();
        ring.floor = revision;
        // Dropping the old sender closes every live subscription.
        ring.sender = broadcast::channel(BUFFER).0;
    }

    /// Joins at `after` (changes with revision > after), or `None` when the cache no
    /// longer holds that far back.
    pub(crate) fn subscribe(&self, after: Revision) -> Option<Subscription> {
        let ring = self.ring.lock().expect("watch cache lock");
        if after < ring.floor {
            return None;
        }
        let live = ring.sender.subscribe();
        let backlog = ring
            .changes
            .iter()
            .filter(|c| c.revision > after)
            .cloned()
            .collect();
        Some(Subscription { backlog, live })
    }
}
