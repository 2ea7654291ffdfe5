//! Unknown and duplicate fields, found and worded as kube-apiserver's strict
//! decoding does (`fieldValidation=Strict|Warn`).
//!
//! Kubernetes decodes built-in types with sigs.k8s.io/json's
//! `UnmarshalStrict`: each problem is `unknown field "<path>"` or
//! `duplicate field "<path>"`, where the path joins object keys with `.` and
//! appends list indexes as `[i]` (`spec.template.spec.containers[0].foo`), in
//! document order, each reported once, at most 100. A `Strict` request fails
//! with the BadRequest message `strict decoding error: <e1>, <e2>`
//! (apimachinery `runtime.NewStrictDecodingError`); a `Warn` request carries
//! each problem as its own `Warning` header.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::navigate::{Members, Node};
use crate::selector::validation::go_quote;

/// Kubernetes stops collecting strict errors after this many.
const MAX_STRICT_ERRORS: usize = 100;

/// One strict decoding problem; `Display` gives Kubernetes' wording.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StrictError {
    /// A field the type does not have: `unknown field "spec.foo"`.
    UnknownField(String),
    /// A key given twice in one object: `duplicate field "spec.replicas"`.
    DuplicateField(String),
}

impl StrictError {
    /// The field path, e.g. `spec.template.spec.containers[0].foo`.
    pub fn path(&self) -> &str {
        match self {
            StrictError::UnknownField(p) | StrictError::DuplicateField(p) => p,
        }
    }
}

impl fmt::Display for StrictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrictError::UnknownField(p) => write!(f, "unknown field {}", go_quote(p)),
            StrictError::DuplicateField(p) => write!(f, "duplicate field {}", go_quote(p)),
        }
    }
}

/// The message of a failed `Strict` request: `strict decoding error: unknown field "a", ...`.
pub fn strict_decoding_message(errors: &[StrictError]) -> String {
    let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!("strict decoding error: {}", parts.join(", "))
}

/// Paths of the fields in `value` that the definition does not know, as
/// Kubernetes formats them (`spec.template.spec.containers[0].foo`). Values
/// under an unknown field are not looked into; free-form objects
/// (RawExtension, FieldsV1, `x-kubernetes-preserve-unknown-fields`) accept
/// anything. An unknown definition checks nothing.
pub fn find_unknown_fields(value: &Value, definition: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(node) = Node::definition(super::definitions(), definition) {
        walk_value(value, node, &mut String::new(), &mut out);
    }
    out
}

fn walk_value(value: &Value, node: Node<'_>, path: &mut String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let members = node.members();
            if matches!(members, Members::Any) {
                return;
            }
            for (key, child) in map {
                let len = push_key(path, key);
                match &members {
                    Members::Properties(props) if !props.contains_key(key) => {
                        if out.len() < MAX_STRICT_ERRORS && !out.contains(path) {
                            out.push(path.clone());
                        }
                    }
                    _ => walk_value(child, node.member(key), path, out),
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = push_index(path, i);
                walk_value(child, node.items(), path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Parses JSON, keeping key order (the last of duplicate keys wins, at the
/// first one's position), and reports every duplicate key as Kubernetes words
/// it: `duplicate field "spec.replicas"`.
pub fn parse_json_detect_duplicates(
    bytes: &[u8],
) -> Result<(Value, Vec<String>), serde_json::Error> {
    let raw: Raw = serde_json::from_slice(bytes)?;
    let mut errors = Vec::new();
    walk_raw(&raw, None, &mut String::new(), &mut errors);
    let messages = errors.iter().map(ToString::to_string).collect();
    Ok((raw.into_value(), messages))
}

/// Both checks of a strict decode of `bytes` as `definition`, in document
/// order, as Kubernetes reports them: duplicates of known fields and map
/// keys, unknown fields (not looked into), nothing inside free-form values.
/// For an unknown definition, only duplicates are reported (as for
/// unstructured objects).
pub fn strict_decoding_errors(
    bytes: &[u8],
    definition: &str,
) -> Result<(Value, Vec<StrictError>), serde_json::Error> {
    let raw: Raw = serde_json::from_slice(bytes)?;
    let node = Node::definition(super::definitions(), definition);
    let mut errors = Vec::new();
    walk_raw(&raw, node, &mut String::new(), &mut errors);
    Ok((raw.into_value(), errors))
}

/// `node` is `None` when there is no schema: every object is then checked for duplicates.
fn walk_raw(raw: &Raw, node: Option<Node<'_>>, path: &mut String, out: &mut Vec<StrictError>) {
    match raw {
        Raw::Object(entries) => {
            let members = node.map(|n| n.members());
            if matches!(members, Some(Members::Any)) {
                return;
            }
            // A set, not a list: a 3 MiB body of distinct keys took minutes to check.
            let mut seen: HashSet<&str> = HashSet::new();
            for (key, child) in entries {
                let len = push_key(path, key);
                if let Some(Members::Properties(props)) = &members
                    && !props.contains_key(key)
                {
                    record(out, StrictError::UnknownField(path.clone()));
                    path.truncate(len);
                    continue;
                }
                if !seen.insert(key.as_str()) {
                    record(out, StrictError::DuplicateField(path.clone()));
                }
                walk_raw(child, node.map(|n| n.member(key)), path, out);
                path.truncate(len);
            }
        }
        Raw::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = push_index(path, i);
                walk_raw(child, node.map(|n| n.items()), path, out);
                path.truncate(len);
            }
        }
        Raw::Scalar(_) => {}
    }
}

fn record(out: &mut Vec<StrictError>, error: StrictError) {
    if out.len() < MAX_STRICT_ERRORS && !out.contains(&error) {
        out.push(error);
    }
}

/// Appends `.key` (or `key` at the root); returns the length to truncate back to.
fn push_key(path: &mut String, key: &str) -> usize {
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
    len
}

/// Appends `[i]`; returns the length to truncate back to.
fn push_index(path: &mut String, i: usize) -> usize {
    let len = path.len();
    path.push_str(&format!("[{i}]"));
    len
}

/// JSON as written, duplicate keys included.
enum Raw {
    Scalar(Value),
    Array(Vec<Raw>),
    Object(Vec<(String, Raw)>),
}

impl Raw {
    fn into_value(self) -> Value {
        match self {
            Raw::Scalar(v) => v,
            Raw::Array(items) => Value::Array(items.into_iter().map(Raw::into_value).collect()),
            Raw::Object(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    map.insert(k, v.into_value());
                }
                Value::Object(map)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Raw, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Number(v.into())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Scalar(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Raw>()? {
            entries.push((k, v));
        }
        Ok(Raw::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_distinct_keys_are_checked_for_duplicates_in_linear_time() {
        // Found while fuzzing: each key was compared with every earlier one, so
        // 100,000 keys (a 1.2 MB body) took minutes to decode.
        let keys: Vec<String> = (0..100_000).map(|i| format!("\"k{i}\":\"\"")).collect();
        let body = format!("{{\"data\":{{{},\"k7\":\"again\"}}}}", keys.join(","));
        let start = std::time::Instant::now();
        let (value, duplicates) = parse_json_detect_duplicates(body.as_bytes()).unwrap();
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(duplicates, vec![r#"duplicate field "data.k7""#.to_owned()]);
        assert_eq!(value["data"]["k7"], "again");
    }
}
