//! Core resources with small rule sets: Namespaces, Secrets, ConfigMaps, Nodes,
//! Events, Endpoints, volumes, EndpointSlices, PriorityClasses, StorageClasses.

use api::status::FieldError;
use base64::Engine as _;
use serde_json::{Value, json};

use super::{NameRule, Strategy};
use crate::object::default_field;

/// Keys of ConfigMap/Secret data: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn validate_data_keys(errs: &mut Vec<FieldError>, obj: &Value, field: &str) {
    let Some(map) = obj.get(field).and_then(Value::as_object) else {
        return;
    };
    for k in map.keys() {
        let ok = !k.is_empty()
            && k.len() <= 253
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && k != "."
            && k != ".."
            && !k.starts_with("..");
        if !ok {
            errs.push(FieldError::invalid(
                format!("{field}[{k}]"),
                k.as_str(),
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ));
        }
    }
}

const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Namespaces: the `kubernetes` finalizer, phase Active and the
/// `kubernetes.io/metadata.name` label.
pub(crate) struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn default(&self, obj: &mut Value) {
        let name = crate::object::name(obj).unwrap_or_default().to_string();
        if !name.is_empty() {
            let labels = crate::object::path_mut(obj, "metadata.labels");
            if !labels.is_object() {
                *labels = json!({});
            }
            labels["kubernetes.io/metadata.name"] = name.into();
        }
        default_field(obj, "spec", "finalizers", json!(["kubernetes"]));
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        crate::object::set(obj, "status", json!({"phase": "Active"}));
    }
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.phase"]
    }
}

/// Secrets: `stringData` folded into base64 `data`, type defaults to Opaque.
pub(crate) struct SecretStrategy;

impl Strategy for SecretStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "", "type", json!("Opaque"));
        if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
            let data = crate::object::path_mut(obj, "data");
            if !data.is_object() {
                *data = json!({});
            }
            for (k, v) in sd {
                let s = v
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string());
                data[k] = base64::engine::general_purpose::STANDARD
                    .encode(s.as_bytes())
                    .into();
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_data_keys(&mut errs, obj, "data");
        let mut total = 0;
        if let Some(data) = obj.get("data").and_then(Value::as_object) {
            for (k, v) in data {
                match v
                    .as_str()
                    .map(|s| base64::engine::general_purpose::STANDARD.decode(s))
                {
                    Some(Ok(b)) => total += b.len(),
                    _ => errs.push(FieldError::invalid(
                        format!("data[{k}]"),
                        "<secret contents redacted>",
                        "illegal base64 data",
                    )),
                }
            }
        }
        if total > MAX_DATA_BYTES {
            errs.push(FieldError::too_long("data", MAX_DATA_BYTES));
        }
        if obj.get("type") == Some(&json!("kubernetes.io/dockerconfigjson"))
            && obj.pointer("/data/.dockerconfigjson").is_none()
        {
            errs.push(FieldError::required("data[.dockerconfigjson]", ""));
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        super::immutable(&mut errs, new, old, "type");
        if old.get("immutable") == Some(&json!(true)) && new.get("data") != old.get("data") {
            errs.push(FieldError::forbidden(
                "data",
                "field is immutable when `immutable` is set",
            ));
        }
        errs
    }
    fn resets_status_on_create(&self) -> bool {
        false
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["type"]
    }
}

/// ConfigMaps.
pub(crate) struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_data_keys(&mut errs, obj, "data");
        validate_data_keys(&mut errs, obj, "binaryData");
        let size: usize = ["data", "binaryData"]
            .iter()
            .filter_map(|f| obj.get(*f).and_then(Value::as_object))
            .flat_map(|m| {
                m.iter()
                    .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            })
            .sum();
        if size > MAX_DATA_BYTES {
            errs.push(FieldError::too_long("", MAX_DATA_BYTES));
        }
        errs
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if old.get("immutable") == Some(&json!(true)) && new.get("data") != old.get("data") {
            errs.push(FieldError::forbidden(
                "data",
                "field is immutable when `immutable` is set",
            ));
        }
        errs
    }
}

/// Nodes: status may be set on create (the node agent registers with it).
pub(crate) struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn resets_status_on_create(&self) -> bool {
        false
    }
    /// A pod CIDR, once set, stays (pods and routes were made from it), as Kubernetes'
    /// node validation has it.
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let cidr = |v: &Value| {
            v.pointer("/spec/podCIDR")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
        };
        if let Some(before) = cidr(old)
            && cidr(new).as_deref() != Some(before.as_str())
        {
            errs.push(FieldError::forbidden(
                "spec.podCIDR",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        errs
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            "spec.unschedulable" => Some(
                obj.pointer("/spec/unschedulable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            ),
            _ => None,
        }
    }
}

/// core/v1 Events.
pub(crate) struct EventStrategy;

impl Strategy for EventStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let ns = crate::object::namespace(obj).unwrap_or_default();
        if let Some(ins) = obj
            .pointer("/involvedObject/namespace")
            .and_then(Value::as_str)
            && !ins.is_empty()
            && ins != ns
        {
            errs.push(FieldError::invalid(
                "involvedObject.namespace",
                ins,
                "does not match event.namespace",
            ));
        }
        errs
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let v = match field {
            "source" => obj.pointer("/source/component"),
            f => crate::object::path(obj, f),
        };
        Some(v.and_then(Value::as_str).unwrap_or_default().to_string())
    }
    fn resets_status_on_create(&self) -> bool {
        false
    }
}

/// events.k8s.io/v1 Events.
pub(crate) struct EventsV1Strategy;

impl Strategy for EventsV1Strategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if obj.get("eventTime").is_none_or(Value::is_null) {
            errs.push(FieldError::required("eventTime", ""));
        }
        errs
    }
}

/// Endpoints: ports default to TCP.
pub(crate) struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) {
            for s in subsets {
                if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        default_field(p, "", "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// EndpointSlices: ports default to TCP.
pub(crate) struct EndpointSliceStrategy;

impl Strategy for EndpointSliceStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(ports) = obj.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports {
                default_field(p, "", "protocol", json!("TCP"));
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        match obj.get("addressType").and_then(Value::as_str) {
            None => vec![FieldError::required("addressType", "")],
            Some("IPv4" | "IPv6" | "FQDN") => vec![],
            Some(t) => vec![FieldError::not_supported(
                "addressType",
                t,
                &["FQDN", "IPv4", "IPv6"],
            )],
        }
    }
}

/// PersistentVolumes.
pub(crate) struct PersistentVolumeStrategy;

impl Strategy for PersistentVolumeStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(
            obj,
            "spec",
            "persistentVolumeReclaimPolicy",
            json!("Retain"),
        );
        default_field(obj, "spec", "volumeMode", json!("Filesystem"));
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        crate::object::set(obj, "status", json!({"phase": "Pending"}));
    }
}

/// PersistentVolumeClaims.
pub(crate) struct PersistentVolumeClaimStrategy;

impl Strategy for PersistentVolumeClaimStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "spec", "volumeMode", json!("Filesystem"));
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        crate::object::set(obj, "status", json!({"phase": "Pending"}));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if obj
            .pointer("/spec/accessModes")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        {
            errs.push(FieldError::required(
                "spec.accessModes",
                "at least 1 access mode is required",
            ));
        }
        if obj.pointer("/spec/resources/requests/storage").is_none() {
            errs.push(FieldError::required("spec.resources[storage]", ""));
        }
        errs
    }
}

/// PriorityClasses.
pub(crate) struct PriorityClassStrategy;

impl Strategy for PriorityClassStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "", "preemptionPolicy", json!("PreemptLowerPriority"));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        match obj.get("value") {
            Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v <= 1_000_000_000) => vec![],
            Some(Value::Number(_))
                if crate::object::name(obj).is_some_and(|n| n.starts_with("system-")) =>
            {
                vec![]
            }
            Some(Value::Number(n)) => {
                vec![FieldError::forbidden(
                    "value",
                    format!(
                        "maximum allowed value of a user defined priority is 1000000000, got {n}"
                    ),
                )]
            }
            _ => vec![FieldError::required("value", "")],
        }
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        super::immutable(&mut errs, new, old, "value");
        errs
    }
}

/// StorageClasses.
pub(crate) struct StorageClassStrategy;

impl Strategy for StorageClassStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "", "reclaimPolicy", json!("Delete"));
        default_field(obj, "", "volumeBindingMode", json!("Immediate"));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        if obj
            .get("provisioner")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            vec![FieldError::required("provisioner", "")]
        } else {
            vec![]
        }
    }
}
