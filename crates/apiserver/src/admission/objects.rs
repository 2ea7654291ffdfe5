//! The namespaces and service accounts that admission reads for every pod (namespace
//! lifecycle, PodSecurity's namespace labels, the pod's ServiceAccount), kept in
//! memory from the watch cache as Kubernetes' admission plugins keep them in
//! informers. A lookup first makes sure the index has seen every namespace and
//! service account write this server acknowledged (waiting briefly right after
//! one), so it reads what a storage read would; if the index cannot catch up
//! quickly, the caller reads storage instead. Writes of other API servers (on a
//! shared etcd) reach it through the watch, with the lag of Kubernetes' informers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use store::{Revision, Store};
use tokio::sync::watch;

use crate::feed::Watermark;
use crate::storage::WriteMark;
use crate::watch_cache::WatchCache;

const NAMESPACES: &str = "/registry/core/namespaces/";
const SERVICE_ACCOUNTS: &str = "/registry/core/serviceaccounts/";

/// How long a lookup waits for the index to catch up before the caller reads
/// storage instead.
const CATCH_UP: Duration = Duration::from_millis(500);

/// Namespaces and service accounts by store key.
pub(crate) struct AdmissionObjects {
    objects: RwLock<HashMap<String, Arc<Value>>>,
    seen: Watermark,
    /// This server's acknowledged writes under [`Self::PREFIXES`].
    written: Arc<WriteMark>,
}

impl AdmissionObjects {
    /// The store key prefixes of the objects kept.
    pub(crate) const PREFIXES: &'static [&'static str] = &[NAMESPACES, SERVICE_ACCOUNTS];

    /// Lists the objects, then follows `watch_cache` until `shutdown`. `written`
    /// must be the mark the server's storage records its writes under
    /// [`Self::PREFIXES`] in.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        watch_cache: Arc<WatchCache>,
        written: Arc<WriteMark>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, crate::Error> {
        let index = Arc::new(Self {
            objects: RwLock::new(HashMap::new()),
            seen: Watermark::default(),
            written,
        });
        crate::feed::follow(index.clone(), store, watch_cache, shutdown).await?;
        Ok(index)
    }

    /// The namespace `name` as of now: `Some(None)` when it does not exist, `None`
    /// when the index is behind (read storage).
    pub(crate) async fn namespace(&self, name: &str) -> Option<Option<Arc<Value>>> {
        self.lookup(format!("{NAMESPACES}{name}")).await
    }

    /// The service account `namespace/name` as of now (see [`Self::namespace`]).
    pub(crate) async fn service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Option<Arc<Value>>> {
        self.lookup(format!("{SERVICE_ACCOUNTS}{namespace}/{name}"))
            .await
    }

    async fn lookup(&self, key: String) -> Option<Option<Arc<Value>>> {
        let written = self.written.get();
        if self.seen.get() < written && !self.seen.wait_for(written, CATCH_UP).await {
            return None;
        }
        Some(self.read().get(&key).cloned())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Value>>> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Value>>> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl crate::feed::Index for AdmissionObjects {
    fn prefixes(&self) -> &'static [&'static str] {
        Self::PREFIXES
    }

    fn reset(&self, listed: Vec<(String, Value)>, _revision: Revision) {
        *self.write() = listed
            .into_iter()
            .map(|(key, obj)| (key, Arc::new(obj)))
            .collect();
    }

    fn apply(&self, changes: &[(&str, Option<&Value>)], _revision: Revision) {
        let mut objects = self.write();
        for (key, object) in changes {
            match object {
                Some(o) => objects.insert((*key).to_string(), Arc::new((*o).clone())),
                None => objects.remove(*key),
            };
        }
    }

    fn observed(&self, revision: Revision) {
        self.seen.raise(revision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    /// Writes as the server's storage does: to the store, then on the mark.
    async fn write(store: &dyn Store, mark: &WriteMark, key: &str, obj: Option<Value>) {
        let kv = match obj {
            Some(o) => store.create(key, Bytes::from(o.to_string())).await,
            None => store.delete(key, None).await,
        }
        .expect("write");
        mark.record(&kv.key, kv.mod_revision);
    }

    #[tokio::test]
    async fn lookups_see_every_write_acknowledged_before_them() {
        let store: Arc<dyn Store> = Arc::new(store::MemoryStore::new());
        let mark = Arc::new(WriteMark::new(AdmissionObjects::PREFIXES));
        let old = "/registry/core/namespaces/old";
        write(
            store.as_ref(),
            &mark,
            old,
            Some(json!({"metadata": {"name": "old"}})),
        )
        .await;
        let from = store.current_revision().await.expect("revision");
        let (_stop, shutdown) = watch::channel(false);
        let watch_cache = WatchCache::start(store.clone(), from, shutdown.clone());
        let index = AdmissionObjects::start(store.clone(), watch_cache, mark.clone(), shutdown)
            .await
            .expect("the index starts");
        let name = |v: Option<Option<Arc<Value>>>| {
            v.expect("caught up").map(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
        };
        assert_eq!(name(index.namespace("old").await).as_deref(), Some("old"));
        assert_eq!(name(index.namespace("new").await), None);

        // Written, then looked up at once: the lookup waits for the index.
        for round in 0..50 {
            let ns = format!("new-{round}");
            let key = format!("/registry/core/serviceaccounts/{ns}/default");
            let sa = json!({"metadata": {"name": "default", "namespace": ns}});
            write(store.as_ref(), &mark, &key, Some(sa)).await;
            assert_eq!(
                name(index.service_account(&ns, "default").await).as_deref(),
                Some("default"),
                "round {round}"
            );
        }
        write(store.as_ref(), &mark, old, None).await;
        assert_eq!(name(index.namespace("old").await), None);
    }
}
