//! Expectations (Kubernetes' `ControllerExpectations` / `UIDTrackingControllerExpectations`):
//! after a controller creates or deletes pods it waits until its cache has seen those
//! changes before it counts pods again, so a lagging cache never causes a second round
//! of creations or deletions. Expectations older than five minutes are ignored.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long expectations are honoured before the controller acts anyway.
const TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Pending {
    adds: i64,
    deletes: HashSet<String>,
    since: Instant,
}

/// Outstanding creations and deletions per controller key (`namespace/name`).
#[derive(Debug, Default)]
pub(crate) struct Expectations(Mutex<HashMap<String, Pending>>);

impl Expectations {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Pending>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether `key` may count pods and act: nothing outstanding, or outstanding
    /// for longer than the TTL.
    pub(crate) fn satisfied(&self, key: &str) -> bool {
        self.with(|m| match m.get(key) {
            None => true,
            Some(p) => (p.adds <= 0 && p.deletes.is_empty()) || p.since.elapsed() > TTL,
        })
    }

    /// Expect `n` pod creations for `key`.
    pub(crate) fn expect_creations(&self, key: &str, n: usize) {
        self.with(|m| {
            m.insert(
                key.to_string(),
                Pending {
                    adds: n as i64,
                    deletes: HashSet::new(),
                    since: Instant::now(),
                },
            );
        });
    }

    /// Expect the deletion of the named pods for `key`.
    pub(crate) fn expect_deletions(&self, key: &str, pods: impl IntoIterator<Item = String>) {
        self.with(|m| {
            m.insert(
                key.to_string(),
                Pending {
                    adds: 0,
                    deletes: pods.into_iter().collect(),
                    since: Instant::now(),
                },
            );
        });
    }

    /// A creation for `key` was seen in the cache, or will never happen (it failed).
    pub(crate) fn creation_observed(&self, key: &str) {
        self.with(|m| {
            if let Some(p) = m.get_mut(key) {
                p.adds -= 1;
            }
        });
    }

    /// The deletion of `pod` for `key` was seen, or will never happen.
    pub(crate) fn deletion_observed(&self, key: &str, pod: &str) {
        self.with(|m| {
            if let Some(p) = m.get_mut(key) {
                p.deletes.remove(pod);
            }
        });
    }

    /// Forgets everything about `key` (the controller object is gone).
    pub(crate) fn forget(&self, key: &str) {
        self.with(|m| {
            m.remove(key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_must_all_be_observed_before_the_controller_acts_again() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn deletions_are_tracked_by_pod_name() {
        let e = Expectations::default();
        e.expect_deletions("ns/rs", ["a".to_string(), "b".to_string()]);
        e.deletion_observed("ns/rs", "a");
        e.deletion_observed("ns/rs", "a");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "b");
        assert!(e.satisfied("ns/rs"));
        e.forget("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }
}
