//! Accessors for objects held as JSON (`serde_json::Value`): metadata fields, labels,
//! timestamps. The server handles every kind generically through these.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// `metadata` as a map, created when missing (or replaced when not an object).
pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("made an object above");
    let m = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut().expect("made an object above")
}

/// A string field of `metadata`.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.name`.
pub(crate) fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name").filter(|s| !s.is_empty())
}

/// `metadata.namespace`.
pub(crate) fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace").filter(|s| !s.is_empty())
}

/// `metadata.labels` as a sorted map.
pub(crate) fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.finalizers`.
pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Follows a dotted path of object fields.
pub(crate) fn path<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .filter(|k| !k.is_empty())
        .try_fold(obj, |v, k| v.get(k))
}

/// A mutable object at a dotted path, created as empty objects along the way.
pub(crate) fn path_mut<'a>(obj: &'a mut Value, dotted: &str) -> &'a mut Value {
    let mut cur = obj;
    for k in dotted.split('.').filter(|k| !k.is_empty()) {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("made an object above")
            .entry(k)
            .or_insert(Value::Null);
    }
    cur
}

/// Sets the value at a dotted path, turning whatever is in the way into objects.
pub(crate) fn set(obj: &mut Value, dotted: &str, value: Value) {
    *path_mut(obj, dotted) = value;
}

/// Sets `key` in the object at `dotted` if it is missing or null.
pub(crate) fn default_field(obj: &mut Value, dotted: &str, key: &str, value: Value) {
    let target = path_mut(obj, dotted);
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("made an object above");
    match map.get(key) {
        Some(v) if !v.is_null() => {}
        _ => {
            map.insert(key.to_string(), value);
        }
    }
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub(crate) fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .map(|t| t.to_string())
        .unwrap_or_else(|_| now.to_string())
}

/// The current time with microseconds (MicroTime fields such as a Lease's renewTime).
#[allow(dead_code)]
pub(crate) fn now_micro_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    format!("{}", now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaulting_at_the_root_sets_a_top_level_field() {
        let mut v = json!({"containerPort": 80});
        default_field(&mut v, "", "protocol", json!("TCP"));
        assert_eq!(v, json!({"containerPort": 80, "protocol": "TCP"}));
        default_field(&mut v, "a.b", "c", json!(1));
        assert_eq!(v["a"]["b"]["c"], 1);
    }
}
