//! Building the OpenAPI definitions from k8s-openapi's `JsonSchema` impls,
//! finished the way Kubernetes' own document is: list kinds, the
//! `x-kubernetes-group-version-kind` of every top-level kind, patch strategy
//! extensions, and the `int-or-string` formats.

use k8s_openapi::api::{
    admissionregistration::v1 as admissionregistration, apps::v1 as apps,
    authentication::v1 as authentication, authorization::v1 as authorization,
    autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling_v2, batch::v1 as batch,
    certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, flowcontrol::v1 as flowcontrol,
    policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::transform::RemoveRefSiblings;
use serde_json::{Map, Value, json};

/// A top-level kind the server serves, and its schema definition.
struct Root {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    definition: &'static str,
    /// Whether the kind has a `<Kind>List` (it is a listable resource).
    list: bool,
}

const fn root(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    definition: &'static str,
    list: bool,
) -> Root {
    Root {
        group,
        version,
        kind,
        definition,
        list,
    }
}

const ROOTS: &[Root] = &[
    root("", "v1", "Namespace", "io.k8s.api.core.v1.Namespace", true),
    root("", "v1", "Pod", "io.k8s.api.core.v1.Pod", true),
    root("", "v1", "Binding", "io.k8s.api.core.v1.Binding", false),
    root("", "v1", "Service", "io.k8s.api.core.v1.Service", true),
    root("", "v1", "Endpoints", "io.k8s.api.core.v1.Endpoints", true),
    root("", "v1", "ConfigMap", "io.k8s.api.core.v1.ConfigMap", true),
    root("", "v1", "Secret", "io.k8s.api.core.v1.Secret", true),
    root(
        "",
        "v1",
        "ServiceAccount",
        "io.k8s.api.core.v1.ServiceAccount",
        true,
    ),
    root("", "v1", "Node", "io.k8s.api.core.v1.Node", true),
    root("", "v1", "Event", "io.k8s.api.core.v1.Event", true),
    root(
        "",
        "v1",
        "ReplicationController",
        "io.k8s.api.core.v1.ReplicationController",
        true,
    ),
    root(
        "",
        "v1",
        "PodTemplate",
        "io.k8s.api.core.v1.PodTemplate",
        true,
    ),
    root(
        "",
        "v1",
        "LimitRange",
        "io.k8s.api.core.v1.LimitRange",
        true,
    ),
    root(
        "",
        "v1",
        "ResourceQuota",
        "io.k8s.api.core.v1.ResourceQuota",
        true,
    ),
    root(
        "",
        "v1",
        "PersistentVolume",
        "io.k8s.api.core.v1.PersistentVolume",
        true,
    ),
    root(
        "",
        "v1",
        "PersistentVolumeClaim",
        "io.k8s.api.core.v1.PersistentVolumeClaim",
        true,
    ),
    root(
        "",
        "v1",
        "ComponentStatus",
        "io.k8s.api.core.v1.ComponentStatus",
        true,
    ),
    root(
        "apps",
        "v1",
        "Deployment",
        "io.k8s.api.apps.v1.Deployment",
        true,
    ),
    root(
        "apps",
        "v1",
        "ReplicaSet",
        "io.k8s.api.apps.v1.ReplicaSet",
        true,
    ),
    root(
        "apps",
        "v1",
        "StatefulSet",
        "io.k8s.api.apps.v1.StatefulSet",
        true,
    ),
    root(
        "apps",
        "v1",
        "DaemonSet",
        "io.k8s.api.apps.v1.DaemonSet",
        true,
    ),
    root(
        "apps",
        "v1",
        "ControllerRevision",
        "io.k8s.api.apps.v1.ControllerRevision",
        true,
    ),
    root("batch", "v1", "Job", "io.k8s.api.batch.v1.Job", true),
    root(
        "batch",
        "v1",
        "CronJob",
        "io.k8s.api.batch.v1.CronJob",
        true,
    ),
    root(
        "autoscaling",
        "v1",
        "Scale",
        "io.k8s.api.autoscaling.v1.Scale",
        false,
    ),
    root(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
        true,
    ),
    root(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "io.k8s.api.policy.v1.PodDisruptionBudget",
        true,
    ),
    root(
        "policy",
        "v1",
        "Eviction",
        "io.k8s.api.policy.v1.Eviction",
        false,
    ),
    root(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "io.k8s.api.coordination.v1.Lease",
        true,
    ),
    root(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "io.k8s.api.discovery.v1.EndpointSlice",
        true,
    ),
    root(
        "events.k8s.io",
        "v1",
        "Event",
        "io.k8s.api.events.v1.Event",
        true,
    ),
    root(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "io.k8s.api.scheduling.v1.PriorityClass",
        true,
    ),
    root(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "io.k8s.api.rbac.v1.Role",
        true,
    ),
    root(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "io.k8s.api.rbac.v1.ClusterRole",
        true,
    ),
    root(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "io.k8s.api.rbac.v1.RoleBinding",
        true,
    ),
    root(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "io.k8s.api.rbac.v1.ClusterRoleBinding",
        true,
    ),
    root(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "io.k8s.api.storage.v1.StorageClass",
        true,
    ),
    root(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration",
        true,
    ),
    root(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration",
        true,
    ),
    root(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicy",
        "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicy",
        true,
    ),
    root(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingAdmissionPolicyBinding",
        "io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBinding",
        true,
    ),
    root(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "io.k8s.api.certificates.v1.CertificateSigningRequest",
        true,
    ),
    root(
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "FlowSchema",
        "io.k8s.api.flowcontrol.v1.FlowSchema",
        true,
    ),
    root(
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "PriorityLevelConfiguration",
        "io.k8s.api.flowcontrol.v1.PriorityLevelConfiguration",
        true,
    ),
    root(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "io.k8s.api.authentication.v1.SelfSubjectReview",
        false,
    ),
    root(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "io.k8s.api.authorization.v1.LocalSubjectAccessReview",
        false,
    ),
    root(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
        false,
    ),
    root(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
        false,
    ),
    root(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "io.k8s.api.authorization.v1.SubjectAccessReview",
        false,
    ),
    root(
        "",
        "v1",
        "Status",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        false,
    ),
];

/// Meta types Kubernetes registers in every group version.
const PER_GROUP_VERSION: &[(&str, &str)] = &[
    (
        "DeleteOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    ),
    (
        "WatchEvent",
        "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    ),
];

const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// A served group/version/kind and the name of its schema definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindDefinition {
    /// API group (`""` for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind, e.g. `Deployment` or `DeploymentList`.
    pub kind: String,
    /// Definition name, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub definition: String,
}

/// Every kind with a definition: roots, their lists, and the per-group-version meta types.
pub(crate) fn kinds() -> Vec<KindDefinition> {
    let kd = |group: &str, version: &str, kind: &str, definition: &str| KindDefinition {
        group: group.to_owned(),
        version: version.to_owned(),
        kind: kind.to_owned(),
        definition: definition.to_owned(),
    };
    let mut out = Vec::new();
    for r in ROOTS {
        out.push(kd(r.group, r.version, r.kind, r.definition));
        if r.list {
            let kind = format!("{}List", r.kind);
            out.push(kd(
                r.group,
                r.version,
                &kind,
                &format!("{}List", r.definition),
            ));
        }
    }
    for (group, version) in group_versions() {
        for (kind, definition) in PER_GROUP_VERSION {
            out.push(kd(group, version, kind, definition));
        }
    }
    out
}

/// The served group versions, in first-seen order.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in ROOTS {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Which flavour of OpenAPI document the definitions are for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Swagger 2.0: `#/definitions/`, `$ref` with sibling `description`.
    V2,
    /// OpenAPI 3.0: `#/components/schemas/`, `allOf: [{$ref}]` when a `$ref` has siblings.
    V3,
}

/// Generates all definitions for one flavour.
pub(crate) fn build(flavor: Flavor) -> Map<String, Value> {
    let settings = match flavor {
        Flavor::V2 => SchemaSettings::draft07().with(|s| {
            s.transforms.retain(|t| !t.is::<RemoveRefSiblings>());
        }),
        Flavor::V3 => SchemaSettings::openapi3(),
    }
    .with(|s| s.meta_schema = None);
    let ref_prefix = format!("#{}/", settings.definitions_path.trim_end_matches('/'));
    let mut generator = settings.into_generator();
    add_root_types(&mut generator);

    let defs = generator.definitions_mut();
    add_lists(defs, &ref_prefix);
    add_group_version_kinds(defs);
    add_patch_extensions(defs);
    fix_int_or_string(defs, flavor);

    let mut defs = generator.take_definitions(true);
    defs.sort_keys();
    defs
}

fn add_root_types(g: &mut SchemaGenerator) {
    macro_rules! add {
        ($($t:ty),* $(,)?) => { $( g.subschema_for::<$t>(); )* };
    }
    add!(
        core::Namespace,
        core::Pod,
        core::Binding,
        core::Service,
        core::Endpoints,
        core::ConfigMap,
        core::Secret,
        core::ServiceAccount,
        core::Node,
        core::Event,
        core::ReplicationController,
        core::PodTemplate,
        core::LimitRange,
        core::ResourceQuota,
        core::PersistentVolume,
        core::PersistentVolumeClaim,
        core::ComponentStatus,
        apps::Deployment,
        apps::ReplicaSet,
        apps::StatefulSet,
        apps::DaemonSet,
        apps::ControllerRevision,
        batch::Job,
        batch::CronJob,
        autoscaling_v1::Scale,
        autoscaling_v2::HorizontalPodAutoscaler,
        policy::PodDisruptionBudget,
        policy::Eviction,
        coordination::Lease,
        discovery::EndpointSlice,
        events::Event,
        scheduling::PriorityClass,
        rbac::Role,
        rbac::ClusterRole,
        rbac::RoleBinding,
        rbac::ClusterRoleBinding,
        storage::StorageClass,
        admissionregistration::MutatingWebhookConfiguration,
        admissionregistration::ValidatingWebhookConfiguration,
        admissionregistration::ValidatingAdmissionPolicy,
        admissionregistration::ValidatingAdmissionPolicyBinding,
        certificates::CertificateSigningRequest,
        flowcontrol::FlowSchema,
        flowcontrol::PriorityLevelConfiguration,
        authentication::SelfSubjectReview,
        authorization::LocalSubjectAccessReview,
        authorization::SelfSubjectAccessReview,
        authorization::SelfSubjectRulesReview,
        authorization::SubjectAccessReview,
        meta::Status,
        meta::APIResourceList,
        meta::DeleteOptions,
        meta::WatchEvent<()>,
        meta::ListMeta,
    );
}

/// Synthesises `<Kind>List` definitions (k8s-openapi's `List<T>` has no schema).
fn add_lists(defs: &mut Map<String, Value>, ref_prefix: &str) {
    let api_version = json!({
        "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
        "type": "string",
    });
    let kind = json!({
        "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
        "type": "string",
    });
    for r in ROOTS.iter().filter(|r| r.list) {
        let schema = json!({
            "description": format!("{}List is a list of {} objects.", r.kind, r.kind),
            "type": "object",
            "properties": {
                "apiVersion": api_version,
                "items": {
                    "description": format!("Items is the list of {} objects.", r.kind),
                    "type": "array",
                    "items": { "$ref": format!("{ref_prefix}{}", r.definition) },
                },
                "kind": kind,
                "metadata": {
                    "$ref": format!("{ref_prefix}{LIST_META}"),
                    "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                },
            },
            "required": ["items"],
        });
        defs.insert(format!("{}List", r.definition), schema);
    }
}

/// Adds `x-kubernetes-group-version-kind` (a list: some definitions serve many).
fn add_group_version_kinds(defs: &mut Map<String, Value>) {
    for k in kinds() {
        let Some(Value::Object(def)) = defs.get_mut(&k.definition) else {
            continue;
        };
        let entry = json!({ "group": k.group, "kind": k.kind, "version": k.version });
        let gvks = def
            .entry("x-kubernetes-group-version-kind")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = gvks
            && !list.contains(&entry)
        {
            list.push(entry);
        }
    }
}

/// Writes `x-kubernetes-patch-strategy` / `-merge-key` onto the properties that have them.
fn add_patch_extensions(defs: &mut Map<String, Value>) {
    for (definition, field, meta) in crate::patch::meta::entries() {
        let Some(Value::Object(property)) = defs
            .get_mut(definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(field))
        else {
            continue;
        };
        if let Some(key) = meta.merge_key {
            property.insert("x-kubernetes-patch-merge-key".into(), key.into());
        }
        property.insert("x-kubernetes-patch-strategy".into(), meta.strategy.into());
    }
}

/// Gives IntOrString and Quantity the types Kubernetes publishes for them.
fn fix_int_or_string(defs: &mut Map<String, Value>, flavor: Flavor) {
    if let Some(Value::Object(def)) = defs.get_mut(INT_OR_STRING) {
        def.insert("format".into(), "int-or-string".into());
        match flavor {
            Flavor::V2 => def.insert("type".into(), "string".into()),
            Flavor::V3 => def.insert(
                "oneOf".into(),
                json!([{ "type": "integer" }, { "type": "string" }]),
            ),
        };
    }
    if let Some(Value::Object(def)) = defs.get_mut(QUANTITY) {
        match flavor {
            Flavor::V2 => def.insert("type".into(), "string".into()),
            Flavor::V3 => def.insert(
                "oneOf".into(),
                json!([{ "type": "string" }, { "type": "number" }]),
            ),
        };
    }
}
