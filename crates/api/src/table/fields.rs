//! Reading printed fields out of stored JSON objects; missing fields read as Go zero values.

use serde_json::Value;

/// The value at `path`, treating JSON `null` as missing.
pub(super) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |v, key| v.get(key))
        .filter(|v| !v.is_null())
}

/// The string at `path`, if there is one.
pub(super) fn opt_str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

/// The string at `path`, or `""`.
pub(super) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    opt_str_at(v, path).unwrap_or("")
}

/// The non-empty string at `path`, or `default` (for fields the server defaults).
pub(super) fn str_or<'a>(v: &'a Value, path: &[&str], default: &'a str) -> &'a str {
    match str_at(v, path) {
        "" => default,
        s => s,
    }
}

/// The integer at `path`, if there is one.
pub(super) fn opt_int_at(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).and_then(Value::as_i64)
}

/// The integer at `path`, or 0.
pub(super) fn int_at(v: &Value, path: &[&str]) -> i64 {
    opt_int_at(v, path).unwrap_or(0)
}

/// The boolean at `path`, if there is one.
pub(super) fn opt_bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    at(v, path).and_then(Value::as_bool)
}

/// The array at `path`, or an empty slice.
pub(super) fn items<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The number of entries of the array or map at `path` (`len()` in Go), 0 when missing.
pub(super) fn len_at(v: &Value, path: &[&str]) -> i64 {
    let len = match at(v, path) {
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(m)) => m.len(),
        _ => 0,
    };
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// `metadata.name`.
pub(super) fn name(obj: &Value) -> &str {
    str_at(obj, &["metadata", "name"])
}

/// Whether `metadata.deletionTimestamp` is set.
pub(super) fn is_deleting(obj: &Value) -> bool {
    at(obj, &["metadata", "deletionTimestamp"]).is_some()
}

/// The string map at `path` as sorted `key=value` pairs joined by `,` (Go's
/// `labels.Set.String`), `""` when empty.
pub(super) fn label_set(v: &Value, path: &[&str]) -> String {
    let Some(Value::Object(map)) = at(v, path) else {
        return String::new();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// Go's `labels.FormatLabels`: like [`label_set`] but `<none>` when empty.
pub(super) fn format_labels(v: &Value, path: &[&str]) -> String {
    none_if_empty(label_set(v, path))
}

/// `s`, or `<none>` when it is empty.
pub(super) fn none_if_empty(s: String) -> String {
    if s.is_empty() { "<none>".to_owned() } else { s }
}

/// Container names and images of a pod spec's `containers`, each joined by `,`
/// (`layoutContainerCells`).
pub(super) fn container_cells(pod_spec_containers: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = pod_spec_containers
        .iter()
        .map(|c| str_at(c, &["name"]))
        .collect();
    let images: Vec<&str> = pod_spec_containers
        .iter()
        .map(|c| str_at(c, &["image"]))
        .collect();
    (Value::from(names.join(",")), Value::from(images.join(",")))
}

/// An `IntOrString` as text, if set.
pub(super) fn int_or_string(v: &Value, path: &[&str]) -> Option<String> {
    match at(v, path)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Go's `printBoolPtr`: `True`, `False` or `<unset>`.
pub(super) fn bool_text(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

/// Go's `net.JoinHostPort`: brackets around IPv6 hosts.
pub(super) fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Up to `max` entries joined by `,` with ` + N more...` for the rest
/// (`listWithMoreString`), `<unset>` when there are none.
pub(super) fn list_with_more(all: &[String], max: usize) -> String {
    let shown = all[..all.len().min(max)].join(",");
    if all.len() > max {
        format!("{shown} + {} more...", all.len() - max)
    } else if shown.is_empty() {
        "<unset>".to_owned()
    } else {
        shown
    }
}
