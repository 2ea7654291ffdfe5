//! Server-side apply and field managers against the real `skiff server` with
//! kubectl: `kubectl apply --server-side` creates and records `kubectl` as
//! the applier; a second manager changing `.spec.replicas` gets Kubernetes'
//! conflict until it forces; fields dropped from a manifest go unless
//! another manager owns them; create, scale, edit, patch and label record
//! `Update` entries under kubectl's manager names; client-side apply
//! migrates to server-side apply; custom resources merge per their CRD's
//! schema; dry-run and no-op applies write nothing; bad options answer as
//! Kubernetes answers them.

#[path = "support/server.rs"]
mod support;

use serde_json::Value;
use support::TestServer;

fn deployment(name: &str, replicas: u32, image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: main
        image: {image}
"#
    )
}

/// `kubectl apply --server-side -f -` with extra flags; the raw output.
fn apply_ssa(s: &TestServer, yaml: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["apply", "--server-side", "-f", "-"];
    args.extend_from_slice(extra);
    s.kubectl_stdin(&args, Some(yaml))
}

fn apply_ssa_ok(s: &TestServer, yaml: &str, extra: &[&str]) -> String {
    let out = apply_ssa(s, yaml, extra);
    assert!(
        out.status.success(),
        "kubectl apply --server-side {extra:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get_json(s: &TestServer, what: &[&str]) -> Value {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    serde_json::from_str(&s.kubectl_ok(&args)).expect("kubectl get -o json")
}

fn managed_fields(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The entries of `manager`, as `(operation, subresource)`.
fn entries_of(obj: &Value, manager: &str) -> Vec<(String, String)> {
    managed_fields(obj)
        .iter()
        .filter(|e| e["manager"] == manager)
        .map(|e| {
            (
                e["operation"].as_str().unwrap_or_default().to_owned(),
                e["subresource"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Whether `manager` owns the field at `path` (FieldsV1 keys, e.g.
/// `["f:spec", "f:replicas"]`).
fn owns(obj: &Value, manager: &str, path: &[&str]) -> bool {
    managed_fields(obj).iter().any(|e| {
        e["manager"] == manager
            && path
                .iter()
                .try_fold(&e["fieldsV1"], |node, key| node.get(*key))
                .is_some()
    })
}

fn managers(obj: &Value) -> Vec<String> {
    managed_fields(obj)
        .iter()
        .map(|e| e["manager"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const REPLICAS: [&str; 2] = ["f:spec", "f:replicas"];

#[test]
fn server_side_apply_creates_the_object_with_kubectl_as_its_applier() {
    let s = TestServer::start();
    let out = apply_ssa_ok(&s, &deployment("ssa-create", 2, "nginx:1.25"), &[]);
    assert_eq!(
        out.trim(),
        "deployment.apps/ssa-create serverside-applied",
        "{out}"
    );
    let yaml = s.kubectl_ok(&[
        "get",
        "deployment",
        "ssa-create",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(yaml.contains("manager: kubectl\n"), "{yaml}");
    assert!(yaml.contains("operation: Apply"), "{yaml}");
    let obj = get_json(&s, &["deployment", "ssa-create"]);
    assert_eq!(obj["spec"]["replicas"], 2);
    assert_eq!(entries_of(&obj, "kubectl"), [("Apply".into(), "".into())]);
    assert!(owns(&obj, "kubectl", &REPLICAS));
    assert!(owns(
        &obj,
        "kubectl",
        &[
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            r#"k:{"name":"main"}"#,
            "f:image"
        ]
    ));
    // Defaults the server filled in belong to nobody.
    assert!(!owns(
        &obj,
        "kubectl",
        &["f:spec", "f:revisionHistoryLimit"]
    ));
    // Plain `kubectl get -o yaml` hides them, as with Kubernetes.
    let plain = s.kubectl_ok(&["get", "deployment", "ssa-create", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{plain}");
}

#[test]
fn a_second_manager_conflicts_on_replicas_until_it_forces() {
    let s = TestServer::start();
    let name = "ssa-conflict";
    apply_ssa_ok(&s, &deployment(name, 2, "nginx:1.25"), &[]);

    let other = deployment(name, 3, "nginx:1.25");
    let out = apply_ssa(&s, &other, &["--field-manager", "other"]);
    assert!(!out.status.success(), "the conflicting apply succeeded");
    let err = stderr(&out);
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas"#),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    let obj = get_json(&s, &["deployment", name]);
    assert_eq!(obj["spec"]["replicas"], 2, "a conflict changes nothing");
    assert!(!managers(&obj).contains(&"other".to_owned()));

    // The Status behind kubectl's message: 409 with one cause per field.
    let body = serde_json::to_string(&serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name}, "spec": {"replicas": 4}
    }))
    .expect("json");
    let (code, status) = s.curl_admin(
        &format!("/apis/apps/v1/namespaces/default/deployments/{name}?fieldManager=raw"),
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/apply-patch+yaml",
            "--data-binary",
            &body,
        ],
    );
    assert_eq!(code, 409, "{status}");
    let status: Value = serde_json::from_str(&status).expect("Status");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas"#
    );
    assert_eq!(
        status["details"]["causes"],
        serde_json::json!([{
            "reason": "FieldManagerConflict",
            "message": "conflict with \"kubectl\"",
            "field": ".spec.replicas"
        }])
    );

    // --force-conflicts takes the field over.
    apply_ssa_ok(
        &s,
        &other,
        &["--field-manager", "other", "--force-conflicts"],
    );
    let obj = get_json(&s, &["deployment", name]);
    assert_eq!(obj["spec"]["replicas"], 3);
    assert!(owns(&obj, "other", &REPLICAS));
    assert!(!owns(&obj, "kubectl", &REPLICAS));
    // Both still own the image they agree on.
    let image = [
        "f:spec",
        "f:template",
        "f:spec",
        "f:containers",
        r#"k:{"name":"main"}"#,
        "f:image",
    ];
    assert!(owns(&obj, "kubectl", &image) && owns(&obj, "other", &image));

    // Now kubectl is the one who conflicts.
    let out = apply_ssa(&s, &deployment(name, 2, "nginx:1.25"), &[]);
    assert!(
        stderr(&out)
            .contains(r#"Apply failed with 1 conflict: conflict with "other": .spec.replicas"#),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_field_dropped_from_the_manifest_goes_unless_another_manager_owns_it() {
    let s = TestServer::start();
    let cm = |data: &str, labels: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa-prune\n  labels: {{{labels}}}\ndata: {{{data}}}\n"
        )
    };
    apply_ssa_ok(
        &s,
        &cm(r#"a: "1", b: "2", c: "3""#, "team: x, tier: web"),
        &["--field-manager", "first"],
    );
    // A second manager applies the same value of b: both own it.
    apply_ssa_ok(&s, &cm(r#"b: "2""#, ""), &["--field-manager", "second"]);
    let obj = get_json(&s, &["configmap", "ssa-prune"]);
    assert!(owns(&obj, "first", &["f:data", "f:b"]));
    assert!(owns(&obj, "second", &["f:data", "f:b"]));

    apply_ssa_ok(
        &s,
        &cm(r#"a: "1""#, "team: x"),
        &["--field-manager", "first"],
    );
    let obj = get_json(&s, &["configmap", "ssa-prune"]);
    assert_eq!(
        obj["data"],
        serde_json::json!({"a": "1", "b": "2"}),
        "c went, b stayed with its other owner"
    );
    assert_eq!(obj["metadata"]["labels"], serde_json::json!({"team": "x"}));
    assert!(!owns(&obj, "first", &["f:data", "f:b"]));
}

/// `kubectl edit` with a scripted editor (`sed` on the file kubectl opens).
fn kubectl_edit(s: &TestServer, what: &[&str], sed: &str) {
    let editor = s.data_dir().join("editor.sh");
    std::fs::write(&editor, format!("#!/bin/sh\nsed -i '{sed}' \"$1\"\n")).expect("editor");
    let chmod = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&editor)
        .status()
        .expect("chmod");
    assert!(chmod.success());
    let out = std::process::Command::new("/usr/bin/kubectl")
        .env("KUBECONFIG", s.kubeconfig())
        .env("HOME", s.data_dir())
        .env("KUBE_EDITOR", &editor)
        .arg("--cache-dir")
        .arg(s.data_dir().join("kube-cache"))
        .arg("edit")
        .args(what)
        .output()
        .expect("kubectl edit");
    assert!(out.status.success(), "kubectl edit: {}", stderr(&out));
}

#[test]
fn create_scale_edit_patch_and_label_record_update_managers() {
    let s = TestServer::start();
    let name = "ssa-updates";
    let out = s.kubectl_stdin(
        &["create", "-f", "-"],
        Some(&deployment(name, 1, "nginx:1.25")),
    );
    assert!(out.status.success(), "kubectl create: {}", stderr(&out));
    let obj = get_json(&s, &["deployment", name]);
    assert_eq!(
        entries_of(&obj, "kubectl-create"),
        [("Update".into(), "".into())]
    );
    assert!(owns(&obj, "kubectl-create", &REPLICAS));
    // A create owns the defaults it was stored with, as in Kubernetes.
    assert!(owns(
        &obj,
        "kubectl-create",
        &["f:spec", "f:revisionHistoryLimit"]
    ));

    // kubectl scale names no manager: the User-Agent's product is used.
    s.kubectl_ok(&["scale", "deployment", name, "--replicas", "3"]);
    let obj = get_json(&s, &["deployment", name]);
    assert_eq!(
        entries_of(&obj, "kubectl"),
        [("Update".into(), "scale".into())]
    );
    assert!(owns(&obj, "kubectl", &REPLICAS));
    assert!(
        !owns(&obj, "kubectl-create", &REPLICAS),
        "scale took replicas over"
    );

    kubectl_edit(
        &s,
        &["deployment", name],
        "s/image: nginx:1.25/image: nginx:1.26/",
    );
    s.kubectl_ok(&[
        "patch",
        "deployment",
        name,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"minReadySeconds":5}}"#,
    ]);
    s.kubectl_ok(&["label", "deployment", name, "tier=web"]);
    let obj = get_json(&s, &["deployment", name]);
    assert_eq!(obj["spec"]["minReadySeconds"], 5);
    let image = [
        "f:spec",
        "f:template",
        "f:spec",
        "f:containers",
        r#"k:{"name":"main"}"#,
        "f:image",
    ];
    assert!(owns(&obj, "kubectl-edit", &image), "{:?}", managers(&obj));
    assert!(!owns(&obj, "kubectl-create", &image));
    assert!(owns(
        &obj,
        "kubectl-patch",
        &["f:spec", "f:minReadySeconds"]
    ));
    assert!(owns(
        &obj,
        "kubectl-label",
        &["f:metadata", "f:labels", "f:tier"]
    ));
    for m in ["kubectl-edit", "kubectl-patch", "kubectl-label"] {
        assert_eq!(entries_of(&obj, m), [("Update".into(), "".into())], "{m}");
    }
    for e in managed_fields(&obj) {
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
        assert_eq!(e["fieldsType"], "FieldsV1");
    }
}

#[test]
fn client_side_apply_migrates_to_server_side_apply() {
    let s = TestServer::start();
    let name = "ssa-migrate";
    s.apply(&deployment(name, 2, "nginx:1.25"));
    let obj = get_json(&s, &["deployment", name]);
    assert!(owns(&obj, "kubectl-client-side-apply", &REPLICAS));

    // Server-side apply of a changed manifest: no conflict with what kubectl
    // applied client-side, and kubectl becomes the owner.
    apply_ssa_ok(&s, &deployment(name, 3, "nginx:1.26"), &[]);
    let obj = get_json(&s, &["deployment", name]);
    assert_eq!(obj["spec"]["replicas"], 3);
    assert_eq!(
        obj["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert!(owns(&obj, "kubectl", &REPLICAS));
    assert!(!owns(&obj, "kubectl-client-side-apply", &REPLICAS));
    let last: Value = serde_json::from_str(
        obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .expect("last-applied kept up to date"),
    )
    .expect("last-applied JSON");
    assert_eq!(last["spec"]["replicas"], 3);

    // From now on server-side apply prunes what the manifest drops.
    let without_label = deployment(name, 3, "nginx:1.26").replace(
        "metadata:\n  name: ssa-migrate\n",
        "metadata:\n  name: ssa-migrate\n  labels: {keep: me}\n",
    );
    apply_ssa_ok(&s, &without_label, &[]);
    apply_ssa_ok(&s, &deployment(name, 3, "nginx:1.26"), &[]);
    let obj = get_json(&s, &["deployment", name]);
    assert!(obj["metadata"]["labels"].get("keep").is_none(), "{obj}");
}

fn widget_crd(group: &str) -> String {
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {{status: {{}}}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              color: {{type: string}}
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {{type: string}}
                    port: {{type: integer}}
              tags:
                type: array
                x-kubernetes-list-type: set
                items: {{type: string}}
              args:
                type: array
                items: {{type: string}}
          status:
            type: object
            properties:
              ready: {{type: boolean}}
"#
    )
}

#[test]
fn custom_resources_apply_server_side_and_merge_lists_per_their_schema() {
    let s = TestServer::start();
    let group = "ssa.example.com";
    apply_ssa_ok(&s, &widget_crd(group), &[]);
    s.kubectl_ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        &format!("crd/widgets.{group}"),
    ]);
    let crd = get_json(&s, &["crd", &format!("widgets.{group}")]);
    assert!(owns(&crd, "kubectl", &["f:spec", "f:group"]));

    let widget = |spec: &str| {
        format!("apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n{spec}")
    };
    apply_ssa_ok(
        &s,
        &widget("  color: red\n  ports:\n  - {name: http, port: 80}\n  tags: [a]\n  args: [x]\n"),
        &["--field-manager", "one"],
    );
    // A second manager adds list items: map and set lists merge, per item.
    apply_ssa_ok(
        &s,
        &widget("  ports:\n  - {name: https, port: 443}\n  tags: [b]\n"),
        &["--field-manager", "two"],
    );
    let obj = get_json(&s, &["widget", "w"]);
    assert_eq!(
        obj["spec"]["ports"],
        serde_json::json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}])
    );
    assert_eq!(obj["spec"]["tags"], serde_json::json!(["a", "b"]));
    assert!(owns(
        &obj,
        "two",
        &["f:spec", "f:ports", r#"k:{"name":"https"}"#, "f:port"]
    ));
    assert!(owns(&obj, "two", &["f:spec", "f:tags", r#"v:"b""#]));
    // An atomic list is one value: another manager's different one conflicts.
    let out = apply_ssa(
        &s,
        &widget("  args: [other]\n"),
        &["--field-manager", "two"],
    );
    assert!(
        stderr(&out).contains(r#"conflict with "one": .spec.args"#),
        "{}",
        stderr(&out)
    );

    // The first manager applies again with its list changed: its own item
    // changes, the other manager's stays, what it dropped goes.
    apply_ssa_ok(
        &s,
        &widget("  ports:\n  - {name: http, port: 8080}\n  tags: [a]\n"),
        &["--field-manager", "one"],
    );
    let obj = get_json(&s, &["widget", "w"]);
    assert_eq!(
        obj["spec"]["ports"],
        serde_json::json!([{"name": "http", "port": 8080}, {"name": "https", "port": 443}])
    );
    assert_eq!(obj["spec"]["tags"], serde_json::json!(["a", "b"]));
    assert!(obj["spec"].get("color").is_none(), "{obj}");
    assert!(obj["spec"].get("args").is_none(), "{obj}");

    // Status is applied through its subresource and recorded with it.
    apply_ssa_ok(
        &s,
        &format!(
            "apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w\nstatus:\n  ready: true\n"
        ),
        &["--field-manager", "statusman", "--subresource", "status"],
    );
    let obj = get_json(&s, &["widget", "w"]);
    assert_eq!(obj["status"]["ready"], true);
    assert_eq!(
        entries_of(&obj, "statusman"),
        [("Apply".into(), "status".into())]
    );
    assert!(owns(&obj, "statusman", &["f:status", "f:ready"]));
}

#[test]
fn dry_run_and_no_op_applies_store_nothing() {
    let s = TestServer::start();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa-noop\ndata: {a: \"1\"}\n";
    let out = apply_ssa_ok(&s, cm, &["--dry-run=server"]);
    assert!(out.contains("serverside-applied (server dry run)"), "{out}");
    let missing = s.kubectl(&["get", "configmap", "ssa-noop"]);
    assert!(!missing.status.success(), "a dry run created the object");

    apply_ssa_ok(&s, cm, &[]);
    let rv = |s: &TestServer| {
        s.kubectl_ok(&[
            "get",
            "configmap",
            "ssa-noop",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    let before = rv(&s);
    apply_ssa_ok(&s, cm, &[]);
    assert_eq!(
        rv(&s),
        before,
        "an apply that changes nothing writes nothing"
    );
    apply_ssa_ok(
        &s,
        &cm.replace("a: \"1\"", "a: \"2\""),
        &["--dry-run=server"],
    );
    assert_eq!(rv(&s), before);
    // Another manager applying the same value changes only ownership, and
    // that is written.
    apply_ssa_ok(&s, cm, &["--field-manager", "co-owner"]);
    assert_ne!(rv(&s), before);
    let obj = get_json(&s, &["configmap", "ssa-noop"]);
    assert!(owns(&obj, "co-owner", &["f:data", "f:a"]));
    assert!(owns(&obj, "kubectl", &["f:data", "f:a"]));
}

#[test]
fn bad_write_options_are_refused_as_kubernetes_refuses_them() {
    let s = TestServer::start();
    let path = "/api/v1/namespaces/default/configmaps";
    let apply = |query: &str, body: &str| {
        s.curl_admin(
            &format!("{path}/ssa-opts{query}"),
            &[
                "-X",
                "PATCH",
                "-H",
                "Content-Type: application/apply-patch+yaml",
                "--data-binary",
                body,
            ],
        )
    };
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa-opts\ndata: {a: \"1\"}\n";
    let message = |body: &str| -> String {
        let v: Value = serde_json::from_str(body).expect("Status");
        v["message"].as_str().unwrap_or_default().to_owned()
    };

    let (code, body) = apply("", cm);
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        message(&body),
        r#"PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch"#
    );
    let (code, body) = apply(
        "?fieldManager=m",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: elsewhere\n",
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        message(&body),
        "the name of the object (elsewhere) does not match the name on the URL (ssa-opts)"
    );
    let (code, body) = apply("?fieldManager=m", "apiVersion: v1\nkind: Secret\n");
    assert_eq!(code, 400, "{body}");
    assert_eq!(message(&body), "invalid object type: /v1, Kind=Secret");
    let (code, body) = apply("?fieldManager=m", cm);
    assert_eq!(code, 201, "{body}");

    let (code, body) = s.curl_admin(
        &format!("{path}/ssa-opts?force=true"),
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/merge-patch+json",
            "--data-binary",
            r#"{"data":{"a":"b"}}"#,
        ],
    );
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        message(&body),
        r#"PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch"#
    );
    let (code, body) = s.curl_admin(
        &format!("{path}?fieldManager=bad%09name"),
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other"}}"#,
        ],
    );
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        message(&body),
        r#"CreateOptions.meta.k8s.io "" is invalid: fieldManager: Invalid value: "bad\tname": invalid character U+0009 (at position 3)"#
    );

    // Without fieldManager a write is recorded under the client's User-Agent.
    let (code, body) = s.curl_admin(
        &format!("{path}/ssa-opts"),
        &[
            "-X",
            "PATCH",
            "-A",
            "my-tool/1.0 (linux)",
            "-H",
            "Content-Type: application/merge-patch+json",
            "--data-binary",
            r#"{"data":{"from":"curl"}}"#,
        ],
    );
    assert_eq!(code, 200, "{body}");
    let obj = get_json(&s, &["configmap", "ssa-opts"]);
    assert!(owns(&obj, "my-tool", &["f:data", "f:from"]), "{obj}");
    // managedFields: [] in an update resets them.
    let (code, body) = s.curl_admin(
        &format!("{path}/ssa-opts"),
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/merge-patch+json",
            "--data-binary",
            r#"{"metadata":{"managedFields":[]}}"#,
        ],
    );
    assert_eq!(code, 200, "{body}");
    let obj = get_json(&s, &["configmap", "ssa-opts"]);
    assert!(managed_fields(&obj).is_empty(), "{obj}");
}
