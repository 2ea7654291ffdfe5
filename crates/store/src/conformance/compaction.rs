//! Checks of compaction.

use super::*;

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
