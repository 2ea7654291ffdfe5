//! The one thread that writes, with group commit.
//!
//! Callers queue requests on a channel. The writer takes every request waiting there
//! (up to `max_batch`), applies them one after another in ONE transaction — each is
//! checked on its own, so a failed compare-and-swap only fails itself — and commits
//! once: one fsync for the whole group. Then it publishes the group's events to
//! watchers, in revision order, and answers each caller.
//!
//! Compaction also runs here, in chunks of revisions, each its own transaction, with
//! the writes that queued up in between committed between the chunks.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::Shared;
use super::schema::{self, META_COMPACT_DONE, META_COMPACTED};
use crate::feed::Batch;
use crate::{Event, EventKind, KeyValue, Revision, StoreError};

/// How many revisions one compaction transaction covers.
const COMPACT_CHUNK: Revision = 10_000;

/// A write a caller asks for.
#[derive(Debug)]
pub(crate) enum Write {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

/// What the writer thread receives.
pub(crate) enum Request {
    Write {
        write: Write,
        reply: oneshot::Sender<Result<KeyValue, StoreError>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

type WriteReply = oneshot::Sender<Result<KeyValue, StoreError>>;
type CompactReply = oneshot::Sender<Result<(), StoreError>>;

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) requests: mpsc::UnboundedReceiver<Request>,
    pub(crate) live: broadcast::Sender<Batch>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) max_batch: usize,
    /// The newest committed revision.
    pub(crate) revision: Revision,
    /// Held until the thread ends: no other store may write the file meanwhile.
    pub(crate) _lock: File,
}

/// The newest row of a key.
struct Latest {
    id: Revision,
    value: Bytes,
    create_revision: Revision,
    deleted: bool,
}

impl Latest {
    fn key_value(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.id,
        }
    }
}

fn sqlite_error(context: &str, source: &Arc<rusqlite::Error>) -> StoreError {
    StoreError::Sqlite {
        context: context.to_string(),
        source: source.clone(),
    }
}

impl Writer {
    /// Serves requests until every sender is gone.
    pub(crate) fn run(mut self) {
        tracing::debug!(revision = self.revision, "sqlite writer started");
        let mut deferred = Vec::new();
        if let Err(error) = self.finish_compaction(&mut deferred) {
            tracing::warn!(%error, "could not finish an interrupted compaction; will retry");
        }
        loop {
            let Some(first) = self.requests.blocking_recv() else {
                break;
            };
            let mut writes = Vec::new();
            self.sort(first, &mut writes, &mut deferred);
            self.drain(&mut writes, &mut deferred);
            self.commit(writes);
            for (revision, reply) in std::mem::take(&mut deferred) {
                let result = self.compact(revision);
                let _ = reply.send(result);
            }
        }
        tracing::debug!(revision = self.revision, "sqlite writer stopped");
    }

    fn sort(
        &self,
        request: Request,
        writes: &mut Vec<(Write, WriteReply)>,
        compactions: &mut Vec<(Revision, CompactReply)>,
    ) {
        match request {
            Request::Write { write, reply } => writes.push((write, reply)),
            Request::Compact { revision, reply } => compactions.push((revision, reply)),
        }
    }

    /// Takes what is waiting in the channel, up to a full batch of writes.
    fn drain(
        &mut self,
        writes: &mut Vec<(Write, WriteReply)>,
        compactions: &mut Vec<(Revision, CompactReply)>,
    ) {
        while writes.len() < self.max_batch {
            match self.requests.try_recv() {
                Ok(request) => self.sort(request, writes, compactions),
                Err(_) => break,
            }
        }
    }

    /// Applies a group of writes in one transaction and answers every caller.
    fn commit(&mut self, writes: Vec<(Write, WriteReply)>) {
        if writes.is_empty() {
            return;
        }
        let started = Instant::now();
        let base = self.revision;
        let count = writes.len();
        let (outcomes, events) = match self.apply(&writes) {
            Ok(applied) => applied,
            Err(source) => {
                self.revision = base;
                let source = Arc::new(source);
                tracing::error!(error = %source, writes = count, "sqlite group commit failed");
                for (_, reply) in writes {
                    let _ = reply.send(Err(sqlite_error("group commit failed", &source)));
                }
                return;
            }
        };
        self.shared
            .writes
            .fetch_add(count as u64, Ordering::Relaxed);
        if !events.is_empty() {
            self.shared.commits.fetch_add(1, Ordering::Relaxed);
            self.shared.revision.store(self.revision, Ordering::Release);
            // No receivers is fine.
            let _ = self.live.send(Arc::from(events));
        }
        tracing::debug!(
            writes = count,
            first = base + 1,
            last = self.revision,
            elapsed_us = started.elapsed().as_micros() as u64,
            "sqlite group commit"
        );
        for ((_, reply), outcome) in writes.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }

    /// Runs the writes in one transaction; an `Err` means nothing was committed.
    #[allow(clippy::type_complexity)]
    fn apply(
        &mut self,
        writes: &[(Write, WriteReply)],
    ) -> rusqlite::Result<(Vec<Result<KeyValue, StoreError>>, Vec<Event>)> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut events = Vec::new();
        let mut revision = self.revision;
        for (write, _) in writes {
            match apply_one(&tx, write, revision + 1)? {
                Ok(event) => {
                    revision += 1;
                    outcomes.push(Ok(event.kv.clone()));
                    events.push(event);
                }
                Err(error) => outcomes.push(Err(error)),
            }
        }
        if events.is_empty() {
            // Nothing to make durable: every write failed its check.
            tx.rollback()?;
        } else {
            tx.commit()?;
        }
        self.revision = revision;
        Ok((outcomes, events))
    }

    /// Compacts below `revision`: records the compacted revision first (reads at older
    /// revisions fail from then on), then removes rows in chunks.
    fn compact(&mut self, revision: Revision) -> Result<(), StoreError> {
        if revision > self.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        let compacted = schema::meta(&self.conn, META_COMPACTED)
            .map_err(|source| StoreError::sqlite("cannot read the compacted revision", source))?;
        if revision > compacted {
            schema::set_meta(&self.conn, META_COMPACTED, revision).map_err(|source| {
                StoreError::sqlite("cannot record the compacted revision", source)
            })?;
            self.shared.compacted.store(revision, Ordering::Release);
            tracing::debug!(revision, "sqlite compaction started");
        }
        // Also when nothing new was asked for: finishes a compaction that failed midway.
        let mut deferred = Vec::new();
        let result = self.finish_compaction(&mut deferred);
        // Compactions that queued up meanwhile are at or below this one, or run next.
        for (later, reply) in deferred {
            let _ = reply.send(self.compact(later));
        }
        result
    }

    /// Removes the rows that compaction made useless, from where the last compaction
    /// stopped up to the compacted revision, committing queued writes between chunks.
    fn finish_compaction(
        &mut self,
        deferred: &mut Vec<(Revision, CompactReply)>,
    ) -> Result<(), StoreError> {
        let read = |conn: &Connection, name| {
            schema::meta(conn, name)
                .map_err(|source| StoreError::sqlite("cannot read compaction progress", source))
        };
        let target = read(&self.conn, META_COMPACTED)?;
        let mut done = read(&self.conn, META_COMPACT_DONE)?;
        let started = Instant::now();
        let mut removed = 0;
        while done < target {
            let upto = (done + COMPACT_CHUNK).min(target);
            removed += compact_chunk(&mut self.conn, done, upto, target)
                .map_err(|source| StoreError::sqlite("cannot compact", source))?;
            done = upto;
            // Let writes that queued up meanwhile through before the next chunk.
            let mut writes = Vec::new();
            self.drain(&mut writes, deferred);
            self.commit(writes);
        }
        if removed > 0 {
            tracing::debug!(
                revision = target,
                removed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "sqlite compaction finished"
            );
        }
        Ok(())
    }
}

/// One compaction step over rows `(from, upto]`: deletes the rows they replaced and the
/// deletion records among `[from, upto)` below `target`, and records progress.
fn compact_chunk(
    conn: &mut Connection,
    from: Revision,
    upto: Revision,
    target: Revision,
) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut removed = tx
        .prepare_cached(
            "DELETE FROM log WHERE id IN
               (SELECT prev_revision FROM log WHERE id > ?1 AND id <= ?2 AND prev_revision > 0)",
        )?
        .execute((from, upto))?;
    removed += tx
        .prepare_cached("DELETE FROM log WHERE id >= ?1 AND id < ?2 AND id < ?3 AND deleted = 1")?
        .execute((from, upto, target))?;
    schema::set_meta(&tx, META_COMPACT_DONE, upto)?;
    tx.commit()?;
    Ok(removed)
}

/// Checks and applies one write at revision `next` inside the group's transaction.
/// The outer error is SQLite failing (the group fails); the inner one is the write's
/// own precondition failing (only it fails).
fn apply_one(
    conn: &Connection,
    write: &Write,
    next: Revision,
) -> rusqlite::Result<Result<Event, StoreError>> {
    let key = match write {
        Write::Create { key, .. } | Write::Update { key, .. } | Write::Delete { key, .. } => {
            key.as_str()
        }
    };
    let latest = latest(conn, key)?;
    // Every row points at the key's previous row (a deletion too), so compaction can
    // drop that row once this one is at or below the compacted revision.
    let prev = latest.as_ref().map_or(0, |latest| latest.id);
    let live = latest.filter(|latest| !latest.deleted);
    let event = match write {
        Write::Create { value, .. } => {
            if live.is_some() {
                return Ok(Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                }));
            }
            insert(conn, next, key, value, next, prev, false)?;
            Event {
                kind: EventKind::Created,
                kv: KeyValue {
                    key: key.to_string(),
                    value: value.clone(),
                    create_revision: next,
                    mod_revision: next,
                },
                prev_value: None,
            }
        }
        Write::Update {
            value, expected, ..
        } => {
            let Some(current) = live else {
                return Ok(Err(StoreError::NotFound {
                    key: key.to_string(),
                }));
            };
            if current.id != *expected {
                return Ok(Err(StoreError::Conflict {
                    key: key.to_string(),
                    current: Some(current.key_value(key)),
                }));
            }
            insert(conn, next, key, value, current.create_revision, prev, false)?;
            Event {
                kind: EventKind::Updated,
                kv: KeyValue {
                    key: key.to_string(),
                    value: value.clone(),
                    create_revision: current.create_revision,
                    mod_revision: next,
                },
                prev_value: Some(current.value),
            }
        }
        Write::Delete { expected, .. } => {
            let Some(current) = live else {
                return Ok(Err(StoreError::NotFound {
                    key: key.to_string(),
                }));
            };
            if expected.is_some_and(|expected| expected != current.id) {
                return Ok(Err(StoreError::Conflict {
                    key: key.to_string(),
                    current: Some(current.key_value(key)),
                }));
            }
            insert(
                conn,
                next,
                key,
                &current.value,
                current.create_revision,
                prev,
                true,
            )?;
            Event {
                kind: EventKind::Deleted,
                kv: KeyValue {
                    key: key.to_string(),
                    value: current.value.clone(),
                    create_revision: current.create_revision,
                    mod_revision: next,
                },
                prev_value: Some(current.value),
            }
        }
    };
    Ok(Ok(event))
}

fn latest(conn: &Connection, key: &str) -> rusqlite::Result<Option<Latest>> {
    conn.prepare_cached(
        "SELECT id, value, create_revision, deleted FROM log
         WHERE key = ?1 ORDER BY id DESC LIMIT 1",
    )?
    .query_row([key.as_bytes()], |row| {
        Ok(Latest {
            id: row.get(0)?,
            value: Bytes::from(row.get::<_, Vec<u8>>(1)?),
            create_revision: row.get(2)?,
            deleted: row.get(3)?,
        })
    })
    .optional()
}

fn insert(
    conn: &Connection,
    id: Revision,
    key: &str,
    value: &Bytes,
    create_revision: Revision,
    prev_revision: Revision,
    deleted: bool,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO log (id, key, value, create_revision, prev_revision, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute((
        id,
        key.as_bytes(),
        value.as_ref(),
        create_revision,
        prev_revision,
        deleted,
    ))?;
    Ok(())
}
