//! Per-resource rules (Kubernetes' `pkg/registry/*/strategy.go`): defaults,
//! validation, immutable fields, generation tracking and field selectors. The REST
//! layer applies the generic rules (metadata, status subresource split) and asks the
//! strategy of the resource for the rest.

use std::sync::Arc;

use api::resource::ResourceInfo;
use api::status::FieldError;
use serde_json::Value;

pub(crate) mod admission_policy;
mod admission_rules;
pub(crate) mod certificates;
mod core;
mod flowcontrol;
mod pod;
mod service;
pub(crate) mod webhook_config;
mod workloads;

pub(crate) use pod::{default_pod_spec, validate_pod_spec};

/// What kind of name a resource's objects must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// RFC 1123 subdomain (most resources).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label,
    /// RFC 1035 label (services).
    Label1035,
    /// Only path-segment safety (RBAC objects, events).
    PathSegment,
}

/// The rules of one resource.
pub(crate) trait Strategy: Send + Sync {
    /// Fills defaults in place, as Kubernetes' defaulting functions do.
    fn default(&self, _obj: &mut Value) {}
    /// Adjusts a new object before it is stored (e.g. initial status).
    fn prepare_for_create(&self, _obj: &mut Value) {}
    /// Adjusts an update of the main resource after the generic rules (status kept
    /// from `old` when there is a status subresource).
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}
    /// Decoding a request body: returns the fields `definition` does not know (for
    /// `fieldValidation`); custom resources are also pruned and defaulted here.
    fn decode(&self, obj: &mut Value, definition: &str) -> Vec<String> {
        api::schema::find_unknown_fields(obj, definition)
    }
    /// Validates an object about to be created.
    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }
    /// Validates an update: the new object's rules plus immutable fields.
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }
    /// Whether `metadata.generation` is bumped on spec changes.
    fn tracks_generation(&self) -> bool {
        false
    }
    /// Whether changes to `status` bump `metadata.generation` too (custom resources
    /// without a status subresource).
    fn status_bumps_generation(&self) -> bool {
        false
    }
    /// Whether `status` is reset on create (resources with a status subresource).
    fn resets_status_on_create(&self) -> bool {
        true
    }
    /// Field selector labels supported besides metadata.name and metadata.namespace.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether `field` may be used in a field selector (besides metadata.name and
    /// metadata.namespace).
    fn is_selectable(&self, field: &str) -> bool {
        self.selectable_fields().contains(&field)
    }
    /// The value of a selectable field.
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let v = crate::object::path(obj, field)?;
        Some(match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        })
    }
    /// Which names are valid.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }
}

struct Plain;
impl Strategy for Plain {}

struct PathSegmentNames;
impl Strategy for PathSegmentNames {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
}

/// The strategy a request uses: a built-in one, or one made for a custom resource.
#[derive(Clone)]
pub(crate) enum StrategyRef {
    /// A built-in resource's strategy.
    Builtin(&'static dyn Strategy),
    /// A custom resource's strategy.
    Custom(Arc<dyn Strategy>),
}

impl std::ops::Deref for StrategyRef {
    type Target = dyn Strategy;

    fn deref(&self) -> &Self::Target {
        match self {
            StrategyRef::Builtin(s) => *s,
            StrategyRef::Custom(s) => s.as_ref(),
        }
    }
}

/// The strategy of a resource, custom resources included.
pub(crate) fn resolve(
    info: &ResourceInfo,
    custom: Option<&Arc<crate::crd::CustomResource>>,
) -> StrategyRef {
    match custom {
        Some(c) => StrategyRef::Custom(Arc::new(crate::crd::CustomResourceStrategy(c.clone()))),
        None => StrategyRef::Builtin(for_resource(info)),
    }
}

/// The strategy of a built-in resource.
pub(crate) fn for_resource(info: &ResourceInfo) -> &'static dyn Strategy {
    match (info.group.as_str(), info.plural.as_str()) {
        (api::resource::APIEXTENSIONS, "customresourcedefinitions") => &crate::crd::CrdStrategy,
        ("", "pods") => &pod::PodStrategy,
        ("", "podtemplates") => &pod::PodTemplateStrategy,
        ("", "services") => &service::ServiceStrategy,
        ("", "namespaces") => &core::NamespaceStrategy,
        ("", "secrets") => &core::SecretStrategy,
        ("", "configmaps") => &core::ConfigMapStrategy,
        ("", "nodes") => &core::NodeStrategy,
        ("", "events") => &core::EventStrategy,
        ("events.k8s.io", "events") => &core::EventsV1Strategy,
        ("", "endpoints") => &core::EndpointsStrategy,
        ("", "persistentvolumes") => &core::PersistentVolumeStrategy,
        ("", "persistentvolumeclaims") => &core::PersistentVolumeClaimStrategy,
        ("", "replicationcontrollers") => &workloads::ReplicationControllerStrategy,
        ("apps", "deployments") => &workloads::DeploymentStrategy,
        ("apps", "replicasets") => &workloads::ReplicaSetStrategy,
        ("apps", "statefulsets") => &workloads::StatefulSetStrategy,
        ("apps", "daemonsets") => &workloads::DaemonSetStrategy,
        ("batch", "jobs") => &workloads::JobStrategy,
        ("batch", "cronjobs") => &workloads::CronJobStrategy,
        ("autoscaling", "horizontalpodautoscalers") => &workloads::HpaStrategy,
        ("policy", "poddisruptionbudgets") => &workloads::PdbStrategy,
        ("discovery.k8s.io", "endpointslices") => &core::EndpointSliceStrategy,
        ("scheduling.k8s.io", "priorityclasses") => &core::PriorityClassStrategy,
        ("storage.k8s.io", "storageclasses") => &core::StorageClassStrategy,
        ("certificates.k8s.io", "certificatesigningrequests") => &certificates::CSR,
        (
            "admissionregistration.k8s.io",
            p @ ("mutatingwebhookconfigurations" | "validatingwebhookconfigurations"),
        ) => webhook_config::for_plural(p),
        (
            "admissionregistration.k8s.io",
            p @ ("validatingadmissionpolicies" | "validatingadmissionpolicybindings"),
        ) => admission_policy::for_plural(p),
        ("flowcontrol.apiserver.k8s.io", "flowschemas") => &flowcontrol::FlowSchemaStrategy,
        ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations") => {
            &flowcontrol::PriorityLevelStrategy
        }
        ("rbac.authorization.k8s.io", _) => &PathSegmentNames,
        _ => &Plain,
    }
}

/// Appends `field is immutable` when `dotted` differs between `new` and `old`.
pub(crate) fn immutable(errs: &mut Vec<FieldError>, new: &Value, old: &Value, dotted: &str) {
    let a = crate::object::path(new, dotted);
    let b = crate::object::path(old, dotted);
    if a != b {
        errs.push(FieldError::invalid(
            dotted,
            a.cloned().unwrap_or(Value::Null),
            "field is immutable",
        ));
    }
}

/// Integer at a dotted path must be ≥ 0.
pub(crate) fn non_negative(errs: &mut Vec<FieldError>, obj: &Value, dotted: &str) {
    if let Some(n) = crate::object::path(obj, dotted).and_then(Value::as_i64)
        && n < 0
    {
        errs.push(FieldError::invalid(
            dotted,
            n,
            "must be greater than or equal to 0",
        ));
    }
}
