//! Watches for backends that keep their own history (memory, SQLite): replay the
//! history after a revision, then follow live events, without gaps or duplicates.
//!
//! The live channel is subscribed *before* history is read, and live events at or below
//! the last revision already yielded are skipped. A watcher that falls behind the live
//! channel's buffer does not slow writers down: it notices the lag, subscribes again and
//! re-reads the missed events from history (or ends with [`StoreError::Compacted`] if
//! they are gone).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::{Event, Revision, StoreError, WatchStream};

/// The events of one commit, in revision order, as sent to live watchers.
pub(crate) type Batch = Arc<[Event]>;

/// How many events a watch reads from history at a time.
const REPLAY_BATCH: usize = 512;

/// Where a watch reads past events from.
#[async_trait::async_trait]
pub(crate) trait History: Send + Sync + 'static {
    /// Up to `limit` events with a revision above `after` for keys under `prefix`, in
    /// revision order. Fails with [`StoreError::Compacted`] when some of those events
    /// are gone (`after + 1` is below the compacted revision).
    async fn replay(
        &self,
        prefix: &str,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;
}

/// A watch of `prefix` for events after `after`. `live` must have been subscribed
/// before this call returns to the caller of `Store::watch`.
pub(crate) fn watch(
    history: Arc<dyn History>,
    live: broadcast::Receiver<Batch>,
    prefix: String,
    after: Revision,
) -> WatchStream {
    let feed = Feed {
        history,
        live,
        prefix,
        last: after,
        buffered: VecDeque::new(),
        replaying: true,
    };
    Box::pin(futures::stream::unfold(Some(feed), |feed| async move {
        let mut feed = feed?;
        match feed.next().await {
            Ok(event) => Some((Ok(event), Some(feed))),
            Err(error) => Some((Err(error), None)),
        }
    }))
}

struct Feed {
    history: Arc<dyn History>,
    live: broadcast::Receiver<Batch>,
    prefix: String,
    /// The revision of the last event queued for the consumer (or the starting point).
    last: Revision,
    buffered: VecDeque<Event>,
    /// True while history may hold events the live channel will not deliver.
    replaying: bool,
}

impl Feed {
    async fn next(&mut self) -> Result<Event, StoreError> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return Ok(event);
            }
            if self.replaying {
                let batch = self
                    .history
                    .replay(&self.prefix, self.last, REPLAY_BATCH)
                    .await?;
                if batch.len() < REPLAY_BATCH {
                    // Everything committed so far has been read; anything newer is (or
                    // will be) in the live channel, which was subscribed before this read.
                    self.replaying = false;
                }
                if let Some(event) = batch.last() {
                    self.last = event.kv.mod_revision;
                }
                self.buffered.extend(batch);
                continue;
            }
            match self.live.recv().await {
                Ok(batch) => {
                    for event in batch.iter() {
                        if event.kv.mod_revision > self.last
                            && event.kv.key.starts_with(&self.prefix)
                        {
                            self.last = event.kv.mod_revision;
                            self.buffered.push_back(event.clone());
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        prefix = %self.prefix,
                        last = self.last,
                        missed,
                        "watcher fell behind the live channel; re-reading history"
                    );
                    self.live = self.live.resubscribe();
                    self.replaying = true;
                }
                Err(RecvError::Closed) => return Err(StoreError::Closed),
            }
        }
    }
}
