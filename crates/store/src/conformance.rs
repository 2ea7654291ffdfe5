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

mod compaction;
mod kv;
mod list;
mod watch;
pub use compaction::*;
pub use kv::*;
pub use list::*;
pub use watch::*;

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
            watches_started_during_writes_miss_nothing,
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
