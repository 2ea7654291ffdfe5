//! One lazily started value per API server in this process (the admission
//! plugins' caches), found by the server's watch cache: the server's shared state
//! has no slot for them.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OnceCell;

use crate::watch_cache::WatchCache;

type Slot<T> = Arc<OnceCell<Arc<T>>>;

/// A `T` per API server, keyed by its watch cache (held weakly, so that an
/// address is not reused while its entry exists).
pub(crate) struct PerServer<T>(Mutex<Vec<(Weak<WatchCache>, Slot<T>)>>);

impl<T> PerServer<T> {
    /// No values yet.
    pub(crate) const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    /// The value of the server with `watch_cache`, started by `start` on first use
    /// (once, also when requests race; a failed start is tried again next time).
    pub(crate) async fn get_or_try_init<E, F, Fut>(
        &self,
        watch_cache: &Arc<WatchCache>,
        start: F,
    ) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<T>, E>>,
    {
        let slot = {
            let mut slots = self.0.lock().unwrap_or_else(|e| e.into_inner());
            slots.retain(|(cache, _)| cache.strong_count() > 0);
            let ours = Arc::as_ptr(watch_cache);
            match slots.iter().find(|(cache, _)| cache.as_ptr() == ours) {
                Some((_, slot)) => slot.clone(),
                None => {
                    let slot = Slot::default();
                    slots.push((Arc::downgrade(watch_cache), slot.clone()));
                    slot
                }
            }
        };
        slot.get_or_try_init(start).await.cloned()
    }
}
