use serde_json::json;

use super::validate::go_float;
use super::*;

fn crontab() -> Schema {
    Schema::parse(&json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["cronSpec"],
                "properties": {
                    "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                    "image": {"type": "string", "minLength": 2, "maxLength": 20},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                    "policy": {"type": "string", "enum": ["Allow", "Forbid"], "default": "Allow"},
                    "when": {"type": "string", "format": "date-time"},
                    "port": {"x-kubernetes-int-or-string": true},
                    "ports": {"type": "array", "maxItems": 2, "minItems": 1, "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "port": {"type": "integer", "default": 80}},
                    }},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
                    "note": {"type": "string", "nullable": true},
                },
            },
            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
        },
    }))
}

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(FieldError::message).collect()
}

#[test]
fn unknown_fields_are_pruned_and_reported_sorted() {
    let mut obj = json!({
        "apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "x"},
        "spec": {"cronSpec": "* * * * */5", "zeta": 1, "alpha": {"deep": true},
                 "ports": [{"name": "a", "bogus": 1}],
                 "labels": {"a": "b"},
                 "free": {"anything": {"goes": 1}},
                 "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}}},
        "extra": "gone",
    });
    let removed = crontab().prune(&mut obj);
    assert_eq!(
        removed,
        vec!["extra", "spec.alpha", "spec.ports[0].bogus", "spec.zeta"]
    );
    assert!(obj.get("extra").is_none());
    assert_eq!(obj["metadata"]["name"], "x", "the root keeps its metadata");
    assert_eq!(obj["spec"]["ports"][0], json!({"name": "a"}));
    assert_eq!(obj["spec"]["free"]["anything"]["goes"], 1);
    assert_eq!(obj["spec"]["template"]["spec"]["x"], 1);
    assert_eq!(obj["spec"]["labels"]["a"], "b");
}

#[test]
fn a_root_that_preserves_unknown_fields_still_prunes_specified_parts() {
    let s = Schema::parse(&json!({
        "type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }));
    let mut obj = json!({"anything": 1, "spec": {"a": "x", "b": 2}});
    assert_eq!(s.prune(&mut obj), vec!["spec.b"]);
    assert_eq!(obj, json!({"anything": 1, "spec": {"a": "x"}}));
}

#[test]
fn defaults_fill_missing_fields_of_present_objects_only() {
    let s = crontab();
    let mut obj =
        json!({"spec": {"cronSpec": "* * * * *", "ports": [{"name": "a"}], "policy": null}});
    s.prune_nulls(&mut obj);
    s.apply_defaults(&mut obj);
    assert_eq!(obj["spec"]["replicas"], 1);
    assert_eq!(
        obj["spec"]["policy"], "Allow",
        "a non-nullable null gets the default"
    );
    assert_eq!(obj["spec"]["ports"][0]["port"], 80);
    assert!(obj.get("status").is_none(), "no default creates status");
}

#[test]
fn non_nullable_nulls_without_a_default_are_dropped_and_nullable_ones_kept() {
    let s = crontab();
    let mut obj = json!({"spec": {"cronSpec": "* * * * *", "image": null, "note": null}});
    s.prune_nulls(&mut obj);
    assert!(obj["spec"].get("image").is_none());
    assert!(obj["spec"]["note"].is_null());
    assert!(
        s.validate(&obj).is_empty(),
        "{:?}",
        messages(&s.validate(&obj))
    );
}

#[test]
fn validation_errors_are_worded_as_kube_openapi_words_them() {
    let s = crontab();
    let obj = json!({"spec": {
        "cronSpec": "* * * *", "image": "a", "replicas": 15, "policy": "Sometimes",
        "when": "yesterday", "ports": [], "labels": {"a": 1}, "port": true,
    }});
    let got = messages(&s.validate(&obj));
    let want = [
        r#"spec.cronSpec: Invalid value: "* * * *": spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"#,
        r#"spec.image: Invalid value: "a": spec.image in body should be at least 2 chars long"#,
        "spec.replicas: Invalid value: 15: spec.replicas in body should be less than or equal to 10",
        r#"spec.policy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid""#,
        r#"spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday""#,
        "spec.ports: Invalid value: 0: spec.ports in body should have at least 1 items",
        r#"spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer""#,
        r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#,
    ];
    for w in want {
        assert!(got.contains(&w.to_string()), "missing {w}\nin {got:#?}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn required_types_lengths_and_counts_are_checked() {
    let s = crontab();
    let obj = json!({"spec": {"replicas": "three", "image": "x".repeat(21), "ports": [{}, {}, {}]}, "status": {"replicas": 1.5}});
    let got = messages(&s.validate(&obj));
    assert!(
        got.contains(&"spec.cronSpec: Required value".to_string()),
        "{got:#?}"
    );
    assert!(got.contains(&r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#.to_string()), "{got:#?}");
    assert!(
        got.contains(&"spec.image: Too long: may not be more than 20 bytes".to_string()),
        "{got:#?}"
    );
    assert!(
        got.contains(&"spec.ports: Too many: 3: must have at most 2 items".to_string()),
        "{got:#?}"
    );
    assert!(got.contains(&r#"status.replicas: Invalid value: "number": status.replicas in body must be of type integer: "number""#.to_string()), "{got:#?}");
}

#[test]
fn int_or_string_accepts_both_and_a_valid_object_has_no_errors() {
    let s = crontab();
    for port in [json!(8080), json!("http")] {
        let obj = json!({"spec": {"cronSpec": "*/5 * * * *", "port": port, "replicas": 3,
            "when": "2024-01-02T03:04:05Z", "ports": [{"name": "a", "port": 1}]}});
        assert!(
            s.validate(&obj).is_empty(),
            "{:?}",
            messages(&s.validate(&obj))
        );
    }
}

#[test]
fn embedded_resources_need_api_version_and_kind() {
    let s = crontab();
    let obj = json!({"spec": {"cronSpec": "* * * * *", "template": {"metadata": {"name": "p"}}}});
    let got = messages(&s.validate(&obj));
    assert!(
        got.contains(&"spec.template.apiVersion: Required value".to_string()),
        "{got:#?}"
    );
    assert!(
        got.contains(&"spec.template.kind: Required value".to_string()),
        "{got:#?}"
    );
}

#[test]
fn any_of_and_not_report_like_kube_openapi() {
    let s = Schema::parse(&json!({"type": "object", "properties": {"x": {
        "type": "integer", "anyOf": [{"minimum": 10}, {"maximum": 0}], "not": {"minimum": 100},
    }}}));
    let got = messages(&s.validate(&json!({"x": 5})));
    assert!(
        got.iter()
            .any(|m| m.contains(r#""x" must validate at least one schema (anyOf)"#)),
        "{got:#?}"
    );
    let got = messages(&s.validate(&json!({"x": 200})));
    assert!(
        got.iter()
            .any(|m| m.contains(r#""x" must not validate the schema (not)"#)),
        "{got:#?}"
    );
    assert!(s.validate(&json!({"x": 50})).is_empty());
}

#[test]
fn go_floats_print_like_go() {
    assert_eq!(go_float(10.0), "10");
    assert_eq!(go_float(1.5), "1.5");
}
