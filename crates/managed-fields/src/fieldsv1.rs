//! The `FieldsV1` format of `metadata.managedFields[].fieldsV1`: a trie of
//! JSON objects whose keys are path elements (`f:`, `k:`, `v:`, `i:`) and
//! whose `"."` key marks a node that is itself a member and has children.
//! Written as structured-merge-diff writes it: `"."` first, then elements in
//! path order; leaves are `{}`.

use serde_json::{Map, Value};

use crate::path::{PathElement, PathElementError};
use crate::set::FieldSet;

/// Why a `fieldsV1` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsV1Error {
    /// A node that is not a JSON object.
    #[error("{path}: expected an object, got {found}")]
    NotAnObject {
        /// The keys leading to the node.
        path: String,
        /// The JSON kind found.
        found: &'static str,
    },
    /// A key that is not a path element.
    #[error("{path}: parsing key {key:?} as path element: {source}")]
    BadKey {
        /// The keys leading to the node.
        path: String,
        /// The offending key.
        key: String,
        /// Why it did not parse.
        source: PathElementError,
    },
}

/// Encodes a set as a `fieldsV1` object.
pub fn encode(set: &FieldSet) -> Value {
    Value::Object(encode_contents(set, false))
}

fn encode_contents(set: &FieldSet, include_self: bool) -> Map<String, Value> {
    let mut out = Map::new();
    let members: Vec<&PathElement> = set.members().collect();
    let children: Vec<(&PathElement, &FieldSet)> = set.children().collect();
    if include_self && !(members.is_empty() && children.is_empty()) {
        out.insert(".".to_owned(), Value::Object(Map::new()));
    }
    let (mut mi, mut ci) = (0, 0);
    while mi < members.len() || ci < children.len() {
        let take_member = match (members.get(mi), children.get(ci)) {
            (Some(m), Some((c, _))) => match m.cmp(c) {
                std::cmp::Ordering::Less => Some(true),
                std::cmp::Ordering::Greater => Some(false),
                std::cmp::Ordering::Equal => None,
            },
            (Some(_), None) => Some(true),
            _ => Some(false),
        };
        match take_member {
            Some(true) => {
                out.insert(members[mi].to_fields_key(), Value::Object(Map::new()));
                mi += 1;
            }
            Some(false) => {
                let (pe, child) = children[ci];
                out.insert(
                    pe.to_fields_key(),
                    Value::Object(encode_contents(child, false)),
                );
                ci += 1;
            }
            None => {
                let (pe, child) = children[ci];
                out.insert(
                    pe.to_fields_key(),
                    Value::Object(encode_contents(child, true)),
                );
                mi += 1;
                ci += 1;
            }
        }
    }
    out
}

/// Decodes a `fieldsV1` object. Keys of unknown element kinds are skipped,
/// as Kubernetes skips them.
pub fn decode(fields: &Value) -> Result<FieldSet, FieldsV1Error> {
    let (set, _) = decode_node(fields, &mut Vec::new())?;
    Ok(set.unwrap_or_default())
}

/// Returns the children of the node (None if it has none) and whether the
/// node is itself a member of its parent.
fn decode_node(
    node: &Value,
    path: &mut Vec<String>,
) -> Result<(Option<FieldSet>, bool), FieldsV1Error> {
    let Value::Object(map) = node else {
        return Err(FieldsV1Error::NotAnObject {
            path: path.join("/"),
            found: json_kind(node),
        });
    };
    let mut children: Option<FieldSet> = None;
    let mut is_member = false;
    for (key, value) in map {
        if key == "." {
            is_member = true;
            continue;
        }
        let pe = match PathElement::from_fields_key(key) {
            Ok(pe) => pe,
            Err(PathElementError::UnknownType) => continue,
            Err(source) => {
                return Err(FieldsV1Error::BadKey {
                    path: path.join("/"),
                    key: key.clone(),
                    source,
                });
            }
        };
        path.push(key.clone());
        let (grandchildren, child_is_member) = decode_node(value, path)?;
        path.pop();
        let set = children.get_or_insert_with(FieldSet::new);
        if child_is_member {
            set.insert_member(pe.clone());
        }
        if let Some(g) = grandchildren {
            set.insert_child(pe, g);
        }
    }
    if children.is_none() {
        is_member = true;
    }
    Ok((children, is_member))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dot_marks_a_member_that_also_has_children() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:replicas": {}}
        });
        let set = decode(&v).unwrap();
        let printed: Vec<String> = set.paths().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            printed,
            [".metadata.labels", ".metadata.labels.app", ".spec.replicas"]
        );
        assert_eq!(encode(&set), v);
        assert_eq!(
            serde_json::to_string(&encode(&set)).unwrap(),
            r#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:replicas":{}}}"#
        );
    }

    #[test]
    fn keys_values_and_indexes_decode() {
        let v = json!({
            "f:spec": {"f:ports": {
                "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}},
            }},
            "f:metadata": {"f:finalizers": {"v:\"a\"": {}}},
            "f:list": {"i:2": {}},
            "x:future": {}
        });
        let set = decode(&v).unwrap();
        assert_eq!(set.len(), 4);
        assert!(
            set.paths()
                .iter()
                .any(|p| p.to_string() == r#".spec.ports[port=80,protocol="TCP"].port"#)
        );
    }

    #[test]
    fn malformed_fields_are_errors() {
        assert!(decode(&json!({"f:a": 1})).is_err());
        assert!(decode(&json!({"k:[": {}})).is_err());
        assert!(decode(&json!([])).is_err());
        assert_eq!(decode(&json!({})).unwrap(), FieldSet::new());
    }
}
