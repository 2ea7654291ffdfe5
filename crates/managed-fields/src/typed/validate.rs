//! Checking an applied configuration against its schema, as converting it
//! to a typed value does: known fields only, values of the declared kind,
//! list-map items with their keys and no duplicates.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{TypeError, list_item_pe};
use crate::path::PathElement;
use crate::schema::{Atom, ListKind, ScalarKind, TypeRef};

/// Every way `value` does not fit `t`.
pub(crate) fn validate(value: &Value, t: TypeRef<'_>) -> Vec<TypeError> {
    let mut errors = Vec::new();
    walk(value, t, &mut String::new(), &mut errors);
    errors
}

fn err(errors: &mut Vec<TypeError>, path: &str, message: impl Into<String>) {
    errors.push(TypeError {
        path: path.to_owned(),
        message: message.into(),
    });
}

fn walk(value: &Value, t: TypeRef<'_>, path: &mut String, errors: &mut Vec<TypeError>) {
    match t.resolve(Some(value)) {
        Atom::Scalar(kind) => check_scalar(kind, value, path, errors),
        Atom::List(list) => {
            let items = match value {
                Value::Array(items) => items,
                Value::Null => return,
                other => return err(errors, path, format!("expected list, got {other}")),
            };
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let pe = if matches!(list.kind, ListKind::Atomic) {
                    PathElement::Index(i)
                } else {
                    match list_item_pe(&list, item) {
                        Ok(pe) => pe,
                        Err(e) => {
                            err(errors, path, format!("element {i}: {e}"));
                            continue;
                        }
                    }
                };
                if !matches!(pe, PathElement::Index(_)) && !seen.insert(pe.clone()) {
                    err(errors, path, format!("duplicate entries for key {pe}"));
                }
                let len = path.len();
                path.push_str(&pe.to_string());
                walk(item, list.element, path, errors);
                path.truncate(len);
            }
        }
        Atom::Map(map) => {
            let obj = match value {
                Value::Object(obj) => obj,
                Value::Null => return,
                other => return err(errors, path, format!("expected map, got {other}")),
            };
            for (key, child) in obj {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                match map.member(key) {
                    Some((t, _)) => walk(child, t, path, errors),
                    None => err(errors, path, "field not declared in schema"),
                }
                path.truncate(len);
            }
        }
    }
}

fn check_scalar(kind: ScalarKind, value: &Value, path: &str, errors: &mut Vec<TypeError>) {
    let ok = matches!(
        (kind, value),
        (_, Value::Null)
            | (ScalarKind::Numeric, Value::Number(_))
            | (ScalarKind::String, Value::String(_))
            | (ScalarKind::Boolean, Value::Bool(_))
            | (
                ScalarKind::Untyped,
                Value::Number(_) | Value::String(_) | Value::Bool(_)
            )
    );
    if ok {
        return;
    }
    let message = match kind {
        ScalarKind::Numeric => format!("expected numeric (int or float), got {}", go_type(value)),
        ScalarKind::String => format!("expected string, got {value}"),
        ScalarKind::Boolean => format!("expected boolean, got {value}"),
        ScalarKind::Untyped => format!("expected any scalar, got {value}"),
    };
    err(errors, path, message);
}

/// Go's `%T` of a decoded JSON value.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;
    use crate::typed::TypeErrors;
    use serde_json::json;

    #[test]
    fn unknown_fields_wrong_kinds_and_duplicate_keys_are_reported() {
        let s = Schema::for_kind("apps", "v1", "Deployment").unwrap();
        let config = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "spec": {
                "replicas": "three",
                "bogus": 1,
                "template": {"spec": {"containers": [
                    {"name": "a", "image": "x"},
                    {"name": "a", "image": "y"},
                    {"image": "z"}
                ]}}
            }
        });
        let errors = TypeErrors(validate(&config, s.root())).to_string();
        assert_eq!(
            errors,
            "errors:\n  \
             .spec.replicas: expected numeric (int or float), got string\n  \
             .spec.bogus: field not declared in schema\n  \
             .spec.template.spec.containers: duplicate entries for key [name=\"a\"]\n  \
             .spec.template.spec.containers: element 2: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"
        );
    }

    #[test]
    fn a_valid_configuration_has_no_errors() {
        let s = Schema::for_kind("", "v1", "Service").unwrap();
        let config = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "creationTimestamp": null},
            "spec": {"ports": [{"port": 80, "targetPort": "http"}], "selector": {"app": "x"}}
        });
        assert_eq!(validate(&config, s.root()), vec![]);
    }
}
