//! Validation of values against a schema, worded as kube-openapi words it.

use api::status::{FieldError, FieldErrorType};
use serde_json::{Map, Value, json};

use super::{Additional, META_FIELDS, Schema};
use crate::crd::format;

/// The OpenAPI type name of a JSON value, as kube-openapi reports it.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's `%v` of a float64 (`10`, `1.5`).
pub(crate) fn go_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// Go's `%q` of a string.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn invalid(path: &str, value: Value, detail: String) -> FieldError {
    FieldError::invalid(path, value, detail)
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.as_number().is_some_and(|n| n.is_i64() || n.is_u64()),
        "number" => v.is_number(),
        _ => true,
    }
}

/// The type a value must have here (`integer,string` for int-or-string), if any.
fn expected_type(s: &Schema) -> Option<String> {
    if s.int_or_string {
        Some("integer,string".into())
    } else if s.ty.is_empty() {
        None
    } else {
        Some(s.ty.clone())
    }
}

fn type_error(path: &str, expected: &str, actual: &str) -> FieldError {
    invalid(
        path,
        Value::String(actual.to_string()),
        format!(
            "{path} in body must be of type {expected}: {}",
            go_quote(actual)
        ),
    )
}

pub(super) fn validate(v: &Value, s: &Schema, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    if v.is_null() {
        if s.nullable {
            return;
        }
        if let Some(ty) = expected_type(s) {
            errs.push(type_error(path, &ty, "null"));
        }
        return;
    }
    if let Some(ty) = expected_type(s) {
        let ok = if s.int_or_string {
            type_matches("integer", v) || type_matches("string", v)
        } else {
            type_matches(&ty, v)
        };
        if !ok {
            errs.push(type_error(path, &ty, type_of(v)));
            return;
        }
    }
    validate_combinators(v, s, path, root, errs);
    if let Some(allowed) = &s.enumeration
        && !allowed.contains(v)
    {
        let values: Vec<String> = allowed
            .iter()
            .map(|a| match a {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        errs.push(FieldError::not_supported(path, v.clone(), &refs));
    }
    match v {
        Value::String(text) => validate_string(text, s, path, errs),
        Value::Number(n) => validate_number(n, s, path, errs),
        Value::Array(items) => validate_array(items, s, path, errs),
        Value::Object(map) => validate_object(map, s, path, root, errs),
        _ => {}
    }
}

fn validate_combinators(v: &Value, s: &Schema, path: &str, root: bool, errs: &mut Vec<FieldError>) {
    let shown = if path.is_empty() { "." } else { path };
    if !s.any_of.is_empty() {
        let mut best: Option<Vec<FieldError>> = None;
        for alt in &s.any_of {
            let mut e = Vec::new();
            validate(v, alt, path, root, &mut e);
            if e.is_empty() {
                best = None;
                break;
            }
            if best.as_ref().is_none_or(|b| e.len() < b.len()) {
                best = Some(e);
            }
        }
        if let Some(b) = best {
            errs.push(invalid(
                path,
                v.clone(),
                format!(
                    "{} must validate at least one schema (anyOf)",
                    go_quote(shown)
                ),
            ));
            errs.extend(b);
        }
    }
    if !s.one_of.is_empty() {
        let mut valid = 0;
        let mut best: Option<Vec<FieldError>> = None;
        for alt in &s.one_of {
            let mut e = Vec::new();
            validate(v, alt, path, root, &mut e);
            if e.is_empty() {
                valid += 1;
            } else if best.as_ref().is_none_or(|b| e.len() < b.len()) {
                best = Some(e);
            }
        }
        if valid != 1 {
            let more = if valid == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {valid} valid alternatives")
            };
            errs.push(invalid(
                path,
                v.clone(),
                format!(
                    "{} must validate one and only one schema (oneOf). {more}",
                    go_quote(shown)
                ),
            ));
            if valid == 0
                && let Some(b) = best
            {
                errs.extend(b);
            }
        }
    }
    for alt in &s.all_of {
        validate(v, alt, path, root, errs);
    }
    if let Some(not) = &s.not {
        let mut e = Vec::new();
        validate(v, not, path, root, &mut e);
        if e.is_empty() {
            errs.push(invalid(
                path,
                v.clone(),
                format!("{} must not validate the schema (not)", go_quote(shown)),
            ));
        }
    }
}

fn validate_string(text: &str, s: &Schema, path: &str, errs: &mut Vec<FieldError>) {
    let chars = text.chars().count() as u64;
    if let Some(max) = s.max_length
        && chars > max
    {
        errs.push(FieldError {
            kind: FieldErrorType::TooLong,
            field: path.to_string(),
            value: None,
            detail: format!(
                "may not be more than {max} {}",
                if max == 1 { "byte" } else { "bytes" }
            ),
        });
    }
    if let Some(min) = s.min_length
        && chars < min
    {
        errs.push(invalid(
            path,
            text.into(),
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(p) = &s.pattern
        && let Some(re) = &p.regex
        && !re.is_match(text)
    {
        errs.push(invalid(
            path,
            text.into(),
            format!("{path} in body should match '{}'", p.source),
        ));
    }
    if !s.format.is_empty() && !format::valid(&s.format, text) {
        errs.push(invalid(
            path,
            text.into(),
            format!(
                "{path} in body must be of type {}: {}",
                s.format,
                go_quote(text)
            ),
        ));
    }
}

fn validate_number(n: &serde_json::Number, s: &Schema, path: &str, errs: &mut Vec<FieldError>) {
    let Some(f) = n.as_f64() else { return };
    let value = Value::Number(n.clone());
    if let Some(max) = s.maximum {
        if s.exclusive_maximum && f >= max {
            errs.push(invalid(
                path,
                value.clone(),
                format!("{path} in body should be less than {}", go_float(max)),
            ));
        } else if !s.exclusive_maximum && f > max {
            errs.push(invalid(
                path,
                value.clone(),
                format!(
                    "{path} in body should be less than or equal to {}",
                    go_float(max)
                ),
            ));
        }
    }
    if let Some(min) = s.minimum {
        if s.exclusive_minimum && f <= min {
            errs.push(invalid(
                path,
                value.clone(),
                format!("{path} in body should be greater than {}", go_float(min)),
            ));
        } else if !s.exclusive_minimum && f < min {
            errs.push(invalid(
                path,
                value.clone(),
                format!(
                    "{path} in body should be greater than or equal to {}",
                    go_float(min)
                ),
            ));
        }
    }
    if let Some(m) = s.multiple_of
        && m > 0.0
    {
        let q = f / m;
        if (q - q.round()).abs() > 1e-9 {
            errs.push(invalid(
                path,
                value,
                format!("{path} in body should be a multiple of {}", go_float(m)),
            ));
        }
    }
}

fn validate_array(items: &[Value], s: &Schema, path: &str, errs: &mut Vec<FieldError>) {
    let len = items.len() as u64;
    if let Some(max) = s.max_items
        && len > max
    {
        errs.push(FieldError {
            kind: FieldErrorType::TooMany,
            field: path.to_string(),
            value: Some(json!(len)),
            detail: format!(
                "must have at most {max} {}",
                if max == 1 { "item" } else { "items" }
            ),
        });
    }
    if let Some(min) = s.min_items
        && len < min
    {
        errs.push(invalid(
            path,
            json!(len),
            format!("{path} in body should have at least {min} items"),
        ));
    }
    if s.unique_items {
        let dup = items
            .iter()
            .enumerate()
            .any(|(i, a)| items[..i].contains(a));
        if dup {
            errs.push(invalid(
                path,
                Value::Array(items.to_vec()),
                format!("{path} in body shouldn't contain duplicates"),
            ));
        }
    }
    if let Some(item) = s.items.as_deref() {
        for (i, v) in items.iter().enumerate() {
            validate(v, item, &format!("{path}[{i}]"), false, errs);
        }
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn validate_object(
    map: &Map<String, Value>,
    s: &Schema,
    path: &str,
    root: bool,
    errs: &mut Vec<FieldError>,
) {
    let len = map.len() as u64;
    if let Some(min) = s.min_properties
        && len < min
    {
        errs.push(invalid(
            path,
            json!(len),
            format!("{path} in body should have at least {min} properties"),
        ));
    }
    if let Some(max) = s.max_properties
        && len > max
    {
        errs.push(FieldError {
            kind: FieldErrorType::TooMany,
            field: path.to_string(),
            value: Some(json!(len)),
            detail: format!(
                "must have at most {max} {}",
                if max == 1 { "item" } else { "items" }
            ),
        });
    }
    for r in &s.required {
        if !map.contains_key(r) {
            errs.push(FieldError::required(child_path(path, r), ""));
        }
    }
    if s.embedded_resource && !root {
        validate_embedded_resource(map, path, errs);
    }
    for (k, v) in map {
        let p = child_path(path, k);
        if let Some(prop) = s.properties.get(k) {
            validate(v, prop, &p, false, errs);
        } else if (root || s.embedded_resource) && META_FIELDS.contains(&k.as_str()) {
            // The server's own fields, checked elsewhere.
        } else {
            match &s.additional {
                Some(Additional::Schema(a)) => validate(v, a, &p, false, errs),
                Some(Additional::Allows(false)) if !s.preserve_unknown_fields => {
                    errs.push(FieldError::forbidden(
                        p,
                        format!("{path}.{k} in body is a forbidden property"),
                    ));
                }
                _ => {}
            }
        }
    }
}

fn validate_embedded_resource(map: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    for f in ["apiVersion", "kind"] {
        let p = child_path(path, f);
        match map.get(f) {
            None => errs.push(FieldError::required(p, "")),
            Some(Value::String(s)) if s.is_empty() => {
                errs.push(invalid(&p, "".into(), "must not be empty".into()))
            }
            Some(Value::String(s)) if f == "kind" => {
                let msgs = api::selector::is_dns1035_label(&s.to_lowercase());
                if !msgs.is_empty() {
                    errs.push(invalid(
                        &p,
                        s.as_str().into(),
                        format!(
                            "may have mixed case, but should otherwise match: {}",
                            msgs.join(",")
                        ),
                    ));
                }
            }
            Some(Value::String(_)) => {}
            Some(other) => errs.push(invalid(&p, other.clone(), "must be a string".into())),
        }
    }
    if let Some(meta) = map.get("metadata") {
        let prefix = child_path(path, "");
        for mut e in crate::rest::validate_object_meta(&json!({ "metadata": meta })) {
            e.field = format!("{prefix}{}", e.field);
            errs.push(e);
        }
    }
}
