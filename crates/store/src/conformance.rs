//! The behaviour every [`Store`] must show, written once and run against every backend.
//!
//! Each check is a `pub async fn` taking a store; it panics (like `assert!`) when the
//! store misbehaves. Checks use their own key namespace under `/conformance/`, only read
//! revisions they wrote themselves, and may therefore run one after another on the
//! same store ([`run_all`] does that), also on a shared etcd.
//!
//! Enabled in this crate's tests and, for other crates, with the `conformance` feature.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::join_all;

use crate::{Event, EventKind, KeyValue, ListOptions, Revision, Store, StoreError, WatchStream};

/// How long a check waits for a watch event before it fails.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Calls `callback! { args ; check, check, ... }` with the name of every check
/// [`run_all`] runs, so the list is written once.
macro_rules! with_check_names {
    ([$($callback:tt)+] ( $($args:tt)* )) => {
        $($callback)+! { $($args)* ;
            create_then_get_returns_the_value,
            create_of_an_existing_key_fails_with_already_exists,
            get_of_a_missing_key_returns_none,
            update_with_the_current_revision_succeeds,
            update_with_a_stale_revision_conflicts_and_carries_the_current_state,
            update_or_delete_of_a_missing_key_fails_with_not_found,
            delete_without_precondition_removes_the_key,
            delete_with_precondition_checks_the_revision,
            revisions_grow_on_one_counter_across_keys,
            create_revision_is_kept_across_updates_and_renewed_after_delete,
            list_returns_keys_under_the_prefix_in_key_order,
            list_paginates_with_limit_and_start_after,
            list_at_a_past_revision_sees_old_values_and_deleted_keys,
            list_at_a_future_revision_fails,
            count_counts_live_keys_under_the_prefix,
            watch_replays_history_then_continues_live,
            watch_from_the_current_revision_sees_only_new_events,
            watch_only_sees_keys_under_its_prefix,
            many_concurrent_watchers_see_the_same_events,
            concurrent_creates_all_succeed_with_distinct_revisions,
            failed_cas_does_not_disturb_concurrent_writes,
            compaction_forgets_old_revisions_but_keeps_latest_values,
        }
    };
}
#[cfg(test)]
pub(crate) use with_check_names;

macro_rules! run_checks {
    ($store:expr; $($check:ident),* $(,)?) => {
        $(
            tracing::info!(check = stringify!($check), "conformance check");
            eprintln!("store conformance: {}", stringify!($check));
            $check($store).await;
        )*
    };
}

/// Runs every check, one after another, on one store.
pub async fn run_all(store: &dyn Store) {
    with_check_names!([run_checks](store));
}

/// Generates one `#[tokio::test]` per check. `$fixture` is an expression (it may use
/// `.await`) giving `(guard, store)`; the guard lives as long as the test.
#[cfg(test)]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance::with_check_names!(
            [$crate::conformance::conformance_tests](@each $fixture)
        );
    };
    (@each $fixture:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (_guard, store) = $fixture;
                $crate::conformance::$check(&store).await;
            }
        )*
    };
}
#[cfg(test)]
pub(crate) use conformance_tests;

fn bytes(value: &str) -> Bytes {
    Bytes::copy_from_slice(value.as_bytes())
}

/// The next event of a watch; fails the check on an error, the end or a timeout.
pub async fn next_event(stream: &mut WatchStream) -> Event {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("watch failed: {error}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

/// The first item of a watch, which must be an error.
async fn next_error(stream: &mut WatchStream) -> StoreError {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Err(error))) => error,
        Ok(Some(Ok(event))) => panic!("expected a watch error, got {event:?}"),
        Ok(None) => panic!("watch ended without an error"),
        Err(_) => panic!("no watch error within {EVENT_TIMEOUT:?}"),
    }
}

fn assert_event(
    event: &Event,
    kind: EventKind,
    key: &str,
    value: &str,
    prev: Option<&str>,
    mod_revision: Revision,
) {
    assert_eq!(event.kind, kind, "kind of {event:?}");
    assert_eq!(event.kv.key, key, "key of {event:?}");
    assert_eq!(event.kv.value, bytes(value), "value of {event:?}");
    assert_eq!(event.prev_value, prev.map(bytes), "prev_value of {event:?}");
    assert_eq!(
        event.kv.mod_revision, mod_revision,
        "mod_revision of {event:?}"
    );
}

async fn list(store: &dyn Store, opts: ListOptions) -> Vec<KeyValue> {
    store.list(&opts).await.expect("list").items
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

/// A new key can be read back with equal create and mod revisions.
pub async fn create_then_get_returns_the_value(store: &dyn Store) {
    let key = "/conformance/create-get/a";
    let created = store.create(key, bytes("one")).await.expect("create");
    assert_eq!(created.key, key);
    assert_eq!(created.value, bytes("one"));
    assert_eq!(created.create_revision, created.mod_revision);
    assert!(created.mod_revision >= 1);
    let got = store.get(key).await.expect("get");
    assert_eq!(got, Some(created.clone()));
    assert!(store.current_revision().await.expect("revision") >= created.mod_revision);
}

/// Creating a key twice fails and leaves the first value.
pub async fn create_of_an_existing_key_fails_with_already_exists(store: &dyn Store) {
    let key = "/conformance/create-twice/a";
    let first = store.create(key, bytes("one")).await.expect("create");
    match store.create(key, bytes("two")).await {
        Err(StoreError::AlreadyExists { key: failed }) => assert_eq!(failed, key),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(store.get(key).await.expect("get"), Some(first));
}

/// Reading a key that never existed is not an error.
pub async fn get_of_a_missing_key_returns_none(store: &dyn Store) {
    let got = store.get("/conformance/missing/a").await.expect("get");
    assert_eq!(got, None);
}

/// A compare-and-swap update with the current `mod_revision` succeeds.
pub async fn update_with_the_current_revision_succeeds(store: &dyn Store) {
    let key = "/conformance/update/a";
    let created = store.create(key, bytes("one")).await.expect("create");
    let updated = store
        .update(key, bytes("two"), created.mod_revision)
        .await
        .expect("update");
    assert_eq!(updated.value, bytes("two"));
    assert_eq!(updated.create_revision, created.create_revision);
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(store.get(key).await.expect("get"), Some(updated));
}

/// A compare-and-swap update with an old revision fails with the current state.
pub async fn update_with_a_stale_revision_conflicts_and_carries_the_current_state(
    store: &dyn Store,
) {
    let key = "/conformance/conflict/a";
    let created = store.create(key, bytes("one")).await.expect("create");
    let updated = store
        .update(key, bytes("two"), created.mod_revision)
        .await
        .expect("update");
    match store
        .update(key, bytes("three"), created.mod_revision)
        .await
    {
        Err(StoreError::Conflict {
            key: failed,
            current,
        }) => {
            assert_eq!(failed, key);
            assert_eq!(current, Some(updated.clone()));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get(key).await.expect("get"), Some(updated));
}

/// Updating or deleting a key that does not exist fails with `NotFound`.
pub async fn update_or_delete_of_a_missing_key_fails_with_not_found(store: &dyn Store) {
    let key = "/conformance/not-found/a";
    match store.update(key, bytes("x"), 1).await {
        Err(StoreError::NotFound { key: failed }) => assert_eq!(failed, key),
        other => panic!("expected NotFound from update, got {other:?}"),
    }
    match store.update(key, bytes("x"), 0).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected NotFound from update at revision 0, got {other:?}"),
    }
    match store.delete(key, None).await {
        Err(StoreError::NotFound { key: failed }) => assert_eq!(failed, key),
        other => panic!("expected NotFound from delete, got {other:?}"),
    }
    match store.delete(key, Some(1)).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected NotFound from delete with precondition, got {other:?}"),
    }
    assert_eq!(store.get(key).await.expect("get"), None);
}

/// An unconditional delete removes the key and returns its last value.
pub async fn delete_without_precondition_removes_the_key(store: &dyn Store) {
    let key = "/conformance/delete/a";
    let created = store.create(key, bytes("one")).await.expect("create");
    let deleted = store.delete(key, None).await.expect("delete");
    assert_eq!(deleted.key, key);
    assert_eq!(deleted.value, bytes("one"));
    assert_eq!(deleted.create_revision, created.create_revision);
    assert!(deleted.mod_revision > created.mod_revision);
    assert_eq!(store.get(key).await.expect("get"), None);
    assert_eq!(
        store.current_revision().await.expect("revision"),
        deleted.mod_revision
    );
    match store.delete(key, None).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected NotFound from a second delete, got {other:?}"),
    }
}

/// A conditional delete only succeeds at the key's current `mod_revision`.
pub async fn delete_with_precondition_checks_the_revision(store: &dyn Store) {
    let key = "/conformance/delete-cas/a";
    let created = store.create(key, bytes("one")).await.expect("create");
    let updated = store
        .update(key, bytes("two"), created.mod_revision)
        .await
        .expect("update");
    match store.delete(key, Some(created.mod_revision)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(current, Some(updated.clone())),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get(key).await.expect("get"), Some(updated.clone()));
    let deleted = store
        .delete(key, Some(updated.mod_revision))
        .await
        .expect("delete");
    assert_eq!(deleted.value, bytes("two"));
    assert!(deleted.mod_revision > updated.mod_revision);
    assert_eq!(store.get(key).await.expect("get"), None);
}

/// Writes to different keys draw from one strictly increasing counter.
pub async fn revisions_grow_on_one_counter_across_keys(store: &dyn Store) {
    let ns = "/conformance/revisions/";
    let start = store.current_revision().await.expect("revision");
    let a = store
        .create(&format!("{ns}a"), bytes("1"))
        .await
        .expect("a");
    let b = store
        .create(&format!("{ns}b"), bytes("1"))
        .await
        .expect("b");
    let a2 = store
        .update(&format!("{ns}a"), bytes("2"), a.mod_revision)
        .await
        .expect("a2");
    let b2 = store
        .delete(&format!("{ns}b"), Some(b.mod_revision))
        .await
        .expect("b2");
    let c = store
        .create(&format!("{ns}c"), bytes("1"))
        .await
        .expect("c");
    let revisions = [
        start,
        a.mod_revision,
        b.mod_revision,
        a2.mod_revision,
        b2.mod_revision,
        c.mod_revision,
    ];
    assert!(
        revisions.windows(2).all(|pair| pair[0] < pair[1]),
        "revisions must strictly increase: {revisions:?}"
    );
    assert_eq!(
        store.current_revision().await.expect("revision"),
        c.mod_revision
    );
    // A failed write does not use up a revision.
    let _ = store.create(&format!("{ns}a"), bytes("again")).await;
    assert_eq!(
        store.current_revision().await.expect("revision"),
        c.mod_revision
    );
}

/// `create_revision` stays put across updates and is renewed when a key is re-created.
pub async fn create_revision_is_kept_across_updates_and_renewed_after_delete(store: &dyn Store) {
    let key = "/conformance/create-revision/a";
    let created = store.create(key, bytes("1")).await.expect("create");
    let mut last = created.clone();
    for value in ["2", "3"] {
        last = store
            .update(key, bytes(value), last.mod_revision)
            .await
            .expect("update");
        assert_eq!(last.create_revision, created.create_revision);
    }
    store.delete(key, None).await.expect("delete");
    let again = store.create(key, bytes("new")).await.expect("re-create");
    assert_eq!(again.create_revision, again.mod_revision);
    assert!(again.create_revision > last.mod_revision);
}

/// A list returns exactly the keys under the prefix, in byte order.
pub async fn list_returns_keys_under_the_prefix_in_key_order(store: &dyn Store) {
    let ns = "/conformance/list/";
    for key in ["a/b/2", "a/bc", "a/b/1", "a/b", "a/b/10", "a/c/1", "a/a"] {
        store
            .create(&format!("{ns}{key}"), bytes(key))
            .await
            .expect("create");
    }
    let listed = store
        .list(&ListOptions {
            prefix: format!("{ns}a/b/"),
            ..ListOptions::default()
        })
        .await
        .expect("list");
    let expected = ["a/b/1", "a/b/10", "a/b/2"].map(|key| format!("{ns}{key}"));
    assert_eq!(keys(&listed.items), expected);
    assert!(!listed.more);
    assert_eq!(
        listed.revision,
        store.current_revision().await.expect("revision")
    );
    for kv in &listed.items {
        assert_eq!(kv.value, bytes(kv.key.trim_start_matches(ns)));
    }
    let all = list(
        store,
        ListOptions {
            prefix: ns.to_string(),
            ..ListOptions::default()
        },
    )
    .await;
    let expected =
        ["a/a", "a/b", "a/b/1", "a/b/10", "a/b/2", "a/bc", "a/c/1"].map(|key| format!("{ns}{key}"));
    assert_eq!(keys(&all), expected);
    let none = list(
        store,
        ListOptions {
            prefix: format!("{ns}zzz/"),
            ..ListOptions::default()
        },
    )
    .await;
    assert!(none.is_empty());
}

/// `limit` and `start_after` page through a prefix; `more` says whether pages remain.
pub async fn list_paginates_with_limit_and_start_after(store: &dyn Store) {
    let ns = "/conformance/paginate/";
    let names: Vec<String> = (0..7).map(|i| format!("{ns}k{i}")).collect();
    for name in &names {
        store.create(name, bytes("v")).await.expect("create");
    }
    store
        .create("/conformance/paginate0", bytes("outside"))
        .await
        .expect("create outside");
    let revision = store.current_revision().await.expect("revision");
    let mut seen = Vec::new();
    let mut start_after = None;
    let mut pages = 0;
    loop {
        let page = store
            .list(&ListOptions {
                prefix: ns.to_string(),
                start_after: start_after.clone(),
                limit: 3,
                revision: Some(revision),
            })
            .await
            .expect("page");
        pages += 1;
        assert!(page.items.len() <= 3);
        assert_eq!(page.revision, revision);
        seen.extend(page.items.iter().map(|kv| kv.key.clone()));
        start_after = page.items.last().map(|kv| kv.key.clone());
        if !page.more {
            break;
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, names);
    assert_eq!(pages, 3);
    // An exact fit says there is nothing more.
    let exact = store
        .list(&ListOptions {
            prefix: ns.to_string(),
            limit: 7,
            ..ListOptions::default()
        })
        .await
        .expect("exact");
    assert_eq!(exact.items.len(), 7);
    assert!(!exact.more);
    // start_after past the last key, and before the prefix.
    let after_end = list(
        store,
        ListOptions {
            prefix: ns.to_string(),
            start_after: Some(format!("{ns}k6")),
            ..ListOptions::default()
        },
    )
    .await;
    assert!(after_end.is_empty());
    let before = list(
        store,
        ListOptions {
            prefix: ns.to_string(),
            start_after: Some("/conformance/".to_string()),
            limit: 2,
            ..ListOptions::default()
        },
    )
    .await;
    assert_eq!(keys(&before), [names[0].as_str(), names[1].as_str()]);
}

/// A list at a past revision shows the values and keys of that moment.
pub async fn list_at_a_past_revision_sees_old_values_and_deleted_keys(store: &dyn Store) {
    let ns = "/conformance/past/";
    let a = store
        .create(&format!("{ns}a"), bytes("a1"))
        .await
        .expect("a");
    let b = store
        .create(&format!("{ns}b"), bytes("b1"))
        .await
        .expect("b");
    let then = b.mod_revision;
    store
        .update(&format!("{ns}a"), bytes("a2"), a.mod_revision)
        .await
        .expect("update a");
    store
        .delete(&format!("{ns}b"), None)
        .await
        .expect("delete b");
    store
        .create(&format!("{ns}c"), bytes("c1"))
        .await
        .expect("c");
    let past = store
        .list(&ListOptions {
            prefix: ns.to_string(),
            revision: Some(then),
            ..ListOptions::default()
        })
        .await
        .expect("list past");
    assert_eq!(past.revision, then);
    assert_eq!(past.items, vec![a.clone(), b.clone()]);
    let earlier = list(
        store,
        ListOptions {
            prefix: ns.to_string(),
            revision: Some(a.mod_revision),
            ..ListOptions::default()
        },
    )
    .await;
    assert_eq!(earlier, vec![a.clone()]);
    let now = list(
        store,
        ListOptions {
            prefix: ns.to_string(),
            ..ListOptions::default()
        },
    )
    .await;
    assert_eq!(
        now.iter()
            .map(|kv| (kv.key.trim_start_matches(ns), kv.value.clone()))
            .collect::<Vec<_>>(),
        vec![("a", bytes("a2")), ("c", bytes("c1"))]
    );
    // Pagination works at a past revision too.
    let page = store
        .list(&ListOptions {
            prefix: ns.to_string(),
            revision: Some(then),
            limit: 1,
            start_after: None,
        })
        .await
        .expect("page");
    assert_eq!(page.items, vec![a]);
    assert!(page.more);
}

/// A list at a revision that does not exist yet fails with `FutureRevision`.
pub async fn list_at_a_future_revision_fails(store: &dyn Store) {
    let current = store.current_revision().await.expect("revision");
    let requested = current + 1000;
    match store
        .list(&ListOptions {
            prefix: "/conformance/future/".to_string(),
            revision: Some(requested),
            ..ListOptions::default()
        })
        .await
    {
        Err(StoreError::FutureRevision {
            requested: failed,
            current: reported,
        }) => {
            assert_eq!(failed, requested);
            assert!(reported >= current && reported < requested);
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

/// `count` counts live keys under a prefix only.
pub async fn count_counts_live_keys_under_the_prefix(store: &dyn Store) {
    let ns = "/conformance/count/";
    assert_eq!(store.count(ns).await.expect("count"), 0);
    for i in 0..5 {
        store
            .create(&format!("{ns}x/{i}"), bytes("v"))
            .await
            .expect("create");
    }
    store
        .create(&format!("{ns}xy"), bytes("v"))
        .await
        .expect("create");
    store
        .delete(&format!("{ns}x/0"), None)
        .await
        .expect("delete");
    assert_eq!(store.count(&format!("{ns}x/")).await.expect("count"), 4);
    assert_eq!(store.count(ns).await.expect("count"), 5);
}

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

/// Many creates at once all succeed, each with its own revision.
pub async fn concurrent_creates_all_succeed_with_distinct_revisions(store: &dyn Store) {
    let ns = "/conformance/concurrent/";
    let results = join_all((0..64).map(|i| {
        let key = format!("{ns}{i:03}");
        async move { store.create(&key, bytes("v")).await }
    }))
    .await;
    let mut revisions = BTreeSet::new();
    for result in results {
        let kv = result.expect("concurrent create");
        assert!(revisions.insert(kv.mod_revision), "duplicate revision");
    }
    assert_eq!(revisions.len(), 64);
    assert_eq!(store.count(ns).await.expect("count"), 64);
    let last = *revisions.last().expect("revisions");
    assert!(store.current_revision().await.expect("revision") >= last);
}

/// Failing compare-and-swaps issued together with good writes (possibly in the same
/// group commit) fail alone.
pub async fn failed_cas_does_not_disturb_concurrent_writes(store: &dyn Store) {
    let ns = "/conformance/mixed/";
    let shared = format!("{ns}shared");
    let base = store.create(&shared, bytes("base")).await.expect("create");
    enum Outcome {
        Created(Result<KeyValue, StoreError>),
        Duplicate(Result<KeyValue, StoreError>),
        Stale(Result<KeyValue, StoreError>),
        Good(Result<KeyValue, StoreError>),
    }
    let mut writes: Vec<futures::future::BoxFuture<'_, Outcome>> = Vec::new();
    for i in 0..48 {
        let key = format!("{ns}new/{i:02}");
        let target = shared.clone();
        writes.push(Box::pin(async move {
            let shared = target;
            match i % 4 {
                0 => Outcome::Stale(
                    store
                        .update(&shared, bytes("stale"), base.mod_revision + 10_000)
                        .await,
                ),
                1 => Outcome::Duplicate(store.create(&shared, bytes("dup")).await),
                _ => Outcome::Created(store.create(&key, bytes("v")).await),
            }
        }));
        if i == 24 {
            let shared = shared.clone();
            writes.push(Box::pin(async move {
                Outcome::Good(
                    store
                        .update(&shared, bytes("good"), base.mod_revision)
                        .await,
                )
            }));
        }
    }
    let mut created = 0;
    let mut good = None;
    for outcome in join_all(writes).await {
        match outcome {
            Outcome::Created(result) => {
                result.expect("create next to failing writes");
                created += 1;
            }
            Outcome::Duplicate(result) => match result {
                Err(StoreError::AlreadyExists { .. }) => {}
                other => panic!("expected AlreadyExists, got {other:?}"),
            },
            Outcome::Stale(result) => match result {
                Err(StoreError::Conflict { current, .. }) => {
                    let current = current.expect("conflict carries the current state");
                    assert_eq!(current.key, shared);
                }
                other => panic!("expected Conflict, got {other:?}"),
            },
            Outcome::Good(result) => good = Some(result.expect("good update")),
        }
    }
    assert_eq!(created, 24);
    assert_eq!(store.count(&format!("{ns}new/")).await.expect("count"), 24);
    let good = good.expect("good update ran");
    assert_eq!(store.get(&shared).await.expect("get"), Some(good));
}

/// Compaction forgets history below a revision: lists and watches there fail with
/// `Compacted`, the latest values stay, and compacting again is harmless.
pub async fn compaction_forgets_old_revisions_but_keeps_latest_values(store: &dyn Store) {
    let ns = "/conformance/compact/";
    let (a, b, c) = (format!("{ns}a"), format!("{ns}b"), format!("{ns}c"));
    let a1 = store.create(&a, bytes("a1")).await.expect("a1");
    let a2 = store
        .update(&a, bytes("a2"), a1.mod_revision)
        .await
        .expect("a2");
    store.create(&b, bytes("b1")).await.expect("b1");
    store.delete(&b, None).await.expect("delete b");
    let c1 = store.create(&c, bytes("c1")).await.expect("c1");
    let at = store.current_revision().await.expect("revision");
    assert_eq!(at, c1.mod_revision);

    store.compact(at).await.expect("compact");
    assert_eq!(store.compacted_revision().await.expect("compacted"), at);

    // Below the compacted revision: gone.
    match store
        .list(&ListOptions {
            prefix: ns.to_string(),
            revision: Some(a1.mod_revision),
            ..ListOptions::default()
        })
        .await
    {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, a1.mod_revision);
            assert_eq!(compacted, at);
        }
        other => panic!("expected Compacted from list, got {other:?}"),
    }
    let mut old = store.watch(ns, a1.mod_revision).await.expect("watch");
    match next_error(&mut old).await {
        StoreError::Compacted { compacted, .. } => assert_eq!(compacted, at),
        other => panic!("expected Compacted from watch, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(EVENT_TIMEOUT, old.next())
            .await
            .expect("watch ends after its error")
            .is_none()
    );

    // At the compacted revision: the state of that moment.
    let listed = list(
        store,
        ListOptions {
            prefix: ns.to_string(),
            revision: Some(at),
            ..ListOptions::default()
        },
    )
    .await;
    assert_eq!(listed, vec![a2.clone(), c1.clone()]);
    // A watch may start at the compacted revision.
    let mut from = store.watch(ns, at - 1).await.expect("watch");
    let event = next_event(&mut from).await;
    assert_event(&event, EventKind::Created, &c, "c1", None, c1.mod_revision);

    // Latest values survive and the store keeps working.
    assert_eq!(store.get(&a).await.expect("get a"), Some(a2.clone()));
    assert_eq!(store.get(&b).await.expect("get b"), None);
    let a3 = store
        .update(&a, bytes("a3"), a2.mod_revision)
        .await
        .expect("update after compaction");
    assert_eq!(a3.create_revision, a1.mod_revision);
    let event = next_event(&mut from).await;
    assert_event(
        &event,
        EventKind::Updated,
        &a,
        "a3",
        Some("a2"),
        a3.mod_revision,
    );

    // Compacting again at or below is a no-op; beyond the current revision is an error.
    store.compact(at).await.expect("compact again");
    store.compact(a1.mod_revision).await.expect("compact lower");
    assert_eq!(store.compacted_revision().await.expect("compacted"), at);
    let current = store.current_revision().await.expect("revision");
    match store.compact(current + 1000).await {
        Err(StoreError::FutureRevision { .. }) => {}
        other => panic!("expected FutureRevision from compact, got {other:?}"),
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
