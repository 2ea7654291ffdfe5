//! A watch-fed cache (kube-runtime reflector) that pokes a [`Notify`] on every change.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt as _;
use kube::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// One kind's reflector cache; the watch task stops when the cache is dropped.
pub(crate) struct Cache<K>
where
    K: kube::Resource + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    synced: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl<K> Drop for Cache<K>
where
    K: kube::Resource + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<K> Cache<K>
where
    K: kube::Resource + Clone + Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    /// Starts watching `api` with `config`; `changed` is notified after every applied
    /// event once the first list is complete.
    pub(crate) fn start(api: Api<K>, config: watcher::Config, changed: Arc<Notify>) -> Self {
        let (store, mut writer) = reflector::store::<K>();
        let (synced_tx, synced) = watch::channel(false);
        let what = std::any::type_name::<K>();
        let task = tokio::spawn(async move {
            let stream = watcher::watcher(api, config).default_backoff();
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::debug!(what, error = %e, "watch failed; retrying");
                        continue;
                    }
                };
                writer.apply_watcher_event(&event);
                match event {
                    Event::Init | Event::InitApply(_) => {}
                    Event::InitDone => {
                        synced_tx.send_replace(true);
                        changed.notify_one();
                    }
                    Event::Apply(_) | Event::Delete(_) => changed.notify_one(),
                }
            }
        });
        Self {
            store,
            synced,
            task,
        }
    }

    /// Waits until the first list is in the cache.
    pub(crate) async fn synced(&self) {
        let _ = self.synced.clone().wait_for(|s| *s).await;
    }

    /// Every cached object.
    pub(crate) fn state(&self) -> Vec<Arc<K>> {
        self.store.state()
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
