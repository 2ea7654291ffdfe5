//! Store errors.
//!
//! Variants are named for what failed and carry the key or revision involved, so the
//! API server can answer with the right Kubernetes `Status` (404, 409, 410, 500/503)
//! without another read.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{KeyValue, Revision};

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key does not exist (update, delete).
    #[error("key {key:?} not found")]
    NotFound {
        /// The key that was asked for.
        key: String,
    },

    /// The key already exists (create).
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key that was asked for.
        key: String,
    },

    /// A compare-and-swap failed: the key's `mod_revision` is not the expected one.
    #[error("key {key:?} was modified concurrently (now at revision {})",
        current.as_ref().map_or(0, |kv| kv.mod_revision))]
    Conflict {
        /// The key that was asked for.
        key: String,
        /// The key's current state, so the caller can answer without another read.
        current: Option<KeyValue>,
    },

    /// The requested revision is older than the oldest one kept (HTTP 410 Gone).
    #[error("revision {requested} has been compacted (oldest available revision is {compacted})")]
    Compacted {
        /// The revision asked for (for a watch, its `after`).
        requested: Revision,
        /// The store's compacted revision.
        compacted: Revision,
    },

    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },

    /// The SQLite backend failed.
    #[error("sqlite: {context}")]
    Sqlite {
        /// What the store was doing.
        context: String,
        /// The SQLite error (shared: one failed group commit fails every write in it).
        #[source]
        source: Arc<rusqlite::Error>,
    },

    /// The etcd backend failed.
    #[error("etcd: {context}")]
    Etcd {
        /// What the store was doing.
        context: String,
        /// The client error.
        #[source]
        source: etcd_client::Error,
    },

    /// A file operation failed.
    #[error("{context} {}", path.display())]
    Io {
        /// What the store was doing.
        context: String,
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The backend cannot serve requests right now (a watch fell behind, a stream ended,
    /// a worker died).
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },

    /// Data in the backend is not what this store wrote (for example a key that is not
    /// UTF-8, or a row that is missing).
    #[error("corrupt data at key {key:?}: {reason}")]
    Corrupt {
        /// The key involved (possibly lossily decoded).
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// The store was closed (its writer stopped) while the operation was pending.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    pub(crate) fn sqlite(context: impl Into<String>, source: rusqlite::Error) -> Self {
        StoreError::Sqlite {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn etcd(context: impl Into<String>, source: etcd_client::Error) -> Self {
        StoreError::Etcd {
            context: context.into(),
            source,
        }
    }

    /// True for errors that say nothing about the request itself but about the backend
    /// being unreachable or broken (the API answers 500/503 for these and a retry may work).
    pub fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite { .. }
                | StoreError::Etcd { .. }
                | StoreError::Io { .. }
                | StoreError::Unavailable { .. }
                | StoreError::Closed
        )
    }
}
