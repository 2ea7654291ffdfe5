//! The policies, bindings and namespaces admission reads, kept in memory: listed
//! from the store once, then fed by the API server's watch cache through
//! [`crate::feed`] (Kubernetes' policy source follows informers the same way).
//! Each change to a policy or binding recompiles only that object, when its spec
//! changed, and publishes a new list of bound policies; requests read it without
//! touching the store. The follower also records `status.observedGeneration` on
//! policies it has compiled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
#[cfg(test)]
use std::time::Duration;

use api::resource::ResourceInfo;
use serde_json::{Value, json};
use store::{Revision, Store};
use tokio::sync::watch;

use super::compiled::{Bound, Objects};
use crate::feed::Watermark;
use crate::storage::Storage;
use crate::watch_cache::WatchCache;

const POLICIES: &str = "/registry/admissionregistration.k8s.io/validatingadmissionpolicies/";
const BINDINGS: &str = "/registry/admissionregistration.k8s.io/validatingadmissionpolicybindings/";
const NAMESPACES: &str = "/registry/core/namespaces/";

/// Why the cache could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CacheError {
    /// Listing the policies, bindings and namespaces failed.
    #[error("listing admission policies failed: {0}")]
    InitialListFailed(#[from] store::StoreError),
}

/// Writes `status.observedGeneration` of compiled policies.
pub(crate) struct StatusWriter {
    pub storage: Storage,
    pub resource: Arc<ResourceInfo>,
}

/// Shared by every request of one API server; see the module docs.
pub(crate) struct PolicyCache {
    /// What the follower works on.
    state: Mutex<State>,
    /// Where statuses are written (none: they are not).
    status: Option<StatusWriter>,
    bound: RwLock<Arc<Bound>>,
    namespaces: RwLock<HashMap<String, Arc<Value>>>,
    /// The last store revision the cache has seen (of any object).
    seen: Watermark,
}

/// What the follower owns.
#[derive(Default)]
struct State {
    objects: Objects,
    namespaces: HashMap<String, Arc<Value>>,
    /// Policies whose observed generation should be written, by name.
    unobserved: HashMap<String, Value>,
}

impl State {
    /// Applies one stored object (`None`: deleted); which kind changed, if any.
    fn apply(&mut self, key: &str, object: Option<&Value>) -> Touched {
        if let Some(name) = key.strip_prefix(POLICIES) {
            self.objects.set_policy(name, object);
            match object {
                Some(o) if observed_generation_is_stale(o) => {
                    self.unobserved.insert(name.to_string(), o.clone());
                }
                _ => {
                    self.unobserved.remove(name);
                }
            }
            Touched::Policies
        } else if let Some(name) = key.strip_prefix(BINDINGS) {
            self.objects.set_binding(name, object);
            Touched::Policies
        } else if let Some(name) = key.strip_prefix(NAMESPACES) {
            match object {
                Some(o) => self
                    .namespaces
                    .insert(name.to_string(), Arc::new(o.clone())),
                None => self.namespaces.remove(name),
            };
            Touched::Namespaces
        } else {
            Touched::Nothing
        }
    }
}

/// What a change touched, least first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Touched {
    Nothing,
    Namespaces,
    Policies,
}

fn observed_generation_is_stale(o: &Value) -> bool {
    let generation = o.pointer("/metadata/generation").and_then(Value::as_i64);
    let observed = o
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    generation.is_some() && generation != observed
}

impl PolicyCache {
    /// Lists, then follows `watch_cache` until `shutdown` (in a task of its own).
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        watch_cache: Arc<WatchCache>,
        status: Option<StatusWriter>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, CacheError> {
        let cache = Arc::new(Self {
            state: Mutex::default(),
            status,
            bound: RwLock::default(),
            namespaces: RwLock::default(),
            seen: Watermark::default(),
        });
        crate::feed::follow(cache.clone(), store, watch_cache, shutdown).await?;
        Ok(cache)
    }

    /// The policies that have bindings, with them.
    pub(crate) fn bound(&self) -> Arc<Bound> {
        self.bound.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A namespace as stored.
    pub(crate) fn namespace(&self, name: &str) -> Option<Arc<Value>> {
        self.namespaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Waits (at most `within`) until the cache has seen `revision`; false on timeout.
    #[cfg(test)]
    pub(crate) async fn wait_for(&self, revision: Revision, within: Duration) -> bool {
        self.seen.wait_for(revision, within).await
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes what `touched` changed for requests to read.
    fn publish(&self, state: &State, touched: Touched) {
        if touched == Touched::Policies {
            let bound = Arc::new(state.objects.bound());
            *self.bound.write().unwrap_or_else(|e| e.into_inner()) = bound;
        }
        if touched != Touched::Nothing {
            *self.namespaces.write().unwrap_or_else(|e| e.into_inner()) = state.namespaces.clone();
        }
    }

    /// Records `status.observedGeneration` of the policies compiled since the last
    /// call (a conflict means a newer version is on its way and will be recorded).
    async fn write_statuses(&self) {
        let unobserved = std::mem::take(&mut self.state().unobserved);
        let Some(status) = &self.status else {
            return;
        };
        for (name, mut obj) in unobserved {
            let generation = obj.pointer("/metadata/generation").cloned();
            let Some(rv) = obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|rv| crate::storage::parse_rv(rv).ok())
            else {
                continue;
            };
            match obj.get_mut("status").and_then(Value::as_object_mut) {
                Some(s) => {
                    s.insert("observedGeneration".into(), generation.unwrap_or_default());
                }
                None => obj["status"] = json!({"observedGeneration": generation}),
            }
            if let Err(e) = status
                .storage
                .update(&status.resource, None, &name, &obj, rv)
                .await
            {
                tracing::debug!(policy = %name, error = %e.message, "observedGeneration not recorded");
            }
        }
    }
}

impl crate::feed::Index for PolicyCache {
    fn prefixes(&self) -> &'static [&'static str] {
        &[POLICIES, BINDINGS, NAMESPACES]
    }

    fn reset(&self, objects: Vec<(String, Value)>, _revision: Revision) {
        let mut state = self.state();
        *state = State::default();
        for (key, obj) in &objects {
            state.apply(key, Some(obj));
        }
        self.publish(&state, Touched::Policies);
    }

    fn apply(&self, changes: &[(&str, Option<&Value>)], _revision: Revision) {
        let mut state = self.state();
        let touched = changes
            .iter()
            .map(|(key, object)| state.apply(key, *object))
            .max()
            .unwrap_or(Touched::Nothing);
        self.publish(&state, touched);
    }

    fn observed(&self, revision: Revision) {
        self.seen.raise(revision);
    }

    fn settle(&self) -> impl std::future::Future<Output = ()> + Send {
        self.write_statuses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    async fn put(store: &dyn Store, key: &str, obj: Value) -> Revision {
        store
            .create(key, Bytes::from(obj.to_string()))
            .await
            .expect("create")
            .mod_revision
    }

    #[tokio::test]
    async fn the_cache_follows_policies_bindings_and_namespaces() {
        let store: Arc<dyn Store> = Arc::new(store::MemoryStore::new());
        put(
            store.as_ref(),
            &format!("{POLICIES}p"),
            json!({"metadata": {"name": "p"}, "spec": {"matchConstraints": {}, "validations": [{"expression": "false"}]}}),
        )
        .await;
        let from = store.current_revision().await.expect("revision");
        let (_stop, shutdown) = watch::channel(false);
        let watch_cache = WatchCache::start(store.clone(), from, shutdown.clone());
        let cache = PolicyCache::start(store.clone(), watch_cache, None, shutdown)
            .await
            .expect("starts");
        assert!(cache.bound().is_empty(), "listed, but nothing binds it");

        let rev = put(
            store.as_ref(),
            &format!("{BINDINGS}b"),
            json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "validationActions": ["Deny"]}}),
        )
        .await;
        assert!(cache.wait_for(rev, Duration::from_secs(5)).await);
        assert_eq!(cache.bound().len(), 1);

        let rev = put(
            store.as_ref(),
            &format!("{NAMESPACES}team"),
            json!({"metadata": {"name": "team", "labels": {"env": "test"}}}),
        )
        .await;
        assert!(cache.wait_for(rev, Duration::from_secs(5)).await);
        assert_eq!(
            cache
                .namespace("team")
                .map(|n| n["metadata"]["labels"]["env"].clone()),
            Some(json!("test"))
        );

        let rev = store
            .delete(&format!("{BINDINGS}b"), None)
            .await
            .expect("delete")
            .mod_revision;
        assert!(cache.wait_for(rev, Duration::from_secs(5)).await);
        assert!(cache.bound().is_empty());
    }
}
