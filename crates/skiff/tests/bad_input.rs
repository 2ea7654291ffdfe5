//! Bad input gets a Kubernetes Status with the right reason and code, and changes
//! nothing: strict field validation, invalid names and labels, malformed bodies,
//! wrong kinds, namespace mismatch, oversized and unsupported bodies.

#[path = "support/server.rs"]
mod support;

use support::TestServer;

fn status_of(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn unknown_fields_are_rejected_by_kubectl_default_validation() {
    let s = TestServer::start();
    let bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  replica: 2\n  selector:\n    matchLabels: {a: b}\n  template:\n    metadata:\n      labels: {a: b}\n    spec:\n      containers:\n      - {name: c, image: i}\n";
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(bad));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("strict decoding error: unknown field \"spec.replica\""),
        "{err}"
    );
    assert!(s.kubectl_err(&["get", "deploy", "d"]).contains("NotFound"));
    // --validate=false stores it, ignoring the unknown field.
    let out = s.kubectl_stdin(&["apply", "--validate=false", "-f", "-"], Some(bad));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn invalid_names_and_labels_are_422_with_the_field_named() {
    let s = TestServer::start();
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{err}");
    let long = "x".repeat(64);
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n  labels:\n    k: {long}\n"
    );
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&yaml));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metadata.labels: Invalid value: \""), "{err}");
    assert!(err.contains("must be no more than 63 characters"), "{err}");
    let (code, body) = s.curl_admin("/api/v1/namespaces/default/configmaps/ok", &[]);
    assert_eq!(code, 404, "{body}");
}

#[test]
fn malformed_and_mismatched_bodies_are_400() {
    let s = TestServer::start();
    let post = |body: &str, ct: &str, path: &str| {
        s.curl_admin(
            path,
            &[
                "-X",
                "POST",
                "-H",
                &format!("Content-Type: {ct}"),
                "--data-binary",
                body,
            ],
        )
    };
    let (code, body) = post(
        "{not json",
        "application/json",
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(status_of(&body)["reason"], "BadRequest");
    let (code, body) = post(
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#,
        "application/json",
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = post(
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"other"}}"#,
        "application/json",
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        status_of(&body)["message"]
            .as_str()
            .unwrap_or_default()
            .contains("does not match the namespace"),
        "{body}"
    );
    let (code, body) = post(
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":"oops"}"#,
        "application/json",
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = post(
        "a: b",
        "text/plain",
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 415, "{body}");
    assert_eq!(status_of(&body)["reason"], "UnsupportedMediaType");
    let (code, body) = post(
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
        "application/json",
        "/api/v1/namespaces/nope/configmaps",
    );
    assert_eq!(code, 404, "{body}");
    assert_eq!(status_of(&body)["message"], "namespaces \"nope\" not found");
    let (code, _) = s.curl_admin("/api/v1/namespaces/default/configmaps/x", &[]);
    assert_eq!(code, 404, "nothing was stored");
}

#[test]
fn bodies_over_three_mebibytes_are_413() {
    let s = TestServer::start();
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"k":"{}"}}}}"#,
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    let file = s.data_dir().join("big.json");
    std::fs::write(&file, big).expect("write body");
    let arg = format!("@{}", file.display());
    let (code, body) = s.curl_admin(
        "/api/v1/namespaces/default/configmaps",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &arg,
        ],
    );
    assert_eq!(code, 413, "{body}");
    assert_eq!(status_of(&body)["reason"], "RequestEntityTooLarge");
}

#[test]
fn unknown_resources_and_wrong_methods_get_404_and_405() {
    let s = TestServer::start();
    let (code, body) = s.curl_admin("/api/v1/namespaces/default/widgets", &[]);
    assert_eq!(code, 404, "{body}");
    assert_eq!(status_of(&body)["reason"], "NotFound");
    let (code, body) = s.curl_admin(
        "/api/v1/configmaps",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "{}",
        ],
    );
    assert_eq!(code, 405, "{body}");
    assert_eq!(status_of(&body)["reason"], "MethodNotAllowed");
}
