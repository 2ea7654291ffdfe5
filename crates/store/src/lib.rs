//! Revisioned key/value storage for Skiff's API server.
//!
//! The store owns bytes, not kinds: keys are `/registry/...` paths and values are
//! opaque. Every successful write bumps one global revision counter; each key
//! remembers the revision that created it (`create_revision`) and last changed it
//! (`mod_revision`). Updates and deletes are compare-and-swap on `mod_revision`,
//! lists can be served at a past revision, and watches replay history from any
//! revision that has not been compacted.
//!
//! Backends: [`MemoryStore`] (tests), [`SqliteStore`] (default, durable, group
//! commit) and [`EtcdStore`] (a real etcd v3 cluster).

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

mod error;
pub use error::StoreError;

mod etcd;
mod feed;
mod keys;
mod memory;
mod sqlite;
pub use etcd::{EtcdConfig, EtcdStore};
pub use memory::MemoryStore;
pub use sqlite::{SqliteConfig, SqliteStats, SqliteStore};

/// A global revision number. Revisions start at 1 and only grow.
pub type Revision = i64;

/// One key and its current value with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key.
    pub key: String,
    /// The stored bytes.
    pub value: Bytes,
    /// The revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// The revision of the write that last changed this key.
    pub mod_revision: Revision,
}

/// The answer to a list: the items in key order and the revision they were read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// Matching keys in ascending key order, at most `limit` of them.
    pub items: Vec<KeyValue>,
    /// The revision the list was served at (the store's current revision when none was asked for).
    pub revision: Revision,
    /// True when more keys matched than `limit` allowed.
    pub more: bool,
}

/// What a list asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Return keys starting with this prefix.
    pub prefix: String,
    /// Return only keys strictly greater than this one (for pagination).
    pub start_after: Option<String>,
    /// At most this many items; 0 means no limit.
    pub limit: usize,
    /// Read the state as of this revision; `None` means the current state.
    pub revision: Option<Revision>,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key did not exist before this revision.
    Created,
    /// The key existed and was changed.
    Updated,
    /// The key was deleted.
    Deleted,
}

/// One change, as seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// For Created/Updated the new state; for Deleted the key with `mod_revision` = the
    /// deletion revision and `value` = the last value before deletion.
    pub kv: KeyValue,
    /// The value before this change (for Updated and Deleted), if the backend knows it.
    pub prev_value: Option<Bytes>,
}

/// Items a watch yields: events in revision order, or an error that ends the watch.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;

/// A revisioned key/value store. All implementations pass `store::conformance`.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current (latest committed) revision.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// Reads one key at the current revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Lists keys by prefix, optionally at a past revision, in key order.
    /// A revision older than the compacted one fails with [`StoreError::Compacted`];
    /// one newer than the current revision fails with [`StoreError::FutureRevision`].
    async fn list(&self, opts: &ListOptions) -> Result<ListResult, StoreError>;

    /// Counts keys with a prefix at the current revision.
    async fn count(&self, prefix: &str) -> Result<usize, StoreError>;

    /// Creates a key that must not exist. Returns the new key-value.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError>;

    /// Replaces the value of a key whose `mod_revision` equals `expected`.
    /// Fails with [`StoreError::NotFound`] or [`StoreError::Conflict`] (carrying the current state).
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue, StoreError>;

    /// Deletes a key whose `mod_revision` equals `expected` (any revision when `None`).
    /// Returns the deleted key-value with `mod_revision` set to the deletion revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError>;

    /// Watches keys under `prefix` for changes after revision `after` (events with
    /// revision > `after`), first replaying history, then live, in revision order with
    /// no gaps or duplicates. When events after `after` have been compacted away
    /// (`after + 1 < compacted_revision()`), the first item is [`StoreError::Compacted`].
    /// An error ends the stream; the caller starts a new watch (after the last revision
    /// it saw) or relists.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// Forgets history before `revision`: superseded values and deletion records with
    /// a revision below it (the latest value of a live key always stays). Lists at older
    /// revisions and watches from them then fail with [`StoreError::Compacted`].
    /// Compacting at or below the compacted revision does nothing; above the current
    /// revision fails with [`StoreError::FutureRevision`].
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The oldest revision that can still be listed, and the first revision a watch can
    /// still replay (`watch(prefix, compacted_revision() - 1)` works). Before any
    /// compaction: 0 for the memory and SQLite stores, 1 for etcd.
    async fn compacted_revision(&self) -> Result<Revision, StoreError>;
}

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
