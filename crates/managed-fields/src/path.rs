//! Field paths: the elements that select a child of an object (a field, a
//! list-map item by its key, a set item by its value, a list index), their
//! total order, their `FieldsV1` key form (`f:`, `k:`, `v:`, `i:`) and the
//! human form Kubernetes prints in conflicts (`.spec.containers[name="x"]`).

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Number, Value};

/// One step of a field path.
#[derive(Debug, Clone)]
pub enum PathElement {
    /// A field of an object (struct field or map key): `f:<name>`, `.name`.
    Field(String),
    /// A list-map item by its key fields, sorted by name:
    /// `k:{"containerPort":80,"protocol":"TCP"}`, `[containerPort=80,protocol="TCP"]`.
    Key(Vec<(String, Value)>),
    /// A set item by its value: `v:"a"`, `[="a"]`.
    Value(Value),
    /// A list item by its position: `i:0`, `[0]`.
    Index(usize),
}

/// Why a `FieldsV1` key could not be read as a path element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathElementError {
    /// Shorter than the two-character `x:` prefix.
    #[error("key must be 2 characters long: {0}")]
    TooShort(String),
    /// The second character is not `:`.
    #[error("missing colon: {0}")]
    MissingColon(String),
    /// A prefix letter other than `f`, `k`, `v`, `i` (Kubernetes skips these).
    #[error("unknown path element type")]
    UnknownType,
    /// `k:`/`v:` content that is not JSON, or a `k:` that is not an object.
    #[error("{0}")]
    BadJson(String),
    /// `i:` content that is not a non-negative integer.
    #[error("strconv.Atoi: parsing {0:?}: invalid syntax")]
    BadIndex(String),
}

impl PathElement {
    /// A field element.
    pub fn field(name: impl Into<String>) -> Self {
        PathElement::Field(name.into())
    }

    /// A key element from `(name, value)` pairs (sorted here).
    pub fn key<I, S>(fields: I) -> Self
    where
        I: IntoIterator<Item = (S, Value)>,
        S: Into<String>,
    {
        let mut fields: Vec<(String, Value)> =
            fields.into_iter().map(|(n, v)| (n.into(), v)).collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        PathElement::Key(fields)
    }

    /// The `FieldsV1` key of this element (`f:name`, `k:{...}`, `v:...`, `i:N`).
    pub fn to_fields_key(&self) -> String {
        let mut out = String::new();
        match self {
            PathElement::Field(name) => {
                out.push_str("f:");
                out.push_str(name);
            }
            PathElement::Key(fields) => {
                out.push_str("k:{");
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_go_json_string(&mut out, name);
                    out.push(':');
                    write_go_json(&mut out, value);
                }
                out.push('}');
            }
            PathElement::Value(value) => {
                out.push_str("v:");
                write_go_json(&mut out, value);
            }
            PathElement::Index(i) => {
                out.push_str("i:");
                out.push_str(&i.to_string());
            }
        }
        out
    }

    /// Reads a `FieldsV1` key.
    pub fn from_fields_key(key: &str) -> Result<Self, PathElementError> {
        let bytes = key.as_bytes();
        if bytes.len() < 2 {
            return Err(PathElementError::TooShort(key.to_owned()));
        }
        if bytes[1] != b':' {
            return Err(PathElementError::MissingColon(key.to_owned()));
        }
        let rest = &key[2..];
        match bytes[0] {
            b'f' => Ok(PathElement::Field(rest.to_owned())),
            b'v' => serde_json::from_str(rest)
                .map(PathElement::Value)
                .map_err(|e| PathElementError::BadJson(e.to_string())),
            b'k' => {
                let fields: Map<String, Value> = serde_json::from_str(rest)
                    .map_err(|e| PathElementError::BadJson(e.to_string()))?;
                Ok(PathElement::key(fields))
            }
            b'i' => rest
                .parse::<usize>()
                .map(PathElement::Index)
                .map_err(|_| PathElementError::BadIndex(rest.to_owned())),
            _ => Err(PathElementError::UnknownType),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }
}

/// Elements order as structured-merge-diff orders them: fields (by name),
/// then keys, then values, then indexes.
impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.as_bytes().cmp(b.as_bytes()),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b.iter()) {
                    let c = an.as_bytes().cmp(bn.as_bytes());
                    if c != Ordering::Equal {
                        return c;
                    }
                    let c = compare_values(av, bv);
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                f.write_str("[")?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{name}={}", value_to_string(value))?;
                }
                f.write_str("]")
            }
            PathElement::Value(value) => write!(f, "[={}]", value_to_string(value)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the object root, printed as Kubernetes prints it:
/// `.spec.template.spec.containers[name="app"].image`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct FieldPath(pub Vec<PathElement>);

impl FieldPath {
    /// A path of field names only, e.g. `FieldPath::fields(["spec", "replicas"])`.
    pub fn fields<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        FieldPath(names.into_iter().map(PathElement::field).collect())
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for pe in &self.0 {
            write!(f, "{pe}")?;
        }
        Ok(())
    }
}

impl From<Vec<PathElement>> for FieldPath {
    fn from(v: Vec<PathElement>) -> Self {
        FieldPath(v)
    }
}

/// structured-merge-diff's total order of values: numbers (ints and floats
/// compared numerically), then strings, booleans, lists, maps, null.
pub(crate) fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((xk, xv), (yk, yv)) in xs.iter().zip(ys.iter()) {
                let c = xk.as_bytes().cmp(yk.as_bytes());
                if c != Ordering::Equal {
                    return c;
                }
                let c = compare_values(xv, yv);
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn compare_numbers(x: &Number, y: &Number) -> Ordering {
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return a.cmp(&b);
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return a.cmp(&b);
    }
    let a = x.as_f64().unwrap_or(0.0);
    let b = y.as_f64().unwrap_or(0.0);
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// Values equal under [`compare_values`] (`1` equals `1.0`).
pub(crate) fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

/// `value.ToString`: strings quoted the way Go's `%q` quotes them.
fn value_to_string(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::String(s) => go_quote(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(value_to_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", value_to_string(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// Go's `strconv.Quote`.
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
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a value as compact JSON the way Go's `encoding/json` does it
/// (object keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped).
pub(crate) fn write_go_json(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => write_go_json_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(out, item);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json_string(out, k);
                out.push(':');
                write_go_json(out, v);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A JSON string literal as Go's `encoding/json` writes it.
pub(crate) fn write_go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_serialize_sorted_with_go_json() {
        let pe = PathElement::key([("protocol", json!("TCP")), ("containerPort", json!(80))]);
        assert_eq!(
            pe.to_fields_key(),
            r#"k:{"containerPort":80,"protocol":"TCP"}"#
        );
        assert_eq!(pe.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
    }

    #[test]
    fn every_element_kind_round_trips_through_its_fields_key() {
        for pe in [
            PathElement::field("metadata"),
            PathElement::key([("name", json!("a<b"))]),
            PathElement::Value(json!("x")),
            PathElement::Value(json!(3)),
            PathElement::Index(7),
        ] {
            let key = pe.to_fields_key();
            assert_eq!(PathElement::from_fields_key(&key).unwrap(), pe, "{key}");
        }
        assert_eq!(
            PathElement::key([("name", json!("a<b"))]).to_fields_key(),
            r#"k:{"name":"a\u003cb"}"#
        );
    }

    #[test]
    fn malformed_keys_are_rejected_and_unknown_kinds_flagged() {
        assert_eq!(
            PathElement::from_fields_key("f"),
            Err(PathElementError::TooShort("f".into()))
        );
        assert_eq!(
            PathElement::from_fields_key("fx"),
            Err(PathElementError::MissingColon("fx".into()))
        );
        assert_eq!(
            PathElement::from_fields_key("z:abc"),
            Err(PathElementError::UnknownType)
        );
        assert!(PathElement::from_fields_key("k:[1]").is_err());
        assert!(PathElement::from_fields_key("i:x").is_err());
    }

    #[test]
    fn order_is_fields_then_keys_then_values_then_indexes() {
        let mut v = [
            PathElement::Index(0),
            PathElement::Value(json!("a")),
            PathElement::key([("name", json!("b"))]),
            PathElement::field("z"),
            PathElement::field("a"),
        ];
        v.sort();
        let keys: Vec<String> = v.iter().map(|p| p.to_fields_key()).collect();
        assert_eq!(keys, ["f:a", "f:z", r#"k:{"name":"b"}"#, r#"v:"a""#, "i:0"]);
        assert_eq!(
            PathElement::Value(json!(1)),
            PathElement::Value(json!(1.0)),
            "numbers compare numerically"
        );
    }

    #[test]
    fn paths_print_like_kubernetes() {
        let p = FieldPath(vec![
            PathElement::field("spec"),
            PathElement::field("containers"),
            PathElement::key([("name", json!("nginx"))]),
            PathElement::field("image"),
        ]);
        assert_eq!(p.to_string(), r#".spec.containers[name="nginx"].image"#);
        let set = FieldPath(vec![
            PathElement::field("metadata"),
            PathElement::field("finalizers"),
            PathElement::Value(json!("x")),
        ]);
        assert_eq!(set.to_string(), r#".metadata.finalizers[="x"]"#);
    }
}
