//! Keeps the [`Graph`] in step with the store: pods, PersistentVolumes and
//! VolumeAttachments are listed once, then followed through the API server's watch
//! cache (Kubernetes feeds its graph from informers the same way). No polling, and
//! no store reads per request; a relist happens only when the watch cache was reset
//! or this follower fell behind it.

use std::sync::{Arc, RwLock};
#[cfg(test)]
use std::time::Duration;

use serde_json::Value;
use store::{Revision, Store};
use tokio::sync::watch;

use super::graph::Graph;
use super::refs;
use crate::feed::Watermark;
use crate::watch_cache::WatchCache;

/// Store key prefixes of the objects the graph is built from.
const PODS: &str = "/registry/core/pods/";
const VOLUMES: &str = "/registry/core/persistentvolumes/";
const ATTACHMENTS: &str = "/registry/storage.k8s.io/volumeattachments/";

/// The graph, shared by the authorizer (reads) and its follower (writes).
pub(crate) struct NodeGraph {
    graph: RwLock<Graph>,
    /// The last store revision the graph has seen (of any object).
    seen: Watermark,
}

/// Applies one object (`None`: deleted) stored under `key`; false when the key is
/// not one the graph follows.
fn apply(graph: &mut Graph, key: &str, object: Option<&Value>) -> bool {
    if let Some(rest) = key.strip_prefix(PODS) {
        let Some((ns, name)) = rest.split_once('/') else {
            return false;
        };
        graph.set_pod(ns, name, object.and_then(|p| refs::pod_refs(name, p)));
    } else if let Some(name) = key.strip_prefix(VOLUMES) {
        graph.set_volume(name, object.map(refs::pv_refs));
    } else if let Some(name) = key.strip_prefix(ATTACHMENTS) {
        let node = object.map(|va| {
            va.pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        });
        graph.set_attachment(name, node);
    } else {
        return false;
    }
    true
}

impl NodeGraph {
    /// Lists the objects, then follows `watch_cache` until `shutdown`.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        watch_cache: Arc<WatchCache>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, crate::Error> {
        let shared = Arc::new(Self {
            graph: RwLock::new(Graph::default()),
            seen: Watermark::default(),
        });
        crate::feed::follow(shared.clone(), store, watch_cache, shutdown).await?;
        tracing::debug!(
            vertices = shared.read(Graph::len),
            revision = shared.seen.get(),
            "node authorizer graph listed"
        );
        Ok(shared)
    }

    /// A graph that follows nothing (unit tests of decisions).
    #[cfg(test)]
    pub(crate) fn fixed(graph: Graph) -> Arc<Self> {
        Arc::new(Self {
            graph: RwLock::new(graph),
            seen: Watermark::default(),
        })
    }

    /// Runs `f` on the current graph.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Graph) -> T) -> T {
        f(&self.graph.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits (at most `within`) until the graph has seen `revision`; false on timeout.
    #[cfg(test)]
    pub(crate) async fn wait_for(&self, revision: Revision, within: Duration) -> bool {
        self.seen.wait_for(revision, within).await
    }
}

impl crate::feed::Index for NodeGraph {
    fn prefixes(&self) -> &'static [&'static str] {
        &[PODS, VOLUMES, ATTACHMENTS]
    }

    fn reset(&self, objects: Vec<(String, Value)>, _revision: Revision) {
        let mut graph = Graph::default();
        for (key, obj) in &objects {
            apply(&mut graph, key, Some(obj));
        }
        *self.graph.write().unwrap_or_else(|e| e.into_inner()) = graph;
    }

    fn apply(&self, changes: &[(&str, Option<&Value>)], _revision: Revision) {
        let mut graph = self.graph.write().unwrap_or_else(|e| e.into_inner());
        for (key, object) in changes {
            apply(&mut graph, key, *object);
        }
    }

    fn observed(&self, revision: Revision) {
        self.seen.raise(revision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_authz::graph::Kind;
    use bytes::Bytes;
    use serde_json::json;

    async fn put(store: &dyn Store, key: &str, obj: Value) -> Revision {
        store
            .create(key, Bytes::from(obj.to_string()))
            .await
            .expect("create")
            .mod_revision
    }

    fn pod(node: &str, secret: &str) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"nodeName": node,
               "volumes": [{"name": "s", "secret": {"secretName": secret}}]}})
    }

    #[tokio::test]
    async fn the_graph_is_listed_then_follows_pods_and_volumes_through_the_watch_cache() {
        let store: Arc<dyn Store> = Arc::new(store::MemoryStore::new());
        // One pod exists before the graph starts: it is listed.
        put(
            store.as_ref(),
            "/registry/core/pods/ns/before",
            pod("a", "s1"),
        )
        .await;
        let from = store.current_revision().await.expect("revision");
        let (_stop, shutdown) = watch::channel(false);
        let watch_cache = WatchCache::start(store.clone(), from, shutdown.clone());
        let graph = NodeGraph::start(store.clone(), watch_cache, shutdown)
            .await
            .expect("the graph starts");
        let related = |g: &NodeGraph, node: &str, kind: Kind, ns: &str, name: &str| {
            g.read(|g| g.has_path(node, kind, ns, name))
        };
        assert!(related(&graph, "a", Kind::Secret, "ns", "s1"));

        let key = "/registry/core/pods/ns/after";
        let rev = put(store.as_ref(), key, pod("b", "s2")).await;
        assert!(graph.wait_for(rev, Duration::from_secs(5)).await);
        assert!(related(&graph, "b", Kind::Secret, "ns", "s2"));
        assert!(!related(&graph, "a", Kind::Secret, "ns", "s2"));

        let rev = put(
            store.as_ref(),
            "/registry/core/persistentvolumes/pv1",
            json!({"spec": {"claimRef": {"namespace": "ns", "name": "c"}}}),
        )
        .await;
        assert!(graph.wait_for(rev, Duration::from_secs(5)).await);
        assert!(!related(&graph, "b", Kind::Volume, "", "pv1"));

        let rev = store.delete(key, None).await.expect("delete").mod_revision;
        assert!(graph.wait_for(rev, Duration::from_secs(5)).await);
        assert!(!related(&graph, "b", Kind::Secret, "ns", "s2"));
        // Other objects move the revision on without touching the graph.
        let rev = put(
            store.as_ref(),
            "/registry/core/configmaps/ns/x",
            json!({"metadata": {"name": "x"}}),
        )
        .await;
        assert!(graph.wait_for(rev, Duration::from_secs(5)).await);
    }
}
