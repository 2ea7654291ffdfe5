//! The resources the server serves right now: the built-in ones (fixed) plus the
//! custom resources of established CRDs (changing at runtime). Requests read one
//! immutable [`Snapshot`] each (an `Arc` clone under a read lock held for
//! nanoseconds); the CRD controller publishes a new snapshot when CRDs change. The
//! OpenAPI documents are built lazily per snapshot, so a change invalidates them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use api::resource::{Registry, ResourceInfo};

use super::resource::CustomResource;
use crate::openapi::OpenApiDocs;

/// One immutable view of everything served.
pub(crate) struct Snapshot {
    /// Built-in and custom resources.
    pub registry: Registry,
    /// Custom resources by (group, version, plural).
    custom: HashMap<(String, String, String), Arc<CustomResource>>,
    openapi: OnceLock<OpenApiDocs>,
}

impl Snapshot {
    fn new(registry: Registry, custom: Vec<Arc<CustomResource>>) -> Self {
        let custom = custom
            .into_iter()
            .map(|c| {
                let k = (
                    c.info.group.clone(),
                    c.info.version.clone(),
                    c.info.plural.clone(),
                );
                (k, c)
            })
            .collect();
        Self {
            registry,
            custom,
            openapi: OnceLock::new(),
        }
    }

    /// The custom resource served at group/version/plural, if it is one.
    pub(crate) fn custom(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&Arc<CustomResource>> {
        self.custom
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    /// Every served custom resource version.
    pub(crate) fn customs(&self) -> impl Iterator<Item = &Arc<CustomResource>> {
        self.custom.values()
    }

    /// The OpenAPI documents of this snapshot, built on first use.
    pub(crate) fn openapi(&self) -> &OpenApiDocs {
        self.openapi.get_or_init(|| OpenApiDocs::build(self))
    }
}

/// Shared by the request pipeline, the storage layer and the CRD controller.
pub(crate) struct ServedResources {
    builtin: Registry,
    current: RwLock<Arc<Snapshot>>,
    /// True once the CRD controller has published the stored CRDs' resources.
    synced: tokio::sync::watch::Sender<bool>,
}

impl ServedResources {
    /// Only the built-in resources.
    pub(crate) fn new() -> Self {
        let builtin = Registry::builtin();
        let snapshot = Arc::new(Snapshot::new(builtin.clone(), Vec::new()));
        Self {
            builtin,
            current: RwLock::new(snapshot),
            synced: tokio::sync::watch::channel(false).0,
        }
    }

    /// Marks the first publication done (the server may report ready).
    pub(crate) fn mark_synced(&self) {
        self.synced.send_replace(true);
    }

    /// Waits until the stored CRDs' resources are served.
    pub(crate) async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// A built-in resource (these never change, so a reference is handed out;
    /// custom resources are found through [`ServedResources::snapshot`]).
    pub(crate) fn lookup(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&Arc<ResourceInfo>> {
        self.builtin.lookup(group, version, plural)
    }

    /// Whether a built-in resource has this group and plural (a CRD may not shadow it).
    pub(crate) fn is_builtin(&self, group: &str, plural: &str) -> bool {
        self.builtin.serves(group, plural)
    }

    /// What is served now.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The custom resource behind `info`, if it is one.
    pub(crate) fn custom(&self, info: &ResourceInfo) -> Option<Arc<CustomResource>> {
        if self.builtin.serves(&info.group, &info.plural) {
            return None;
        }
        self.snapshot()
            .custom(&info.group, &info.version, &info.plural)
            .cloned()
    }

    /// Serves exactly these custom resources from now on (built-in ones win on a clash).
    pub(crate) fn publish(&self, custom: Vec<Arc<CustomResource>>) {
        let mut registry = self.builtin.clone();
        let mut custom: Vec<Arc<CustomResource>> = custom
            .into_iter()
            .filter(|c| !self.builtin.serves(&c.info.group, &c.info.plural))
            .collect();
        // Discovery lists a group's versions in this order, preferred first.
        custom.sort_by(|a, b| {
            (
                &a.info.group,
                super::definition::version_priority(&a.info.version),
                &a.info.plural,
            )
                .cmp(&(
                    &b.info.group,
                    super::definition::version_priority(&b.info.version),
                    &b.info.plural,
                ))
        });
        for c in &custom {
            registry.insert_shared(c.info.clone());
        }
        let snapshot = Arc::new(Snapshot::new(registry, custom));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }
}
