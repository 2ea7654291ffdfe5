//! Controller expectations (Kubernetes' `ControllerExpectations`, keyed by pod name
//! rather than by count), shared by the ReplicaSet/ReplicationController, Job,
//! DaemonSet and StatefulSet controllers: after a controller creates or deletes pods it
//! waits until its watch cache has seen those writes before it decides again, so a
//! reconcile that runs on a stale cache never creates or deletes a pod twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a write may stay unobserved before the controller stops waiting for it
/// (a pod created and deleted again before the cache saw it is never observed).
const EXPIRY: Duration = Duration::from_secs(30);

/// What the watch cache says about one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not in the cache.
    Absent,
    /// In the cache, not being deleted.
    Present,
    /// In the cache with a deletionTimestamp.
    Terminating,
}

impl Seen {
    /// What the cache holding `pod` (or not) says about it.
    pub(crate) fn of(pod: Option<&k8s_openapi::api::core::v1::Pod>) -> Seen {
        match pod {
            None => Seen::Absent,
            Some(p) if p.metadata.deletion_timestamp.is_some() => Seen::Terminating,
            Some(_) => Seen::Present,
        }
    }
}

#[derive(Debug)]
struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Instant,
}

/// Writes a controller made and has not yet seen in its cache, per owner key.
#[derive(Debug, Default)]
pub(crate) struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn with<R>(&self, key: &str, f: impl FnOnce(&mut Pending) -> R) -> R {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = map.entry(key.to_string()).or_insert_with(|| Pending {
            creates: HashSet::new(),
            deletes: HashSet::new(),
            since: Instant::now(),
        });
        p.since = Instant::now();
        f(p)
    }

    /// Records that `name` was created for `key`.
    pub(crate) fn created(&self, key: &str, name: &str) {
        self.with(key, |p| p.creates.insert(name.to_string()));
    }

    /// Records that `name` was deleted for `key`.
    pub(crate) fn deleted(&self, key: &str, name: &str) {
        self.with(key, |p| p.deletes.insert(name.to_string()));
    }

    /// Forgets everything about `key` (its controller is gone).
    pub(crate) fn forget(&self, key: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// True when the cache (asked through `seen`) reflects every recorded write for
    /// `key`, or the writes are too old to wait for; observed writes are dropped.
    pub(crate) fn satisfied(&self, key: &str, seen: impl Fn(&str) -> Seen) -> bool {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = map.get_mut(key) else {
            return true;
        };
        p.creates.retain(|n| seen(n) == Seen::Absent);
        p.deletes.retain(|n| seen(n) == Seen::Present);
        if (p.creates.is_empty() && p.deletes.is_empty()) || p.since.elapsed() > EXPIRY {
            map.remove(key);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_are_awaited_until_the_cache_sees_them() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/a", |_| Seen::Absent));
        e.created("ns/a", "a-1");
        assert!(!e.satisfied("ns/a", |_| Seen::Absent));
        assert!(e.satisfied("ns/a", |_| Seen::Present));
        assert!(e.satisfied("ns/a", |_| Seen::Absent));
    }

    #[test]
    fn deletions_are_seen_when_terminating_or_gone() {
        let e = Expectations::default();
        e.deleted("ns/a", "a-1");
        assert!(!e.satisfied("ns/a", |_| Seen::Present));
        assert!(e.satisfied("ns/a", |_| Seen::Terminating));
    }
}
