//! One served version of a custom resource: what the REST layer needs beyond its
//! `ResourceInfo` (schema, storage version, subresources, printer columns), and the
//! coercion every object goes through on the way in and out of storage.

use std::sync::Arc;

use api::resource::ResourceInfo;
use api::status::{ApiError, FieldError};
use serde_json::{Value, json};

use super::jsonpath::JsonPath;
use super::printer::Column;
use super::schema::Schema;

/// `ObjectMeta`'s definition, against which `metadata` of custom resources is pruned.
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The scale subresource's paths (`.spec.replicas`, ...).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// A served custom resource version.
#[derive(Debug)]
pub(crate) struct CustomResource {
    pub info: Arc<ResourceInfo>,
    /// The CRD's name (`crontabs.stable.example.com`).
    pub crd: String,
    /// The version objects are stored in.
    pub storage_version: String,
    /// The version's structural schema (`None`: everything is kept).
    pub schema: Option<Schema>,
    /// The schema as written in the CRD (for the OpenAPI documents).
    pub raw_schema: Option<Value>,
    /// The status subresource is on.
    pub status: bool,
    /// The scale subresource's paths, if on.
    pub scale: Option<ScalePaths>,
    /// Printer columns (at least `Age`).
    pub columns: Vec<Column>,
    /// `selectableFields`: field selector label (`spec.color`) and path.
    pub selectable: Vec<(String, JsonPath)>,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
    /// `deprecationWarning` (or Kubernetes' default one) of a deprecated version.
    pub warning: Option<String>,
}

/// Removes the value at `a.b[0].c` (a path as pruning reports it), if present.
fn remove_path(obj: &mut Value, path: &str) {
    let mut segs: Vec<&str> = path.split('.').collect();
    let Some(last) = segs.pop() else { return };
    let mut cur = obj;
    for seg in segs {
        let (name, idx) = match seg.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let Some(next) = cur.get_mut(name) else {
            return;
        };
        cur = match idx {
            Some(i) => match next.get_mut(i) {
                Some(v) => v,
                None => return,
            },
            None => next,
        };
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

impl CustomResource {
    /// Unknown fields of `metadata`, as `metadata.<path>`.
    fn unknown_metadata(obj: &Value) -> Vec<String> {
        match obj.get("metadata") {
            Some(m @ Value::Object(_)) => api::schema::find_unknown_fields(m, OBJECT_META)
                .into_iter()
                .map(|p| format!("metadata.{p}"))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// What decoding does to a custom resource: unknown fields pruned (their paths
    /// returned, for `fieldValidation`), non-nullable nulls dropped, defaults
    /// applied.
    pub(crate) fn coerce(&self, obj: &mut Value) -> Vec<String> {
        let mut unknown = Self::unknown_metadata(obj);
        for p in &unknown {
            remove_path(obj, p);
        }
        if let Some(schema) = &self.schema {
            unknown.extend(schema.prune(obj));
            schema.prune_nulls(obj);
            schema.apply_defaults(obj);
        }
        unknown
    }

    /// A stored object as this version serves it (the None conversion strategy:
    /// only `apiVersion` changes), pruned and defaulted with this version's schema.
    pub(crate) fn to_served(&self, mut obj: Value) -> Value {
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), self.info.api_version().into());
        }
        if let Some(schema) = &self.schema {
            schema.prune(&mut obj);
            schema.prune_nulls(&mut obj);
            schema.apply_defaults(&mut obj);
        }
        obj
    }

    /// An object of this version as it is stored (in the storage version).
    pub(crate) fn to_storage(&self, obj: &Value) -> Value {
        let mut out = obj.clone();
        if let Some(m) = out.as_object_mut() {
            m.insert(
                "apiVersion".into(),
                format!("{}/{}", self.info.group, self.storage_version).into(),
            );
        }
        out
    }

    /// Schema validation and the scale subresource's rules.
    pub(crate) fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = match &self.schema {
            Some(s) => s.validate(obj),
            None => Vec::new(),
        };
        if let Some(scale) = &self.scale {
            errs.extend(replicas_errors(obj, &scale.spec_replicas));
            errs.extend(replicas_errors(obj, &scale.status_replicas));
            if let Some(sel) = &scale.label_selector
                && let Some(v) = value_at(obj, sel)
                && !v.is_string()
            {
                errs.push(FieldError::invalid(
                    sel.clone(),
                    v.clone(),
                    format!(
                        ".{} accessor error: {} is of the type {}, expected string",
                        sel.trim_start_matches('.'),
                        v,
                        go_type(v)
                    ),
                ));
            }
        }
        errs
    }

    /// The autoscaling/v1 `Scale` of an object.
    pub(crate) fn scale_of(&self, obj: &Value) -> Result<Value, ApiError> {
        let Some(scale) = &self.scale else {
            return Err(ApiError::not_found_message(
                "the server could not find the requested resource",
            ));
        };
        let int = |p: &str| value_at(obj, p).and_then(Value::as_i64).unwrap_or(0);
        let selector = scale
            .label_selector
            .as_deref()
            .and_then(|p| value_at(obj, p))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let m = obj.get("metadata").cloned().unwrap_or_default();
        let mut status = json!({"replicas": int(&scale.status_replicas)});
        if !selector.is_empty() {
            status["selector"] = selector.into();
        }
        Ok(json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": m.get("name"),
                "namespace": m.get("namespace"),
                "uid": m.get("uid"),
                "resourceVersion": m.get("resourceVersion"),
                "creationTimestamp": m.get("creationTimestamp"),
            },
            "spec": {"replicas": int(&scale.spec_replicas)},
            "status": status,
        }))
    }

    /// Sets the spec replicas path to `replicas`.
    pub(crate) fn set_replicas(&self, obj: &mut Value, replicas: i64) {
        if let Some(scale) = &self.scale {
            let dotted = scale.spec_replicas.trim_start_matches('.');
            crate::object::set(obj, dotted, replicas.into());
        }
    }

    /// The value of a field selector label (`selectableFields`).
    pub(crate) fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let (_, path) = self.selectable.iter().find(|(f, _)| f == field)?;
        Some(match path.first(obj) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        })
    }

    /// A `Table` of objects of this version.
    pub(crate) fn table(
        &self,
        objects: &[Value],
        include: api::table::IncludeObject,
        list_meta: Value,
    ) -> Value {
        super::printer::table(
            &self.columns,
            objects,
            jiff::Timestamp::now(),
            include,
            list_meta,
        )
    }
}

/// The value at a simple JSONPath (`.spec.replicas`).
fn value_at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    crate::object::path(obj, path.trim_start_matches('.'))
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Kubernetes' checks of the replicas paths of the scale subresource.
fn replicas_errors(obj: &Value, path: &str) -> Vec<FieldError> {
    let Some(v) = value_at(obj, path) else {
        return Vec::new();
    };
    match v.as_i64() {
        Some(n) if n < 0 => vec![FieldError::invalid(
            path,
            n,
            "should be a non-negative integer",
        )],
        Some(n) if n > i64::from(i32::MAX) => vec![FieldError::invalid(
            path,
            n,
            format!("should be less than or equal to {}", i32::MAX),
        )],
        Some(_) => Vec::new(),
        None => vec![FieldError::invalid(
            path,
            0,
            format!(
                ".{} accessor error: {v} is of the type {}, expected int64",
                path.trim_start_matches('.'),
                go_type(v)
            ),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_paths_are_removed_including_list_items() {
        let mut v = json!({"metadata": {"name": "a", "bogus": 1, "ownerReferences": [{"x": 1, "name": "o"}]}});
        remove_path(&mut v, "metadata.bogus");
        remove_path(&mut v, "metadata.ownerReferences[0].x");
        remove_path(&mut v, "metadata.nothing.deeper");
        assert_eq!(
            v,
            json!({"metadata": {"name": "a", "ownerReferences": [{"name": "o"}]}})
        );
    }
}
