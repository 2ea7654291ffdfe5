//! Image pull back-off, as the kubelet keeps it: per pod and image, the first failed
//! pull waits the base delay, each further failure doubles it up to the maximum, and
//! an entry untouched for twice the maximum starts over.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One pod's image: when its last pull failed, how long to wait, and why it failed.
#[derive(Debug, Clone)]
struct Entry {
    failed_at: Instant,
    delay: Duration,
    message: String,
}

/// Back-off of failed pulls, keyed by `<pod uid>_<image>`.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    entries: HashMap<String, Entry>,
}

/// The agent's pull back-off: one for the process (keys carry the pod UID).
static PULLS: LazyLock<Mutex<Backoff>> = LazyLock::new(Mutex::default);

/// The process-wide pull back-off.
pub(crate) fn pulls() -> MutexGuard<'static, Backoff> {
    // Every update is a single insert or remove: a poisoned map is still consistent.
    PULLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The back-off key of `image` in pod `uid`.
pub(crate) fn key(uid: &str, image: &str) -> String {
    format!("{uid}_{image}")
}

impl Backoff {
    /// The message of the failure `key` is still backing off from at `now`, if any.
    pub(crate) fn waiting(&self, key: &str, now: Instant) -> Option<&str> {
        let entry = self.entries.get(key)?;
        (now.saturating_duration_since(entry.failed_at) < entry.delay)
            .then_some(entry.message.as_str())
    }

    /// Records a failed pull of `key` at `now` with the waiting message it gave.
    pub(crate) fn failed(
        &mut self,
        key: &str,
        now: Instant,
        base: Duration,
        max: Duration,
        message: String,
    ) {
        let delay = match self.entries.get(key) {
            Some(e) if now.saturating_duration_since(e.failed_at) <= max * 2 => {
                (e.delay * 2).min(max)
            }
            _ => base.min(max),
        };
        self.entries.insert(
            key.to_owned(),
            Entry {
                failed_at: now,
                delay,
                message,
            },
        );
    }

    /// A successful pull of `key`: forgets it, and every entry gone stale at `now`.
    pub(crate) fn succeeded(&mut self, key: &str, now: Instant, max: Duration) {
        self.entries.remove(key);
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.failed_at) <= max * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(10);
    const MAX: Duration = Duration::from_secs(300);

    #[test]
    fn failures_double_the_wait_up_to_the_maximum() {
        let mut backoff = Backoff::default();
        let t0 = Instant::now();
        assert!(backoff.waiting("p_i", t0).is_none());
        backoff.failed("p_i", t0, BASE, MAX, "first".into());
        assert_eq!(
            backoff.waiting("p_i", t0 + Duration::from_secs(9)),
            Some("first")
        );
        assert!(backoff.waiting("p_i", t0 + BASE).is_none());
        let mut t = t0 + BASE;
        let mut delays = Vec::new();
        for _ in 0..6 {
            backoff.failed("p_i", t, BASE, MAX, "again".into());
            delays.push(backoff.entries["p_i"].delay.as_secs());
            t += backoff.entries["p_i"].delay;
        }
        assert_eq!(delays, [20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn a_stale_entry_starts_over_and_success_forgets() {
        let mut backoff = Backoff::default();
        let t0 = Instant::now();
        backoff.failed("p_i", t0, BASE, MAX, "x".into());
        backoff.failed("p_i", t0 + BASE, BASE, MAX, "x".into());
        let later = t0 + MAX * 3;
        backoff.failed("p_i", later, BASE, MAX, "x".into());
        assert_eq!(backoff.entries["p_i"].delay, BASE);
        backoff.succeeded("p_i", later, MAX);
        assert!(backoff.waiting("p_i", later).is_none());
    }
}
