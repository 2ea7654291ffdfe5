//! The rules of CustomResourceDefinitions (apiextensions-apiserver's
//! `registry/customresourcedefinition/strategy.go`) and the one generic strategy of
//! all custom resources (`registry/customresource/strategy.go`).

use std::sync::Arc;

use api::status::FieldError;
use serde_json::{Value, json};

use super::definition::storage_version;
use super::resource::CustomResource;
use crate::strategy::Strategy;

/// `customresourcedefinitions.apiextensions.k8s.io`.
pub(crate) struct CrdStrategy;

/// A strategic merge patch of a CRD. Its types carry no patch strategies (no list
/// is merged by key), so it is the JSON merge patch left once the directives
/// (`$patch`, `$retainKeys`, `$setElementOrder/...`, `$deleteFromPrimitiveList/...`)
/// are taken out.
pub(crate) fn strategic_merge_crd(old: &Value, patch: &Value) -> Value {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                if m.get("$patch").and_then(Value::as_str) == Some("delete") {
                    return Value::Null;
                }
                Value::Object(
                    m.iter()
                        .filter(|(k, _)| !k.starts_with('$'))
                        .map(|(k, v)| (k.clone(), strip(v)))
                        .collect(),
                )
            }
            other => other.clone(),
        }
    }
    api::patch::merge_patch(old, &strip(patch))
}

/// Adds the storage version to `status.storedVersions` if it is missing.
fn record_storage_version(crd: &mut Value) {
    let Some(v) = storage_version(crd).map(String::from) else {
        return;
    };
    let list = crate::object::path_mut(crd, "status.storedVersions");
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    if let Some(items) = list.as_array_mut()
        && !items.iter().any(|x| x.as_str() == Some(v.as_str()))
    {
        items.push(v.into());
    }
}

impl Strategy for CrdStrategy {
    /// Kubernetes' v1 defaults: `singular`, `listKind`, conversion `None`.
    fn default(&self, obj: &mut Value) {
        let kind = obj
            .pointer("/spec/names/kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let names = crate::object::path_mut(obj, "spec.names");
        if let Some(n) = names.as_object_mut() {
            if n.get("singular")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                n.insert("singular".into(), kind.to_lowercase().into());
            }
            if !kind.is_empty()
                && n.get("listKind")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                n.insert("listKind".into(), format!("{kind}List").into());
            }
        }
        if obj.pointer("/spec/conversion").is_none_or(Value::is_null) {
            crate::object::set(obj, "spec.conversion", json!({"strategy": "None"}));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        crate::object::set(obj, "status", json!({}));
        record_storage_version(obj);
    }

    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        record_storage_version(new);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        super::validation::validate(obj, None)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        super::validation::validate(new, Some(old))
    }

    fn tracks_generation(&self) -> bool {
        true
    }
}

/// Every custom resource: schema coercion and validation, status and scale rules.
pub(crate) struct CustomResourceStrategy(pub Arc<CustomResource>);

impl Strategy for CustomResourceStrategy {
    fn decode(&self, obj: &mut Value, _definition: &str) -> Vec<String> {
        self.0.coerce(obj)
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        self.0.validate(obj)
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    /// Without a status subresource, status is part of what `generation` counts.
    fn status_bumps_generation(&self) -> bool {
        !self.0.status
    }

    fn is_selectable(&self, field: &str) -> bool {
        self.0.selectable.iter().any(|(f, _)| f == field)
    }

    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        self.0.field_value(obj, field)
    }
}
