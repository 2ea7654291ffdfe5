//! Acting on one object of the graph (Kubernetes' `attemptToDeleteItem`,
//! `processDeletingDependentsItem`, `orphanDependents`): delete dependents whose
//! owners are all gone, drop references to owners that are gone while another owner
//! remains, delete the dependents of a foreground deletion and release the owner
//! when the blocking ones are gone, orphan the dependents of an orphaning owner.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use serde_json::json;

use super::discovery::Served;
use super::graph::{FOREGROUND, Graph, Node, ORPHAN};
use crate::Error;

/// What the collector knows about the served resources.
pub(crate) struct Resources {
    /// By `group/plural`.
    pub by_key: HashMap<String, Served>,
    /// By (group, kind).
    pub by_kind: HashMap<(String, String), Served>,
}

impl Resources {
    /// The resource an owner reference points at.
    fn of_ref(&self, r: &OwnerReference) -> Option<&Served> {
        let group = r.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        self.by_kind.get(&(group.to_string(), r.kind.clone()))
    }
}

/// The state of one owner of a dependent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Exists (or cannot be told apart from existing).
    Solid,
    /// Gone, or replaced by an object with another uid.
    Dangling,
    /// Being deleted in the foreground.
    Waiting,
}

/// Looks at the object `uid`; errors mean "try again later".
pub(crate) async fn attempt(
    client: &kube::Client,
    res: &Resources,
    graph: &Graph,
    uid: &str,
) -> Result<(), Error> {
    let Some(node) = graph.get(uid) else {
        return Ok(());
    };
    if node.orphaning() {
        return orphan_dependents(client, res, graph, node).await;
    }
    if node.deleting_dependents() {
        return delete_dependents(client, res, graph, node).await;
    }
    if node.deleting || node.owners.is_empty() {
        return Ok(());
    }
    let mut states = Vec::new();
    for r in &node.owners {
        states.push((r, owner_state(client, res, graph, node, r).await?));
    }
    let solid = states.iter().any(|(_, s)| *s == Owner::Solid);
    let dangling: Vec<&OwnerReference> = states
        .iter()
        .filter(|(_, s)| *s == Owner::Dangling)
        .map(|(r, _)| *r)
        .collect();
    let waiting = states.iter().any(|(_, s)| *s == Owner::Waiting);
    if solid {
        if dangling.is_empty() {
            return Ok(());
        }
        let keep: Vec<&OwnerReference> = node
            .owners
            .iter()
            .filter(|o| !dangling.iter().any(|d| d.uid == o.uid))
            .collect();
        tracing::debug!(object = %node.name, dangling = dangling.len(), "removing references to owners that are gone");
        return patch_meta(client, res, node, json!({"ownerReferences": keep})).await;
    }
    let policy = if waiting && !graph.dependents(uid).is_empty() {
        PropagationPolicy::Foreground
    } else if node.finalizers.iter().any(|f| f == ORPHAN) {
        PropagationPolicy::Orphan
    } else if node.finalizers.iter().any(|f| f == FOREGROUND) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    tracing::debug!(object = %node.name, ?policy, "all owners are gone or being deleted; deleting");
    delete(client, res, node, policy).await
}

async fn owner_state(
    client: &kube::Client,
    res: &Resources,
    graph: &Graph,
    dependent: &Node,
    r: &OwnerReference,
) -> Result<Owner, Error> {
    if let Some(owner) = graph.get(&r.uid) {
        return Ok(if owner.deleting_dependents() {
            Owner::Waiting
        } else {
            Owner::Solid
        });
    }
    let Some(served) = res.of_ref(r) else {
        // Likely a custom resource discovery has not picked up yet: look again
        // later, as Kubernetes does on a REST mapping error.
        return Err(Error::Invalid(format!(
            "the owner's kind {} {} is not served (yet); retrying",
            r.api_version, r.kind
        )));
    };
    let api: Api<PartialObjectMeta<DynamicObject>> = if served.namespaced() {
        let Some(ns) = dependent.namespace.as_deref() else {
            // A cluster-scoped dependent cannot have a namespaced owner.
            return Ok(Owner::Solid);
        };
        Api::namespaced_with(client.clone(), ns, &served.resource)
    } else {
        Api::all_with(client.clone(), &served.resource)
    };
    let owner = api.get_opt(&r.name).await.map_err(|e| Error::Api {
        context: format!("looking up owner {} {}", r.kind, r.name),
        source: e,
    })?;
    Ok(match owner {
        None => Owner::Dangling,
        Some(o) if o.metadata.uid.as_deref() != Some(r.uid.as_str()) => Owner::Dangling,
        Some(o) => {
            let deleting = o.metadata.deletion_timestamp.is_some()
                && o.metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FOREGROUND);
            if deleting {
                Owner::Waiting
            } else {
                Owner::Solid
            }
        }
    })
}

/// Foreground: delete every dependent not yet being deleted; drop the finalizer
/// once no dependent blocks the owner any more.
async fn delete_dependents(
    client: &kube::Client,
    res: &Resources,
    graph: &Graph,
    owner: &Node,
) -> Result<(), Error> {
    let deps = graph.dependents(&owner.uid);
    let blocking = deps.iter().filter(|d| {
        d.owners
            .iter()
            .any(|o| o.uid == owner.uid && o.block_owner_deletion == Some(true))
    });
    if blocking.count() == 0 {
        tracing::debug!(object = %owner.name, "no dependents block the owner; removing the foregroundDeletion finalizer");
        return remove_finalizer(client, res, owner, FOREGROUND).await;
    }
    for d in deps.iter().filter(|d| !d.deleting) {
        // A dependent with other live owners keeps living; `attempt` decides.
        Box::pin(attempt(client, res, graph, &d.uid)).await?;
    }
    Ok(())
}

/// Orphan: remove the owner from its dependents' references, then its finalizer.
async fn orphan_dependents(
    client: &kube::Client,
    res: &Resources,
    graph: &Graph,
    owner: &Node,
) -> Result<(), Error> {
    for d in graph.dependents(&owner.uid) {
        let keep: Vec<&OwnerReference> = d.owners.iter().filter(|o| o.uid != owner.uid).collect();
        tracing::debug!(object = %d.name, owner = %owner.name, "orphaning dependent");
        patch_meta(client, res, d, json!({"ownerReferences": keep})).await?;
    }
    remove_finalizer(client, res, owner, ORPHAN).await
}

fn api_for(
    client: &kube::Client,
    res: &Resources,
    node: &Node,
) -> Result<Api<DynamicObject>, Error> {
    let served = res
        .by_key
        .get(&node.resource)
        .ok_or_else(|| Error::Invalid(format!("resource {} is no longer served", node.resource)))?;
    Ok(match &node.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &served.resource),
        None => Api::all_with(client.clone(), &served.resource),
    })
}

/// A merge patch of metadata, guarded by the uid and resourceVersion seen.
async fn patch_meta(
    client: &kube::Client,
    res: &Resources,
    node: &Node,
    mut meta: serde_json::Value,
) -> Result<(), Error> {
    let api = api_for(client, res, node)?;
    if meta
        .get("ownerReferences")
        .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty))
    {
        meta["ownerReferences"] = serde_json::Value::Null;
    }
    meta["uid"] = json!(node.uid);
    if let Some(rv) = &node.resource_version {
        meta["resourceVersion"] = json!(rv);
    }
    match api
        .patch(
            &node.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": meta})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Api {
            context: format!("patching {} {}", node.resource, node.name),
            source: e,
        }),
    }
}

async fn remove_finalizer(
    client: &kube::Client,
    res: &Resources,
    node: &Node,
    finalizer: &str,
) -> Result<(), Error> {
    let left: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
    let value = if left.is_empty() {
        serde_json::Value::Null
    } else {
        json!(left)
    };
    patch_meta(client, res, node, json!({"finalizers": value})).await
}

async fn delete(
    client: &kube::Client,
    res: &Resources,
    node: &Node,
    policy: PropagationPolicy,
) -> Result<(), Error> {
    let api = api_for(client, res, node)?;
    let dp = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions {
            uid: Some(node.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&node.name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(Error::Api {
            context: format!("deleting {} {}", node.resource, node.name),
            source: e,
        }),
    }
}
