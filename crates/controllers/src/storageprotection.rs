//! Storage object in-use protection (Kubernetes' `pvcprotection` and `pvprotection`
//! controllers). The API server puts `kubernetes.io/pvc-protection` on every claim and
//! `kubernetes.io/pv-protection` on every volume it creates; this controller removes
//! the finalizer of a claim being deleted once no pod that is not finished uses it, and
//! of a volume being deleted once it is not Bound — so data under a running pod is
//! never taken away by a delete.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;

use crate::{Context, Error};

/// The claim finalizer.
pub(crate) const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The volume finalizer.
pub(crate) const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// How often deleting claims and volumes are looked at (besides their changes).
const PERIOD: Duration = Duration::from_secs(2);

/// Whether a pod that is not finished uses the claim `name` in `namespace` (through
/// a `persistentVolumeClaim` volume or a generic ephemeral volume).
pub(crate) fn in_use<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    namespace: &str,
    name: &str,
) -> bool {
    pods.into_iter().any(|p| {
        let finished = matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let pod_name = p.metadata.name.as_deref().unwrap_or_default();
        !finished
            && p.metadata.namespace.as_deref() == Some(namespace)
            && p.spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .any(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == name)
                        || (v.ephemeral.is_some() && format!("{pod_name}-{}", v.name) == name)
                })
    })
}

/// Whether `finalizers` holds `finalizer`.
fn holds(finalizers: &Option<Vec<String>>, finalizer: &str) -> bool {
    finalizers.iter().flatten().any(|f| f == finalizer)
}

/// A merge patch removing `finalizer` from the `finalizers` of the object at
/// `resource_version` (a conflict if it changed meanwhile).
fn without(finalizers: &[String], finalizer: &str, resource_version: &str) -> serde_json::Value {
    let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
    serde_json::json!({"metadata": {"finalizers": kept, "resourceVersion": resource_version}})
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let claims = ctx.informers.get::<PersistentVolumeClaim>().await.store();
    let volumes = ctx.informers.get::<PersistentVolume>().await.store();
    let pods = ctx.informers.get::<Pod>().await.store();
    loop {
        release_claims(&ctx, &claims, &pods).await;
        release_volumes(&ctx, &volumes).await;
        tokio::time::sleep(PERIOD).await;
    }
}

async fn release_claims(ctx: &Context, claims: &Store<PersistentVolumeClaim>, pods: &Store<Pod>) {
    let deleting: Vec<_> = claims
        .state()
        .into_iter()
        .filter(|c| {
            c.metadata.deletion_timestamp.is_some() && holds(&c.metadata.finalizers, PVC_PROTECTION)
        })
        .collect();
    if deleting.is_empty() {
        return;
    }
    let all = pods.state();
    for claim in deleting {
        let ns = claim.metadata.namespace.clone().unwrap_or_default();
        let name = claim.metadata.name.clone().unwrap_or_default();
        if in_use(all.iter().map(|p| p.as_ref()), &ns, &name) {
            continue;
        }
        let patch = without(
            claim.metadata.finalizers.as_deref().unwrap_or_default(),
            PVC_PROTECTION,
            claim
                .metadata
                .resource_version
                .as_deref()
                .unwrap_or_default(),
        );
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::debug!(claim = %format!("{ns}/{name}"), "claim no longer in use; released")
            }
            Err(e) => {
                tracing::debug!(claim = %format!("{ns}/{name}"), error = %e, "releasing the claim failed; retrying")
            }
        }
    }
}

async fn release_volumes(ctx: &Context, volumes: &Store<PersistentVolume>) {
    for volume in volumes.state() {
        let bound = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if volume.metadata.deletion_timestamp.is_none()
            || !holds(&volume.metadata.finalizers, PV_PROTECTION)
            || bound
        {
            continue;
        }
        let name = volume.metadata.name.clone().unwrap_or_default();
        let patch = without(
            volume.metadata.finalizers.as_deref().unwrap_or_default(),
            PV_PROTECTION,
            volume
                .metadata
                .resource_version
                .as_deref()
                .unwrap_or_default(),
        );
        let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
        if let Err(e) = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(volume = %name, error = %e, "releasing the volume failed; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, phase: &str, volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [], "volumes": volumes},
            "status": {"phase": phase},
        }))
        .expect("pod")
    }

    #[test]
    fn only_unfinished_pods_of_the_namespace_hold_a_claim() {
        let running = pod(
            "web",
            "Running",
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]),
        );
        let done = pod(
            "job",
            "Succeeded",
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "logs"}}]),
        );
        let ephemeral = pod(
            "eph",
            "Pending",
            json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]),
        );
        let pods = [running, done, ephemeral];
        assert!(in_use(pods.iter(), "ns", "data"));
        assert!(!in_use(pods.iter(), "other", "data"));
        assert!(
            !in_use(pods.iter(), "ns", "logs"),
            "a finished pod holds nothing"
        );
        assert!(in_use(pods.iter(), "ns", "eph-scratch"));
        assert_eq!(
            without(&["a".into(), PVC_PROTECTION.into()], PVC_PROTECTION, "7"),
            json!({"metadata": {"finalizers": ["a"], "resourceVersion": "7"}})
        );
    }
}
