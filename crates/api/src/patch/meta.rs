//! Strategic merge patch metadata of the built-in types: which list fields
//! merge (and by which key), which maps are replaced, which fields take
//! `$retainKeys`.
//!
//! k8s-openapi's schemas carry no `x-kubernetes-patch-strategy` /
//! `x-kubernetes-patch-merge-key`, so the facts live here, transcribed from the
//! `patchStrategy`/`patchMergeKey` struct tags of k8s.io/api v0.33 and
//! k8s.io/apimachinery `meta/v1` (the same facts Kubernetes' own OpenAPI
//! document publishes). [`crate::schema`] writes them into its definitions as
//! those two extensions, so `kubectl apply` (which reads them from
//! `/openapi/v3`) and [`super::strategic_merge`] see the same metadata.

/// Patch metadata of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchMeta {
    /// `x-kubernetes-patch-strategy`: `merge`, `replace`, `retainKeys`, or `merge,retainKeys`.
    pub strategy: &'static str,
    /// `x-kubernetes-patch-merge-key`, for merged lists of objects.
    pub merge_key: Option<&'static str>,
}

/// `(definition, field, strategy, merge key)`; an empty merge key means none
/// (primitive lists, maps, retainKeys-only fields).
const TABLE: &[(&str, &str, &str, &str)] = &[
    // core/v1
    (
        "io.k8s.api.core.v1.ComponentStatus",
        "conditions",
        "merge",
        "type",
    ),
    ("io.k8s.api.core.v1.Container", "env", "merge", "name"),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "merge",
        "containerPort",
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "merge",
        "devicePath",
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "merge",
        "mountPath",
    ),
    (
        "io.k8s.api.core.v1.ContainerStatus",
        "allocatedResourcesStatus",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.ContainerStatus",
        "volumeMounts",
        "merge",
        "mountPath",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        "merge",
        "containerPort",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "merge",
        "devicePath",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "merge",
        "mountPath",
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "merge",
        "type",
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", ""),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "merge",
        "type",
    ),
    ("io.k8s.api.core.v1.PodSpec", "containers", "merge", "name"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "merge",
        "name",
    ),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", "ip"),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "merge",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "merge",
        "topologyKey",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "merge,retainKeys",
        "name",
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "merge",
        "type",
    ),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", "ip"),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", "ip"),
    (
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        "merge,retainKeys",
        "name",
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "merge",
        "name",
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", "port"),
    (
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        "merge",
        "type",
    ),
    // apps/v1
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
        "",
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        "type",
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        "merge",
        "type",
    ),
    // autoscaling/v2
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        "merge",
        "type",
    ),
    // batch/v1
    (
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        "merge",
        "type",
    ),
    // policy/v1
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetSpec",
        "selector",
        "replace",
        "",
    ),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        "merge",
        "type",
    ),
    // storage/v1
    (
        "io.k8s.api.storage.v1.CSINodeSpec",
        "drivers",
        "merge",
        "name",
    ),
    // meta/v1
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        "",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        "uid",
    ),
];

/// The patch metadata of `field` in the schema definition `definition`
/// (e.g. `("io.k8s.api.core.v1.PodSpec", "containers")`), if it has any.
/// Fields without metadata: lists are replaced, maps merged recursively.
pub fn patch_meta(definition: &str, field: &str) -> Option<PatchMeta> {
    TABLE
        .iter()
        .find(|(d, f, _, _)| *d == definition && *f == field)
        .map(|(_, _, strategy, key)| PatchMeta {
            strategy,
            merge_key: (!key.is_empty()).then_some(*key),
        })
}

/// Every `(definition, field, meta)` entry of the table.
pub fn entries() -> impl Iterator<Item = (&'static str, &'static str, PatchMeta)> {
    TABLE.iter().map(|(d, f, strategy, key)| {
        (
            *d,
            *f,
            PatchMeta {
                strategy,
                merge_key: (!key.is_empty()).then_some(*key),
            },
        )
    })
}
