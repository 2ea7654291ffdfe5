//! The scheduling queue (pkg/scheduler/backend/queue): an active queue ordered by
//! priority then arrival, a backoff queue (1 s doubling to 10 s per attempt), and
//! the unschedulable pods waiting for a cluster event (or the periodic flush).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::pod_info::{PodInfo, PodKey};

/// First backoff after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods older than this are retried even without an event.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(60);

/// A pod popped from the queue for one scheduling attempt.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    /// The pod.
    pub info: Arc<PodInfo>,
    /// Scheduling attempts so far (including the current one once popped).
    pub attempts: u32,
    /// When the pod last failed (or was added).
    pub timestamp: Instant,
    /// Plugins that rejected the pod in its last attempt.
    pub unschedulable_plugins: Vec<&'static str>,
}

impl QueuedPod {
    fn backoff_expiry(&self) -> Instant {
        let shift = self.attempts.saturating_sub(1).min(16);
        let d = INITIAL_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF);
        self.timestamp + d
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active(u64),
    Backoff(Instant, u64),
    Unschedulable,
    InFlight,
}

/// Which unschedulable pods an event may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A node was added or changed: every unschedulable pod.
    NodeChanged,
    /// A pod left a node: every unschedulable pod.
    AssignedPodRemoved,
    /// A pod was added to a node: pods rejected by pod (anti-)affinity or spread.
    AssignedPodAdded,
}

/// The three queues.
#[derive(Debug, Default)]
pub struct Queue {
    pods: HashMap<PodKey, (QueuedPod, Place)>,
    active: BTreeSet<(Reverse<i32>, u64, PodKey)>,
    backoff: BTreeSet<(Instant, u64, PodKey)>,
    seq: u64,
}

impl Queue {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn unplace(&mut self, key: &str) {
        if let Some((qp, place)) = self.pods.get(key) {
            match *place {
                Place::Active(seq) => {
                    self.active
                        .remove(&(Reverse(qp.info.priority), seq, key.to_string()));
                }
                Place::Backoff(at, seq) => {
                    self.backoff.remove(&(at, seq, key.to_string()));
                }
                Place::Unschedulable | Place::InFlight => {}
            }
        }
    }

    fn place_active(&mut self, key: &str) {
        let seq = self.next_seq();
        if let Some((qp, place)) = self.pods.get_mut(key) {
            *place = Place::Active(seq);
            self.active
                .insert((Reverse(qp.info.priority), seq, key.to_string()));
        }
    }

    fn place_backoff_or_active(&mut self, key: &str, now: Instant) {
        let Some((qp, _)) = self.pods.get(key) else {
            return;
        };
        let at = qp.backoff_expiry();
        if at <= now || qp.attempts == 0 {
            self.place_active(key);
        } else {
            let seq = self.next_seq();
            if let Some((_, place)) = self.pods.get_mut(key) {
                *place = Place::Backoff(at, seq);
            }
            self.backoff.insert((at, seq, key.to_string()));
        }
    }

    /// Adds a pending pod, or updates it; an update of an unschedulable pod's spec
    /// or labels makes it eligible again.
    pub fn add_or_update(&mut self, info: Arc<PodInfo>, now: Instant) {
        let key = info.key.clone();
        match self.pods.get_mut(&key) {
            None => {
                self.pods.insert(
                    key.clone(),
                    (
                        QueuedPod {
                            info,
                            attempts: 0,
                            timestamp: now,
                            unschedulable_plugins: Vec::new(),
                        },
                        Place::InFlight,
                    ),
                );
                self.place_active(&key);
            }
            Some((qp, place)) => {
                let changed = qp.info.pod.spec != info.pod.spec
                    || qp.info.pod.metadata.labels != info.pod.metadata.labels;
                let place = *place;
                self.unplace(&key);
                if let Some((qp, _)) = self.pods.get_mut(&key) {
                    qp.info = info;
                }
                match place {
                    Place::Active(_) => self.place_active(&key),
                    Place::Backoff(..) => self.place_backoff_or_active(&key, now),
                    Place::Unschedulable if changed => self.place_backoff_or_active(&key, now),
                    Place::Unschedulable | Place::InFlight => {}
                }
            }
        }
    }

    /// Forgets a pod (deleted, bound, or no longer ours).
    pub fn delete(&mut self, key: &str) {
        self.unplace(key);
        self.pods.remove(key);
    }

    /// Whether the pod is known to the queue (in any sub-queue or in flight).
    pub fn contains(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// Takes the highest-priority active pod for an attempt.
    pub fn pop(&mut self) -> Option<QueuedPod> {
        let (_, _, key) = self.active.pop_first()?;
        let (qp, place) = self.pods.get_mut(&key)?;
        *place = Place::InFlight;
        qp.attempts += 1;
        Some(qp.clone())
    }

    /// Whether a pod is ready to be popped.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// Puts a pod that did not fit among the unschedulable pods.
    pub fn unschedulable(&mut self, key: &str, plugins: Vec<&'static str>, now: Instant) {
        if let Some((qp, place)) = self.pods.get_mut(key) {
            qp.timestamp = now;
            qp.unschedulable_plugins = plugins;
            *place = Place::Unschedulable;
        }
    }

    /// Puts a pod that failed for another reason (API error) into backoff.
    pub fn backoff(&mut self, key: &str, now: Instant) {
        if let Some((qp, _)) = self.pods.get_mut(key) {
            qp.timestamp = now;
        }
        self.place_backoff_or_active(key, now);
    }

    /// Moves the unschedulable pods an event may help to the active queue (or to
    /// backoff while they are still backing off).
    pub fn move_on(&mut self, event: Event, now: Instant) {
        let keys: Vec<PodKey> = self
            .pods
            .iter()
            .filter(|(_, (qp, place))| {
                *place == Place::Unschedulable
                    && match event {
                        Event::NodeChanged | Event::AssignedPodRemoved => true,
                        Event::AssignedPodAdded => qp
                            .unschedulable_plugins
                            .iter()
                            .any(|p| *p == "InterPodAffinity" || *p == "PodTopologySpread"),
                    }
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.place_backoff_or_active(&k, now);
        }
    }

    /// Moves pods whose backoff expired to the active queue, and unschedulable pods
    /// waiting longer than [`MAX_UNSCHEDULABLE`].
    pub fn flush(&mut self, now: Instant) {
        self.flush_backoff(now);
        let stale: Vec<PodKey> = self
            .pods
            .iter()
            .filter(|(_, (qp, place))| {
                *place == Place::Unschedulable
                    && now.duration_since(qp.timestamp) >= MAX_UNSCHEDULABLE
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.place_backoff_or_active(&k, now);
        }
    }

    /// Moves pods whose backoff expired to the active queue.
    pub fn flush_backoff(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.backoff.first() {
            if *at > now {
                break;
            }
            if let Some((_, _, key)) = self.backoff.pop_first() {
                self.place_active(&key);
            }
        }
    }

    /// When the next backoff expires.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.first().map(|(at, _, _)| *at)
    }

    /// Keys of all queued pods.
    pub fn keys(&self) -> Vec<PodKey> {
        self.pods.keys().cloned().collect()
    }

    /// Number of pods in (active, backoff, unschedulable).
    pub fn lens(&self) -> (usize, usize, usize) {
        let unsched = self
            .pods
            .values()
            .filter(|(_, p)| *p == Place::Unschedulable)
            .count();
        (self.active.len(), self.backoff.len(), unsched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(name: &str, priority: i32) -> Arc<PodInfo> {
        let p = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c"}]}}))
        .expect("pod");
        Arc::new(PodInfo::new(Arc::new(p), priority))
    }

    #[tokio::test]
    async fn higher_priority_pods_pop_first_then_arrival_order() {
        let mut q = Queue::default();
        let now = Instant::now();
        q.add_or_update(info("a", 0), now);
        q.add_or_update(info("b", 10), now);
        q.add_or_update(info("c", 0), now);
        let order: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|p| p.info.key.clone())
            .collect();
        assert_eq!(order, vec!["ns/b", "ns/a", "ns/c"]);
    }

    #[tokio::test]
    async fn unschedulable_pods_return_on_a_node_event_after_their_backoff() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.add_or_update(info("a", 0), t0);
        let p = q.pop().expect("a");
        q.unschedulable(&p.info.key, vec!["NodeResourcesFit"], t0);
        assert!(!q.has_active());
        q.move_on(Event::AssignedPodAdded, t0);
        assert_eq!(
            q.lens(),
            (0, 0, 1),
            "resource failures wait for a removal or node event"
        );
        q.move_on(Event::NodeChanged, t0);
        assert_eq!(q.lens(), (0, 1, 0), "still backing off for 1 s");
        q.flush(t0 + Duration::from_millis(999));
        assert!(!q.has_active());
        q.flush(t0 + Duration::from_secs(1));
        assert!(q.has_active());
    }

    #[tokio::test]
    async fn backoff_doubles_per_attempt_up_to_ten_seconds() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.add_or_update(info("a", 0), t0);
        for attempt in 1..=6u32 {
            let p = q.pop().expect("active");
            assert_eq!(p.attempts, attempt);
            q.backoff(&p.info.key, t0);
            let expected = INITIAL_BACKOFF
                .saturating_mul(1 << (attempt - 1))
                .min(MAX_BACKOFF);
            assert_eq!(q.next_backoff(), Some(t0 + expected));
            q.flush(t0 + expected);
        }
    }

    #[tokio::test]
    async fn unschedulable_pods_are_retried_after_a_minute_without_events() {
        let mut q = Queue::default();
        let t0 = Instant::now();
        q.add_or_update(info("a", 0), t0);
        let p = q.pop().expect("a");
        q.unschedulable(&p.info.key, vec![], t0);
        q.flush(t0 + Duration::from_secs(59));
        assert!(!q.has_active());
        q.flush(t0 + MAX_UNSCHEDULABLE);
        assert!(q.has_active());
    }
}
