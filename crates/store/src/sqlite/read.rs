//! Reads: a small pool of read connections used off the async runtime, and the queries.
//!
//! WAL lets readers run next to the writer. Every read that needs more than one
//! statement runs in one read transaction, so it sees one snapshot of the file.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use tokio::sync::Semaphore;

use super::schema::{self, META_COMPACTED};
use crate::keys::{list_start, prefix_end};
use crate::{Event, EventKind, KeyValue, ListOptions, ListResult, Revision, StoreError};

/// Read connections, lent out one per blocking task.
pub(crate) struct Pool {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    pub(crate) fn open(
        path: &Path,
        size: usize,
        busy_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let size = size.max(1);
        let idle = (0..size)
            .map(|_| schema::open_reader(path, busy_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pool {
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(size)),
        })
    }

    /// Runs `read` on a pooled connection in a blocking task.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool.take().ok_or_else(|| StoreError::Unavailable {
                reason: "no idle read connection".to_string(),
            })?;
            let lent = Lent {
                pool: &pool,
                conn: Some(conn),
            };
            lent.conn.as_ref().map_or_else(
                || {
                    Err(StoreError::Unavailable {
                        reason: "lost a read connection".to_string(),
                    })
                },
                read,
            )
        })
        .await
        .map_err(|error| StoreError::Unavailable {
            reason: format!("sqlite read task failed: {error}"),
        })?
    }

    fn take(&self) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
    }
}

/// Gives the connection back to the pool, also when the read panics.
struct Lent<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(conn);
        }
    }
}

fn sqlite(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::sqlite(context, source)
}

/// Runs `read` in one read transaction (one snapshot).
fn snapshot<T>(
    conn: &Connection,
    read: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Deferred)
        .map_err(sqlite("cannot begin a read transaction"))?;
    // Dropping `tx` rolls the (read-only) transaction back.
    read(&tx)
}

fn key_string(key: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(key).map_err(|error| StoreError::Corrupt {
        key: String::from_utf8_lossy(error.as_bytes()).into_owned(),
        reason: "key is not UTF-8".to_string(),
    })
}

/// Reads one key's newest row.
pub(crate) fn get(conn: &Connection, key: &str) -> Result<Option<KeyValue>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT id, value, create_revision, deleted FROM log
             WHERE key = ?1 ORDER BY id DESC LIMIT 1",
        )
        .and_then(|mut statement| {
            statement
                .query_row([key.as_bytes()], |row| {
                    Ok((
                        row.get::<_, Revision>(0)?,
                        row.get::<_, Vec<u8>>(1)?,
                        row.get::<_, Revision>(2)?,
                        row.get::<_, bool>(3)?,
                    ))
                })
                .optional()
        })
        .map_err(sqlite("cannot read a key"))?;
    Ok(row
        .filter(|(_, _, _, deleted)| !deleted)
        .map(|(id, value, create_revision, _)| KeyValue {
            key: key.to_string(),
            value: Bytes::from(value),
            create_revision,
            mod_revision: id,
        }))
}

/// Visits, in key order, the id of each key's newest row at or below `revision` in
/// `[start, end)`, skipping keys deleted at that revision, until `visit` breaks.
fn scan_live(
    conn: &Connection,
    start: &[u8],
    end: Option<&[u8]>,
    revision: Revision,
    mut visit: impl FnMut(Vec<u8>, Revision) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    let sql = if end.is_some() {
        "SELECT key, id, deleted FROM log WHERE key >= ?1 AND key < ?3 AND id <= ?2
         ORDER BY key, id"
    } else {
        "SELECT key, id, deleted FROM log WHERE key >= ?1 AND id <= ?2 ORDER BY key, id"
    };
    let mut statement = conn
        .prepare_cached(sql)
        .map_err(sqlite("cannot prepare a list"))?;
    let mut rows = match end {
        Some(end) => statement.query((start, revision, end)),
        None => statement.query((start, revision)),
    }
    .map_err(sqlite("cannot list"))?;
    // The newest row seen so far of the key being scanned.
    let mut pending: Option<(Vec<u8>, Revision, bool)> = None;
    while let Some(row) = rows.next().map_err(sqlite("cannot list"))? {
        let key: Vec<u8> = row.get(0).map_err(sqlite("cannot list"))?;
        let id: Revision = row.get(1).map_err(sqlite("cannot list"))?;
        let deleted: bool = row.get(2).map_err(sqlite("cannot list"))?;
        match &mut pending {
            Some((current, newest, gone)) if *current == key => {
                *newest = id;
                *gone = deleted;
            }
            _ => {
                if let Some((done, newest, false)) = pending.replace((key, id, deleted))
                    && visit(done, newest).is_break()
                {
                    return Ok(());
                }
            }
        }
    }
    if let Some((done, newest, false)) = pending {
        let _ = visit(done, newest);
    }
    Ok(())
}

/// Checks that `requested` can be read: not compacted, not in the future.
fn check_revision(conn: &Connection, requested: Revision) -> Result<Revision, StoreError> {
    let current = schema::current_revision(conn).map_err(sqlite("cannot read the revision"))?;
    let compacted =
        schema::meta(conn, META_COMPACTED).map_err(sqlite("cannot read the compacted revision"))?;
    if requested < compacted {
        return Err(StoreError::Compacted {
            requested,
            compacted,
        });
    }
    if requested > current {
        return Err(StoreError::FutureRevision { requested, current });
    }
    Ok(current)
}

/// Lists keys at the current or a past revision.
pub(crate) fn list(conn: &Connection, opts: &ListOptions) -> Result<ListResult, StoreError> {
    snapshot(conn, |conn| {
        let revision = match opts.revision {
            Some(requested) => {
                check_revision(conn, requested)?;
                requested
            }
            None => schema::current_revision(conn).map_err(sqlite("cannot read the revision"))?,
        };
        let start = list_start(&opts.prefix, opts.start_after.as_deref());
        let end = prefix_end(opts.prefix.as_bytes());
        let limit = if opts.limit == 0 {
            usize::MAX
        } else {
            opts.limit
        };
        let mut found = Vec::new();
        let mut more = false;
        scan_live(conn, &start, end.as_deref(), revision, |key, id| {
            if found.len() == limit {
                more = true;
                return ControlFlow::Break(());
            }
            found.push((key, id));
            ControlFlow::Continue(())
        })?;
        let mut values = conn
            .prepare_cached("SELECT value, create_revision FROM log WHERE id = ?1")
            .map_err(sqlite("cannot prepare a value read"))?;
        let mut items = Vec::with_capacity(found.len());
        for (key, id) in found {
            let (value, create_revision) = values
                .query_row([id], |row| {
                    Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Revision>(1)?))
                })
                .map_err(sqlite("cannot read a value"))?;
            items.push(KeyValue {
                key: key_string(key)?,
                value: Bytes::from(value),
                create_revision,
                mod_revision: id,
            });
        }
        Ok(ListResult {
            items,
            revision,
            more,
        })
    })
}

/// Counts the live keys under a prefix.
pub(crate) fn count(conn: &Connection, prefix: &str) -> Result<usize, StoreError> {
    let end = prefix_end(prefix.as_bytes());
    let mut count = 0;
    scan_live(
        conn,
        prefix.as_bytes(),
        end.as_deref(),
        Revision::MAX,
        |_, _| {
            count += 1;
            ControlFlow::Continue(())
        },
    )?;
    Ok(count)
}

/// Up to `limit` events after `after` for keys under `prefix`, in revision order.
pub(crate) fn replay(
    conn: &Connection,
    prefix: &str,
    after: Revision,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    snapshot(conn, |conn| {
        let compacted = schema::meta(conn, META_COMPACTED)
            .map_err(sqlite("cannot read the compacted revision"))?;
        if after.saturating_add(1) < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let end = prefix_end(prefix.as_bytes());
        // NOT INDEXED: walk the rowid (revision) order from `after`; a watch usually
        // starts near the newest revision, where the key index would be the slow path.
        let sql = if end.is_some() {
            "SELECT id, key, value, create_revision, prev_revision, deleted FROM log NOT INDEXED
             WHERE id > ?1 AND key >= ?2 AND key < ?4 ORDER BY id LIMIT ?3"
        } else {
            "SELECT id, key, value, create_revision, prev_revision, deleted FROM log NOT INDEXED
             WHERE id > ?1 AND key >= ?2 ORDER BY id LIMIT ?3"
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut statement = conn
            .prepare_cached(sql)
            .map_err(sqlite("cannot prepare a replay"))?;
        let mut rows = match &end {
            Some(end) => statement.query((after, prefix.as_bytes(), limit, end.as_slice())),
            None => statement.query((after, prefix.as_bytes(), limit)),
        }
        .map_err(sqlite("cannot replay"))?;
        let mut prev_values = conn
            .prepare_cached("SELECT value FROM log WHERE id = ?1")
            .map_err(sqlite("cannot prepare a value read"))?;
        let mut events = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite("cannot replay"))? {
            let read = |row: &rusqlite::Row<'_>| -> rusqlite::Result<_> {
                Ok((
                    row.get::<_, Revision>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, Revision>(3)?,
                    row.get::<_, Revision>(4)?,
                    row.get::<_, bool>(5)?,
                ))
            };
            let (id, key, value, create_revision, prev_revision, deleted) =
                read(row).map_err(sqlite("cannot replay"))?;
            let value = Bytes::from(value);
            let (kind, prev_value) = if deleted {
                (EventKind::Deleted, Some(value.clone()))
            } else if create_revision == id {
                (EventKind::Created, None)
            } else {
                let prev = prev_values
                    .query_row([prev_revision], |row| row.get::<_, Vec<u8>>(0))
                    .optional()
                    .map_err(sqlite("cannot read a previous value"))?;
                (EventKind::Updated, prev.map(Bytes::from))
            };
            events.push(Event {
                kind,
                kv: KeyValue {
                    key: key_string(key)?,
                    value,
                    create_revision,
                    mod_revision: id,
                },
                prev_value,
            });
        }
        Ok(events)
    })
}
