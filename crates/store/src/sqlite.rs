//! The default store: one SQLite file (WAL, `synchronous=FULL`), laid out like kine.
//!
//! - Writes go through one writer thread with group commit (see `writer`): many
//!   concurrent writes share one transaction and one fsync, and an acknowledged write
//!   is on disk.
//! - Reads use a small pool of read connections in blocking tasks (see `read`).
//! - Watches replay the log table, then follow the writer's broadcast (see
//!   `crate::feed`).
//! - Reopening the file continues the revision counter.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::feed::{self, Batch, History};
use crate::{Event, KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchStream};

mod read;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

/// Where and how to open a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// The database file; its directory is created when missing. A lock file next to it
    /// (`<path>.lock`) keeps a second store from opening the same file.
    pub path: PathBuf,
    /// How many read connections serve get/list/count/watch replays at once.
    pub read_connections: usize,
    /// How many commits a live watcher may fall behind before it re-reads the log table.
    pub watch_buffer: usize,
    /// The most writes one group commit takes.
    pub max_batch: usize,
    /// How long a connection waits for a lock held by another connection.
    pub busy_timeout: Duration,
}

impl Default for SqliteConfig {
    /// `state.db` in the working directory (callers normally set `path`), 4 readers.
    fn default() -> Self {
        SqliteConfig {
            path: PathBuf::from("state.db"),
            read_connections: 4,
            watch_buffer: 1024,
            max_batch: 1024,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl SqliteConfig {
    /// The defaults with the given database file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            ..SqliteConfig::default()
        }
    }
}

/// Counters of the writer, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteStats {
    /// Write requests handled (successful or failing their precondition).
    pub writes: u64,
    /// Transactions committed for them (group commit makes this much smaller than
    /// `writes` under concurrency).
    pub commits: u64,
}

/// State shared by the store, its writer thread and its watchers.
pub(crate) struct Shared {
    reads: Arc<read::Pool>,
    revision: AtomicI64,
    compacted: AtomicI64,
    writes: AtomicU64,
    commits: AtomicU64,
}

/// A [`Store`] in one SQLite file. See the module documentation.
pub struct SqliteStore {
    path: PathBuf,
    requests: mpsc::UnboundedSender<writer::Request>,
    live: broadcast::Sender<Batch>,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl SqliteStore {
    /// Opens (or creates) the database and starts its writer thread.
    pub async fn open(config: SqliteConfig) -> Result<SqliteStore, StoreError> {
        let (live, _) = broadcast::channel(config.watch_buffer.max(1));
        let (requests, receiver) = mpsc::unbounded_channel();
        let path = config.path.clone();
        let writer_live = live.clone();
        let (writer, shared) = tokio::task::spawn_blocking(move || {
            let lock = schema::lock(&config.path)?;
            let conn = schema::open_writer(&config.path, config.busy_timeout)?;
            let revision = schema::current_revision(&conn)
                .map_err(|source| StoreError::sqlite("cannot read the revision", source))?;
            let compacted = schema::meta(&conn, schema::META_COMPACTED)
                .map_err(|source| StoreError::sqlite("cannot read the compacted revision", source))?;
            let reads = read::Pool::open(&config.path, config.read_connections, config.busy_timeout)?;
            let shared = Arc::new(Shared {
                reads: Arc::new(reads),
                revision: AtomicI64::new(revision),
                compacted: AtomicI64::new(compacted),
                writes: AtomicU64::new(0),
                commits: AtomicU64::new(0),
            });
            tracing::debug!(path = %config.path.display(), revision, compacted, "sqlite store opened");
            let writer = writer::Writer {
                conn,
                requests: receiver,
                live: writer_live,
                shared: shared.clone(),
                max_batch: config.max_batch.max(1),
                revision,
                _lock: lock,
            };
            Ok::<_, StoreError>((writer, shared))
        })
        .await
        .map_err(|error| StoreError::Unavailable {
            reason: format!("opening the database failed: {error}"),
        })??;
        let handle = std::thread::Builder::new()
            .name("store-sqlite-writer".to_string())
            .spawn(move || writer.run())
            .map_err(|source| StoreError::Io {
                context: "cannot start the writer thread for".to_string(),
                path: path.clone(),
                source,
            })?;
        Ok(SqliteStore {
            path,
            requests,
            live,
            shared,
            writer: Some(handle),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer's counters since this store was opened.
    pub fn stats(&self) -> SqliteStats {
        SqliteStats {
            writes: self.shared.writes.load(Ordering::Relaxed),
            commits: self.shared.commits.load(Ordering::Relaxed),
        }
    }

    /// Finishes the queued writes, stops the writer and releases the file. (Dropping the
    /// store does the same in the background.) Watches end with [`StoreError::Closed`].
    pub async fn close(mut self) {
        let writer = self.writer.take();
        drop(self);
        if let Some(writer) = writer {
            let joined = tokio::task::spawn_blocking(move || writer.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::warn!("sqlite writer thread ended abnormally");
            }
        }
    }

    async fn send(&self, write: writer::Write) -> Result<KeyValue, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(writer::Request::Write { write, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

struct SqliteHistory(Arc<Shared>);

#[async_trait::async_trait]
impl History for SqliteHistory {
    async fn replay(
        &self,
        prefix: &str,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let prefix = prefix.to_string();
        self.0
            .reads
            .run(move |conn| read::replay(conn, &prefix, after, limit))
            .await
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_string();
        self.shared
            .reads
            .run(move |conn| read::get(conn, &key))
            .await
    }

    async fn list(&self, opts: &ListOptions) -> Result<ListResult, StoreError> {
        let opts = opts.clone();
        self.shared
            .reads
            .run(move |conn| read::list(conn, &opts))
            .await
    }

    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let prefix = prefix.to_string();
        self.shared
            .reads
            .run(move |conn| read::count(conn, &prefix))
            .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        self.send(writer::Write::Create {
            key: key.to_string(),
            value,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        self.send(writer::Write::Update {
            key: key.to_string(),
            value,
            expected,
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.send(writer::Write::Delete {
            key: key.to_string(),
            expected,
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let live = self.live.subscribe();
        let history = Arc::new(SqliteHistory(self.shared.clone()));
        Ok(feed::watch(history, live, prefix.to_string(), after))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(writer::Request::Compact { revision, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }
}
