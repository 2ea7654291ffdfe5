//! Server-side apply metadata of the built-in types that the OpenAPI
//! definitions of [`api::schema`] do not carry.
//!
//! Kubernetes' OpenAPI document publishes `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys` and `x-kubernetes-map-type` from the
//! `+listType`, `+listMapKey`, `+mapType` and `+structType` markers of
//! k8s.io/api and k8s.io/apimachinery; k8s-openapi's schemas (and so
//! [`api::schema::definitions`]) have only the strategic-merge-patch
//! extensions. These tables hold the marker facts of v0.33 where they differ
//! from what the patch extensions imply (structured-merge-diff reads a list
//! with `x-kubernetes-patch-strategy: merge` as a map keyed by the patch merge
//! key, or a set without one, and every other list as atomic): lists keyed by
//! several fields or without patch metadata, sets, lists marked atomic despite
//! a merge strategy, atomic maps and structs, and the defaults of list-map key
//! fields. A definition that carries the `x-kubernetes-*` extensions itself
//! wins over these tables.

/// What the markers say about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldMeta {
    /// `+listType=map` with these `+listMapKey`s.
    ListMap(&'static [&'static str]),
    /// `+listType=set`.
    ListSet,
    /// `+listType=atomic` on a list that has a merge patch strategy.
    ListAtomic,
    /// `+mapType=atomic` (or `+structType=atomic` on the field).
    MapAtomic,
    /// `+structType=granular` on a field whose type is atomic.
    MapGranular,
}

use FieldMeta::*;

/// `(definition, field, metadata)`.
const FIELDS: &[(&str, &str, FieldMeta)] = &[
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        ListMap(&["type"]),
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        ListMap(&["type"]),
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        ListMap(&["type"]),
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        ListMap(&["type"]),
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "conditions",
        ListMap(&["type"]),
    ),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", ListAtomic),
    (
        "io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement",
        "values",
        ListSet,
    ),
    (
        "io.k8s.api.batch.v1.UncountedTerminatedPods",
        "failed",
        ListSet,
    ),
    (
        "io.k8s.api.batch.v1.UncountedTerminatedPods",
        "succeeded",
        ListSet,
    ),
    (
        "io.k8s.api.core.v1.ComponentStatus",
        "conditions",
        ListMap(&["type"]),
    ),
    ("io.k8s.api.core.v1.Container", "env", ListMap(&["name"])),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        ListMap(&["containerPort", "protocol"]),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        ListMap(&["devicePath"]),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        ListMap(&["mountPath"]),
    ),
    (
        "io.k8s.api.core.v1.ContainerStatus",
        "allocatedResourcesStatus",
        ListMap(&["name"]),
    ),
    (
        "io.k8s.api.core.v1.ContainerStatus",
        "volumeMounts",
        ListMap(&["mountPath"]),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        ListMap(&["name"]),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        ListMap(&["containerPort", "protocol"]),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        ListMap(&["devicePath"]),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        ListMap(&["mountPath"]),
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        ListMap(&["type"]),
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", ListSet),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        ListMap(&["type"]),
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        ListMap(&["type"]),
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        ListMap(&["type"]),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        ListMap(&["name"]),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        ListMap(&["name"]),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        ListMap(&["ip"]),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        ListMap(&["name"]),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        ListMap(&["name"]),
    ),
    ("io.k8s.api.core.v1.PodSpec", "nodeSelector", MapAtomic),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        ListMap(&["name"]),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        ListMap(&["name"]),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        ListMap(&["topologyKey", "whenUnsatisfiable"]),
    ),
    ("io.k8s.api.core.v1.PodSpec", "volumes", ListMap(&["name"])),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        ListMap(&["type"]),
    ),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", ListAtomic),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", ListMap(&["ip"])),
    (
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        ListMap(&["name"]),
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerSpec",
        "selector",
        MapAtomic,
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        ListMap(&["type"]),
    ),
    (
        "io.k8s.api.core.v1.ResourceRequirements",
        "claims",
        ListMap(&["name"]),
    ),
    (
        "io.k8s.api.core.v1.ResourceStatus",
        "resources",
        ListMap(&["resourceID"]),
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        ListMap(&["name"]),
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        ListMap(&["port", "protocol"]),
    ),
    ("io.k8s.api.core.v1.ServiceSpec", "selector", MapAtomic),
    (
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        ListMap(&["type"]),
    ),
    ("io.k8s.api.discovery.v1.Endpoint", "addresses", ListSet),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        ListMap(&["type"]),
    ),
    (
        "io.k8s.api.storage.v1.CSIDriverSpec",
        "volumeLifecycleModes",
        ListSet,
    ),
    (
        "io.k8s.api.storage.v1.CSINodeSpec",
        "drivers",
        ListMap(&["name"]),
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        ListSet,
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        ListMap(&["uid"]),
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeSpec",
        "claimRef",
        MapGranular,
    ),
];

/// Definitions marked `+structType=atomic`: owned and replaced as a whole.
const ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.api.autoscaling.v1.CrossVersionObjectReference",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.EndpointAddress",
    "io.k8s.api.core.v1.EndpointPort",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.ScopeSelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.TopologySelectorTerm",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.discovery.v1.EndpointPort",
    "io.k8s.api.rbac.v1.RoleRef",
    "io.k8s.api.rbac.v1.Subject",
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
];

/// `(definition, field, default)` of list-map key fields with a `+default`.
const KEY_DEFAULTS: &[(&str, &str, &str)] = &[
    ("io.k8s.api.core.v1.ContainerPort", "protocol", "TCP"),
    ("io.k8s.api.core.v1.ServicePort", "protocol", "TCP"),
];

/// What a field of a Go zero value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zero {
    /// A non-pointer struct: always serialized, as an object.
    Struct,
    /// A nil pointer, slice or map without `omitempty`, or a zero time: `null`.
    Null,
}

use Zero::{Null, Struct};

/// `(definition, field, zero)`: the fields a freshly created Go object of a
/// served kind serializes (Kubernetes compares a create against that empty
/// object, so these nodes are never "added" and carry no `.` in
/// `fieldsV1`). Transcribed from the Go types of k8s.io/api v0.33,
/// restricted to what is reachable from the served kinds through structs.
const ZERO_FIELDS: &[(&str, &str, Zero)] = &[
    ("io.k8s.api.apps.v1.ControllerRevision", "data", Null),
    ("io.k8s.api.apps.v1.ControllerRevision", "metadata", Struct),
    ("io.k8s.api.apps.v1.DaemonSet", "metadata", Struct),
    ("io.k8s.api.apps.v1.DaemonSet", "spec", Struct),
    ("io.k8s.api.apps.v1.DaemonSet", "status", Struct),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "selector", Null),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "template", Struct),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "updateStrategy", Struct),
    ("io.k8s.api.apps.v1.Deployment", "metadata", Struct),
    ("io.k8s.api.apps.v1.Deployment", "spec", Struct),
    ("io.k8s.api.apps.v1.Deployment", "status", Struct),
    ("io.k8s.api.apps.v1.DeploymentSpec", "selector", Null),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", Struct),
    ("io.k8s.api.apps.v1.DeploymentSpec", "template", Struct),
    ("io.k8s.api.apps.v1.ReplicaSet", "metadata", Struct),
    ("io.k8s.api.apps.v1.ReplicaSet", "spec", Struct),
    ("io.k8s.api.apps.v1.ReplicaSet", "status", Struct),
    ("io.k8s.api.apps.v1.ReplicaSetSpec", "selector", Null),
    ("io.k8s.api.apps.v1.ReplicaSetSpec", "template", Struct),
    ("io.k8s.api.apps.v1.StatefulSet", "metadata", Struct),
    ("io.k8s.api.apps.v1.StatefulSet", "spec", Struct),
    ("io.k8s.api.apps.v1.StatefulSet", "status", Struct),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "selector", Null),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "template", Struct),
    (
        "io.k8s.api.apps.v1.StatefulSetSpec",
        "updateStrategy",
        Struct,
    ),
    (
        "io.k8s.api.authentication.v1.SelfSubjectReview",
        "metadata",
        Struct,
    ),
    (
        "io.k8s.api.authentication.v1.SelfSubjectReview",
        "status",
        Struct,
    ),
    (
        "io.k8s.api.authentication.v1.SelfSubjectReviewStatus",
        "userInfo",
        Struct,
    ),
    (
        "io.k8s.api.authorization.v1.LocalSubjectAccessReview",
        "metadata",
        Struct,
    ),
    (
        "io.k8s.api.authorization.v1.LocalSubjectAccessReview",
        "spec",
        Struct,
    ),
    (
        "io.k8s.api.authorization.v1.LocalSubjectAccessReview",
        "status",
        Struct,
    ),
    (
        "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
        "metadata",
        Struct,
    ),
    (
        "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
        "spec",
        Struct,
    ),
    (
        "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
        "status",
        Struct,
    ),
    (
        "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
        "metadata",
        Struct,
    ),
    (
        "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
        "spec",
        Struct,
    ),
    (
        "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
        "status",
        Struct,
    ),
    (
        "io.k8s.api.authorization.v1.SubjectAccessReview",
        "metadata",
        Struct,
    ),
    (
        "io.k8s.api.authorization.v1.SubjectAccessReview",
        "spec",
        Struct,
    ),
    (
        "io.k8s.api.authorization.v1.SubjectAccessReview",
        "status",
        Struct,
    ),
    (
        "io.k8s.api.authorization.v1.SubjectRulesReviewStatus",
        "nonResourceRules",
        Null,
    ),
    (
        "io.k8s.api.authorization.v1.SubjectRulesReviewStatus",
        "resourceRules",
        Null,
    ),
    ("io.k8s.api.autoscaling.v1.Scale", "metadata", Struct),
    ("io.k8s.api.autoscaling.v1.Scale", "spec", Struct),
    ("io.k8s.api.autoscaling.v1.Scale", "status", Struct),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
        "metadata",
        Struct,
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
        "spec",
        Struct,
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
        "status",
        Struct,
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec",
        "scaleTargetRef",
        Struct,
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
        "currentMetrics",
        Null,
    ),
    ("io.k8s.api.batch.v1.CronJob", "metadata", Struct),
    ("io.k8s.api.batch.v1.CronJob", "spec", Struct),
    ("io.k8s.api.batch.v1.CronJob", "status", Struct),
    ("io.k8s.api.batch.v1.CronJobSpec", "jobTemplate", Struct),
    ("io.k8s.api.batch.v1.Job", "metadata", Struct),
    ("io.k8s.api.batch.v1.Job", "spec", Struct),
    ("io.k8s.api.batch.v1.Job", "status", Struct),
    ("io.k8s.api.batch.v1.JobSpec", "template", Struct),
    ("io.k8s.api.batch.v1.JobTemplateSpec", "metadata", Struct),
    ("io.k8s.api.batch.v1.JobTemplateSpec", "spec", Struct),
    ("io.k8s.api.coordination.v1.Lease", "metadata", Struct),
    ("io.k8s.api.coordination.v1.Lease", "spec", Struct),
    ("io.k8s.api.core.v1.Binding", "metadata", Struct),
    ("io.k8s.api.core.v1.Binding", "target", Struct),
    ("io.k8s.api.core.v1.ComponentStatus", "metadata", Struct),
    ("io.k8s.api.core.v1.ConfigMap", "metadata", Struct),
    ("io.k8s.api.core.v1.Endpoints", "metadata", Struct),
    ("io.k8s.api.core.v1.Event", "eventTime", Null),
    ("io.k8s.api.core.v1.Event", "firstTimestamp", Null),
    ("io.k8s.api.core.v1.Event", "involvedObject", Struct),
    ("io.k8s.api.core.v1.Event", "lastTimestamp", Null),
    ("io.k8s.api.core.v1.Event", "metadata", Struct),
    ("io.k8s.api.core.v1.Event", "source", Struct),
    ("io.k8s.api.core.v1.LimitRange", "metadata", Struct),
    ("io.k8s.api.core.v1.LimitRange", "spec", Struct),
    ("io.k8s.api.core.v1.LimitRangeSpec", "limits", Null),
    ("io.k8s.api.core.v1.Namespace", "metadata", Struct),
    ("io.k8s.api.core.v1.Namespace", "spec", Struct),
    ("io.k8s.api.core.v1.Namespace", "status", Struct),
    ("io.k8s.api.core.v1.Node", "metadata", Struct),
    ("io.k8s.api.core.v1.Node", "spec", Struct),
    ("io.k8s.api.core.v1.Node", "status", Struct),
    (
        "io.k8s.api.core.v1.NodeDaemonEndpoints",
        "kubeletEndpoint",
        Struct,
    ),
    ("io.k8s.api.core.v1.NodeStatus", "daemonEndpoints", Struct),
    ("io.k8s.api.core.v1.NodeStatus", "nodeInfo", Struct),
    ("io.k8s.api.core.v1.PersistentVolume", "metadata", Struct),
    ("io.k8s.api.core.v1.PersistentVolume", "spec", Struct),
    ("io.k8s.api.core.v1.PersistentVolume", "status", Struct),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaim",
        "metadata",
        Struct,
    ),
    ("io.k8s.api.core.v1.PersistentVolumeClaim", "spec", Struct),
    ("io.k8s.api.core.v1.PersistentVolumeClaim", "status", Struct),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimSpec",
        "resources",
        Struct,
    ),
    ("io.k8s.api.core.v1.Pod", "metadata", Struct),
    ("io.k8s.api.core.v1.Pod", "spec", Struct),
    ("io.k8s.api.core.v1.Pod", "status", Struct),
    ("io.k8s.api.core.v1.PodSpec", "containers", Null),
    ("io.k8s.api.core.v1.PodTemplate", "metadata", Struct),
    ("io.k8s.api.core.v1.PodTemplate", "template", Struct),
    ("io.k8s.api.core.v1.PodTemplateSpec", "metadata", Struct),
    ("io.k8s.api.core.v1.PodTemplateSpec", "spec", Struct),
    (
        "io.k8s.api.core.v1.ReplicationController",
        "metadata",
        Struct,
    ),
    ("io.k8s.api.core.v1.ReplicationController", "spec", Struct),
    ("io.k8s.api.core.v1.ReplicationController", "status", Struct),
    ("io.k8s.api.core.v1.ResourceQuota", "metadata", Struct),
    ("io.k8s.api.core.v1.ResourceQuota", "spec", Struct),
    ("io.k8s.api.core.v1.ResourceQuota", "status", Struct),
    ("io.k8s.api.core.v1.Secret", "metadata", Struct),
    ("io.k8s.api.core.v1.Service", "metadata", Struct),
    ("io.k8s.api.core.v1.Service", "spec", Struct),
    ("io.k8s.api.core.v1.Service", "status", Struct),
    ("io.k8s.api.core.v1.ServiceAccount", "metadata", Struct),
    ("io.k8s.api.core.v1.ServiceStatus", "loadBalancer", Struct),
    ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", Null),
    ("io.k8s.api.discovery.v1.EndpointSlice", "metadata", Struct),
    ("io.k8s.api.discovery.v1.EndpointSlice", "ports", Null),
    (
        "io.k8s.api.events.v1.Event",
        "deprecatedFirstTimestamp",
        Null,
    ),
    (
        "io.k8s.api.events.v1.Event",
        "deprecatedLastTimestamp",
        Null,
    ),
    ("io.k8s.api.events.v1.Event", "deprecatedSource", Struct),
    ("io.k8s.api.events.v1.Event", "eventTime", Null),
    ("io.k8s.api.events.v1.Event", "metadata", Struct),
    ("io.k8s.api.events.v1.Event", "regarding", Struct),
    ("io.k8s.api.policy.v1.Eviction", "metadata", Struct),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudget",
        "metadata",
        Struct,
    ),
    ("io.k8s.api.policy.v1.PodDisruptionBudget", "spec", Struct),
    ("io.k8s.api.policy.v1.PodDisruptionBudget", "status", Struct),
    ("io.k8s.api.rbac.v1.ClusterRole", "metadata", Struct),
    ("io.k8s.api.rbac.v1.ClusterRole", "rules", Null),
    ("io.k8s.api.rbac.v1.ClusterRoleBinding", "metadata", Struct),
    ("io.k8s.api.rbac.v1.ClusterRoleBinding", "roleRef", Struct),
    ("io.k8s.api.rbac.v1.Role", "metadata", Struct),
    ("io.k8s.api.rbac.v1.Role", "rules", Null),
    ("io.k8s.api.rbac.v1.RoleBinding", "metadata", Struct),
    ("io.k8s.api.rbac.v1.RoleBinding", "roleRef", Struct),
    ("io.k8s.api.scheduling.v1.PriorityClass", "metadata", Struct),
    ("io.k8s.api.storage.v1.StorageClass", "metadata", Struct),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "creationTimestamp",
        Null,
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        "metadata",
        Struct,
    ),
];

/// The fields of the zero value of `definition`.
pub(crate) fn zero_fields(definition: &str) -> impl Iterator<Item = (&'static str, Zero)> + '_ {
    ZERO_FIELDS
        .iter()
        .filter(move |(d, _, _)| *d == definition)
        .map(|(_, f, z)| (*f, *z))
}

/// The marker metadata of `field` in `definition`, if any.
pub(crate) fn field_meta(definition: &str, field: &str) -> Option<FieldMeta> {
    FIELDS
        .iter()
        .find(|(d, f, _)| *d == definition && *f == field)
        .map(|(_, _, m)| *m)
}

/// Whether `definition` is an atomic struct.
pub(crate) fn atomic_struct(definition: &str) -> bool {
    ATOMIC_STRUCTS.contains(&definition)
}

/// The default of a list-map key field.
pub(crate) fn key_default(definition: &str, field: &str) -> Option<&'static str> {
    KEY_DEFAULTS
        .iter()
        .find(|(d, f, _)| *d == definition && *f == field)
        .map(|(_, _, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_entry_names_a_served_definition_and_property() {
        let defs = api::schema::definitions();
        let has_field = |d: &str, f: &str| {
            defs.get(d)
                .and_then(|def| def.get("properties"))
                .and_then(|p| p.get(f))
                .is_some()
        };
        for (d, f, _) in FIELDS {
            // Some kinds (CSINode, CSIDriver) are not served yet; the rest must match.
            if defs.contains_key(*d) {
                assert!(has_field(d, f), "{d}.{f}");
            }
        }
        for (d, f, _) in ZERO_FIELDS {
            assert!(has_field(d, f), "{d}.{f}");
        }
        for (d, f, _) in KEY_DEFAULTS {
            assert!(has_field(d, f), "{d}.{f}");
        }
        assert!(
            ATOMIC_STRUCTS
                .iter()
                .filter(|d| defs.contains_key(**d))
                .count()
                > 10
        );
    }
}
