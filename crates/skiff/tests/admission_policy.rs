//! ValidatingAdmissionPolicy against the real binary and kubectl: the Kubernetes
//! docs' `object.spec.replicas <= 5` policy on Deployments (refused with
//! Kubernetes' message and a 422, three replicas admitted, no effect without a
//! binding, none after the binding is deleted, only in namespaces the binding
//! selects), the Warn action (a kubectl `Warning:` and the object stored),
//! params from a ConfigMap with `messageExpression`, a policy whose CEL does not
//! compile (refused at create with 422), and `failurePolicy` Fail vs Ignore on
//! a runtime error.
//!
//! Policies take effect once the server's policy cache has seen them (as in
//! Kubernetes, a moment after the write): the tests wait for that with
//! server-side dry runs.

#[path = "support/server.rs"]
mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::TestServer;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The docs' policy: at most five replicas on Deployments.
const REPLICA_POLICY: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: demo-policy.example.com
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups:   ["apps"]
      apiVersions: ["v1"]
      operations:  ["CREATE", "UPDATE"]
      resources:   ["deployments"]
  validations:
  - expression: "object.spec.replicas <= 5"
"#;

/// The docs' binding: Deny, in namespaces labelled `environment: test`.
const TEST_BINDING: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: demo-binding-test.example.com
spec:
  policyName: demo-policy.example.com
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels:
        environment: test
"#;

/// `kubectl create deployment NAME --replicas=N` in `ns` (optionally a server
/// dry run).
fn create_deployment(s: &TestServer, ns: &str, name: &str, replicas: u32, dry_run: bool) -> Output {
    let replicas = format!("--replicas={replicas}");
    let mut args = vec![
        "create",
        "deployment",
        name,
        "--image=busybox",
        replicas.as_str(),
        "-n",
        ns,
    ];
    if dry_run {
        args.push("--dry-run=server");
    }
    s.kubectl(&args)
}

/// Polls `check` until it holds (the policy cache follows writes a moment later).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting until {what}");
}

fn namespace(s: &TestServer, name: &str, labels: &[&str]) {
    s.kubectl_ok(&["create", "namespace", name]);
    if !labels.is_empty() {
        let mut args = vec!["label", "namespace", name];
        args.extend_from_slice(labels);
        s.kubectl_ok(&args);
    }
}

#[test]
fn the_documented_replica_limit_refuses_six_replicas_in_selected_namespaces_until_unbound() {
    let s = TestServer::start();
    namespace(&s, "test-ns", &["environment=test"]);
    namespace(&s, "prod-ns", &[]);
    s.apply(REPLICA_POLICY);
    // A policy without a binding has no effect.
    std::thread::sleep(Duration::from_millis(500));
    let out = create_deployment(&s, "test-ns", "unbound", 6, true);
    assert!(out.status.success(), "no binding yet: {}", stderr(&out));

    s.apply(TEST_BINDING);
    eventually("the binding is enforced", || {
        !create_deployment(&s, "test-ns", "probe", 6, true)
            .status
            .success()
    });
    let out = create_deployment(&s, "test-ns", "nginx", 6, false);
    assert!(!out.status.success(), "six replicas were admitted");
    let err = stderr(&out);
    assert!(
        err.contains(
            "deployments.apps \"nginx\" is forbidden: ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-test.example.com' denied request: failed expression: object.spec.replicas <= 5"
        ),
        "{err}"
    );
    let out = s.kubectl(&["get", "deployment", "nginx", "-n", "test-ns"]);
    assert!(!out.status.success(), "the refused deployment was stored");

    // The Status Kubernetes sends: reason Invalid, code 422, the message as a cause.
    let body = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"raw"},
        "spec":{"replicas":7,"selector":{"matchLabels":{"app":"raw"}},
        "template":{"metadata":{"labels":{"app":"raw"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}}}"#;
    let (code, text) = s.curl_admin(
        "/apis/apps/v1/namespaces/test-ns/deployments",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ],
    );
    assert_eq!(code, 422, "{text}");
    let status: Value = serde_json::from_str(&text).expect("a Status");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["name"], "raw");
    assert_eq!(status["details"]["group"], "apps");
    assert_eq!(status["details"]["kind"], "deployments");
    assert_eq!(
        status["details"]["causes"][0]["message"],
        "ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-test.example.com' denied request: failed expression: object.spec.replicas <= 5"
    );

    let out = create_deployment(&s, "test-ns", "small", 3, false);
    assert!(out.status.success(), "three replicas: {}", stderr(&out));
    // Scaling an admitted deployment past the limit is an UPDATE the policy refuses.
    let out = s.kubectl(&[
        "patch",
        "deployment",
        "small",
        "-n",
        "test-ns",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":8}}"#,
    ]);
    assert!(
        !out.status.success(),
        "the update past the limit was admitted"
    );
    assert!(
        stderr(&out).contains("failed expression: object.spec.replicas <= 5"),
        "{}",
        stderr(&out)
    );

    // The binding selects only namespaces labelled environment=test.
    let out = create_deployment(&s, "prod-ns", "big", 6, false);
    assert!(
        out.status.success(),
        "unselected namespace: {}",
        stderr(&out)
    );

    s.kubectl_ok(&[
        "delete",
        "validatingadmissionpolicybinding",
        "demo-binding-test.example.com",
    ]);
    eventually("the deleted binding is no longer enforced", || {
        create_deployment(&s, "test-ns", "probe", 6, true)
            .status
            .success()
    });
    let out = create_deployment(&s, "test-ns", "nginx", 6, false);
    assert!(out.status.success(), "after unbinding: {}", stderr(&out));
}

#[test]
fn the_warn_action_prints_a_kubectl_warning_and_stores_the_object() {
    let s = TestServer::start();
    s.apply(REPLICA_POLICY);
    s.apply(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: demo-binding-warn.example.com
spec:
  policyName: demo-policy.example.com
  validationActions: [Warn]
"#,
    );
    eventually("the binding warns", || {
        stderr(&create_deployment(&s, "default", "probe", 6, true)).contains("Warning:")
    });
    let out = create_deployment(&s, "default", "web", 6, false);
    assert!(
        out.status.success(),
        "Warn must not refuse: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(
            "Warning: Validation failed for ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-warn.example.com': failed expression: object.spec.replicas <= 5"
        ),
        "{err}"
    );
    let replicas = s.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas.trim(), "6");
    let out = create_deployment(&s, "default", "quiet", 2, false);
    assert!(out.status.success());
    assert!(!stderr(&out).contains("Warning"), "{}", stderr(&out));
}

#[test]
fn params_from_a_configmap_set_the_limit_and_the_message() {
    let s = TestServer::start();
    s.apply(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: replicalimit-policy.example.com
spec:
  failurePolicy: Fail
  paramKind:
    apiVersion: v1
    kind: ConfigMap
  matchConstraints:
    resourceRules:
    - apiGroups:   ["apps"]
      apiVersions: ["v1"]
      operations:  ["CREATE", "UPDATE"]
      resources:   ["deployments"]
  validations:
  - expression: "object.spec.replicas <= int(params.data.maxReplicas)"
    messageExpression: "'object.spec.replicas must be no greater than ' + params.data.maxReplicas"
    reason: Invalid
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: replicalimit-binding.example.com
spec:
  policyName: replicalimit-policy.example.com
  validationActions: [Deny]
  paramRef:
    name: replica-limit
    namespace: default
    parameterNotFoundAction: Deny
"#,
    );
    // Without the ConfigMap the binding is misconfigured and, failing closed, refuses.
    eventually("the binding is enforced", || {
        !create_deployment(&s, "default", "probe", 1, true)
            .status
            .success()
    });
    let err = stderr(&create_deployment(&s, "default", "web", 1, false));
    assert!(
        err.contains(
            "ValidatingAdmissionPolicy 'replicalimit-policy.example.com' with binding 'replicalimit-binding.example.com' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
        ),
        "{err}"
    );

    s.kubectl_ok(&[
        "create",
        "configmap",
        "replica-limit",
        "-n",
        "default",
        "--from-literal=maxReplicas=5",
    ]);
    let out = create_deployment(&s, "default", "web", 6, false);
    assert!(!out.status.success(), "six replicas over a limit of five");
    let err = stderr(&out);
    assert!(
        err.contains(
            "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'replicalimit-policy.example.com' with binding 'replicalimit-binding.example.com' denied request: object.spec.replicas must be no greater than 5"
        ),
        "{err}"
    );
    let out = create_deployment(&s, "default", "web", 5, false);
    assert!(out.status.success(), "five replicas: {}", stderr(&out));

    // Params are read per request: raising the limit takes effect at once.
    s.kubectl_ok(&[
        "patch",
        "configmap",
        "replica-limit",
        "-n",
        "default",
        "--type=merge",
        "-p",
        r#"{"data":{"maxReplicas":"10"}}"#,
    ]);
    let out = create_deployment(&s, "default", "bigger", 6, false);
    assert!(
        out.status.success(),
        "limit raised to ten: {}",
        stderr(&out)
    );
}

#[test]
fn a_policy_whose_cel_does_not_compile_is_refused_at_create_with_422() {
    let s = TestServer::start();
    let bad = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: bad-syntax.example.com
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["deployments"]
  validations:
  - expression: "object.spec.replicas <"
  - expression: "objekt.spec.replicas > 1"
"#;
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(bad));
    assert!(
        !out.status.success(),
        "a policy that does not compile was stored"
    );
    let err = stderr(&out);
    for want in [
        "spec.validations[0].expression: Invalid value: \"object.spec.replicas <\": compilation failed: ERROR: <input>:1:23: Syntax error: mismatched input '<EOF>' expecting",
        "spec.validations[1].expression: Invalid value: \"objekt.spec.replicas > 1\": compilation failed: ERROR: <input>:1:1: undeclared reference to 'objekt' (in container '')",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
    let json = r#"{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingAdmissionPolicy",
        "metadata":{"name":"bad-raw.example.com"},
        "spec":{"matchConstraints":{"resourceRules":[{"apiGroups":["apps"],"apiVersions":["v1"],
        "operations":["CREATE"],"resources":["deployments"]}]},
        "validations":[{"expression":"object.spec.replicas <="}]}}"#;
    let (code, text) = s.curl_admin(
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            json,
        ],
    );
    assert_eq!(code, 422, "{text}");
    let status: Value = serde_json::from_str(&text).expect("a Status");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.validations[0].expression"
    );
    let out = s.kubectl(&["get", "validatingadmissionpolicies", "-o", "name"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "nothing stored"
    );
}

#[test]
fn failure_policy_fail_refuses_and_ignore_admits_on_a_runtime_error() {
    let s = TestServer::start();
    s.apply(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: needs-team.example.com
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["deployments"]
  validations:
  - expression: "object.metadata.labels.team != ''"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: needs-team-binding.example.com
spec:
  policyName: needs-team.example.com
  validationActions: [Deny]
"#,
    );
    eventually("the binding is enforced", || {
        !create_deployment(&s, "default", "probe", 1, true)
            .status
            .success()
    });
    // kubectl's deployments carry only an `app` label: `labels.team` is missing.
    let err = stderr(&create_deployment(&s, "default", "web", 1, false));
    assert!(
        err.contains(
            "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'needs-team.example.com' with binding 'needs-team-binding.example.com' denied request: expression 'object.metadata.labels.team != ''' resulted in error: no such key: team"
        ),
        "{err}"
    );
    let generation = |s: &TestServer| {
        s.kubectl_ok(&[
            "get",
            "validatingadmissionpolicy",
            "needs-team.example.com",
            "-o",
            "jsonpath={.metadata.generation}/{.status.observedGeneration}",
        ])
    };
    eventually("the policy's generation is observed", || {
        generation(&s) == "1/1"
    });

    s.kubectl_ok(&[
        "patch",
        "validatingadmissionpolicy",
        "needs-team.example.com",
        "--type=merge",
        "-p",
        r#"{"spec":{"failurePolicy":"Ignore"}}"#,
    ]);
    eventually("failurePolicy Ignore admits", || {
        create_deployment(&s, "default", "probe", 1, true)
            .status
            .success()
    });
    let out = create_deployment(&s, "default", "web", 1, false);
    assert!(out.status.success(), "Ignore: {}", stderr(&out));
    eventually("the new generation is observed", || generation(&s) == "2/2");
}
