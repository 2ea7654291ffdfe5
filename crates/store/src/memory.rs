//! An in-memory store with full history: the reference implementation and the store
//! for tests. Nothing survives the process.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::feed::{self, Batch, History};
use crate::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchStream,
};

/// How many commits a live watcher may fall behind before it re-reads history.
const DEFAULT_WATCH_BUFFER: usize = 1024;

/// An in-memory [`Store`]: a `BTreeMap` of key histories plus an event log, with
/// broadcast fan-out to watchers and compaction. Cheap to create; use one per test.
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    live: broadcast::Sender<Batch>,
}

/// One version of a key.
#[derive(Debug, Clone)]
struct Version {
    revision: Revision,
    create_revision: Revision,
    /// For a deletion, the last value before it.
    value: Bytes,
    deleted: bool,
}

#[derive(Default)]
struct State {
    revision: Revision,
    compacted: Revision,
    /// Every key's versions in revision order (including deletions).
    keys: BTreeMap<String, Vec<Version>>,
    /// Every event by revision.
    log: BTreeMap<Revision, Event>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        Self::with_watch_buffer(DEFAULT_WATCH_BUFFER)
    }

    /// An empty store whose live watchers may fall `commits` commits behind before they
    /// re-read history (small values exercise that path in tests).
    pub fn with_watch_buffer(commits: usize) -> Self {
        let (live, _) = broadcast::channel(commits.max(1));
        MemoryStore {
            state: Arc::new(Mutex::new(State::default())),
            live,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Applies one write under the lock and tells watchers, in revision order.
    fn write(
        &self,
        apply: impl FnOnce(&mut State) -> Result<Event, StoreError>,
    ) -> Result<KeyValue, StoreError> {
        let mut state = self.lock();
        let event = apply(&mut state)?;
        let kv = event.kv.clone();
        tracing::debug!(key = %kv.key, revision = kv.mod_revision, kind = ?event.kind, "memory store write");
        state.log.insert(kv.mod_revision, event.clone());
        // Sent under the lock so watchers see events in revision order. No receivers is fine.
        let _ = self.live.send(Arc::from(vec![event]));
        Ok(kv)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the maps half-updated in a way that
    // breaks invariants we rely on (each write mutates at the end), so keep serving.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    /// The latest version of `key` if it currently exists.
    fn live(&self, key: &str) -> Option<&Version> {
        self.keys
            .get(key)
            .and_then(|versions| versions.last())
            .filter(|version| !version.deleted)
    }

    fn next_revision(&mut self) -> Revision {
        self.revision += 1;
        self.revision
    }

    fn push(&mut self, key: &str, version: Version) {
        self.keys.entry(key.to_string()).or_default().push(version);
    }

    fn check_revision(&self, requested: Revision) -> Result<(), StoreError> {
        if requested < self.compacted {
            return Err(StoreError::Compacted {
                requested,
                compacted: self.compacted,
            });
        }
        if requested > self.revision {
            return Err(StoreError::FutureRevision {
                requested,
                current: self.revision,
            });
        }
        Ok(())
    }
}

fn key_value(key: &str, version: &Version) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: version.value.clone(),
        create_revision: version.create_revision,
        mod_revision: version.revision,
    }
}

/// The version of a key visible at `revision`, if the key existed then.
fn at_revision(versions: &[Version], revision: Revision) -> Option<&Version> {
    let visible = versions.partition_point(|version| version.revision <= revision);
    visible
        .checked_sub(1)
        .map(|index| &versions[index])
        .filter(|version| !version.deleted)
}

struct MemoryHistory(Arc<Mutex<State>>);

#[async_trait::async_trait]
impl History for MemoryHistory {
    async fn replay(
        &self,
        prefix: &str,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let state = lock(&self.0);
        if after.saturating_add(1) < state.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: state.compacted,
            });
        }
        Ok(state
            .log
            .range((Bound::Excluded(after), Bound::Unbounded))
            .map(|(_, event)| event)
            .filter(|event| event.kv.key.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect())
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.lock().revision)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.lock().live(key).map(|version| key_value(key, version)))
    }

    async fn list(&self, opts: &ListOptions) -> Result<ListResult, StoreError> {
        let state = self.lock();
        let revision = match opts.revision {
            Some(requested) => {
                state.check_revision(requested)?;
                requested
            }
            None => state.revision,
        };
        let lower = match &opts.start_after {
            Some(after) if after.as_str() >= opts.prefix.as_str() => {
                Bound::Excluded(after.as_str())
            }
            _ => Bound::Included(opts.prefix.as_str()),
        };
        let limit = if opts.limit == 0 {
            usize::MAX
        } else {
            opts.limit
        };
        let mut items = Vec::new();
        let mut more = false;
        let matching = state
            .keys
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(&opts.prefix));
        for (key, versions) in matching {
            if let Some(version) = at_revision(versions, revision) {
                if items.len() == limit {
                    more = true;
                    break;
                }
                items.push(key_value(key, version));
            }
        }
        Ok(ListResult {
            items,
            revision,
            more,
        })
    }

    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let state = self.lock();
        Ok(state
            .keys
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, versions)| versions.last().is_some_and(|version| !version.deleted))
            .count())
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        self.write(|state| {
            if state.live(key).is_some() {
                return Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            let revision = state.next_revision();
            let version = Version {
                revision,
                create_revision: revision,
                value,
                deleted: false,
            };
            let kv = key_value(key, &version);
            state.push(key, version);
            Ok(Event {
                kind: EventKind::Created,
                kv,
                prev_value: None,
            })
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        self.write(|state| {
            let current = state.live(key).ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })?;
            if current.revision != expected {
                return Err(StoreError::Conflict {
                    key: key.to_string(),
                    current: Some(key_value(key, current)),
                });
            }
            let (create_revision, prev_value) = (current.create_revision, current.value.clone());
            let revision = state.next_revision();
            let version = Version {
                revision,
                create_revision,
                value,
                deleted: false,
            };
            let kv = key_value(key, &version);
            state.push(key, version);
            Ok(Event {
                kind: EventKind::Updated,
                kv,
                prev_value: Some(prev_value),
            })
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.write(|state| {
            let current = state.live(key).ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })?;
            if expected.is_some_and(|expected| expected != current.revision) {
                return Err(StoreError::Conflict {
                    key: key.to_string(),
                    current: Some(key_value(key, current)),
                });
            }
            let (create_revision, value) = (current.create_revision, current.value.clone());
            let revision = state.next_revision();
            let version = Version {
                revision,
                create_revision,
                value: value.clone(),
                deleted: true,
            };
            let kv = key_value(key, &version);
            state.push(key, version);
            Ok(Event {
                kind: EventKind::Deleted,
                kv,
                prev_value: Some(value),
            })
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let live = self.live.subscribe();
        let history = Arc::new(MemoryHistory(self.state.clone()));
        Ok(feed::watch(history, live, prefix.to_string(), after))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut state = self.lock();
        if revision > state.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: state.revision,
            });
        }
        if revision <= state.compacted {
            return Ok(());
        }
        state.compacted = revision;
        state.keys.retain(|_, versions| {
            // Keep everything from `revision` on, and the version visible at `revision`
            // unless it is a deletion.
            let visible = versions.partition_point(|version| version.revision <= revision);
            let first_kept = match visible.checked_sub(1) {
                Some(index) if versions[index].revision == revision => index,
                Some(index) if !versions[index].deleted => index,
                Some(index) => index + 1,
                None => 0,
            };
            versions.drain(..first_kept);
            !versions.is_empty()
        });
        state.log = state.log.split_off(&revision);
        tracing::debug!(revision, "memory store compacted");
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.lock().compacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::conformance::conformance_tests!(((), MemoryStore::new()));

    #[tokio::test]
    async fn a_lagging_watcher_should_catch_up_from_history() {
        let store = MemoryStore::with_watch_buffer(2);
        crate::conformance::lagging_watcher_catches_up_from_history(&store).await;
    }
}
