//! Request bodies as the API server decodes them: JSON with strict field
//! validation (duplicate and unknown fields) and Kubernetes protobuf.

use std::borrow::Cow;

use api::schema::{
    StrictError, find_unknown_fields, parse_json_detect_duplicates, strict_decoding_errors,
};
use protobuf_codec::{MAGIC, decode_to_json, is_protobuf_content_type};
use serde_json::Value;

use crate::patches::definitions;
use crate::{choose, split};

/// Kubernetes stops collecting strict decoding errors after this many.
const MAX_STRICT_ERRORS: usize = 100;

/// `definition \0 body`: the strict decoders accept exactly what plain JSON
/// decoding accepts, give the same value, and report at most 100 problems;
/// every unknown field of the decoded value is among the strict errors.
pub fn json_body(data: &[u8]) {
    let (name, body) = split(data);
    let Some(definition) = choose(definitions(), name) else {
        return;
    };
    let plain = serde_json::from_slice::<Value>(body);
    let detected = parse_json_detect_duplicates(body);
    let strict = strict_decoding_errors(body, definition);
    assert_eq!(
        plain.is_ok(),
        detected.is_ok(),
        "duplicate detection disagrees on validity"
    );
    assert_eq!(
        plain.is_ok(),
        strict.is_ok(),
        "strict decoding disagrees on validity"
    );
    let (Ok(value), Ok((detected_value, duplicates)), Ok((strict_value, problems))) =
        (plain, detected, strict)
    else {
        return;
    };
    assert_eq!(
        detected_value, value,
        "duplicate detection changed the value"
    );
    assert_eq!(strict_value, value, "strict decoding changed the value");
    assert!(duplicates.len() <= MAX_STRICT_ERRORS);
    assert!(problems.len() <= MAX_STRICT_ERRORS);
    let unknown = find_unknown_fields(&value, definition);
    assert!(unknown.len() <= MAX_STRICT_ERRORS);
    if problems.len() < MAX_STRICT_ERRORS {
        for path in &unknown {
            assert!(
                problems.contains(&StrictError::UnknownField(path.clone())),
                "unknown field {path:?} of a {definition} missing from {problems:?}"
            );
        }
    }
}

/// A body, `k8s\0`-prefixed if it is not already: decoding never panics, and
/// what decodes is a JSON object with `kind` and `apiVersion` that serializes
/// and parses back unchanged.
pub fn protobuf_body(data: &[u8]) {
    let _ = is_protobuf_content_type(&String::from_utf8_lossy(data));
    let body = if data.starts_with(MAGIC) {
        Cow::Borrowed(data)
    } else {
        Cow::Owned([MAGIC, data].concat())
    };
    let Ok(value) = decode_to_json(&body) else {
        return;
    };
    for key in ["kind", "apiVersion"] {
        assert!(
            value.get(key).is_some_and(Value::is_string),
            "no {key} in {value}"
        );
    }
    let text = serde_json::to_vec(&value).expect("decoded JSON serializes");
    let reparsed: Value = serde_json::from_slice(&text).expect("serialized JSON parses");
    assert!(
        same_json(&reparsed, &value),
        "decoded JSON does not survive serialization: {value} vs {reparsed}"
    );
}

/// Equal JSON, but for the last bit of floats: serde_json prints the shortest
/// round-tripping form, but its default parser may land one ulp off.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                // One ulp off; for subnormals, whose ulp is large relative to the
                // value, that has to be counted in ulps.
                (Some(x), Some(y)) => {
                    x == y
                        || ((x - y) / x).abs() < 1e-15
                        || (x.is_sign_negative() == y.is_sign_negative()
                            && x.to_bits().abs_diff(y.to_bits()) <= 1)
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, x), (ky, y))| kx == ky && same_json(x, y))
        }
        _ => a == b,
    }
}
