//! A small de-duplicating work queue with delayed re-adds and per-key backoff, shared
//! by the controllers that reconcile keys whose object may be gone (a Service whose
//! Endpoints must be deleted, an owner that vanished), which `kube::runtime::Controller`
//! skips.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::time::Duration;

use tokio::sync::mpsc;

/// The sending half: cheap to clone, used by watch handlers.
#[derive(Debug)]
pub(crate) struct Queue<K> {
    tx: mpsc::UnboundedSender<K>,
}

impl<K> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<K: Send + 'static> Queue<K> {
    /// Queues `key` now.
    pub(crate) fn add(&self, key: K) {
        let _ = self.tx.send(key);
    }

    /// Queues `key` after `delay`.
    pub(crate) fn add_after(&self, key: K, delay: Duration) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(key);
        });
    }
}

/// The receiving half: hands out batches of distinct keys and tracks failures.
#[derive(Debug)]
pub(crate) struct Worker<K> {
    rx: mpsc::UnboundedReceiver<K>,
    queue: Queue<K>,
    failures: HashMap<K, u32>,
}

/// A new queue and its worker.
pub(crate) fn queue<K: Eq + Hash + Clone + Send + 'static>() -> (Queue<K>, Worker<K>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queue = Queue { tx };
    (
        queue.clone(),
        Worker {
            rx,
            queue,
            failures: HashMap::new(),
        },
    )
}

impl<K: Eq + Hash + Clone + Send + 'static> Worker<K> {
    /// Waits for at least one key and returns every distinct key queued so far; `None`
    /// when every sender is gone.
    pub(crate) async fn next_batch(&mut self) -> Option<HashSet<K>> {
        let first = self.rx.recv().await?;
        let mut batch = HashSet::from([first]);
        while let Ok(k) = self.rx.try_recv() {
            batch.insert(k);
        }
        Some(batch)
    }

    /// Records the outcome for `key`: forgets failures on success, re-queues with
    /// exponential backoff (100 ms doubling, at most 30 s) on failure.
    pub(crate) fn done(&mut self, key: K, ok: bool) {
        if ok {
            self.failures.remove(&key);
            return;
        }
        let n = self.failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        self.queue.add_after(key, backoff(*n));
    }
}

/// Delay before retry number `n` (1-based).
pub(crate) fn backoff(n: u32) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << n.min(20).saturating_sub(1));
    Duration::from_millis(ms.min(30_000))
}

pub(crate) use crate::informers::Tasks;

/// Subscribes to the shared informer of kind `K` for as long as `tasks` lives and
/// returns its cache. For every change, `keys` names the keys to queue; it runs after
/// the cache applied the change, and an applied change carries the object as it
/// was before (so handlers can see an object's old labels).
pub(crate) async fn informer<K, Q>(
    informers: &crate::informers::Informers,
    tasks: &mut Tasks,
    queue: Queue<Q>,
    mut keys: impl FnMut(crate::informers::Change<'_, K>) -> Vec<Q> + Send + 'static,
) -> kube::runtime::reflector::Store<K>
where
    K: crate::informers::Cached,
    Q: Send + 'static,
{
    let informer = informers.get::<K>().await;
    tasks.hold(informer.subscribe(move |c| {
        for k in keys(c) {
            queue.add(k);
        }
    }));
    informer.store()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps_at_thirty_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(30), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn batches_hold_each_key_once() {
        let (q, mut w) = queue::<String>();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        let b = w.next_batch().await.expect("batch");
        assert_eq!(b.len(), 2);
    }
}
