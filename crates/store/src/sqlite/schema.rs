//! The database file: its lock, connections, pragmas and tables.
//!
//! One table, `log`, holds every write (kine's layout): the row id is the revision, and
//! a row records the key, the value (for a deletion: the last value before it), the
//! revision that created the key, the revision of the key's previous row and whether
//! the row is a deletion. An index on `(key, id, deleted)` answers "the newest row of
//! each key at or below revision R" by scanning keys in order without touching values.
//! `meta` holds the compacted revision.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::{Revision, StoreError};

/// The layout this code reads and writes.
const SCHEMA_VERSION: i64 = 1;

const CREATE_TABLES: &str = "
CREATE TABLE IF NOT EXISTS log (
    id              INTEGER PRIMARY KEY,
    key             BLOB    NOT NULL,
    value           BLOB    NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER NOT NULL,
    deleted         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_id ON log (key, id, deleted);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// `meta` row: the revision below which history is gone (lists and watches refuse it).
pub(crate) const META_COMPACTED: &str = "compacted";
/// `meta` row: the revision up to which compaction has physically removed rows.
pub(crate) const META_COMPACT_DONE: &str = "compact_done";
const META_SCHEMA_VERSION: &str = "schema_version";

/// Takes the lock file next to the database so that two stores (in this process or
/// another) never write the same file: each keeps its revision counter in memory.
pub(crate) fn lock(path: &Path) -> Result<File, StoreError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            context: "cannot create the database directory".to_string(),
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let lock_path = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| StoreError::Io {
            context: "cannot open the database lock file".to_string(),
            path: lock_path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Io {
            context: "the database is already open in another store; lock file".to_string(),
            path: lock_path,
            source: std::io::ErrorKind::WouldBlock.into(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io {
            context: "cannot lock the database lock file".to_string(),
            path: lock_path,
            source,
        }),
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn sqlite(context: &str, path: &Path) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let context = format!("{context} ({})", path.display());
    move |source| StoreError::sqlite(context, source)
}

/// Opens the connection that writes: WAL, `synchronous=FULL` (a commit is on disk before
/// it is acknowledged), tables created when missing.
pub(crate) fn open_writer(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(sqlite("cannot open the database", path))?;
    conn.busy_timeout(busy_timeout)
        .map_err(sqlite("cannot set busy_timeout", path))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sqlite("cannot switch to WAL mode", path))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable {
            reason: format!(
                "{} cannot use WAL mode (journal_mode is {mode})",
                path.display()
            ),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite("cannot set synchronous=FULL", path))?;
    conn.execute_batch(CREATE_TABLES)
        .map_err(sqlite("cannot create tables", path))?;
    let version = meta(&conn, META_SCHEMA_VERSION).map_err(sqlite("cannot read meta", path))?;
    match version {
        0 => conn
            .execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2)",
                (META_SCHEMA_VERSION, SCHEMA_VERSION),
            )
            .map(drop)
            .map_err(sqlite("cannot write meta", path))?,
        SCHEMA_VERSION => {}
        other => {
            return Err(StoreError::Unavailable {
                reason: format!(
                    "{} has schema version {other}; this build reads version {SCHEMA_VERSION}",
                    path.display()
                ),
            });
        }
    }
    Ok(conn)
}

/// Opens a connection for reads only.
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(sqlite("cannot open a read connection", path))?;
    conn.busy_timeout(busy_timeout)
        .map_err(sqlite("cannot set busy_timeout", path))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(sqlite("cannot set query_only", path))?;
    Ok(conn)
}

/// Reads one `meta` value (0 when absent).
pub(crate) fn meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Writes one `meta` value.
pub(crate) fn set_meta(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute((name, value))?;
    Ok(())
}

/// The newest revision in the file: the newest row (compaction never removes it) or the
/// compacted revision, whichever is higher.
pub(crate) fn current_revision(conn: &Connection) -> rusqlite::Result<Revision> {
    let newest: Revision = conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM log")?
        .query_row([], |row| row.get(0))?;
    Ok(newest.max(meta(conn, META_COMPACTED)?))
}
