//! Writes through kubectl: JSON, merge and strategic patches, replace or patch with
//! a stale resourceVersion (409), scale, label, annotate, dry-run, generateName.

#[path = "support/server.rs"]
mod support;

use support::TestServer;

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
      - name: side
        image: busybox:1.36
"#;

fn jsonpath(s: &TestServer, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let jp = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &jp]);
    s.kubectl_ok(&args)
}

#[test]
fn json_merge_and_strategic_patches_change_what_they_name() {
    let s = TestServer::start();
    s.apply(DEPLOY);
    s.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ]);
    assert_eq!(jsonpath(&s, &["deploy", "web"], "{.spec.replicas}"), "4");
    s.kubectl_ok(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"front"}}}"#,
    ]);
    assert_eq!(
        jsonpath(&s, &["deploy", "web"], "{.metadata.labels.tier}"),
        "front"
    );
    // Strategic merge: containers merge by name, env by name; the sidecar survives.
    s.kubectl_ok(&["patch", "deploy", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28","env":[{"name":"A","value":"9"}]}]}}}}"#]);
    assert_eq!(
        jsonpath(
            &s,
            &["deploy", "web"],
            "{.spec.template.spec.containers[*].name}"
        ),
        "web side"
    );
    assert_eq!(
        jsonpath(
            &s,
            &["deploy", "web"],
            "{.spec.template.spec.containers[0].image}"
        ),
        "nginx:1.28"
    );
    assert_eq!(
        jsonpath(
            &s,
            &["deploy", "web"],
            "{.spec.template.spec.containers[0].env[*].value}"
        ),
        "9 2"
    );
    // Spec changes bump the generation; label changes do not.
    assert_eq!(
        jsonpath(&s, &["deploy", "web"], "{.metadata.generation}"),
        "3"
    );
    let err = s.kubectl_err(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":99}]"#,
    ]);
    assert!(
        err.contains("The request is invalid") && err.contains("/spec/replicas"),
        "{err}"
    );
}

#[test]
fn apply_removes_what_was_dropped_from_the_manifest() {
    let s = TestServer::start();
    s.apply(DEPLOY);
    let without_b_and_sidecar = DEPLOY
        .replace("        - {name: B, value: \"2\"}\n", "")
        .replace("      - name: side\n        image: busybox:1.36\n", "");
    let out = s.apply(&without_b_and_sidecar);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert_eq!(
        jsonpath(
            &s,
            &["deploy", "web"],
            "{.spec.template.spec.containers[*].name}"
        ),
        "web"
    );
    assert_eq!(
        jsonpath(
            &s,
            &["deploy", "web"],
            "{.spec.template.spec.containers[0].env[*].name}"
        ),
        "A"
    );
}

#[test]
fn replace_with_a_stale_resource_version_conflicts() {
    let s = TestServer::start();
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n");
    let yaml = s.kubectl_ok(&["get", "cm", "c", "-o", "yaml"]);
    s.kubectl_ok(&["label", "cm", "c", "bump=1"]);
    let stale = yaml.replace("k: v", "k: w");
    let out = s.kubectl_stdin(&["replace", "-f", "-"], Some(&stale));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"),
        "{err}"
    );
    assert_eq!(
        jsonpath(&s, &["cm", "c"], "{.data.k}"),
        "v",
        "the conflicting write changed nothing"
    );
    let fresh = s
        .kubectl_ok(&["get", "cm", "c", "-o", "yaml"])
        .replace("k: v", "k: w");
    let out = s.kubectl_stdin(&["replace", "-f", "-"], Some(&fresh));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(jsonpath(&s, &["cm", "c"], "{.data.k}"), "w");
}

#[test]
fn a_patch_naming_a_stale_resource_version_conflicts() {
    let s = TestServer::start();
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n");
    let seen = jsonpath(&s, &["cm", "c"], "{.metadata.resourceVersion}");
    s.kubectl_ok(&["label", "cm", "c", "bump=1"]);
    let stale = format!(r#"{{"metadata":{{"resourceVersion":"{seen}"}},"data":{{"k":"w"}}}}"#);
    let out = s.kubectl(&["patch", "cm", "c", "--type", "merge", "-p", &stale]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "Operation cannot be fulfilled on configmaps \"c\": the object has been modified"
        ),
        "{err}"
    );
    assert_eq!(jsonpath(&s, &["cm", "c"], "{.data.k}"), "v");
    let current = jsonpath(&s, &["cm", "c"], "{.metadata.resourceVersion}");
    let fresh = format!(r#"{{"metadata":{{"resourceVersion":"{current}"}},"data":{{"k":"w"}}}}"#);
    s.kubectl_ok(&["patch", "cm", "c", "--type", "merge", "-p", &fresh]);
    assert_eq!(jsonpath(&s, &["cm", "c"], "{.data.k}"), "w");
}

#[test]
fn scale_label_and_annotate_show_up_in_get() {
    let s = TestServer::start();
    s.apply(DEPLOY);
    assert_eq!(
        s.kubectl_ok(&["scale", "deploy/web", "--replicas=5"])
            .trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(jsonpath(&s, &["deploy", "web"], "{.spec.replicas}"), "5");
    let err = s.kubectl_err(&["scale", "deploy/web", "--replicas=-1"]);
    assert!(err.contains("replicas"), "{err}");
    s.kubectl_ok(&["label", "deploy", "web", "team=blue"]);
    let out = s.kubectl_ok(&["get", "deploy", "-l", "team=blue", "-o", "name"]);
    assert_eq!(out.trim(), "deployment.apps/web");
    let out = s.kubectl_ok(&["get", "deploy", "-l", "team in (red,green)", "-o", "name"]);
    assert_eq!(out.trim(), "");
    s.kubectl_ok(&["label", "deploy", "web", "team-"]);
    assert_eq!(jsonpath(&s, &["deploy", "web"], "{.metadata.labels}"), "");
    s.kubectl_ok(&["annotate", "deploy", "web", "note=hello"]);
    assert_eq!(
        jsonpath(&s, &["deploy", "web"], "{.metadata.annotations.note}"),
        "hello"
    );
    let err = s.kubectl_err(&["annotate", "deploy", "web", "note=again"]);
    assert!(err.contains("--overwrite is false"), "{err}");
}

#[test]
fn dry_run_and_generate_name_store_nothing_and_unique_names() {
    let s = TestServer::start();
    let out = s.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-", "-o", "name"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ghost\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = s.kubectl_err(&["get", "cm", "ghost"]);
    assert!(err.contains("NotFound"), "{err}");
    let generated = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: job-\n";
    let a = s.kubectl_stdin(&["create", "-f", "-", "-o", "name"], Some(generated));
    let b = s.kubectl_stdin(&["create", "-f", "-", "-o", "name"], Some(generated));
    let (a, b) = (
        String::from_utf8_lossy(&a.stdout).into_owned(),
        String::from_utf8_lossy(&b.stdout).into_owned(),
    );
    assert!(
        a.starts_with("configmap/job-") && b.starts_with("configmap/job-"),
        "{a} {b}"
    );
    assert_ne!(a, b);
    assert_eq!(a.trim().len(), "configmap/job-".len() + 5);
}

#[test]
fn diff_shows_pending_changes_and_exits_1() {
    let s = TestServer::start();
    s.apply(DEPLOY);
    let changed = DEPLOY.replace("replicas: 1", "replicas: 2");
    let out = s.kubectl_stdin(&["diff", "-f", "-"], Some(&changed));
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("-  replicas: 1") && text.contains("+  replicas: 2"),
        "{text}"
    );
    let out = s.kubectl_stdin(&["diff", "-f", "-"], Some(DEPLOY));
    assert_eq!(
        out.status.code(),
        Some(0),
        "no diff: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
