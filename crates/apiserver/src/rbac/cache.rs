//! The in-memory RBAC index: listed from the store once, then fed by the API
//! server's watch cache through [`crate::feed`] (no polling, no store reads per
//! request). Each batch of changes publishes a new [`Snapshot`]; writers of RBAC
//! objects can wait until the index has caught up with their write.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;
use store::{Revision, Store};
use tokio::sync::watch;

use super::objects::{Binding, RoleObject};
use super::snapshot::{Objects, Snapshot};
use crate::feed::Watermark;
use crate::watch_cache::WatchCache;

/// Store key prefix of every RBAC object.
const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// Shared by the RBAC authorizer, the escalation checks and the access reviews.
pub(crate) struct RbacCache {
    /// The objects as followed (the follower's working copy).
    objects: Mutex<Objects>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// The last store revision the index has seen (RBAC or not).
    seen: Watermark,
    /// Bumped whenever a new snapshot is published.
    generation: watch::Sender<u64>,
}

/// Applies one object (`None`: deleted) stored under `key`.
fn apply(objects: &mut Objects, key: &str, object: Option<&Value>) {
    let Some(rest) = key.strip_prefix(PREFIX) else {
        return;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["roles", ns, name] => {
            let k = (ns.to_string(), name.to_string());
            match object.and_then(RoleObject::decode) {
                Some(r) => objects.roles.insert(k, r),
                None => objects.roles.remove(&k),
            };
        }
        ["rolebindings", ns, name] => {
            let k = (ns.to_string(), name.to_string());
            match object.and_then(Binding::decode) {
                Some(b) => objects.role_bindings.insert(k, b),
                None => objects.role_bindings.remove(&k),
            };
        }
        ["clusterroles", name] => {
            match object.and_then(RoleObject::decode) {
                Some(r) => objects.cluster_roles.insert(name.to_string(), r),
                None => objects.cluster_roles.remove(*name),
            };
        }
        ["clusterrolebindings", name] => {
            match object.and_then(Binding::decode) {
                Some(b) => objects.cluster_role_bindings.insert(name.to_string(), b),
                None => objects.cluster_role_bindings.remove(*name),
            };
        }
        _ => {}
    }
}

impl RbacCache {
    /// Lists the RBAC objects, then follows `watch_cache` until `shutdown`.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        watch_cache: Arc<WatchCache>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, crate::Error> {
        let objects = Objects::default();
        let cache = Arc::new(Self {
            snapshot: RwLock::new(Arc::new(Snapshot::build(&objects))),
            objects: Mutex::new(objects),
            seen: Watermark::default(),
            generation: watch::channel(0).0,
        });
        crate::feed::follow(cache.clone(), store, watch_cache, shutdown).await?;
        Ok(cache)
    }

    /// The current view.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves when a new snapshot is published.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Waits (at most `within`) until the index has seen `revision`; false on timeout.
    pub(crate) async fn wait_for(&self, revision: Revision, within: Duration) -> bool {
        self.seen.wait_for(revision, within).await
    }

    /// Publishes a snapshot of `objects` (before the revision is marked seen, so
    /// that a writer waiting for its revision reads its write).
    fn publish(&self, objects: &Objects) {
        let snapshot = Arc::new(Snapshot::build(objects));
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
        self.generation.send_modify(|g| *g += 1);
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl crate::feed::Index for RbacCache {
    fn prefixes(&self) -> &'static [&'static str] {
        &[PREFIX]
    }

    fn reset(&self, listed: Vec<(String, Value)>, _revision: Revision) {
        let mut objects = self.objects();
        *objects = Objects::default();
        for (key, obj) in &listed {
            apply(&mut objects, key, Some(obj));
        }
        self.publish(&objects);
    }

    /// One snapshot per burst of changes.
    fn apply(&self, changes: &[(&str, Option<&Value>)], _revision: Revision) {
        let mut objects = self.objects();
        for (key, object) in changes {
            apply(&mut objects, key, *object);
        }
        self.publish(&objects);
    }

    fn observed(&self, revision: Revision) {
        self.seen.raise(revision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::Identity;
    use crate::authz::Attributes;
    use bytes::Bytes;
    use serde_json::json;

    async fn put(store: &dyn Store, key: &str, obj: serde_json::Value) -> Revision {
        store
            .create(key, Bytes::from(obj.to_string()))
            .await
            .expect("create")
            .mod_revision
    }

    #[tokio::test]
    async fn the_index_follows_creates_and_deletes_through_the_watch_cache() {
        let store: Arc<dyn Store> = Arc::new(store::MemoryStore::new());
        // One binding exists before the index starts: it is listed.
        put(
            store.as_ref(),
            "/registry/rbac.authorization.k8s.io/clusterroles/reader",
            json!({"metadata": {"name": "reader"},
                   "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}),
        )
        .await;
        let from = store.current_revision().await.expect("revision");
        let (_stop, shutdown) = watch::channel(false);
        let watch_cache = WatchCache::start(store.clone(), from, shutdown.clone());
        let cache = RbacCache::start(store.clone(), watch_cache, shutdown)
            .await
            .expect("the index starts");
        let bob = Identity {
            user: "bob".into(),
            uid: String::new(),
            groups: vec![],
            extra: Default::default(),
        };
        let allowed = |c: &RbacCache| {
            c.snapshot()
                .decide(&Attributes::resource(&bob, "get", "", "pods", "ns", "p"))
                .allowed()
        };
        assert!(!allowed(&cache));

        let key = "/registry/rbac.authorization.k8s.io/rolebindings/ns/bob-reads";
        let rev = put(
            store.as_ref(),
            key,
            json!({"metadata": {"name": "bob-reads", "namespace": "ns"},
                   "roleRef": {"kind": "ClusterRole", "name": "reader"},
                   "subjects": [{"kind": "User", "name": "bob"}]}),
        )
        .await;
        assert!(cache.wait_for(rev, Duration::from_secs(5)).await);
        assert!(allowed(&cache));

        let rev = store.delete(key, None).await.expect("delete").mod_revision;
        assert!(cache.wait_for(rev, Duration::from_secs(5)).await);
        assert!(!allowed(&cache));
        // Other objects move the revision on without touching the index.
        let rev = put(
            store.as_ref(),
            "/registry/core/configmaps/ns/x",
            json!({"metadata": {"name": "x"}}),
        )
        .await;
        assert!(cache.wait_for(rev, Duration::from_secs(5)).await);
    }
}
