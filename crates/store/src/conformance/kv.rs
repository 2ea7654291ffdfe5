//! Checks of single-key reads and writes: create, get, compare-and-swap update and delete, revisions.

use super::*;

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
