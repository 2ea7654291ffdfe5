//! Checks of watches: replay, live events, prefixes, many watchers, lagging watchers.

use super::*;

/// A watch from a past revision replays what happened since, then follows new writes,
/// with prev values.
pub async fn watch_replays_history_then_continues_live(store: &dyn Store) {
    let ns = "/conformance/watch-replay/";
    let (a, b) = (format!("{ns}a"), format!("{ns}b"));
    let start = store.current_revision().await.expect("revision");
    let a1 = store.create(&a, bytes("a1")).await.expect("create a");
    let a2 = store
        .update(&a, bytes("a2"), a1.mod_revision)
        .await
        .expect("update a");
    let b1 = store.create(&b, bytes("b1")).await.expect("create b");
    let gone = store.delete(&a, None).await.expect("delete a");

    let mut watch = store.watch(ns, start).await.expect("watch");
    let created = next_event(&mut watch).await;
    assert_event(
        &created,
        EventKind::Created,
        &a,
        "a1",
        None,
        a1.mod_revision,
    );
    assert_eq!(created.kv.create_revision, a1.mod_revision);
    let updated = next_event(&mut watch).await;
    assert_event(
        &updated,
        EventKind::Updated,
        &a,
        "a2",
        Some("a1"),
        a2.mod_revision,
    );
    assert_eq!(updated.kv.create_revision, a1.mod_revision);
    let event = next_event(&mut watch).await;
    assert_event(&event, EventKind::Created, &b, "b1", None, b1.mod_revision);
    let deleted = next_event(&mut watch).await;
    assert_event(
        &deleted,
        EventKind::Deleted,
        &a,
        "a2",
        Some("a2"),
        gone.mod_revision,
    );
    assert_eq!(deleted.kv.create_revision, a1.mod_revision);

    // Now live.
    let b2 = store
        .update(&b, bytes("b2"), b1.mod_revision)
        .await
        .expect("update b");
    let a3 = store.create(&a, bytes("a3")).await.expect("re-create a");
    let event = next_event(&mut watch).await;
    assert_event(
        &event,
        EventKind::Updated,
        &b,
        "b2",
        Some("b1"),
        b2.mod_revision,
    );
    let event = next_event(&mut watch).await;
    assert_event(&event, EventKind::Created, &a, "a3", None, a3.mod_revision);

    // A watch from the middle of history starts right after it.
    let mut middle = store.watch(ns, a2.mod_revision).await.expect("watch");
    let event = next_event(&mut middle).await;
    assert_event(&event, EventKind::Created, &b, "b1", None, b1.mod_revision);
}

/// A watch from the current revision yields only writes made after it.
pub async fn watch_from_the_current_revision_sees_only_new_events(store: &dyn Store) {
    let ns = "/conformance/watch-now/";
    store
        .create(&format!("{ns}old"), bytes("v"))
        .await
        .expect("create");
    let now = store.current_revision().await.expect("revision");
    let mut watch = store.watch(ns, now).await.expect("watch");
    let new = store
        .create(&format!("{ns}new"), bytes("v"))
        .await
        .expect("create");
    let event = next_event(&mut watch).await;
    assert_event(
        &event,
        EventKind::Created,
        &new.key,
        "v",
        None,
        new.mod_revision,
    );
}

/// A watch sees keys under its prefix only (`/p/a/` does not see `/p/ab`).
pub async fn watch_only_sees_keys_under_its_prefix(store: &dyn Store) {
    let ns = "/conformance/watch-prefix/";
    let start = store.current_revision().await.expect("revision");
    let mut watch = store.watch(&format!("{ns}a/"), start).await.expect("watch");
    let first = store
        .create(&format!("{ns}a/1"), bytes("v"))
        .await
        .expect("create");
    for other in ["ab", "b/1", "a"] {
        store
            .create(&format!("{ns}{other}"), bytes("v"))
            .await
            .expect("create");
    }
    let second = store
        .create(&format!("{ns}a/2"), bytes("v"))
        .await
        .expect("create");
    let event = next_event(&mut watch).await;
    assert_eq!(event.kv.key, first.key);
    let event = next_event(&mut watch).await;
    assert_eq!(event.kv.key, second.key);
    assert_eq!(event.kv.mod_revision, second.mod_revision);
}

/// Many watchers of the same prefix all see the same events in the same order.
pub async fn many_concurrent_watchers_see_the_same_events(store: &dyn Store) {
    let ns = "/conformance/watchers/";
    let start = store.current_revision().await.expect("revision");
    let mut watches = Vec::new();
    for _ in 0..32 {
        watches.push(store.watch(ns, start).await.expect("watch"));
    }
    let key = format!("{ns}k");
    let mut last = store.create(&key, bytes("0")).await.expect("create");
    let mut expected = vec![last.mod_revision];
    for i in 1..10 {
        last = store
            .update(&key, bytes(&i.to_string()), last.mod_revision)
            .await
            .expect("update");
        expected.push(last.mod_revision);
    }
    let seen = join_all(watches.iter_mut().map(|watch| async move {
        let mut revisions = Vec::new();
        for _ in 0..10 {
            revisions.push(next_event(watch).await.kv.mod_revision);
        }
        revisions
    }))
    .await;
    for revisions in seen {
        assert_eq!(revisions, expected);
    }
}

/// A watcher that does not read while many commits happen still gets every event, in
/// order (memory and SQLite re-read history after falling behind the live buffer).
/// Meaningful for stores built with a small watch buffer.
pub async fn lagging_watcher_catches_up_from_history(store: &dyn Store) {
    let ns = "/conformance/lagging/";
    let start = store.current_revision().await.expect("revision");
    let mut watch = store.watch(ns, start).await.expect("watch");
    let key = format!("{ns}k");
    let mut last = store.create(&key, bytes("0")).await.expect("create");
    let mut expected = vec![last.mod_revision];
    for i in 1..40 {
        last = store
            .update(&key, bytes(&i.to_string()), last.mod_revision)
            .await
            .expect("update");
        expected.push(last.mod_revision);
    }
    let batch = join_all((0..100).map(|i| {
        let key = format!("{ns}many/{i:03}");
        async move { store.create(&key, bytes("v")).await }
    }))
    .await;
    for kv in batch {
        expected.push(kv.expect("create").mod_revision);
    }
    expected.sort_unstable();
    let mut seen = Vec::new();
    for _ in 0..expected.len() {
        seen.push(next_event(&mut watch).await.kv.mod_revision);
    }
    assert_eq!(seen, expected);
}

/// Watches started while writes are in flight, and read while more arrive, see every
/// revision exactly once and in order (the switch from history to live events has no
/// gap and no duplicate).
pub async fn watches_started_during_writes_miss_nothing(store: &dyn Store) {
    let ns = "/conformance/watch-race/";
    let start = store.current_revision().await.expect("revision");
    let (rounds, width) = (25, 4);
    let total = rounds * width;
    let writes = async {
        let mut revisions = Vec::new();
        for round in 0..rounds {
            let batch = join_all((0..width).map(|i| {
                let key = format!("{ns}{round:02}-{i}");
                async move { store.create(&key, bytes("v")).await }
            }))
            .await;
            for kv in batch {
                revisions.push(kv.expect("create").mod_revision);
            }
        }
        revisions.sort_unstable();
        revisions
    };
    let watchers = join_all((0..6u64).map(|i| async move {
        tokio::time::sleep(Duration::from_millis(i * 3)).await;
        let mut watch = store.watch(ns, start).await.expect("watch");
        let mut seen = Vec::with_capacity(total);
        for _ in 0..total {
            seen.push(next_event(&mut watch).await.kv.mod_revision);
        }
        seen
    }));
    let (expected, seen) = futures::join!(writes, watchers);
    for revisions in seen {
        assert_eq!(revisions, expected);
    }
}
