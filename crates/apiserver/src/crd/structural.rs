//! Whether a CRD version's `openAPIV3Schema` is one the server can serve: the
//! OpenAPI subset Kubernetes accepts and its *structural schema* rules
//! (apiextensions-apiserver's `ValidateCustomResourceDefinitionOpenAPISchema`,
//! `ValidateStructural` and `ValidateDefaults`), reported with Kubernetes' field
//! paths and messages, e.g.
//! `spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value:
//! must not be empty for specified object fields`.

use api::status::FieldError;
use serde_json::{Map, Value};

use super::schema::Schema;

const TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

/// Fields Kubernetes allows at the root of a schema when the status subresource is on.
const ROOT_FIELDS_WITH_STATUS: &[&str] = &[
    "description",
    "type",
    "format",
    "title",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "required",
    "items",
    "properties",
    "externalDocs",
    "example",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
];

/// Where a schema node sits (`rootLevel`, `itemLevel`, `fieldLevel` in Kubernetes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

fn child(path: &str, name: &str) -> String {
    format!("{path}.{name}")
}

fn key(path: &str, name: &str, k: &str) -> String {
    format!("{path}.{name}[{k}]")
}

fn index(path: &str, name: &str, i: usize) -> String {
    format!("{path}.{name}[{i}]")
}

fn ty(s: &Map<String, Value>) -> &str {
    s.get("type").and_then(Value::as_str).unwrap_or_default()
}

fn is(s: &Map<String, Value>, ext: &str) -> bool {
    s.get(ext).and_then(Value::as_bool).unwrap_or(false)
}

/// Checks the schema of one version at `path`
/// (`spec.versions[i].schema.openAPIV3Schema`).
pub(crate) fn check(schema: &Value, path: &str, status_enabled: bool) -> Vec<FieldError> {
    let Some(root) = schema.as_object() else {
        return vec![FieldError::invalid(
            path,
            schema.clone(),
            "must be an object",
        )];
    };
    let mut errs = Vec::new();
    if status_enabled {
        if !ty(root).is_empty() && ty(root) != "object" {
            errs.push(FieldError::invalid(
                child(path, "type"),
                ty(root),
                r#"only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#,
            ));
        } else if root
            .keys()
            .any(|k| !ROOT_FIELDS_WITH_STATUS.contains(&k.as_str()))
        {
            errs.push(FieldError::invalid(
                path,
                Value::Object(root.clone()),
                format!(
                    "only [{}] fields are allowed at the root of the schema if the status subresource is enabled",
                    "Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations"
                ),
            ));
        }
    }
    if is(root, "nullable") {
        errs.push(FieldError::forbidden(
            child(path, "nullable"),
            "nullable cannot be true at the root",
        ));
    }
    openapi_subset(root, path, true, false, None, &mut errs);
    let mut structural = Vec::new();
    invariants(root, Level::Root, path, &mut structural);
    completeness(root, path, &mut structural);
    structural.sort_by_key(FieldError::message);
    errs.extend(structural);
    if errs.is_empty() {
        defaults(root, path, "", &mut errs);
    }
    errs
}

/// The OpenAPI subset Kubernetes accepts (`specStandardValidatorV3` and the
/// recursion of `ValidateCustomResourceDefinitionOpenAPISchema`).
fn openapi_subset(
    s: &Map<String, Value>,
    path: &str,
    root: bool,
    inside_meta: bool,
    defaults_forbidden: Option<&str>,
    errs: &mut Vec<FieldError>,
) {
    let t = ty(s);
    if !t.is_empty() && t != "null" && !TYPES.contains(&t) {
        errs.push(FieldError::not_supported(child(path, "type"), t, TYPES));
    }
    if s.contains_key("default")
        && let Some(reason) = defaults_forbidden
    {
        errs.push(FieldError::forbidden(
            child(path, "default"),
            format!("must not be set {reason}"),
        ));
    }
    for (field, what) in [
        ("id", "id is not supported"),
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
        ("$ref", "$ref is not supported"),
    ] {
        if s.contains_key(field) {
            errs.push(FieldError::forbidden(child(path, field), what));
        }
    }
    if t == "null" {
        errs.push(FieldError::forbidden(
            child(path, "type"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if s.get("items").is_some_and(Value::is_array) {
        errs.push(FieldError::forbidden(
            child(path, "items"),
            "items must be a schema object and not an array",
        ));
    }
    if inside_meta && is(s, "x-kubernetes-embedded-resource") {
        errs.push(FieldError::forbidden(
            child(path, "x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
    if is(s, "uniqueItems") {
        errs.push(FieldError::forbidden(
            child(path, "uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    let props = s.get("properties").and_then(Value::as_object);
    if let Some(ap) = s.get("additionalProperties") {
        if props.is_some_and(|p| !p.is_empty()) && ap != &Value::Bool(true) {
            errs.push(FieldError::forbidden(
                child(path, "additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if let Some(a) = ap.as_object() {
            let reason =
                inside_meta.then_some("inside additionalProperties applying to object metadata");
            openapi_subset(
                a,
                &child(path, "additionalProperties"),
                false,
                inside_meta,
                reason.or(defaults_forbidden),
                errs,
            );
        }
    }
    if let Some(props) = props {
        for (k, p) in props {
            let Some(p) = p.as_object() else { continue };
            let meta = (root || is(s, "x-kubernetes-embedded-resource"))
                && ["metadata", "kind", "apiVersion"].contains(&k.as_str());
            let reason = if root && meta {
                Some(format!("in top-level {k}"))
            } else {
                defaults_forbidden.map(String::from)
            };
            openapi_subset(
                p,
                &key(path, "properties", k),
                false,
                inside_meta || meta,
                reason.as_deref(),
                errs,
            );
        }
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = s.get(junctor).and_then(Value::as_array) {
            for (i, x) in list.iter().enumerate() {
                if let Some(x) = x.as_object() {
                    openapi_subset(
                        x,
                        &index(path, junctor, i),
                        false,
                        inside_meta,
                        defaults_forbidden,
                        errs,
                    );
                }
            }
        }
    }
    if let Some(n) = s.get("not").and_then(Value::as_object) {
        openapi_subset(
            n,
            &child(path, "not"),
            false,
            inside_meta,
            defaults_forbidden,
            errs,
        );
    }
    if let Some(items) = s.get("items").and_then(Value::as_object) {
        openapi_subset(
            items,
            &child(path, "items"),
            false,
            inside_meta,
            defaults_forbidden,
            errs,
        );
    }
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        errs.push(FieldError::invalid(
            child(path, "x-kubernetes-preserve-unknown-fields"),
            false,
            "must be true or undefined",
        ));
    }
    list_and_map_types(s, path, errs);
}

fn list_and_map_types(s: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    let t = ty(s);
    if let Some(map_type) = s.get("x-kubernetes-map-type").and_then(Value::as_str) {
        if t != "object" {
            let msg = "must be object if x-kubernetes-map-type is specified";
            errs.push(if t.is_empty() {
                FieldError::required(child(path, "type"), msg)
            } else {
                FieldError::invalid(child(path, "type"), t, msg)
            });
        }
        if map_type != "atomic" && map_type != "granular" {
            errs.push(FieldError::not_supported(
                child(path, "x-kubernetes-map-type"),
                map_type,
                &["atomic", "granular"],
            ));
        }
    }
    let list_type = s.get("x-kubernetes-list-type").and_then(Value::as_str);
    if let Some(lt) = list_type {
        if t != "array" {
            let msg = "must be array if x-kubernetes-list-type is specified";
            errs.push(if t.is_empty() {
                FieldError::required(child(path, "type"), msg)
            } else {
                FieldError::invalid(child(path, "type"), t, msg)
            });
        }
        if !["atomic", "set", "map"].contains(&lt) {
            errs.push(FieldError::not_supported(
                child(path, "x-kubernetes-list-type"),
                lt,
                &["atomic", "set", "map"],
            ));
        }
    }
    let keys = s
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .filter(|k| !k.is_empty());
    if keys.is_some() && list_type != Some("map") {
        let msg = "must be map if x-kubernetes-list-map-keys is non-empty";
        errs.push(match list_type {
            None => FieldError::required(child(path, "x-kubernetes-list-type"), msg),
            Some(lt) => FieldError::invalid(child(path, "x-kubernetes-list-type"), lt, msg),
        });
    }
    if list_type == Some("map") && keys.is_none() {
        errs.push(FieldError::required(
            child(path, "x-kubernetes-list-map-keys"),
            "must not be empty if x-kubernetes-list-type is map",
        ));
    }
}

/// `validateStructuralInvariants`.
fn invariants(s: &Map<String, Value>, level: Level, path: &str, errs: &mut Vec<FieldError>) {
    let t = ty(s);
    if t == "array" && !s.contains_key("items") {
        errs.push(FieldError::required(
            child(path, "items"),
            "must be specified",
        ));
    }
    if let Some(items) = s.get("items").and_then(Value::as_object) {
        invariants(items, Level::Item, &child(path, "items"), errs);
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            if let Some(p) = p.as_object() {
                invariants(p, Level::Field, &key(path, "properties", k), errs);
            }
        }
    }
    if let Some(ap) = s.get("additionalProperties") {
        if level == Level::Root {
            errs.push(FieldError::forbidden(
                child(path, "additionalProperties"),
                "must not be used at the root",
            ));
        }
        if let Some(a) = ap.as_object() {
            invariants(a, Level::Field, &child(path, "additionalProperties"), errs);
        }
    }
    let int_or_string = is(s, "x-kubernetes-int-or-string");
    let preserve = is(s, "x-kubernetes-preserve-unknown-fields");
    let embedded = is(s, "x-kubernetes-embedded-resource");
    if int_or_string && preserve {
        errs.push(FieldError::invalid(
            child(path, "x-kubernetes-preserve-unknown-fields"),
            true,
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if int_or_string && embedded {
        errs.push(FieldError::invalid(
            child(path, "x-kubernetes-embedded-resource"),
            true,
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    nested_value_validations(s, int_or_string, path, errs);
    if embedded && t != "object" {
        let msg = "must be object if x-kubernetes-embedded-resource is true";
        errs.push(if t.is_empty() {
            FieldError::required(child(path, "type"), msg)
        } else {
            FieldError::invalid(child(path, "type"), t, msg)
        });
    } else if t.is_empty() && !int_or_string && !preserve {
        let msg = match level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(child(path, "type"), msg));
    }
    if embedded && s.contains_key("additionalProperties") {
        errs.push(FieldError::forbidden(
            child(path, "additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if level == Level::Root && !t.is_empty() && t != "object" {
        errs.push(FieldError::invalid(
            child(path, "type"),
            t,
            "must be object at the root",
        ));
    }
    let check_meta = level == Level::Root || embedded;
    let props = s.get("properties").and_then(Value::as_object);
    if check_meta && let Some(props) = props {
        for f in ["kind", "apiVersion"] {
            if let Some(p) = props.get(f).and_then(Value::as_object)
                && ty(p) != "string"
            {
                errs.push(FieldError::invalid(
                    child(&key(path, "properties", f), "type"),
                    ty(p),
                    "must be string",
                ));
            }
        }
    }
    if let Some(meta) = props
        .and_then(|p| p.get("metadata"))
        .and_then(Value::as_object)
    {
        let mp = key(path, "properties", "metadata");
        if check_meta && ty(meta) != "object" {
            errs.push(FieldError::invalid(
                child(&mp, "type"),
                ty(meta),
                "must be object",
            ));
        }
        if level == Level::Root {
            let only_names = meta.iter().all(|(k, v)| match k.as_str() {
                "type" => true,
                "properties" => v
                    .as_object()
                    .is_some_and(|p| p.keys().all(|n| n == "name" || n == "generateName")),
                _ => false,
            });
            if !only_names {
                errs.push(FieldError::forbidden(
                    mp,
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                ));
            }
        }
    }
    if embedded && !preserve && props.is_none_or(Map::is_empty) {
        errs.push(FieldError::required(
            child(path, "properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str)
        && let Err(e) = regex::Regex::new(p)
    {
        errs.push(FieldError::invalid(
            child(path, "pattern"),
            p,
            format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
}

/// Whether `anyOf` is exactly `[{type: integer}, {type: string}]` (the int-or-string form).
fn is_int_or_string_any_of(list: Option<&Value>) -> bool {
    list.and_then(Value::as_array).is_some_and(|a| {
        a.len() == 2
            && a[0] == serde_json::json!({"type": "integer"})
            && a[1] == serde_json::json!({"type": "string"})
    })
}

/// The value validations under `allOf`/`anyOf`/`oneOf`/`not` may not say anything
/// structural (`validateValueValidation` / `validateNestedValueValidation`).
fn nested_value_validations(
    s: &Map<String, Value>,
    int_or_string: bool,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let skip_any_of = int_or_string && is_int_or_string_any_of(s.get("anyOf"));
    let skip_first_all_of = int_or_string
        && s.get("allOf")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .is_some_and(|f| is_int_or_string_any_of(f.get("anyOf")));
    for junctor in ["allOf", "anyOf", "oneOf"] {
        if junctor == "anyOf" && skip_any_of {
            continue;
        }
        if let Some(list) = s.get(junctor).and_then(Value::as_array) {
            for (i, x) in list.iter().enumerate() {
                if let Some(x) = x.as_object() {
                    let skip = junctor == "allOf" && i == 0 && skip_first_all_of;
                    nested(x, skip, &index(path, junctor, i), errs);
                }
            }
        }
    }
    if let Some(n) = s.get("not").and_then(Value::as_object) {
        nested(n, false, &child(path, "not"), errs);
    }
}

fn nested(v: &Map<String, Value>, skip_any_of: bool, path: &str, errs: &mut Vec<FieldError>) {
    nested_value_validations_inner(v, skip_any_of, path, errs);
    if let Some(items) = v.get("items").and_then(Value::as_object) {
        nested(items, false, &child(path, "items"), errs);
    }
    if let Some(props) = v.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            if let Some(p) = p.as_object() {
                nested(p, false, &key(path, "properties", k), errs);
            }
        }
        if props.contains_key("metadata") {
            errs.push(FieldError::forbidden(
                key(path, "properties", "metadata"),
                "must not be specified in a nested context",
            ));
        }
    }
    let forbidden: &[(&str, &str)] = &[
        ("type", "must be empty to be structural"),
        ("additionalProperties", "must be undefined to be structural"),
        ("default", "must be undefined to be structural"),
        ("title", "must be empty to be structural"),
        ("description", "must be empty to be structural"),
        (
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        ),
        (
            "x-kubernetes-list-type",
            "must be undefined to be structural",
        ),
        (
            "x-kubernetes-map-type",
            "must be undefined to be structural",
        ),
        ("x-kubernetes-validations", "must be empty to be structural"),
    ];
    for (field, msg) in forbidden {
        let set = match v.get(*field) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if set {
            errs.push(FieldError::forbidden(child(path, field), *msg));
        }
    }
    for flag in [
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
    ] {
        if is(v, flag) {
            errs.push(FieldError::forbidden(
                child(path, flag),
                "must be false to be structural",
            ));
        }
    }
}

fn nested_value_validations_inner(
    v: &Map<String, Value>,
    skip_any_of: bool,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    for junctor in ["allOf", "anyOf", "oneOf"] {
        if junctor == "anyOf" && skip_any_of {
            continue;
        }
        if let Some(list) = v.get(junctor).and_then(Value::as_array) {
            for (i, x) in list.iter().enumerate() {
                if let Some(x) = x.as_object() {
                    nested(x, false, &index(path, junctor, i), errs);
                }
            }
        }
    }
    if let Some(n) = v.get("not").and_then(Value::as_object) {
        nested(n, false, &child(path, "not"), errs);
    }
}

/// `validateStructuralCompleteness`: everything a value validation talks about must
/// be specified structurally.
fn completeness(s: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    value_validation_completeness(s, Some(s), path, path, errs);
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            if let Some(p) = p.as_object() {
                completeness(p, &key(path, "properties", k), errs);
            }
        }
    }
    if let Some(items) = s.get("items").and_then(Value::as_object) {
        completeness(items, &child(path, "items"), errs);
    }
    if let Some(a) = s.get("additionalProperties").and_then(Value::as_object) {
        completeness(a, &child(path, "additionalProperties"), errs);
    }
}

fn value_validation_completeness(
    v: &Map<String, Value>,
    s: Option<&Map<String, Value>>,
    s_path: &str,
    v_path: &str,
    errs: &mut Vec<FieldError>,
) {
    if let Some(n) = v.get("not").and_then(Value::as_object) {
        nested_completeness(n, s, s_path, &child(v_path, "not"), errs);
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = v.get(junctor).and_then(Value::as_array) {
            for (i, x) in list.iter().enumerate() {
                if let Some(x) = x.as_object() {
                    nested_completeness(x, s, s_path, &index(v_path, junctor, i), errs);
                }
            }
        }
    }
}

fn nested_completeness(
    v: &Map<String, Value>,
    s: Option<&Map<String, Value>>,
    s_path: &str,
    v_path: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(s) = s else {
        errs.push(FieldError::required(
            s_path,
            format!("because it is defined in {v_path}"),
        ));
        return;
    };
    value_validation_completeness(v, Some(s), s_path, v_path, errs);
    if let Some(items) = v.get("items").and_then(Value::as_object) {
        nested_completeness(
            items,
            s.get("items").and_then(Value::as_object),
            &child(s_path, "items"),
            &child(v_path, "items"),
            errs,
        );
    }
    if let Some(props) = v.get("properties").and_then(Value::as_object) {
        let s_props = s.get("properties").and_then(Value::as_object);
        for (k, p) in props {
            let Some(p) = p.as_object() else { continue };
            match s_props.and_then(|sp| sp.get(k)).and_then(Value::as_object) {
                Some(sp) => nested_completeness(
                    p,
                    Some(sp),
                    &key(s_path, "properties", k),
                    &key(v_path, "properties", k),
                    errs,
                ),
                None => errs.push(FieldError::required(
                    key(s_path, "properties", k),
                    format!("because it is defined in {}", key(v_path, "properties", k)),
                )),
            }
        }
    }
}

/// Every default must be valid for its schema and survive pruning
/// (`ValidateDefaults`).
fn defaults(s: &Map<String, Value>, path: &str, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(d) = s.get("default") {
        let schema = Schema::parse(&Value::Object(s.clone()));
        // Pruned as the value of a field, not as a resource root.
        let mut wrapper = Schema::default();
        wrapper.properties.insert("x".into(), schema.clone());
        let mut holder = serde_json::json!({ "x": d.clone() });
        if !wrapper.prune(&mut holder).is_empty() {
            errs.push(FieldError::invalid(
                child(path, "default"),
                d.clone(),
                "must not have unknown fields",
            ));
        } else {
            for e in schema.validate_at(d, field) {
                errs.push(FieldError::invalid(
                    child(path, "default"),
                    d.clone(),
                    e.message(),
                ));
            }
        }
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            if let Some(p) = p.as_object() {
                let f = if field.is_empty() {
                    k.clone()
                } else {
                    format!("{field}.{k}")
                };
                defaults(p, &key(path, "properties", k), &f, errs);
            }
        }
    }
    if let Some(items) = s.get("items").and_then(Value::as_object) {
        defaults(items, &child(path, "items"), &format!("{field}[0]"), errs);
    }
    if let Some(a) = s.get("additionalProperties").and_then(Value::as_object) {
        defaults(
            a,
            &child(path, "additionalProperties"),
            &format!("{field}[key]"),
            errs,
        );
    }
}

#[cfg(test)]
mod tests;
