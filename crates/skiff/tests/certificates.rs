//! CertificateSigningRequests against the real binary, the way Kubernetes' docs walk
//! through them ("Issue a certificate for a Kubernetes API client using a
//! CertificateSigningRequest"): a key and request made here, `kubectl apply`,
//! `kubectl get csr` Pending, `kubectl certificate approve`, the certificate in the
//! status, and a kubeconfig with it that `kubectl auth whoami` names as the user and
//! groups of the request. Denial, approving without `approve` on the signer,
//! refused requests (422, 403), a requester that cannot be forged, and what the
//! signer refuses or leaves to other signers.

#[path = "support/server.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use support::TestServer;

const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

fn b64(data: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A new private key and a PEM certificate request for `cn` in `orgs` (at most
/// two: rcgen keeps one value per attribute type, so the second O goes in under
/// O's OID as a custom type).
fn key_and_request(cn: &str, orgs: &[&str]) -> (rcgen::KeyPair, String) {
    assert!(orgs.len() <= 2);
    let key = rcgen::KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for (i, o) in orgs.iter().enumerate() {
        let ty = match i {
            0 => rcgen::DnType::OrganizationName,
            _ => rcgen::DnType::CustomDnType(vec![2, 5, 4, 10]),
        };
        params.distinguished_name.push(ty, *o);
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let csr = params.serialize_request(&key).expect("a request");
    (key, csr.pem().expect("PEM"))
}

/// A CertificateSigningRequest manifest; `extra_spec` lines are indented under spec.
fn manifest(
    name: &str,
    request_pem: &str,
    signer: &str,
    usages: &[&str],
    extra_spec: &str,
) -> String {
    let usages: String = usages.iter().map(|u| format!("  - {u}\n")).collect();
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {}\n  signerName: {signer}\n  usages:\n{usages}{extra_spec}",
        b64(request_pem)
    )
}

fn ok(s: &TestServer, kubeconfig: &Path, args: &[&str]) -> String {
    let o = s.kubectl_as(kubeconfig, args);
    assert!(
        o.status.success(),
        "kubectl {args:?} failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn csr_json(s: &TestServer, name: &str) -> Value {
    let out = s.kubectl_ok(&["get", "csr", name, "-o", "json"]);
    serde_json::from_str(&out).expect("a CertificateSigningRequest")
}

/// The CONDITION column of `kubectl get csr NAME` (and checks the header).
fn condition_column(s: &TestServer, name: &str) -> String {
    let out = s.kubectl_ok(&["get", "csr", name]);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        vec![
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ],
        "{out}"
    );
    assert_eq!(lines[1][0], name, "{out}");
    lines[1].last().expect("a condition").to_string()
}

/// Waits until `pred` holds for the request, returning it.
fn wait_for(s: &TestServer, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let csr = csr_json(s, name);
        if pred(&csr) {
            return csr;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{name}: {what} did not happen: {csr:#}\nserver log:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn issued(csr: &Value) -> bool {
    csr.pointer("/status/certificate")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty())
}

/// The issued certificate (PEM).
fn certificate_of(csr: &Value) -> String {
    let encoded = csr["status"]["certificate"]
        .as_str()
        .expect("a certificate");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64");
    String::from_utf8(pem).expect("PEM text")
}

/// Whether `cert` (PEM) is still valid `seconds` from now (`openssl x509 -checkend`).
fn valid_for(cert: &str, seconds: u64) -> bool {
    use std::io::Write as _;
    let mut child = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-checkend", &seconds.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("openssl (Debian's openssl package) is needed to read certificates");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(cert.as_bytes())
        .expect("write the certificate");
    child.wait().expect("openssl ran").success()
}

/// A kubeconfig for this server with a client certificate and key.
fn kubeconfig_with(s: &TestServer, file: &str, cert: &str, key: &rcgen::KeyPair) -> PathBuf {
    let ca = std::fs::read_to_string(s.data_dir().join("server/tls/ca.crt")).expect("the CA");
    let path = s.data_dir().join(file);
    apiserver::write_kubeconfig(
        &path,
        &format!("https://127.0.0.1:{}", s.port),
        &ca,
        cert,
        &key.serialize_pem(),
        0o600,
    )
    .expect("write the kubeconfig");
    path
}

#[test]
fn the_documented_flow_issues_a_certificate_that_authenticates_as_the_requested_user() {
    let s = TestServer::start();
    let (key, request) = key_and_request("myuser", &["devs", "ops"]);
    let out = s.apply(&manifest(
        "myuser",
        &request,
        CLIENT_SIGNER,
        &["client auth"],
        "  expirationSeconds: 86400\n",
    ));
    assert_eq!(
        out.trim(),
        "certificatesigningrequest.certificates.k8s.io/myuser created"
    );

    // NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION
    let list = s.kubectl_ok(&["get", "csr"]);
    let row: Vec<&str> = list
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    assert_eq!(row[0], "myuser", "{list}");
    assert_eq!(
        &row[2..],
        [
            "kubernetes.io/kube-apiserver-client",
            "system:admin",
            "24h",
            "Pending"
        ],
        "{list}"
    );

    let csr = csr_json(&s, "myuser");
    assert_eq!(csr["spec"]["username"], "system:admin");
    let groups = csr["spec"]["groups"].as_array().expect("groups");
    assert!(groups.contains(&"system:masters".into()), "{csr:#}");
    assert_eq!(csr["status"], serde_json::json!({}));

    let out = s.kubectl_ok(&["certificate", "approve", "myuser"]);
    assert_eq!(
        out.trim(),
        "certificatesigningrequest.certificates.k8s.io/myuser approved"
    );
    let csr = wait_for(&s, "myuser", "issuing", issued);
    assert_eq!(condition_column(&s, "myuser"), "Approved,Issued");
    let approved = &csr["status"]["conditions"][0];
    assert_eq!(approved["type"], "Approved");
    assert_eq!(approved["status"], "True");
    assert_eq!(approved["reason"], "KubectlApprove");
    assert!(approved["lastUpdateTime"].is_string(), "{csr:#}");
    assert!(approved["lastTransitionTime"].is_string(), "{csr:#}");

    // The certificate lives as long as asked: a day, less the 5 minutes it is
    // backdated (not the signer's default year).
    let cert = certificate_of(&csr);
    assert!(valid_for(&cert, 86_100 - 300), "{cert}");
    assert!(!valid_for(&cert, 86_100 + 60), "{cert}");

    let kubeconfig = kubeconfig_with(&s, "myuser.yaml", &cert, &key);
    let out = ok(&s, &kubeconfig, &["auth", "whoami"]);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(lines.contains(&vec!["Username", "myuser"]), "{out}");
    assert!(
        lines.contains(&vec!["Groups", "[devs", "ops", "system:authenticated]"]),
        "{out}"
    );
    // Authenticated, not authorized: nothing was granted to myuser.
    let o = s.kubectl_as(&kubeconfig, &["get", "pods"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("User \"myuser\" cannot list resource \"pods\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_denied_request_shows_denied_and_never_gets_a_certificate() {
    let s = TestServer::start();
    let (_, request) = key_and_request("nope", &[]);
    s.apply(&manifest(
        "nope",
        &request,
        CLIENT_SIGNER,
        &["client auth"],
        "",
    ));
    let out = s.kubectl_ok(&["certificate", "deny", "nope"]);
    assert_eq!(
        out.trim(),
        "certificatesigningrequest.certificates.k8s.io/nope denied"
    );
    assert_eq!(condition_column(&s, "nope"), "Denied");
    // kubectl will not approve it; the server refuses it too (422): Approved and
    // Denied exclude each other.
    let o = s.kubectl(&["certificate", "approve", "nope"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("is already Denied"), "{}", stderr(&o));
    let mut both = csr_json(&s, "nope");
    both["status"]["conditions"]
        .as_array_mut()
        .expect("conditions")
        .push(serde_json::json!({"type": "Approved", "status": "True", "reason": "Sneaky"}));
    let (code, text) = s.curl_admin(
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/nope/approval",
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "-d",
            &both.to_string(),
        ],
    );
    assert_eq!(code, 422, "{text}");
    let status: Value = serde_json::from_str(&text).expect("a Status");
    assert_eq!(
        status["message"],
        "CertificateSigningRequest.certificates.k8s.io \"nope\" is invalid: status.conditions[1].type: Invalid value: \"Approved\": Approved and Denied conditions are mutually exclusive"
    );
    // A request approved after it is issued, so the signer has looked at both.
    let (_, request) = key_and_request("accepted", &[]);
    s.apply(&manifest(
        "accepted",
        &request,
        CLIENT_SIGNER,
        &["client auth"],
        "",
    ));
    s.kubectl_ok(&["certificate", "approve", "accepted"]);
    wait_for(&s, "accepted", "issuing", issued);
    let csr = csr_json(&s, "nope");
    assert!(!issued(&csr), "{csr:#}");
    assert_eq!(csr["status"]["conditions"][0]["type"], "Denied");
    assert_eq!(csr["status"]["conditions"][0]["reason"], "KubectlDeny");
    assert_eq!(condition_column(&s, "nope"), "Denied");
}

#[test]
fn approving_takes_the_approve_verb_on_the_signer() {
    let s = TestServer::start();
    s.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: csr-clerk\nrules:\n- apiGroups: [certificates.k8s.io]\n  resources: [certificatesigningrequests]\n  verbs: [get, list, watch]\n- apiGroups: [certificates.k8s.io]\n  resources: [certificatesigningrequests/approval]\n  verbs: [update]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: csr-clerk\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: csr-clerk\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: clerk\n",
    );
    let clerk = s.signed_kubeconfig("clerk.yaml", "clerk", &[]);
    let (_, request) = key_and_request("app", &[]);
    s.apply(&manifest(
        "app",
        &request,
        CLIENT_SIGNER,
        &["client auth"],
        "",
    ));
    let (_, request) = key_and_request("custom", &[]);
    s.apply(&manifest(
        "custom",
        &request,
        "example.com/team-signer",
        &["client auth"],
        "",
    ));

    let o = s.kubectl_as(&clerk, &["certificate", "approve", "app"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(
            "Error from server (Forbidden): certificatesigningrequests.certificates.k8s.io \"app\" is forbidden: user not permitted to approve requests with signerName \"kubernetes.io/kube-apiserver-client\""
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(condition_column(&s, "app"), "Pending");

    // Kubernetes' default approver role for the signer, and a domain wildcard.
    s.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: clerk-approves-clients\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: system:certificates.k8s.io:kube-apiserver-client-approver\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: clerk\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: example-approver\nrules:\n- apiGroups: [certificates.k8s.io]\n  resources: [signers]\n  resourceNames: [\"example.com/*\"]\n  verbs: [approve]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: clerk-approves-example\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: example-approver\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: clerk\n",
    );
    let approve = |name: &str| {
        let start = Instant::now();
        loop {
            let o = s.kubectl_as(&clerk, &["certificate", "approve", name]);
            if o.status.success() {
                return stdout(&o);
            }
            // The bindings reach the authorizer through the watch cache.
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "clerk still cannot approve {name}: {}",
                stderr(&o)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(
        approve("app").trim(),
        "certificatesigningrequest.certificates.k8s.io/app approved"
    );
    wait_for(&s, "app", "issuing", issued);
    approve("custom");
    assert_eq!(condition_column(&s, "custom"), "Approved");
}

#[test]
fn invalid_requests_are_refused_with_kubernetes_field_errors() {
    let s = TestServer::start();
    let o = s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&manifest("bad", "hi", CLIENT_SIGNER, &["client auth"], "")),
    );
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains(
            "The CertificateSigningRequest \"bad\" is invalid: spec.request: Invalid value: []byte{0x68, 0x69}: PEM block type must be CERTIFICATE REQUEST"
        ),
        "{}",
        stderr(&o)
    );

    let (_, request) = key_and_request("short", &[]);
    let o = s.kubectl_stdin(
        &["create", "-f", "-"],
        Some(&manifest(
            "short",
            &request,
            "kubernetes.io",
            &["client auth", "client auth"],
            "  expirationSeconds: 60\n",
        )),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    for want in [
        "spec.usages[1]: Duplicate value: \"client auth\"",
        "spec.signerName: Invalid value: \"kubernetes.io\": must be a fully qualified domain and path of the form 'example.com/signer-name'",
        "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)",
    ] {
        assert!(err.contains(want), "want {want:?} in:\n{err}");
    }

    // The HTTP answer: 422 with the field in the causes.
    let body = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "raw"},
        "spec": {"request": b64("hi"), "signerName": CLIENT_SIGNER, "usages": ["client auth"]},
    })
    .to_string();
    let (code, text) = s.curl_admin(
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
        ],
    );
    assert_eq!(code, 422, "{text}");
    let status: Value = serde_json::from_str(&text).expect("a Status");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.request");
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "FieldValueInvalid"
    );

    // A missing request is a validation error; one that is not base64 cannot be
    // decoded at all (400), as kube-apiserver answers.
    let post = |spec: Value| {
        let body = serde_json::json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": "raw"},
            "spec": spec,
        })
        .to_string();
        s.curl_admin(
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                &body,
            ],
        )
    };
    let (code, text) =
        post(serde_json::json!({"usages": ["client auth"], "signerName": CLIENT_SIGNER}));
    assert_eq!(code, 422, "{text}");
    assert!(
        text.contains(
            "spec.request: Invalid value: []byte(nil): PEM block type must be CERTIFICATE REQUEST"
        ),
        "{text}"
    );
    let (code, text) = post(
        serde_json::json!({"request": "not base64!", "usages": ["client auth"], "signerName": CLIENT_SIGNER}),
    );
    assert_eq!(code, 400, "{text}");
    assert!(
        text.contains("illegal base64 data at input byte 3"),
        "{text}"
    );
}

#[test]
fn the_requester_is_recorded_by_the_server_and_cannot_be_forged() {
    let s = TestServer::start();
    s.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: csr-requester\nrules:\n- apiGroups: [certificates.k8s.io]\n  resources: [certificatesigningrequests]\n  verbs: [create, get, list]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: csr-requester\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: csr-requester\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: alice\n",
    );
    let alice = s.signed_kubeconfig("alice.yaml", "alice", &["dev"]);
    let (_, request) = key_and_request("alice", &[]);
    let forged = manifest(
        "alice",
        &request,
        CLIENT_SIGNER,
        &["client auth"],
        "  username: system:admin\n  uid: \"0\"\n  groups:\n  - system:masters\n",
    );
    let path = s.data_dir().join("forged.yaml");
    std::fs::write(&path, forged).expect("write the manifest");
    let start = Instant::now();
    loop {
        let o = s.kubectl_as(&alice, &["create", "-f", path.to_str().expect("utf8")]);
        if o.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "alice cannot create: {}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let csr = csr_json(&s, "alice");
    assert_eq!(csr["spec"]["username"], "alice", "{csr:#}");
    assert_eq!(
        csr["spec"]["groups"],
        serde_json::json!(["dev", "system:authenticated"])
    );
    assert!(csr["spec"].get("uid").is_none(), "{csr:#}");
    let row = s.kubectl_ok(&["get", "csr", "alice", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(3), Some("alice"), "{row}");

    // The spec never changes after create, whoever writes it.
    s.kubectl_ok(&[
        "patch",
        "csr",
        "alice",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"team":"a"}},"spec":{"username":"mallory","signerName":"example.com/other"}}"#,
    ]);
    let csr = csr_json(&s, "alice");
    assert_eq!(csr["spec"]["username"], "alice");
    assert_eq!(csr["spec"]["signerName"], CLIENT_SIGNER);
    assert_eq!(csr["metadata"]["labels"]["team"], "a");
}

#[test]
fn system_masters_through_the_client_signer_is_forbidden() {
    let s = TestServer::start();
    let (_, request) = key_and_request("root", &["system:masters"]);
    let o = s.kubectl_stdin(
        &["create", "-f", "-"],
        Some(&manifest(
            "root",
            &request,
            CLIENT_SIGNER,
            &["client auth"],
            "",
        )),
    );
    assert!(!o.status.success(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.starts_with("Error from server (Forbidden)"), "{err}");
    assert!(
        err.contains(
            "certificatesigningrequests.certificates.k8s.io \"root\" is forbidden: use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"
        ),
        "{err}"
    );
    let o = s.kubectl(&["get", "csr", "root"]);
    assert!(!o.status.success());
}

#[test]
fn the_signer_fails_what_it_refuses_and_leaves_other_signers_alone() {
    let s = TestServer::start();
    let (_, request) = key_and_request("other", &[]);
    s.apply(&manifest(
        "other",
        &request,
        "example.com/my-signer",
        &["client auth"],
        "",
    ));
    let (_, request) = key_and_request("serving", &[]);
    s.apply(&manifest(
        "serving",
        &request,
        CLIENT_SIGNER,
        &["server auth", "client auth"],
        "",
    ));
    let (_, request) = key_and_request("fine", &[]);
    s.apply(&manifest(
        "fine",
        &request,
        CLIENT_SIGNER,
        &["client auth"],
        "",
    ));
    for name in ["other", "serving", "fine"] {
        s.kubectl_ok(&["certificate", "approve", name]);
    }
    let failed = wait_for(&s, "serving", "failing", |c| {
        c["status"]["conditions"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x["type"] == "Failed"))
    });
    let f = &failed["status"]["conditions"][1];
    assert_eq!(f["type"], "Failed");
    assert_eq!(f["status"], "True");
    assert_eq!(f["reason"], "SignerValidationFailure");
    assert_eq!(
        f["message"],
        "invalid usage for client certificate: server auth"
    );
    assert!(!issued(&failed));
    assert_eq!(condition_column(&s, "serving"), "Approved,Failed");

    wait_for(&s, "fine", "issuing", issued);
    // Approved before "fine" was issued, and still waiting for its own signer.
    let other = csr_json(&s, "other");
    assert!(!issued(&other), "{other:#}");
    assert_eq!(
        other["status"]["conditions"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(condition_column(&s, "other"), "Approved");
}

#[test]
fn writing_a_certificate_takes_the_sign_verb_on_the_signer() {
    let s = TestServer::start();
    s.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: ext-signer\nrules:\n- apiGroups: [certificates.k8s.io]\n  resources: [certificatesigningrequests]\n  verbs: [get, list, watch]\n- apiGroups: [certificates.k8s.io]\n  resources: [certificatesigningrequests/status]\n  verbs: [update]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: ext-signer\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: ext-signer\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: signer-bot\n",
    );
    s.signed_kubeconfig("bot.yaml", "signer-bot", &[]);
    let (crt, key) = (s.data_dir().join("bot.crt"), s.data_dir().join("bot.key"));
    let put_status = |name: &str, body: &Value| {
        s.curl(
            &format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}/status"),
            &[
                "--cert",
                crt.to_str().expect("utf8"),
                "--key",
                key.to_str().expect("utf8"),
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/json",
                "-d",
                &body.to_string(),
            ],
        )
    };
    let (_, request) = key_and_request("ext", &[]);
    s.apply(&manifest(
        "ext",
        &request,
        "example.com/ext-signer",
        &["client auth"],
        "",
    ));
    s.kubectl_ok(&["certificate", "approve", "ext"]);
    let issued_elsewhere = rcgen::generate_simple_self_signed(vec!["ext".into()])
        .expect("a certificate")
        .cert
        .pem();
    let mut with_cert = csr_json(&s, "ext");
    with_cert["status"]["certificate"] = b64(&issued_elsewhere).into();

    // Allowed to write the status, not to sign for the signer.
    let start = Instant::now();
    let (code, text) = loop {
        let (code, text) = put_status("ext", &with_cert);
        // The binding reaches the authorizer through the watch cache.
        if code != 403 || text.contains("signerName") || start.elapsed() > Duration::from_secs(10) {
            break (code, text);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 403, "{text}");
    let status: Value = serde_json::from_str(&text).expect("a Status");
    assert_eq!(
        status["message"],
        "certificatesigningrequests.certificates.k8s.io \"ext\" is forbidden: user not permitted to sign requests with signerName \"example.com/ext-signer\""
    );
    assert_eq!(condition_column(&s, "ext"), "Approved");

    s.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: ext-signer-sign\nrules:\n- apiGroups: [certificates.k8s.io]\n  resources: [signers]\n  resourceNames: [example.com/ext-signer]\n  verbs: [sign]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: ext-signer-sign\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: ext-signer-sign\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: signer-bot\n",
    );
    let start = Instant::now();
    loop {
        let (code, text) = put_status("ext", &with_cert);
        if code == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "signer-bot still cannot sign: {code} {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(condition_column(&s, "ext"), "Approved,Issued");
    assert_eq!(certificate_of(&csr_json(&s, "ext")), issued_elsewhere);

    // A signer cannot approve through the status: 422.
    let (_, request) = key_and_request("pending", &[]);
    s.apply(&manifest(
        "pending",
        &request,
        "example.com/ext-signer",
        &["client auth"],
        "",
    ));
    let mut self_approved = csr_json(&s, "pending");
    self_approved["status"]["conditions"] =
        serde_json::json!([{"type": "Approved", "status": "True", "reason": "Self"}]);
    let (code, text) = put_status("pending", &self_approved);
    assert_eq!(code, 422, "{text}");
    assert!(
        text.contains(
            "status.conditions: Forbidden: updates may not add a condition of type \\\"Approved\\\""
        ),
        "{text}"
    );
    assert_eq!(condition_column(&s, "pending"), "Pending");
}
