//! Writes to the API: bindings, the PodScheduled condition and nominated node
//! through `pods/status`, victim deletion, and events.

use std::time::Duration;

use events::{Event, EventType, Recorder};
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource as _;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

/// `POST pods/{name}/binding` to `node`.
pub async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let _: serde_json::Value = api
        .create_subresource("binding", &name, &PostParams::default(), &binding)
        .await?;
    Ok(())
}

/// How long a pod's claims may take to be bound before the pod is (Kubernetes'
/// `bindTimeoutSeconds`).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a pod's claims could not be bound before the pod.
#[derive(Debug, thiserror::Error)]
pub enum PreBindError {
    /// An API call failed (a Conflict: the volume was changed or taken meanwhile).
    #[error("{0}")]
    Api(#[from] kube::Error),
    /// The claim was not bound in time.
    #[error(
        "binding volumes: persistentvolumeclaim {namespace}/{claim} was not bound within {waited:?}"
    )]
    Timeout {
        /// Namespace of the claim.
        namespace: String,
        /// The claim.
        claim: String,
        /// How long the scheduler waited.
        waited: Duration,
    },
    /// The claim's provisioner gave the node back (removed the selected-node
    /// annotation), or the claim was deleted: schedule the pod again.
    #[error("binding volumes: persistentvolumeclaim {namespace}/{claim} {what}")]
    Rescheduled {
        /// Namespace of the claim.
        namespace: String,
        /// The claim.
        claim: String,
        /// What happened to it.
        what: &'static str,
    },
}

/// What VolumeBinding asks before a pod is bound: claims annotated with the node
/// to provision on, available volumes pre-bound to their claims (refused if the
/// volume changed since it was chosen). Then waits, as kube-scheduler's PreBind
/// does, until every claim is bound, so the pod is bound only where its volumes are.
pub async fn pre_bind(
    client: &kube::Client,
    actions: &[crate::plugins::volume_binding::PreBind],
    timeout: Duration,
) -> Result<(), PreBindError> {
    use crate::plugins::volume_binding::{PreBind, SELECTED_NODE, STORAGE_PROVISIONER};
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    for action in actions {
        match action {
            PreBind::Provision {
                namespace,
                claim,
                node,
                provisioner,
            } => {
                let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
                let patch = json!({"metadata": {"annotations": {
                    SELECTED_NODE: node,
                    STORAGE_PROVISIONER: provisioner,
                    "volume.beta.kubernetes.io/storage-provisioner": provisioner,
                }}});
                api.patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            PreBind::BindVolume {
                volume,
                namespace,
                claim,
                uid,
                resource_version,
            } => {
                let api: Api<PersistentVolume> = Api::all(client.clone());
                let patch = json!({
                    "metadata": {
                        "annotations": {"pv.kubernetes.io/bound-by-controller": "yes"},
                        "resourceVersion": resource_version,
                    },
                    "spec": {"claimRef": {
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "namespace": namespace, "name": claim, "uid": uid,
                }}});
                api.patch(volume, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
        }
    }
    let started = tokio::time::Instant::now();
    for action in actions {
        let (namespace, claim) = action.claim();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
        let gone = |what| PreBindError::Rescheduled {
            namespace: namespace.to_string(),
            claim: claim.to_string(),
            what,
        };
        let mut pause = Duration::from_millis(50);
        loop {
            let Some(c) = api.get_opt(claim).await? else {
                return Err(gone("was deleted"));
            };
            let bound = c
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .is_some_and(|v| !v.is_empty())
                && c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            if bound {
                break;
            }
            let provisioned = matches!(action, PreBind::Provision { .. });
            if provisioned
                && !c
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(SELECTED_NODE))
            {
                return Err(gone("was given back by its provisioner"));
            }
            if started.elapsed() >= timeout {
                return Err(PreBindError::Timeout {
                    namespace: namespace.to_string(),
                    claim: claim.to_string(),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
    Ok(())
}

/// Records an event about `pod` (and optionally a related object).
pub async fn event(
    recorder: &Recorder,
    pod: &Pod,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: related,
    };
    if let Err(e) = recorder.publish(&ev, &pod.object_ref(&())).await {
        tracing::debug!(pod = %crate::pod_info::pod_key(pod), reason, error = %e, "recording event failed");
    }
}

/// Sets `PodScheduled=False` with `reason` and `message` (and the nominated node,
/// when given) through `pods/status`, unless it is already so.
pub async fn set_unschedulable(
    client: &kube::Client,
    pod: &Pod,
    reason: &str,
    message: &str,
    nominated: Option<&str>,
) -> Result<(), kube::Error> {
    let status = pod.status.as_ref();
    let old = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let old_nominated = status.and_then(|s| s.nominated_node_name.as_deref());
    let same = old.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    });
    if same && nominated.is_none_or(|n| Some(n) == old_nominated) {
        return Ok(());
    }
    let transition = match old {
        Some(c) if c.status == "False" => c
            .last_transition_time
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_else(now),
        _ => now(),
    };
    let mut patch = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": reason, "message": message,
        "lastProbeTime": null, "lastTransitionTime": transition,
    }]}});
    if let Some(n) = nominated {
        patch["status"]["nominatedNodeName"] = json!(n);
    }
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
    );
    api.patch_status(
        pod.metadata.name.as_deref().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await?;
    Ok(())
}

fn now() -> String {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// Deletes a preemption victim at once (grace 0: no node agent stops it yet).
pub async fn delete_victim(client: &kube::Client, victim: &Pod) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        victim.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: victim.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api
        .delete(victim.metadata.name.as_deref().unwrap_or_default(), &dp)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
