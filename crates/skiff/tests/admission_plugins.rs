//! The admission plugins that guard who writes what, against the real binary:
//! PodSecurity (the `pod-security.kubernetes.io/*` namespace labels: enforce refuses
//! with Kubernetes' message, warn and workloads only warn, tightening a namespace
//! warns about the pods already there), NodeRestriction (a node writes only its own
//! Node — no taints, no steering labels — and the status of its own pods), and the
//! ServiceAccount plugin (a pod's account must exist; its token is mounted).

#[path = "support/server.rs"]
mod support;

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use support::TestServer;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const PRIVILEGED: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: priv}
spec:
  containers:
  - name: c
    image: busybox
    securityContext: {privileged: true}
"#;

const RESTRICTED: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: tidy}
spec:
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: c
    image: busybox
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
"#;

#[test]
fn pod_security_restricted_refuses_a_privileged_pod_with_kubernetes_message() {
    let s = TestServer::start();
    s.kubectl_ok(&["create", "namespace", "locked"]);
    s.kubectl_ok(&[
        "label",
        "namespace",
        "locked",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let out = s.kubectl_stdin(&["apply", "-n", "locked", "-f", "-"], Some(PRIVILEGED));
    assert!(!out.status.success(), "a privileged pod was admitted");
    let err = stderr(&out);
    assert!(
        err.contains(
            "pods \"priv\" is forbidden: violates PodSecurity \"restricted:latest\": privileged (container \"c\" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        ),
        "{err}"
    );
    let none = s.kubectl_ok(&["get", "pods", "-n", "locked", "-o", "name"]);
    assert!(none.trim().is_empty(), "nothing stored: {none}");

    let out = s.kubectl_stdin(&["apply", "-n", "locked", "-f", "-"], Some(RESTRICTED));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn pod_security_warn_and_workloads_only_warn_and_tightening_names_existing_pods() {
    let s = TestServer::start();
    s.kubectl_ok(&["create", "namespace", "watched"]);
    s.kubectl_ok(&[
        "label",
        "namespace",
        "watched",
        "pod-security.kubernetes.io/warn=baseline",
    ]);
    let out = s.kubectl_stdin(&["apply", "-n", "watched", "-f", "-"], Some(PRIVILEGED));
    assert!(
        out.status.success(),
        "warn does not refuse: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(
            "Warning: would violate PodSecurity \"baseline:latest\": privileged (container \"c\" must not set securityContext.privileged=true)"
        ),
        "{err}"
    );

    // Tightening the namespace warns about the pod already there, and refuses nothing
    // that exists.
    let out = s.kubectl(&[
        "label",
        "namespace",
        "watched",
        "pod-security.kubernetes.io/enforce=baseline",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("existing pods in namespace \"watched\" violate the new PodSecurity enforce level \"baseline:latest\""),
        "{err}"
    );
    assert!(err.contains("priv: privileged"), "{err}");

    // A Deployment whose template would be refused is created with a warning.
    let deploy = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      hostNetwork: true
      containers: [{name: c, image: busybox}]
"#;
    let out = s.kubectl_stdin(&["apply", "-n", "watched", "-f", "-"], Some(deploy));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "Warning: would violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
        ),
        "{}",
        stderr(&out)
    );

    // A bad level label is refused as Kubernetes refuses it.
    let out = s.kubectl(&[
        "label",
        "--overwrite",
        "namespace",
        "watched",
        "pod-security.kubernetes.io/enforce=strict",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("must be one of privileged, baseline, restricted"),
        "{}",
        stderr(&out)
    );
}

/// A kubeconfig for node `name` (`system:node:<name>` in `system:nodes`), signed
/// with the server's CA.
fn node_kubeconfig(s: &TestServer, name: &str) -> PathBuf {
    s.signed_kubeconfig(
        &format!("node-{name}.yaml"),
        &format!("system:node:{name}"),
        &["system:nodes"],
    )
}

#[test]
fn node_restriction_lets_a_node_write_only_its_own_node_and_pods() {
    let s = TestServer::start();
    for node in ["nr-a", "nr-b"] {
        s.apply(&format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {node}, labels: {{kubernetes.io/hostname: {node}}}}}\n"
        ));
    }
    for (pod, node) in [("on-a", "nr-a"), ("on-b", "nr-b")] {
        s.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: busybox}}]\n"
        ));
    }
    let a = node_kubeconfig(&s, "nr-a");

    let own = s.kubectl_as(&a, &["label", "node", "nr-a", "example.com/rack=r1"]);
    assert!(own.status.success(), "{}", stderr(&own));
    let other = s.kubectl_as(&a, &["label", "node", "nr-b", "example.com/rack=r1"]);
    assert!(!other.status.success());
    assert!(
        stderr(&other).contains(
            "nodes \"nr-b\" is forbidden: node \"nr-a\" is not allowed to modify node \"nr-b\""
        ),
        "{}",
        stderr(&other)
    );
    let role = s.kubectl_as(
        &a,
        &[
            "label",
            "node",
            "nr-a",
            "node-role.kubernetes.io/control-plane=",
        ],
    );
    assert!(!role.status.success(), "a node gave itself a role");
    assert!(
        stderr(&role)
            .contains("is not allowed to modify labels: node-role.kubernetes.io/control-plane"),
        "{}",
        stderr(&role)
    );
    let taint = s.kubectl_as(&a, &["taint", "node", "nr-a", "k=v:NoSchedule"]);
    assert!(!taint.status.success(), "a node changed its taints");
    assert!(
        stderr(&taint).contains("node \"nr-a\" is not allowed to modify taints"),
        "{}",
        stderr(&taint)
    );

    // As the kubelet does: a merge patch straight to pods/status (kubectl would read
    // pods/status first, which a node may not).
    let cert = s.data_dir().join("node-nr-a.crt");
    let key = s.data_dir().join("node-nr-a.key");
    let status = |pod: &str| {
        s.curl(
            &format!("/api/v1/namespaces/default/pods/{pod}/status"),
            &[
                "--cert",
                cert.to_str().expect("utf8"),
                "--key",
                key.to_str().expect("utf8"),
                "-X",
                "PATCH",
                "-H",
                "Content-Type: application/merge-patch+json",
                "-d",
                r#"{"status":{"message":"from the node"}}"#,
            ],
        )
    };
    let (code, body) = status("on-a");
    assert_eq!(code, 200, "{body}");
    let (code, body) = status("on-b");
    assert_eq!(code, 403, "{body}");
    let refusal: Value = serde_json::from_str(&body).expect("a Status");
    assert_eq!(
        refusal["message"],
        "pods \"on-b\" is forbidden: node \"nr-a\" can only update pod status for pods with spec.nodeName set to itself"
    );
    let message = s.kubectl_ok(&["get", "pod", "on-b", "-o", "jsonpath={.status.message}"]);
    assert!(message.is_empty(), "nothing changed: {message}");
}

#[test]
fn a_pod_needs_an_existing_service_account_and_gets_its_token_mounted() {
    let s = TestServer::start();
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: lost}\nspec:\n  serviceAccountName: nobody\n  containers: [{name: c, image: busybox}]\n",
        ),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "pods \"lost\" is forbidden: error looking up service account default/nobody: serviceaccount \"nobody\" not found"
        ),
        "{}",
        stderr(&out)
    );
    s.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: found}\nspec:\n  containers: [{name: c, image: busybox}]\n");
    let pod: Value =
        serde_json::from_str(&s.kubectl_ok(&["get", "pod", "found", "-o", "json"])).expect("a pod");
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    let volume = pod["spec"]["volumes"]
        .as_array()
        .and_then(|v| {
            v.iter().find(|v| {
                v["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("kube-api-access-"))
            })
        })
        .expect("a kube-api-access volume");
    let sources = &volume["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(
        mount["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert_eq!(mount["readOnly"], true);
}
