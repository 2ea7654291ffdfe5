use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::join_all;
use tempfile::TempDir;

use super::*;
use crate::conformance;

/// A store in a fresh temporary directory (removed when the guard drops).
async fn fresh_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(SqliteConfig::new(dir.path().join("state.db")))
        .await
        .expect("open");
    (dir, store)
}

conformance::conformance_tests!(fresh_store().await);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_watcher_should_catch_up_from_the_log_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(SqliteConfig {
        watch_buffer: 2,
        ..SqliteConfig::new(dir.path().join("state.db"))
    })
    .await
    .expect("open");
    conformance::lagging_watcher_catches_up_from_history(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_should_keep_data_and_continue_the_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/dir/state.db");
    let store = SqliteStore::open(SqliteConfig::new(&path))
        .await
        .expect("open");
    let a = store.create("/r/a", Bytes::from("1")).await.expect("a");
    let a2 = store
        .update("/r/a", Bytes::from("2"), a.mod_revision)
        .await
        .expect("a2");
    let b = store.create("/r/b", Bytes::from("1")).await.expect("b");
    store.delete("/r/b", None).await.expect("delete b");
    let before = store.current_revision().await.expect("revision");
    store.compact(a2.mod_revision).await.expect("compact");
    store.close().await;

    let store = SqliteStore::open(SqliteConfig::new(&path))
        .await
        .expect("reopen");
    assert_eq!(store.current_revision().await.expect("revision"), before);
    assert_eq!(
        store.compacted_revision().await.expect("compacted"),
        a2.mod_revision
    );
    assert_eq!(store.get("/r/a").await.expect("get"), Some(a2.clone()));
    assert_eq!(store.get("/r/b").await.expect("get"), None);
    let past = store
        .list(&ListOptions {
            prefix: "/r/".to_string(),
            revision: Some(b.mod_revision),
            ..ListOptions::default()
        })
        .await
        .expect("list past");
    assert_eq!(past.items.len(), 2);
    let c = store.create("/r/c", Bytes::from("1")).await.expect("c");
    assert_eq!(c.mod_revision, before + 1);
    store.close().await;

    // Reopening an empty-after-compaction-at-the-top file still never goes back.
    let store = SqliteStore::open(SqliteConfig::new(&path))
        .await
        .expect("reopen");
    store.compact(c.mod_revision).await.expect("compact all");
    store.delete("/r/c", None).await.expect("delete c");
    let top = store.current_revision().await.expect("revision");
    store.compact(top).await.expect("compact all");
    store.close().await;
    let store = SqliteStore::open(SqliteConfig::new(&path))
        .await
        .expect("reopen");
    assert_eq!(store.current_revision().await.expect("revision"), top);
    let d = store.create("/r/d", Bytes::from("1")).await.expect("d");
    assert_eq!(d.mod_revision, top + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_on_the_same_file_should_be_refused() {
    let (dir, store) = fresh_store().await;
    let path = dir.path().join("state.db");
    match SqliteStore::open(SqliteConfig::new(&path)).await {
        Err(StoreError::Io { path: locked, .. }) => {
            assert!(locked.to_string_lossy().ends_with("state.db.lock"));
        }
        Err(other) => panic!("expected a lock error, got {other}"),
        Ok(_) => panic!("a second store opened the same file"),
    }
    store.close().await;
    SqliteStore::open(SqliteConfig::new(&path))
        .await
        .expect("open after close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_should_be_in_the_file_without_a_clean_close() {
    let (dir, store) = fresh_store().await;
    let written = store
        .create("/durable/a", Bytes::from("value"))
        .await
        .expect("create");
    // Never closed: its writer thread and connections are simply leaked.
    std::mem::forget(store);
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).expect("open raw");
    let (value, deleted): (Vec<u8>, bool) = conn
        .query_row(
            "SELECT value, deleted FROM log WHERE id = ?1 AND key = ?2",
            (written.mod_revision, b"/durable/a".as_slice()),
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("row present");
    assert_eq!(value, b"value");
    assert!(!deleted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_should_share_commits() {
    let (_dir, store) = fresh_store().await;
    let started = Instant::now();
    for i in 0..32 {
        store
            .create(&format!("/seq/{i}"), Bytes::from("v"))
            .await
            .expect("sequential create");
    }
    let sequential = started.elapsed() / 32;
    let before = store.stats();
    assert_eq!(before.commits, 32, "one commit per sequential write");

    let writers = 64;
    let per_writer = 16;
    let started = Instant::now();
    let store = &store;
    join_all((0..writers).map(|writer| async move {
        for i in 0..per_writer {
            store
                .create(&format!("/group/{writer}/{i}"), Bytes::from("v"))
                .await
                .expect("concurrent create");
        }
    }))
    .await;
    let concurrent = started.elapsed() / (writers * per_writer);
    let stats = store.stats();
    let writes = stats.writes - before.writes;
    let commits = stats.commits - before.commits;
    eprintln!(
        "group commit: {writes} writes in {commits} commits; \
         {sequential:?}/write sequential, {concurrent:?}/write with {writers} writers"
    );
    assert_eq!(writes, u64::from(writers * per_writer));
    assert!(
        commits * 4 <= writes,
        "{commits} commits for {writes} writes: writes are not grouped"
    );
    assert_eq!(store.count("/group/").await.expect("count"), 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_should_remove_superseded_rows_from_the_file() {
    let (dir, store) = fresh_store().await;
    let mut kv = store
        .create("/c/hot", Bytes::from("0"))
        .await
        .expect("create");
    for i in 1..50 {
        kv = store
            .update("/c/hot", Bytes::from(i.to_string()), kv.mod_revision)
            .await
            .expect("update");
    }
    store
        .create("/c/gone", Bytes::from("x"))
        .await
        .expect("create");
    store.delete("/c/gone", None).await.expect("delete");
    let keep = store
        .create("/c/kept", Bytes::from("x"))
        .await
        .expect("create");
    store.compact(keep.mod_revision).await.expect("compact");
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).expect("open raw");
    let rows: Vec<(Vec<u8>, i64)> = conn
        .prepare("SELECT key, id FROM log ORDER BY id")
        .expect("prepare")
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        rows,
        vec![
            (b"/c/hot".to_vec(), kv.mod_revision),
            (b"/c/kept".to_vec(), keep.mod_revision)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_store_should_end_watches_with_closed() {
    let (_dir, store) = fresh_store().await;
    let mut watch = store.watch("/", 0).await.expect("watch");
    store.create("/x", Bytes::from("1")).await.expect("create");
    conformance::next_event(&mut watch).await;
    store.close().await;
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Err(StoreError::Closed))) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
}

/// Set for the child process of [`acknowledged_writes_should_survive_sigkill`]: the
/// database it writes to.
const CRASH_CHILD_DB: &str = "SKIFF_STORE_CRASH_CHILD_DB";

/// Not a test on its own: the child process of
/// [`acknowledged_writes_should_survive_sigkill`]. Writes keys from several tasks until
/// killed, printing `ack <key> <revision>` after each acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of acknowledged_writes_should_survive_sigkill"]
async fn crash_child_writes_until_killed() {
    let Some(path) = std::env::var_os(CRASH_CHILD_DB) else {
        panic!("{CRASH_CHILD_DB} is not set: this is a helper process, not a test");
    };
    let store = SqliteStore::open(SqliteConfig::new(path))
        .await
        .expect("child open");
    let store = &store;
    join_all((0..8).map(|task| async move {
        for i in 0.. {
            let key = format!("/crash/{task}/{i:06}");
            let kv = store
                .create(&key, Bytes::from(key.clone()))
                .await
                .expect("child create");
            let mut out = std::io::stdout().lock();
            writeln!(out, "ack {key} {}", kv.mod_revision).expect("stdout");
            out.flush().expect("flush");
        }
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_should_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "sqlite::tests::crash_child_writes_until_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 400 {
        assert!(
            Instant::now() < deadline,
            "child too slow: {} acks",
            acked.len()
        );
        let Some(line) = lines.next() else {
            panic!(
                "child ended early after {} acks: {:?}",
                acked.len(),
                child.wait()
            );
        };
        if let Some((key, revision)) = parse_ack(&line.expect("read child")) {
            acked.insert(key, revision);
        }
    }
    // SIGKILL: no destructor, no close, mid-write.
    child.kill().expect("kill child");
    // Acks already printed before the kill count too.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some((key, revision)) = parse_ack(&line) {
            acked.insert(key, revision);
        }
    }
    let status = child.wait().expect("wait child");
    assert!(!status.success(), "child should have been killed");

    let store = SqliteStore::open(SqliteConfig::new(&path))
        .await
        .expect("reopen after kill");
    let current = store.current_revision().await.expect("revision");
    let mut newest = 0;
    for (key, revision) in &acked {
        let kv = store
            .get(key)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged key {key} lost"));
        assert_eq!(kv.mod_revision, *revision);
        assert_eq!(kv.value, Bytes::from(key.clone()));
        newest = newest.max(*revision);
    }
    assert!(current >= newest);
    let next = store
        .create("/after-crash", Bytes::from("x"))
        .await
        .expect("create");
    assert!(next.mod_revision > current);
    eprintln!("{} acknowledged writes survived SIGKILL", acked.len());
}

fn parse_ack(line: &str) -> Option<(String, Revision)> {
    let mut parts = line.strip_prefix("ack ")?.split(' ');
    let key = parts.next()?.to_string();
    let revision = parts.next()?.parse().ok()?;
    Some((key, revision))
}
