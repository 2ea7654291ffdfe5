//! Field validation: unknown and duplicate fields worded as kube-apiserver's
//! strict decoding words them.

use api::schema::{
    StrictError, find_unknown_fields, parse_json_detect_duplicates, strict_decoding_errors,
    strict_decoding_message,
};
use serde_json::json;

const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

#[test]
fn a_valid_deployment_has_no_unknown_fields() {
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "anything.example.com/x": "y"},
                     "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web", "image": "nginx",
                    "ports": [{"containerPort": 80}],
                    "resources": {"limits": {"cpu": "100m", "memory": 1024}},
                    "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
                }]}
            }
        }
    });
    assert_eq!(find_unknown_fields(&d, DEPLOYMENT), Vec::<String>::new());
}

#[test]
fn unknown_fields_are_reported_with_kubernetes_paths() {
    let d = json!({
        "foo": 1,
        "spec": {
            "replica": 3,
            "template": {"spec": {"containers": [
                {"name": "a", "image": "x"},
                {"name": "b", "image": "y", "imagePullPolice": "Always", "ports": [{"containerPort": 1, "hostPorts": 2}]}
            ]}}
        }
    });
    assert_eq!(
        find_unknown_fields(&d, DEPLOYMENT),
        [
            "foo",
            "spec.replica",
            "spec.template.spec.containers[1].imagePullPolice",
            "spec.template.spec.containers[1].ports[0].hostPorts",
        ]
    );
}

#[test]
fn values_under_an_unknown_field_are_not_looked_into() {
    let d = json!({"spec": {"extra": {"deeper": {"x": 1}}}});
    assert_eq!(find_unknown_fields(&d, DEPLOYMENT), ["spec.extra"]);
}

#[test]
fn free_form_values_accept_anything() {
    let rev = json!({"metadata": {"name": "r"}, "data": {"spec": {"whatever": [1, {"a": 2}]}}, "revision": 1});
    assert!(find_unknown_fields(&rev, "io.k8s.api.apps.v1.ControllerRevision").is_empty());
}

#[test]
fn an_unknown_definition_checks_nothing() {
    assert!(find_unknown_fields(&json!({"x": 1}), "com.example.v1.Widget").is_empty());
}

#[test]
fn duplicate_keys_are_reported_with_their_path_and_the_last_value_wins() {
    let body = br#"{"kind":"Deployment","kind":"Deployment","spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"a","name":"b"}]}},"replicas":2}}"#;
    let (value, dups) = parse_json_detect_duplicates(body).unwrap();
    assert_eq!(
        dups,
        [
            "duplicate field \"kind\"",
            "duplicate field \"spec.template.spec.containers[0].name\"",
            "duplicate field \"spec.replicas\"",
        ]
    );
    assert_eq!(value["spec"]["replicas"], 2);
    assert_eq!(
        value["spec"]["template"]["spec"]["containers"][0]["name"],
        "b"
    );
    // Key order is the order of first appearance.
    let keys: Vec<&String> = value["spec"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["replicas", "template"]);
}

#[test]
fn invalid_json_is_an_error() {
    assert!(parse_json_detect_duplicates(b"{\"a\":").is_err());
}

#[test]
fn strict_decoding_reports_both_kinds_in_document_order() {
    let body = br#"{"spec":{"replicas":1,"foo":true,"replicas":2,"foo":false,"selector":{"matchLabels":{"a":"1","a":"2"}}},"bar":{"x":1,"x":2}}"#;
    let (value, errors) = strict_decoding_errors(body, DEPLOYMENT).unwrap();
    assert_eq!(
        errors,
        [
            StrictError::UnknownField("spec.foo".into()),
            StrictError::DuplicateField("spec.replicas".into()),
            StrictError::DuplicateField("spec.selector.matchLabels.a".into()),
            StrictError::UnknownField("bar".into()),
        ]
    );
    assert_eq!(
        strict_decoding_message(&errors),
        "strict decoding error: unknown field \"spec.foo\", duplicate field \"spec.replicas\", duplicate field \"spec.selector.matchLabels.a\", unknown field \"bar\""
    );
    assert_eq!(value["spec"]["replicas"], 2);
}

#[test]
fn strict_decoding_skips_the_inside_of_free_form_values() {
    let body = br#"{"data":{"a":1,"a":2},"revision":1}"#;
    let (_, errors) =
        strict_decoding_errors(body, "io.k8s.api.apps.v1.ControllerRevision").unwrap();
    assert!(errors.is_empty());
}

#[test]
fn strict_decoding_of_an_unknown_definition_reports_duplicates_only() {
    let body = br#"{"spec":{"a":1,"a":2}}"#;
    let (_, errors) = strict_decoding_errors(body, "com.example.v1.Widget").unwrap();
    assert_eq!(errors, [StrictError::DuplicateField("spec.a".into())]);
    assert_eq!(errors[0].to_string(), "duplicate field \"spec.a\"");
    assert_eq!(errors[0].path(), "spec.a");
}
