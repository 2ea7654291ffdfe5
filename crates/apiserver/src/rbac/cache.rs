//! The in-memory RBAC index: listed from the store once, then fed by the API
//! server's watch cache (no polling, no store reads per request). Each batch of
//! changes publishes a new [`Snapshot`]; writers of RBAC objects can wait until the
//! index has caught up with their write.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use store::{EventKind, ListOptions, Revision, Store};
use tokio::sync::{broadcast, watch};

use super::objects::{Binding, RoleObject};
use super::snapshot::{Objects, Snapshot};
use crate::watch_cache::{Change, WatchCache};

/// Store key prefix of every RBAC object.
const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// Shared by the RBAC authorizer, the escalation checks and the access reviews.
pub(crate) struct RbacCache {
    snapshot: RwLock<Arc<Snapshot>>,
    /// The last store revision the index has seen (RBAC or not).
    revision: watch::Sender<Revision>,
    /// Bumped whenever a new snapshot is published.
    generation: watch::Sender<u64>,
}

fn apply(objects: &mut Objects, key: &str, kind: EventKind, object: &serde_json::Value) {
    let Some(rest) = key.strip_prefix(PREFIX) else {
        return;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let deleted = kind == EventKind::Deleted;
    match parts.as_slice() {
        ["roles", ns, name] => {
            let k = (ns.to_string(), name.to_string());
            match RoleObject::decode(object).filter(|_| !deleted) {
                Some(r) => objects.roles.insert(k, r),
                None => objects.roles.remove(&k),
            };
        }
        ["rolebindings", ns, name] => {
            let k = (ns.to_string(), name.to_string());
            match Binding::decode(object).filter(|_| !deleted) {
                Some(b) => objects.role_bindings.insert(k, b),
                None => objects.role_bindings.remove(&k),
            };
        }
        ["clusterroles", name] => {
            match RoleObject::decode(object).filter(|_| !deleted) {
                Some(r) => objects.cluster_roles.insert(name.to_string(), r),
                None => objects.cluster_roles.remove(*name),
            };
        }
        ["clusterrolebindings", name] => {
            match Binding::decode(object).filter(|_| !deleted) {
                Some(b) => objects.cluster_role_bindings.insert(name.to_string(), b),
                None => objects.cluster_role_bindings.remove(*name),
            };
        }
        _ => {}
    }
}

async fn list_all(store: &dyn Store) -> Result<(Objects, Revision), store::StoreError> {
    let res = store
        .list(&ListOptions {
            prefix: PREFIX.into(),
            ..Default::default()
        })
        .await?;
    let mut objects = Objects::default();
    for kv in &res.items {
        if let Ok(obj) = crate::storage::decode(kv) {
            apply(&mut objects, &kv.key, EventKind::Created, &obj);
        }
    }
    Ok((objects, res.revision))
}

impl RbacCache {
    /// Lists the RBAC objects, then follows `watch_cache` until `shutdown`.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        watch_cache: Arc<WatchCache>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, crate::Error> {
        let (objects, revision) = list_all(store.as_ref()).await?;
        let cache = Arc::new(Self {
            snapshot: RwLock::new(Arc::new(Snapshot::build(&objects))),
            revision: watch::channel(revision).0,
            generation: watch::channel(0).0,
        });
        tokio::spawn(
            cache
                .clone()
                .follow(store, watch_cache, objects, revision, shutdown),
        );
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
        let mut rx = self.revision.subscribe();
        tokio::time::timeout(within, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn publish(&self, objects: &Objects, revision: Revision) {
        let snapshot = Arc::new(Snapshot::build(objects));
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
        self.generation.send_modify(|g| *g += 1);
        self.note_revision(revision);
    }

    fn note_revision(&self, revision: Revision) {
        self.revision.send_if_modified(|r| {
            let newer = revision > *r;
            if newer {
                *r = revision;
            }
            newer
        });
    }

    async fn follow(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        watch_cache: Arc<WatchCache>,
        mut objects: Objects,
        mut applied: Revision,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            match watch_cache.subscribe(applied) {
                Some(sub) => {
                    let mut dirty = false;
                    for change in &sub.backlog {
                        dirty |= self.take(&mut objects, &mut applied, change);
                    }
                    if dirty {
                        self.publish(&objects, applied);
                    }
                    self.run_live(&mut objects, &mut applied, sub.live, &mut shutdown)
                        .await;
                    if *shutdown.borrow() {
                        return;
                    }
                }
                None => {
                    tracing::debug!(revision = applied, "RBAC index fell behind the watch cache")
                }
            }
            // Relist: the watch cache was reset or we fell behind.
            loop {
                match list_all(store.as_ref()).await {
                    Ok((o, r)) => {
                        objects = o;
                        applied = r;
                        self.publish(&objects, applied);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listing RBAC objects failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.changed() => return,
                        }
                    }
                }
            }
        }
    }

    /// Applies live changes until the subscription ends (lagged or reset) or shutdown.
    async fn run_live(
        &self,
        objects: &mut Objects,
        applied: &mut Revision,
        mut live: broadcast::Receiver<Arc<Change>>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        loop {
            let first = tokio::select! {
                r = live.recv() => r,
                _ = shutdown.changed() => return,
            };
            let Ok(first) = first else {
                return;
            };
            let mut dirty = self.take(objects, applied, &first);
            // Publish once per burst of changes.
            loop {
                match live.try_recv() {
                    Ok(c) => dirty |= self.take(objects, applied, &c),
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(_) => {
                        if dirty {
                            self.publish(objects, *applied);
                        }
                        return;
                    }
                }
            }
            if dirty {
                self.publish(objects, *applied);
            } else {
                self.note_revision(*applied);
            }
        }
    }

    /// Applies one change newer than `applied`; true when it touched RBAC objects.
    fn take(&self, objects: &mut Objects, applied: &mut Revision, change: &Change) -> bool {
        if change.revision <= *applied {
            return false;
        }
        *applied = change.revision;
        if !change.key.starts_with(PREFIX) {
            return false;
        }
        apply(objects, &change.key, change.kind, &change.object);
        true
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
