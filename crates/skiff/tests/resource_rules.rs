//! Per-resource rules users rely on: Service IPs and node ports are allocated once and
//! released on delete, pods bind once, deletecollection honours selectors,
//! PartialObjectMetadata and Table responses, duplicate JSON fields, kubectl edit.

#[path = "support/server.rs"]
mod support;

use serde_json::Value;
use support::TestServer;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn post(s: &TestServer, path: &str, body: &str) -> (u16, Value) {
    let (code, text) = s.curl_admin(
        path,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ],
    );
    (code, json(&text))
}

#[test]
fn cluster_ips_and_node_ports_are_unique_and_released_on_delete() {
    let s = TestServer::start();
    let svc = |name: &str, ip: &str, node_port: u16| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}"}},"spec":{{"type":"NodePort","clusterIP":"{ip}","ports":[{{"port":80,"nodePort":{node_port}}}]}}}}"#
        )
    };
    let (code, body) = post(
        &s,
        "/api/v1/namespaces/default/services",
        &svc("a", "10.43.7.7", 30080),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["ports"][0]["targetPort"], 80);
    let (code, body) = post(
        &s,
        "/api/v1/namespaces/default/services",
        &svc("b", "10.43.7.7", 30081),
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("provided IP is already allocated"),
        "{body}"
    );
    let (code, body) = post(
        &s,
        "/api/v1/namespaces/default/services",
        &svc("b", "10.43.7.8", 30080),
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("provided port is already allocated"),
        "{body}"
    );
    let (code, body) = post(
        &s,
        "/api/v1/namespaces/default/services",
        &svc("b", "10.43.7.8", 80),
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("30000-32767"),
        "{body}"
    );
    let (code, body) = post(
        &s,
        "/api/v1/namespaces/default/services",
        &svc("a", "10.43.7.9", 30082),
    );
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["reason"], "AlreadyExists");
    s.kubectl_ok(&["delete", "svc", "a"]);
    let (code, body) = post(
        &s,
        "/api/v1/namespaces/default/services",
        &svc("b", "10.43.7.7", 30080),
    );
    assert_eq!(code, 201, "released IP and port are reusable: {body}");
    // Allocation survives a restart: the same IP is still taken afterwards.
    let mut s = s;
    assert_eq!(s.terminate(), Some(0));
    s.spawn_and_wait();
    let (code, body) = post(
        &s,
        "/api/v1/namespaces/default/services",
        &svc("c", "10.43.7.7", 30090),
    );
    assert_eq!(code, 422, "{body}");
}

#[test]
fn a_pod_binds_to_a_node_once() {
    let s = TestServer::start();
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
    let (code, body) = post(&s, "/api/v1/namespaces/default/pods", pod);
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["phase"], "Pending");
    assert_eq!(body["status"]["qosClass"], "BestEffort");
    assert_eq!(body["spec"]["schedulerName"], "default-scheduler");
    let binding = r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"kind":"Node","name":"node-1"}}"#;
    let (code, body) = post(&s, "/api/v1/namespaces/default/pods/p/binding", binding);
    assert_eq!(code, 201, "{body}");
    let node = s.kubectl_ok(&["get", "pod", "p", "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(node, "node-1");
    let (code, body) = post(
        &s,
        "/api/v1/namespaces/default/pods/p/binding",
        &binding.replace("node-1", "node-2"),
    );
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("is already assigned to node \"node-1\""),
        "{body}"
    );
    let wide = s.kubectl_ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.contains("node-1") && wide.contains("Pending"),
        "{wide}"
    );
    let by_node = s.kubectl_ok(&[
        "get",
        "pods",
        "--field-selector",
        "spec.nodeName=node-1",
        "-o",
        "name",
    ]);
    assert_eq!(by_node.trim(), "pod/p");
}

#[test]
fn deletecollection_deletes_only_what_the_selector_matches() {
    let s = TestServer::start();
    for (n, tier) in [("a", "web"), ("b", "web"), ("c", "db")] {
        s.apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {n}\n  labels: {{tier: {tier}}}\n"
        ));
    }
    let (code, text) = s.curl_admin(
        "/api/v1/namespaces/default/configmaps?labelSelector=tier%3Dweb",
        &["-X", "DELETE"],
    );
    assert_eq!(code, 200, "{text}");
    assert_eq!(json(&text)["kind"], "ConfigMapList");
    let left = s.kubectl_ok(&["get", "cm", "-l", "tier", "-o", "name"]);
    assert_eq!(left.trim(), "configmap/c");
}

#[test]
fn metadata_only_and_table_responses_have_kubernetes_shapes() {
    let s = TestServer::start();
    let (code, text) = s.curl_admin(
        "/api/v1/namespaces",
        &[
            "-H",
            "Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        ],
    );
    assert_eq!(code, 200, "{text}");
    let v = json(&text);
    assert_eq!(v["kind"], "PartialObjectMetadataList");
    assert_eq!(v["items"][0]["kind"], "PartialObjectMetadata");
    assert!(v["items"][0]["metadata"]["name"].is_string());
    assert!(v["items"][0].get("spec").is_none());
    let (code, text) = s.curl_admin(
        "/api/v1/namespaces",
        &["-H", "Accept: application/json;as=Table;g=meta.k8s.io;v=v1"],
    );
    assert_eq!(code, 200, "{text}");
    let t = json(&text);
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(cols, vec!["Name", "Status", "Age"]);
    assert_eq!(t["rows"][0]["cells"][1], "Active");
}

#[test]
fn duplicate_json_fields_are_rejected_when_strict() {
    let s = TestServer::start();
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d"},"data":{"k":"1"},"data":{"k":"2"}}"#;
    let (code, v) = post(
        &s,
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        body,
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("duplicate field \"data\""),
        "{v}"
    );
    let (code, text) = s.curl_admin(
        "/api/v1/namespaces/default/configmaps?fieldValidation=Warn",
        &[
            "-i",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ],
    );
    assert_eq!(code, 201, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("warning: 299 - \"duplicate field \\\"data\\\"\""),
        "{text}"
    );
}

#[test]
fn kubectl_edit_applies_the_editors_change() {
    let s = TestServer::start();
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\ndata:\n  k: before\n");
    let editor = s.data_dir().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/k: before/k: after/' \"$1\"\n",
    )
    .expect("editor");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&editor)
        .status()
        .expect("chmod");
    let out = std::process::Command::new("/usr/bin/kubectl")
        .env("KUBECONFIG", s.kubeconfig())
        .env("KUBE_EDITOR", &editor)
        .arg("--cache-dir")
        .arg(s.data_dir().join("edit-cache"))
        .args(["edit", "cm", "e"])
        .output()
        .expect("kubectl edit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/e edited"
    );
    assert_eq!(
        s.kubectl_ok(&["get", "cm", "e", "-o", "jsonpath={.data.k}"]),
        "after"
    );
}

#[test]
fn events_written_through_events_k8s_io_are_core_events_too() {
    let s = TestServer::start();
    let ev = r#"{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"e1"},"eventTime":"2026-01-01T00:00:00.000000Z",
        "regarding":{"apiVersion":"v1","kind":"ConfigMap","name":"cfg","namespace":"default"},"reason":"Tested","note":"hello from v1",
        "type":"Normal","action":"Test","reportingController":"skiff-test","reportingInstance":"t1"}"#;
    let (code, body) = post(&s, "/apis/events.k8s.io/v1/namespaces/default/events", ev);
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["note"], "hello from v1");
    let core = s.kubectl_ok(&[
        "get",
        "events.v1.",
        "e1",
        "-o",
        "jsonpath={.message} {.involvedObject.name} {.reportingComponent}",
    ]);
    assert_eq!(core, "hello from v1 cfg skiff-test");
    let listed = s.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=cfg",
        "-o",
        "name",
    ]);
    assert!(listed.contains("e1"), "{listed}");
}

#[test]
fn pod_priority_comes_from_its_priority_class() {
    let s = TestServer::start();
    let pcs = s.kubectl_ok(&["get", "priorityclasses", "-o", "name"]);
    assert!(
        pcs.contains("system-node-critical") && pcs.contains("system-cluster-critical"),
        "{pcs}"
    );
    s.apply("apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: high\nvalue: 1000\npreemptionPolicy: Never\n");
    let pod = |name: &str, class: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"priorityClassName":"{class}","containers":[{{"name":"c","image":"busybox"}}]}}}}"#
        )
    };
    let (code, body) = post(&s, "/api/v1/namespaces/default/pods", &pod("p1", "high"));
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["priority"], 1000);
    assert_eq!(body["spec"]["preemptionPolicy"], "Never");
    let (code, body) = post(&s, "/api/v1/namespaces/default/pods", &pod("p2", "missing"));
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"p2\" is forbidden: no PriorityClass with name missing was found"
    );
    let (code, body) = post(
        &s,
        "/api/v1/namespaces/default/pods",
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p3"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#,
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["priority"], 0);
}

#[test]
fn limit_ranges_default_and_bound_container_resources() {
    let s = TestServer::start();
    s.apply("apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: lr\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 500m, memory: 256Mi}\n    defaultRequest: {cpu: 100m}\n    max: {cpu: \"1\"}\n");
    let (code, body) = post(
        &s,
        "/api/v1/namespaces/default/pods",
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"d"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#,
    );
    assert_eq!(code, 201, "{body}");
    let r = &body["spec"]["containers"][0]["resources"];
    assert_eq!(r["limits"]["cpu"], "500m");
    assert_eq!(r["limits"]["memory"], "256Mi");
    assert_eq!(r["requests"]["cpu"], "100m");
    assert_eq!(r["requests"]["memory"], "256Mi");
    assert_eq!(body["status"]["qosClass"], "Burstable");
    let (code, body) = post(
        &s,
        "/api/v1/namespaces/default/pods",
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"big"},"spec":{"containers":[{"name":"c","image":"busybox","resources":{"limits":{"cpu":"2"}}}]}}"#,
    );
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
    );
}
