//! Deleting the content of a terminating namespace and summing up what is left
//! (Kubernetes' `pkg/controller/namespace/deletion/namespaced_resources_deleter.go`).

use std::collections::BTreeMap;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::discovery::verbs;

use crate::garbagecollector::discovery::Served;

/// What one deletion pass found.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Summary {
    /// Resources whose deletion failed, with the error.
    pub failures: BTreeMap<String, String>,
    /// Objects left per resource (`plural.group`).
    pub remaining: BTreeMap<String, usize>,
    /// Objects left per finalizer.
    pub finalizers: BTreeMap<String, usize>,
}

impl Summary {
    /// Whether the namespace holds nothing any more.
    pub(crate) fn empty(&self) -> bool {
        self.remaining.is_empty() && self.failures.is_empty()
    }
}

/// Deletes every object of every namespaced resource in `ns` and counts what is left.
pub(crate) async fn delete_all(client: &kube::Client, ns: &str, served: &[Served]) -> Summary {
    let mut summary = Summary::default();
    for r in served
        .iter()
        .filter(|r| r.namespaced() && r.supports(&[verbs::LIST, verbs::DELETE]))
    {
        let name = format!("{}.{}", r.resource.plural, r.resource.group);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &r.resource);
        if let Err(e) = delete_resource(&api, r).await {
            summary.failures.insert(name.clone(), e.to_string());
        }
        match api.list_metadata(&ListParams::default()).await {
            Ok(left) if !left.items.is_empty() => {
                summary.remaining.insert(name, left.items.len());
                for o in &left.items {
                    for f in o.metadata.finalizers.iter().flatten() {
                        *summary.finalizers.entry(f.clone()).or_default() += 1;
                    }
                }
            }
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => {}
            Err(e) => {
                summary.failures.insert(name, e.to_string());
            }
        }
    }
    summary
}

async fn delete_resource(api: &Api<DynamicObject>, r: &Served) -> Result<(), kube::Error> {
    let dp = DeleteParams::default();
    if r.supports(&[verbs::DELETE_COLLECTION]) {
        return match api.delete_collection(&dp, &ListParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => Ok(()),
            Err(e) => Err(e),
        };
    }
    let list = api.list_metadata(&ListParams::default()).await?;
    for o in list.items {
        if o.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = o.metadata.name.unwrap_or_default();
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
