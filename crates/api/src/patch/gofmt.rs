//! Go's `fmt` rendering of decoded JSON (`map[string]interface{}` and friends),
//! so patch errors read as the API server's do.

use serde_json::Value;

/// `%v` of a decoded JSON value: `map[a:1 b:[x y]]`, `<nil>`, `true`, `1.5`.
pub(crate) fn v(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => list(items),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", v(&map[*k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// `%v` of a `[]interface{}`.
pub(crate) fn list(items: &[Value]) -> String {
    let parts: Vec<String> = items.iter().map(v).collect();
    format!("[{}]", parts.join(" "))
}

/// `%v` of a map held as a `serde_json::Map`.
pub(crate) fn map(m: &serde_json::Map<String, Value>) -> String {
    v(&Value::Object(m.clone()))
}

/// `%s` of a decoded JSON value: strings as they are, others as Go's `%!s(T=v)`.
pub(crate) fn s(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "%!s(<nil>)".to_owned(),
        Value::Object(_) | Value::Array(_) => v(value),
        other => format!("%!s({}={})", type_name(other), v(other)),
    }
}

/// `reflect.TypeOf(x).String()` of a decoded JSON value.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int64",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// The Go type as `encoding/json` names it in "cannot unmarshal X into ...".
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
