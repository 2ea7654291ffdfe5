use super::*;
use serde_json::json;

const P: &str = "spec.versions[0].schema.openAPIV3Schema";

fn messages(schema: Value, status: bool) -> Vec<String> {
    check(&schema, P, status)
        .iter()
        .map(FieldError::message)
        .collect()
}

#[test]
fn a_structural_schema_passes() {
    let s = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "replicas": {"type": "integer", "default": 1, "minimum": 0},
            "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "free": {"x-kubernetes-preserve-unknown-fields": true},
        }},
        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
    }});
    assert!(messages(s, true).is_empty());
}

#[test]
fn missing_types_are_reported_as_kubernetes_does() {
    let got = messages(
        json!({"properties": {"spec": {"properties": {"a": {"items": {}}}}}}),
        false,
    );
    assert_eq!(
        got,
        vec![
            format!(
                "{P}.properties[spec].properties[a].items.type: Required value: must not be empty for specified array items"
            ),
            format!(
                "{P}.properties[spec].properties[a].type: Required value: must not be empty for specified object fields"
            ),
            format!(
                "{P}.properties[spec].type: Required value: must not be empty for specified object fields"
            ),
            format!("{P}.type: Required value: must not be empty at the root"),
        ]
    );
}

#[test]
fn preserve_unknown_fields_false_and_misuse_are_refused() {
    let got = messages(
        json!({"type": "object", "properties": {
            "a": {"type": "object", "x-kubernetes-preserve-unknown-fields": false},
            "b": {"x-kubernetes-int-or-string": true, "x-kubernetes-preserve-unknown-fields": true},
        }}),
        false,
    );
    assert!(got.contains(&format!("{P}.properties[a].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined")), "{got:#?}");
    assert!(got.contains(&format!("{P}.properties[b].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true")), "{got:#?}");
}

#[test]
fn value_validations_may_not_be_structural() {
    let got = messages(
        json!({"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"type": "string", "description": "x"}]}}}),
        false,
    );
    assert!(
        got.contains(&format!(
            "{P}.properties[a].anyOf[0].type: Forbidden: must be empty to be structural"
        )),
        "{got:#?}"
    );
    assert!(
        got.contains(&format!(
            "{P}.properties[a].anyOf[0].description: Forbidden: must be empty to be structural"
        )),
        "{got:#?}"
    );
}

#[test]
fn root_rules_metadata_and_arrays() {
    let got = messages(
        json!({"type": "string", "additionalProperties": {"type": "string"}, "properties": {
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            "list": {"type": "array"},
        }}),
        false,
    );
    assert!(
        got.contains(&format!(
            "{P}.type: Invalid value: \"string\": must be object at the root"
        )),
        "{got:#?}"
    );
    assert!(
        got.contains(&format!(
            "{P}.additionalProperties: Forbidden: must not be used at the root"
        )),
        "{got:#?}"
    );
    assert!(got.contains(&format!("{P}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified")), "{got:#?}");
    assert!(
        got.contains(&format!(
            "{P}.properties[list].items: Required value: must be specified"
        )),
        "{got:#?}"
    );
}

#[test]
fn defaults_must_validate_against_their_schema() {
    let got = messages(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "replicas": {"type": "integer", "default": "one"},
        }}}}),
        false,
    );
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with(&format!("{P}.properties[spec].properties[replicas].default: Invalid value: \"one\": spec.replicas: Invalid value: \"string\"")), "{got:#?}");
}
