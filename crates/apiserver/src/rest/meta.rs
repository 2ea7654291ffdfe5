//! Generic `metadata` rules shared by every resource: names, generateName, labels,
//! annotations, and the PartialObjectMetadata view.

use api::status::FieldError;
use rand::Rng;
use serde_json::{Value, json};

use crate::strategy::NameRule;

/// `PartialObjectMetadata` of an object.
pub(crate) fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// `generateName` + 5 random characters from Kubernetes' alphabet.
pub(crate) fn generate_name(base: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base = if base.len() > 58 { &base[..58] } else { base };
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{base}{suffix}")
}

/// Validates a name according to the resource's rule, at `field`.
pub(crate) fn validate_name(rule: NameRule, name: &str, field: &str) -> Vec<FieldError> {
    let msgs = match rule {
        NameRule::Subdomain => api::selector::is_dns1123_subdomain(name),
        NameRule::Label => api::selector::is_dns1123_label(name),
        NameRule::Label1035 => api::selector::is_dns1035_label(name),
        NameRule::PathSegment => {
            let mut m = Vec::new();
            if name == "." || name == ".." {
                m.push(format!("may not be '{name}'"));
            }
            for bad in ["/", "%"] {
                if name.contains(bad) {
                    m.push(format!("may not contain '{bad}'"));
                }
            }
            m
        }
    };
    msgs.into_iter()
        .map(|m| FieldError::invalid(field, name, m))
        .collect()
}

const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Validates labels, annotations, finalizers and ownerReferences in `metadata`.
pub(crate) fn validate_object_meta(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(meta) = obj.get("metadata") else {
        return errs;
    };
    if let Some(labels) = meta.get("labels") {
        match labels.as_object() {
            None if !labels.is_null() => errs.push(FieldError::invalid(
                "metadata.labels",
                labels.clone(),
                "must be a map",
            )),
            None => {}
            Some(map) => {
                for (k, v) in map {
                    for m in api::selector::is_qualified_name(k) {
                        errs.push(FieldError::invalid("metadata.labels", k.as_str(), m));
                    }
                    match v.as_str() {
                        Some(s) => {
                            for m in api::selector::is_valid_label_value(s) {
                                errs.push(FieldError::invalid("metadata.labels", s, m));
                            }
                        }
                        None => errs.push(FieldError::invalid(
                            "metadata.labels",
                            v.clone(),
                            "must be a string",
                        )),
                    }
                }
            }
        }
    }
    if let Some(map) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in map {
            for m in api::selector::is_qualified_name(&k.to_lowercase()) {
                errs.push(FieldError::invalid("metadata.annotations", k.as_str(), m));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > MAX_ANNOTATIONS_BYTES {
            errs.push(FieldError::too_long(
                "metadata.annotations",
                MAX_ANNOTATIONS_BYTES,
            ));
        }
    }
    if let Some(list) = meta.get("finalizers").and_then(Value::as_array) {
        for (i, f) in list.iter().enumerate() {
            let s = f.as_str().unwrap_or_default();
            for m in api::selector::is_qualified_name(s) {
                errs.push(FieldError::invalid(
                    format!("metadata.finalizers[{i}]"),
                    s,
                    m,
                ));
            }
        }
    }
    if let Some(list) = meta.get("ownerReferences").and_then(Value::as_array) {
        for (i, r) in list.iter().enumerate() {
            for f in ["apiVersion", "kind", "name", "uid"] {
                if r.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                    errs.push(FieldError::invalid(
                        format!("metadata.ownerReferences[{i}].{f}"),
                        "",
                        format!("{f} must not be empty"),
                    ));
                }
            }
        }
        let controllers = list
            .iter()
            .filter(|r| r.get("controller") == Some(&json!(true)))
            .count();
        if controllers > 1 {
            errs.push(FieldError::invalid(
                "metadata.ownerReferences",
                Value::Array(list.clone()),
                "Only one reference can have Controller set to true",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_keep_the_base_and_add_five_characters() {
        let n = generate_name("web-");
        assert!(n.starts_with("web-"));
        assert_eq!(n.len(), 9);
    }

    #[test]
    fn two_controller_owner_references_are_invalid() {
        let r =
            json!({"apiVersion": "v1", "kind": "X", "name": "a", "uid": "1", "controller": true});
        let errs = validate_object_meta(&json!({"metadata": {"ownerReferences": [r.clone(), r]}}));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.ownerReferences");
    }
}
