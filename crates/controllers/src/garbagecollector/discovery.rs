//! The resources the API serves, found through API discovery (so custom resources
//! are covered as soon as they are served).

use kube::Client;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};

/// A served resource in its group's preferred version.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    /// How to address it.
    pub resource: ApiResource,
    /// Its verbs and scope.
    pub caps: ApiCapabilities,
}

impl Served {
    /// Whether objects live in namespaces.
    pub(crate) fn namespaced(&self) -> bool {
        self.caps.scope == Scope::Namespaced
    }

    /// Whether every verb in `verbs` is served.
    pub(crate) fn supports(&self, verbs: &[&str]) -> bool {
        verbs.iter().all(|v| self.caps.supports_operation(v))
    }

    /// `group/resource`, a stable key for the resource across versions.
    pub(crate) fn key(&self) -> String {
        format!("{}/{}", self.resource.group, self.resource.plural)
    }
}

/// Every resource served, in the preferred version of its group.
pub(crate) async fn served(client: &Client) -> Result<Vec<Served>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            out.push(Served { resource, caps });
        }
    }
    Ok(out)
}
