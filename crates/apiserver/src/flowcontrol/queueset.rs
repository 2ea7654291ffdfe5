//! Fair queuing for one priority level: a number of seats shared by requests, and
//! queues that requests wait in when the seats are taken. A flow (a user, or a
//! namespace) is dealt a hand of queues by shuffle sharding and joins the shortest
//! of them; when seats free up, the queue that has received the least service (in
//! seats) goes next, so a flow that floods the level only ever competes with itself.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

/// How a level answers when its seats are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Queue (`limitResponse.type: Queue`).
    Queue {
        queues: usize,
        hand_size: usize,
        queue_length_limit: usize,
    },
    /// Refuse at once (`limitResponse.type: Reject`).
    Reject,
}

/// Why a request was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The level rejects when full, or the chosen queue was full.
    QueueFull,
    /// The request waited longer than the queue wait limit.
    TimedOut,
}

struct Waiter {
    id: u64,
    seats: u32,
    /// Told the number of seats granted.
    ready: oneshot::Sender<u32>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiter>,
    /// Seats handed to this queue's requests while it was active: the fairness
    /// measure.
    served: u64,
    /// Seats its requests hold now.
    executing: u32,
}

struct Inner {
    limit: u32,
    in_use: u32,
    queues: Vec<Queue>,
    policy: Limit,
    next_id: u64,
    waiting: usize,
}

/// Seats and queues of one priority level.
pub(crate) struct QueueSet {
    inner: Mutex<Inner>,
}

/// Seats held by an executing request; released on drop.
pub(crate) struct Seats {
    set: Arc<QueueSet>,
    seats: u32,
    queue: Option<usize>,
}

/// A request waiting in a queue. Dropped before it was served (timed out, or the
/// client went away), it leaves its queue, or gives back the seats it was granted
/// in the meantime.
struct Pending {
    set: Arc<QueueSet>,
    queue: usize,
    id: u64,
    rx: Option<oneshot::Receiver<u32>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        {
            let mut inner = self.set.lock();
            if let Some(q) = inner.queues.get_mut(self.queue) {
                let before = q.waiting.len();
                q.waiting.retain(|w| w.id != self.id);
                if q.waiting.len() != before {
                    inner.waiting -= 1;
                    return;
                }
            }
        }
        if let Ok(granted) = rx.try_recv() {
            self.set.release(granted, Some(self.queue));
        }
    }
}

impl Drop for Seats {
    fn drop(&mut self) {
        self.set.release(self.seats, self.queue);
    }
}

/// What the queue set holds right now (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Occupancy {
    pub limit: u32,
    pub seats_in_use: u32,
    pub waiting: usize,
}

/// The queues a flow may use: `hand_size` distinct queues picked from its hash.
fn deal(hash: u64, queues: usize, hand_size: usize) -> Vec<usize> {
    let hand_size = hand_size.clamp(1, queues.max(1));
    let mut hand = Vec::with_capacity(hand_size);
    let mut h = hash;
    for i in 0..hand_size {
        // Choose among the queues not dealt yet, as Kubernetes' shuffle-sharding
        // dealer does: the i-th card from a deck of `queues - i`.
        let remaining = (queues - i) as u64;
        let mut pick = (h % remaining) as usize;
        h /= remaining;
        if h == 0 {
            h = hash.rotate_left(17 * (i as u32 + 1)) | 1;
        }
        // Skip the cards already dealt (keep them sorted to map the index).
        let mut sorted = hand.clone();
        sorted.sort_unstable();
        for taken in sorted {
            if pick >= taken {
                pick += 1;
            }
        }
        hand.push(pick);
    }
    hand
}

/// A stable hash of a flow (flow schema and distinguisher).
pub(crate) fn flow_hash(schema: &str, distinguisher: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    schema.hash(&mut h);
    distinguisher.hash(&mut h);
    h.finish()
}

impl QueueSet {
    /// A level with `limit` seats.
    pub(crate) fn new(limit: u32, policy: Limit) -> Arc<Self> {
        let queues = match policy {
            Limit::Queue { queues, .. } => queues.max(1),
            Limit::Reject => 0,
        };
        Arc::new(Self {
            inner: Mutex::new(Inner {
                limit: limit.max(1),
                in_use: 0,
                queues: (0..queues).map(|_| Queue::default()).collect(),
                policy,
                next_id: 0,
                waiting: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a new limit and queuing policy (configuration changed); waiting
    /// requests keep their place when the queues stay.
    pub(crate) fn reconfigure(&self, limit: u32, policy: Limit) {
        let mut inner = self.lock();
        inner.limit = limit.max(1);
        if inner.policy != policy {
            let queues = match policy {
                Limit::Queue { queues, .. } => queues.max(1),
                Limit::Reject => 0,
            };
            if queues > inner.queues.len() {
                inner.queues.resize_with(queues, Queue::default);
            }
            inner.policy = policy;
        }
        Self::dispatch(&mut inner);
    }

    /// What the set holds now.
    pub(crate) fn occupancy(&self) -> Occupancy {
        let inner = self.lock();
        Occupancy {
            limit: inner.limit,
            seats_in_use: inner.in_use,
            waiting: inner.waiting,
        }
    }

    /// Waits (at most `wait_limit`) for `seats` seats for a request of flow `flow`.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        flow: u64,
        seats: u32,
        wait_limit: Duration,
    ) -> Result<Seats, Rejection> {
        let (id, queue, rx) = {
            let mut inner = self.lock();
            // A request wider than the level runs alone.
            let seats = seats.clamp(1, inner.limit);
            let idle = inner.queues.iter().all(|q| q.waiting.is_empty());
            if idle && inner.in_use + seats <= inner.limit {
                inner.in_use += seats;
                return Ok(Seats {
                    set: self.clone(),
                    seats,
                    queue: None,
                });
            }
            let Limit::Queue {
                queues,
                hand_size,
                queue_length_limit,
            } = inner.policy
            else {
                return Err(Rejection::QueueFull);
            };
            let queues = queues.min(inner.queues.len()).max(1);
            let hand = deal(flow, queues, hand_size);
            let best = hand
                .into_iter()
                .min_by_key(|&i| {
                    let q = &inner.queues[i];
                    q.waiting.iter().map(|w| w.seats as u64).sum::<u64>() + q.executing as u64
                })
                .unwrap_or(0);
            if inner.queues[best].waiting.len() >= queue_length_limit.max(1) {
                return Err(Rejection::QueueFull);
            }
            // A queue that wakes up starts level with the least served active
            // queue: idle time earns no credit.
            if inner.queues[best].waiting.is_empty() && inner.queues[best].executing == 0 {
                let floor = inner
                    .queues
                    .iter()
                    .filter(|q| !q.waiting.is_empty() || q.executing > 0)
                    .map(|q| q.served)
                    .min();
                if let Some(floor) = floor {
                    let q = &mut inner.queues[best];
                    q.served = q.served.max(floor);
                }
            }
            let (tx, rx) = oneshot::channel();
            inner.next_id += 1;
            let id = inner.next_id;
            inner.queues[best].waiting.push_back(Waiter {
                id,
                seats,
                ready: tx,
            });
            inner.waiting += 1;
            Self::dispatch(&mut inner);
            (id, best, rx)
        };
        let mut pending = Pending {
            set: self.clone(),
            queue,
            id,
            rx: Some(rx),
        };
        let Some(rx) = pending.rx.as_mut() else {
            return Err(Rejection::TimedOut);
        };
        match tokio::time::timeout(wait_limit, rx).await {
            Ok(Ok(granted)) => {
                pending.rx = None;
                Ok(self.granted(granted, queue))
            }
            // Timed out (dropping `pending` leaves the queue, or gives back seats
            // granted at the last moment).
            _ => Err(Rejection::TimedOut),
        }
    }

    fn granted(self: &Arc<Self>, seats: u32, queue: usize) -> Seats {
        Seats {
            set: self.clone(),
            seats,
            queue: Some(queue),
        }
    }

    fn release(&self, seats: u32, queue: Option<usize>) {
        let mut inner = self.lock();
        inner.in_use = inner.in_use.saturating_sub(seats);
        if let Some(q) = queue.and_then(|q| inner.queues.get_mut(q)) {
            q.executing = q.executing.saturating_sub(seats);
        }
        Self::dispatch(&mut inner);
    }

    /// Hands free seats to waiting requests: the queue whose head would finish
    /// first if every queue were served in turn (its service so far plus its head's
    /// seats, fair queuing's virtual finish time) goes next, so a one-seat request
    /// does not wait behind another flow's wide list.
    fn dispatch(inner: &mut Inner) {
        loop {
            let limit = inner.limit;
            let next = inner
                .queues
                .iter()
                .enumerate()
                .filter_map(|(i, q)| {
                    let head = q.waiting.front()?.seats.clamp(1, limit);
                    Some((q.served + head as u64, i, head))
                })
                .min();
            let Some((_, i, head_seats)) = next else {
                return;
            };
            if inner.in_use + head_seats > limit {
                // The fairest request waits for enough seats; nobody overtakes it.
                return;
            }
            let Some(w) = inner.queues[i].waiting.pop_front() else {
                return;
            };
            inner.waiting -= 1;
            if w.ready.send(head_seats).is_err() {
                // The request went away while waiting.
                continue;
            }
            inner.in_use += head_seats;
            let q = &mut inner.queues[i];
            q.executing += head_seats;
            q.served += head_seats as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(queues: usize, hand_size: usize, queue_length_limit: usize) -> Limit {
        Limit::Queue {
            queues,
            hand_size,
            queue_length_limit,
        }
    }

    #[test]
    fn hands_are_distinct_queues_within_range() {
        for hash in [0u64, 1, 7, u64::MAX, 0xdead_beef, 123_456_789] {
            let hand = deal(hash, 64, 6);
            assert_eq!(hand.len(), 6);
            let mut sorted = hand.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 6, "{hand:?}");
            assert!(hand.iter().all(|&q| q < 64), "{hand:?}");
        }
        assert_eq!(deal(5, 1, 8), vec![0]);
    }

    #[tokio::test]
    async fn requests_beyond_the_seats_wait_and_are_served_when_seats_free() {
        let set = QueueSet::new(2, queued(4, 2, 10));
        let a = set
            .acquire(1, 1, Duration::from_secs(5))
            .await
            .expect("seat");
        let b = set
            .acquire(1, 1, Duration::from_secs(5))
            .await
            .expect("seat");
        let waiting = tokio::spawn({
            let set = set.clone();
            async move { set.acquire(2, 1, Duration::from_secs(5)).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(set.occupancy().waiting, 1);
        drop(a);
        assert!(waiting.await.expect("task"));
        drop(b);
        assert_eq!(set.occupancy().seats_in_use, 0);
    }

    #[tokio::test]
    async fn a_full_queue_or_a_rejecting_level_refuses_at_once() {
        let set = QueueSet::new(1, queued(1, 1, 1));
        let _held = set
            .acquire(1, 1, Duration::from_secs(5))
            .await
            .expect("seat");
        let _queued = tokio::spawn({
            let set = set.clone();
            async move { set.acquire(1, 1, Duration::from_secs(5)).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            set.acquire(1, 1, Duration::from_secs(5)).await.err(),
            Some(Rejection::QueueFull)
        );
        let reject = QueueSet::new(1, Limit::Reject);
        let _busy = reject
            .acquire(1, 1, Duration::from_secs(5))
            .await
            .expect("seat");
        assert_eq!(
            reject.acquire(2, 1, Duration::from_secs(5)).await.err(),
            Some(Rejection::QueueFull)
        );
    }

    #[tokio::test]
    async fn waiting_past_the_limit_times_out_and_leaves_the_queue() {
        let set = QueueSet::new(1, queued(2, 1, 5));
        let _held = set
            .acquire(1, 1, Duration::from_secs(5))
            .await
            .expect("seat");
        let r = set.acquire(2, 1, Duration::from_millis(30)).await;
        assert_eq!(r.err(), Some(Rejection::TimedOut));
        assert_eq!(set.occupancy().waiting, 0);
    }

    #[tokio::test]
    async fn a_flooding_flow_does_not_delay_another_flow_behind_its_backlog() {
        // One seat; the flooder has 20 requests queued. The other flow's single
        // request is served right after the one executing now, not after the 20.
        let set = QueueSet::new(1, queued(64, 1, 100));
        let held = set
            .acquire(1, 1, Duration::from_secs(5))
            .await
            .expect("seat");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..20 {
            let set = set.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let s = set
                    .acquire(1, 1, Duration::from_secs(5))
                    .await
                    .expect("seat");
                order.lock().expect("lock").push(format!("flood{i}"));
                tokio::time::sleep(Duration::from_millis(1)).await;
                drop(s);
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let other = {
            let set = set.clone();
            let order = order.clone();
            tokio::spawn(async move {
                let s = set
                    .acquire(2, 1, Duration::from_secs(5))
                    .await
                    .expect("seat");
                order.lock().expect("lock").push("other".to_string());
                drop(s);
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(held);
        other.await.expect("other");
        for t in tasks {
            t.await.expect("flood");
        }
        let order = order.lock().expect("lock").clone();
        let pos = order.iter().position(|s| s == "other").expect("served");
        assert!(pos <= 1, "served after {pos} flood requests: {order:?}");
    }

    #[tokio::test]
    async fn a_narrow_request_does_not_wait_behind_another_flows_wide_one() {
        // Ten seats, eight held by a wide list; the same flow's next wide list waits
        // for eight free seats. Another flow's one-seat get fits in the two free
        // seats and goes at once.
        let set = QueueSet::new(10, queued(64, 1, 10));
        let _wide = set
            .acquire(1, 8, Duration::from_secs(5))
            .await
            .expect("seats");
        let next_wide = tokio::spawn({
            let set = set.clone();
            async move { set.acquire(1, 8, Duration::from_secs(5)).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(set.occupancy().waiting, 1);
        let narrow = set.acquire(2, 1, Duration::from_millis(200)).await;
        assert!(
            narrow.is_ok(),
            "the one-seat request waited: {:?}",
            narrow.err()
        );
        next_wide.abort();
    }

    #[tokio::test]
    async fn wide_requests_take_several_seats() {
        let set = QueueSet::new(10, queued(8, 2, 10));
        let wide = set
            .acquire(1, 8, Duration::from_secs(5))
            .await
            .expect("seats");
        assert_eq!(set.occupancy().seats_in_use, 8);
        let r = set.acquire(2, 4, Duration::from_millis(20)).await;
        assert_eq!(r.err(), Some(Rejection::TimedOut));
        drop(wide);
        let _whole = set
            .acquire(2, 40, Duration::from_secs(1))
            .await
            .expect("clamped to the level");
        assert_eq!(set.occupancy().seats_in_use, 10);
    }
}
