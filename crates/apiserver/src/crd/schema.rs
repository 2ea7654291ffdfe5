//! A custom resource version's structural schema and what the server does with it
//! on every write and read (apiextensions-apiserver's `pkg/apiserver/schema`):
//! pruning of unknown fields ([`Schema::prune`]), dropping non-nullable nulls,
//! defaulting ([`Schema::apply_defaults`]) and validation ([`Schema::validate`])
//! with kube-openapi's wording (`spec.replicas in body should be less than or equal
//! to 10`). Pure functions over JSON values.

use std::collections::BTreeMap;

use api::status::FieldError;
use serde_json::Value;

/// What `additionalProperties` says.
#[derive(Debug, Clone)]
pub(crate) enum Additional {
    /// `additionalProperties: true|false`.
    Allows(bool),
    /// `additionalProperties: {schema}`.
    Schema(Box<Schema>),
}

/// A compiled `pattern`.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    pub source: String,
    regex: Option<regex::Regex>,
}

/// One node of an `openAPIV3Schema` (structural part and value validations).
#[derive(Debug, Clone, Default)]
pub(crate) struct Schema {
    pub ty: String,
    pub format: String,
    pub nullable: bool,
    pub default: Option<Value>,
    pub properties: BTreeMap<String, Schema>,
    pub additional: Option<Additional>,
    pub items: Option<Box<Schema>>,
    pub required: Vec<String>,
    pub enumeration: Option<Vec<Value>>,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub multiple_of: Option<f64>,
    pub max_length: Option<u64>,
    pub min_length: Option<u64>,
    pub pattern: Option<Pattern>,
    pub max_items: Option<u64>,
    pub min_items: Option<u64>,
    pub unique_items: bool,
    pub max_properties: Option<u64>,
    pub min_properties: Option<u64>,
    pub all_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub one_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
    pub preserve_unknown_fields: bool,
    pub embedded_resource: bool,
    pub int_or_string: bool,
}

/// Fields every resource (the root, embedded resources) keeps without a schema.
const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn string(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn number(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn count(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn list(v: &Value, key: &str) -> Vec<Schema> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Schema::parse).collect())
        .unwrap_or_default()
}

impl Schema {
    /// Reads a schema leniently (the CRD's validation reports what is wrong with it).
    pub(crate) fn parse(v: &Value) -> Schema {
        let properties = v
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, s)| (k.clone(), Schema::parse(s)))
                    .collect()
            })
            .unwrap_or_default();
        let additional = match v.get("additionalProperties") {
            Some(Value::Bool(b)) => Some(Additional::Allows(*b)),
            Some(s @ Value::Object(_)) => Some(Additional::Schema(Box::new(Schema::parse(s)))),
            _ => None,
        };
        let items = match v.get("items") {
            Some(s @ Value::Object(_)) => Some(Box::new(Schema::parse(s))),
            _ => None,
        };
        let pattern = v.get("pattern").and_then(Value::as_str).map(|p| Pattern {
            source: p.to_string(),
            regex: regex::Regex::new(p).ok(),
        });
        Schema {
            ty: string(v, "type"),
            format: string(v, "format"),
            nullable: flag(v, "nullable"),
            default: v.get("default").cloned(),
            properties,
            additional,
            items,
            required: v
                .get("required")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            enumeration: v.get("enum").and_then(Value::as_array).cloned(),
            maximum: number(v, "maximum"),
            exclusive_maximum: flag(v, "exclusiveMaximum"),
            minimum: number(v, "minimum"),
            exclusive_minimum: flag(v, "exclusiveMinimum"),
            multiple_of: number(v, "multipleOf"),
            max_length: count(v, "maxLength"),
            min_length: count(v, "minLength"),
            pattern,
            max_items: count(v, "maxItems"),
            min_items: count(v, "minItems"),
            unique_items: flag(v, "uniqueItems"),
            max_properties: count(v, "maxProperties"),
            min_properties: count(v, "minProperties"),
            all_of: list(v, "allOf"),
            any_of: list(v, "anyOf"),
            one_of: list(v, "oneOf"),
            not: v
                .get("not")
                .filter(|n| n.is_object())
                .map(|n| Box::new(Schema::parse(n))),
            preserve_unknown_fields: flag(v, "x-kubernetes-preserve-unknown-fields"),
            embedded_resource: flag(v, "x-kubernetes-embedded-resource"),
            int_or_string: flag(v, "x-kubernetes-int-or-string"),
        }
    }

    /// The schema of the member `key` of an object value: a property, or the
    /// `additionalProperties` schema.
    pub(crate) fn member(&self, key: &str) -> Option<&Schema> {
        self.properties.get(key).or(match &self.additional {
            Some(Additional::Schema(s)) => Some(s.as_ref()),
            _ => None,
        })
    }

    /// The schema at a dotted path of properties (`.spec.replicas`), if specified.
    pub(crate) fn at_path(&self, dotted: &str) -> Option<&Schema> {
        dotted
            .split('.')
            .filter(|s| !s.is_empty())
            .try_fold(self, |s, k| s.member(k))
    }

    /// Removes the fields the schema does not specify (keeping `apiVersion`, `kind`
    /// and `metadata` of the resource and of embedded resources), as Kubernetes
    /// prunes a custom resource. Returns the removed paths (`spec.foo`,
    /// `spec.items[0].bar`), sorted, as strict field validation reports them.
    pub(crate) fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut out = Vec::new();
        prune(obj, Some(self), true, &mut String::new(), &mut out);
        out.sort();
        out
    }

    /// Drops `null`s of fields that are neither nullable nor defaulted
    /// (`PruneNonNullableNullsWithoutDefaults`).
    pub(crate) fn prune_nulls(&self, obj: &mut Value) {
        prune_nulls(obj, Some(self));
    }

    /// Fills defaults of specified properties that are missing (or non-nullable
    /// nulls), recursing into present values.
    pub(crate) fn apply_defaults(&self, obj: &mut Value) {
        apply_defaults(obj, self);
    }

    /// Validates a whole object (the root: `apiVersion`, `kind` and `metadata`
    /// are the server's business unless the schema specifies them).
    pub(crate) fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate(obj, self, "", true, &mut errs);
        errs
    }

    /// Validates a value found at `path` (e.g. a default, or `status`).
    pub(crate) fn validate_at(&self, value: &Value, path: &str) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate(value, self, path, false, &mut errs);
        errs
    }
}

fn push_key(path: &mut String, key: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
    len
}

fn push_index(path: &mut String, i: usize) -> usize {
    let len = path.len();
    path.push_str(&format!("[{i}]"));
    len
}

fn record(path: &mut String, key: &str, out: &mut Vec<String>) {
    let len = push_key(path, key);
    out.push(path.clone());
    path.truncate(len);
}

/// `resource` marks a resource root, whose `apiVersion`, `kind` and `metadata`
/// are kept like those of an embedded resource.
fn prune(
    x: &mut Value,
    s: Option<&Schema>,
    resource: bool,
    path: &mut String,
    out: &mut Vec<String>,
) {
    if let Some(s) = s
        && s.preserve_unknown_fields
    {
        skip_prune(x, s, resource, path, out);
        return;
    }
    match x {
        Value::Object(map) => {
            let Some(s) = s else {
                for k in map.keys() {
                    record(path, k, out);
                }
                map.clear();
                return;
            };
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if (resource || s.embedded_resource) && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let child = s.properties.get(&k).map(Some).or(match &s.additional {
                    Some(Additional::Schema(a)) => Some(Some(a.as_ref())),
                    Some(Additional::Allows(_)) => Some(None),
                    None => None,
                });
                match child {
                    Some(child) => {
                        let len = push_key(path, &k);
                        if let Some(v) = map.get_mut(&k) {
                            prune(v, child, false, path, out);
                        }
                        path.truncate(len);
                    }
                    None => {
                        if !META_FIELDS.contains(&k.as_str()) || !path.is_empty() {
                            record(path, &k, out);
                        }
                        map.remove(&k);
                    }
                }
            }
        }
        Value::Array(items) => {
            let child = s.and_then(|s| s.items.as_deref());
            for (i, v) in items.iter_mut().enumerate() {
                let len = push_index(path, i);
                prune(v, child, false, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn skip_prune(x: &mut Value, s: &Schema, resource: bool, path: &mut String, out: &mut Vec<String>) {
    match x {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if (resource || s.embedded_resource) && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let child = s.properties.get(k).map(Some).or(match &s.additional {
                    Some(Additional::Schema(a)) => Some(Some(a.as_ref())),
                    Some(Additional::Allows(_)) => Some(None),
                    None => None,
                });
                if let Some(child) = child {
                    let len = push_key(path, k);
                    prune(v, child, false, path, out);
                    path.truncate(len);
                }
            }
        }
        Value::Array(items) => {
            if let Some(child) = s.items.as_deref() {
                for (i, v) in items.iter_mut().enumerate() {
                    let len = push_index(path, i);
                    skip_prune(v, child, false, path, out);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

fn non_nullable_null_without_default(v: &Value, s: Option<&Schema>) -> bool {
    v.is_null() && s.is_some_and(|s| !s.nullable && s.default.is_none())
}

fn prune_nulls(x: &mut Value, s: Option<&Schema>) {
    match x {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let child = s.and_then(|s| s.member(&k));
                if map
                    .get(&k)
                    .is_some_and(|v| non_nullable_null_without_default(v, child))
                {
                    map.remove(&k);
                } else if let Some(v) = map.get_mut(&k) {
                    prune_nulls(v, child);
                }
            }
        }
        Value::Array(items) => {
            let child = s.and_then(|s| s.items.as_deref());
            for v in items.iter_mut() {
                prune_nulls(v, child);
            }
        }
        _ => {}
    }
}

fn non_nullable_null(v: &Value, s: &Schema) -> bool {
    v.is_null() && !s.nullable
}

fn apply_defaults(x: &mut Value, s: &Schema) {
    match x {
        Value::Object(map) => {
            for (k, prop) in &s.properties {
                let Some(d) = &prop.default else { continue };
                let missing = match map.get(k) {
                    None => true,
                    Some(v) => non_nullable_null(v, prop),
                };
                if missing {
                    map.insert(k.clone(), d.clone());
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(prop) = s.properties.get(k) {
                    apply_defaults(v, prop);
                } else if let Some(Additional::Schema(a)) = &s.additional {
                    if non_nullable_null(v, a)
                        && let Some(d) = &a.default
                    {
                        *v = d.clone();
                    }
                    apply_defaults(v, a);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = s.items.as_deref() {
                for v in items.iter_mut() {
                    if non_nullable_null(v, item)
                        && let Some(d) = &item.default
                    {
                        *v = d.clone();
                    }
                    apply_defaults(v, item);
                }
            }
        }
        _ => {}
    }
}

mod validate;

use validate::validate;

#[cfg(test)]
mod tests;
