//! Checks of lists and counts: prefixes, key order, pagination, past revisions.

use super::*;

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
    // The empty prefix lists every key, in order.
    let everything = list(store, ListOptions::default()).await;
    assert!(everything.windows(2).all(|pair| pair[0].key < pair[1].key));
    for key in expected {
        assert!(everything.iter().any(|kv| kv.key == key), "{key} missing");
    }
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
    // start_after beyond the whole prefix range.
    let beyond = store
        .list(&ListOptions {
            prefix: ns.to_string(),
            start_after: Some("/conformance/zzz".to_string()),
            limit: 2,
            ..ListOptions::default()
        })
        .await
        .expect("beyond");
    assert!(beyond.items.is_empty());
    assert!(!beyond.more);
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
