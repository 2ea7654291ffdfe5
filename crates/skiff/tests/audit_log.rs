//! The audit log against the real binary (`--audit-policy-file`, `--audit-log-path`):
//! kubectl's requests appear as `audit.k8s.io/v1` events, one JSON line per stage,
//! at the level the first matching policy rule gives; the audit ID is the response's
//! `Audit-Id`; rules at level None and omitted stages write nothing; a policy file
//! that does not load stops `skiff server` with a one-line error.

#[path = "support/server.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Options, TestServer};

/// Metadata for most, Request for configmaps, nothing for one user and for health
/// checks, no RequestReceived stage for secrets.
const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    users: ["quiet-user"]
  - level: None
    nonResourceURLs: ["/healthz*", "/livez*", "/readyz*"]
  - level: Request
    resources:
      - group: ""
        resources: ["configmaps"]
  - level: Metadata
    omitStages: ["RequestReceived"]
    resources:
      - group: ""
        resources: ["secrets"]
  - level: Metadata
"#;

/// A server with the audit policy above; fields drop in order, the server first.
struct Audited {
    server: TestServer,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn start() -> Audited {
    let dir = tempfile::Builder::new()
        .prefix("skiff-audit-")
        .tempdir()
        .expect("temp dir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("write the policy");
    let log = dir.path().join("logs/audit.log");
    let server = TestServer::start_with(Options {
        args: vec![
            "--audit-policy-file".into(),
            policy.display().to_string(),
            "--audit-log-path".into(),
            log.display().to_string(),
        ],
    });
    Audited {
        server,
        log,
        _dir: dir,
    }
}

fn read_events(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The events `pick` selects, once there are at least `n` of them (the writer
/// runs in the background).
fn events_where(log: &Path, n: usize, pick: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<Value> = read_events(log).into_iter().filter(|e| pick(e)).collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "wanted {n} events, found {}: {found:#?}",
            found.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stages(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["stage"].as_str()).collect()
}

/// A namespace only this test uses.
fn namespace(s: &TestServer, prefix: &str) -> String {
    let ns = format!("{prefix}-{}", std::process::id());
    s.kubectl_ok(&["create", "namespace", &ns]);
    ns
}

fn is(e: &Value, verb: &str, resource: &str, ns: &str) -> bool {
    e["verb"] == verb && e["objectRef"]["resource"] == resource && e["objectRef"]["namespace"] == ns
}

/// A request of kubectl's (the admin kubeconfig), not of the controllers (which
/// make `kube-root-ca.crt` in every namespace).
fn by_kubectl(e: &Value) -> bool {
    e["user"]["username"] == "system:admin"
}

#[test]
fn kubectl_create_configmap_is_logged_when_received_and_when_complete() {
    let a = start();
    let ns = namespace(&a.server, "audit-create");
    a.server.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        &ns,
        "--from-literal=color=blue",
    ]);
    let events = events_where(&a.log, 2, |e| {
        by_kubectl(e) && is(e, "create", "configmaps", &ns)
    });
    assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
    assert_eq!(events[0]["auditID"], events[1]["auditID"]);
    for e in &events {
        assert_eq!(e["kind"], "Event");
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(e["level"], "Request");
        assert_eq!(e["user"]["username"], "system:admin");
        assert!(
            e["user"]["groups"]
                .as_array()
                .is_some_and(|g| g.contains(&json!("system:masters"))),
            "{e}"
        );
        assert_eq!(e["sourceIPs"], json!(["127.0.0.1"]));
        assert!(
            e["userAgent"]
                .as_str()
                .is_some_and(|ua| ua.starts_with("kubectl/")),
            "{e}"
        );
        assert_eq!(e["objectRef"]["apiVersion"], "v1");
        assert!(
            e["requestURI"]
                .as_str()
                .is_some_and(|u| u.starts_with(&format!("/api/v1/namespaces/{ns}/configmaps"))),
            "{e}"
        );
    }
    assert!(events[0].get("responseStatus").is_none());
    assert_eq!(
        events[0]["stageTimestamp"],
        events[0]["requestReceivedTimestamp"]
    );
    let done = &events[1];
    assert_eq!(done["responseStatus"], json!({"metadata": {}, "code": 201}));
    assert!(done["stageTimestamp"].as_str() >= done["requestReceivedTimestamp"].as_str());
    assert!(
        done.get("responseObject").is_none(),
        "Request level keeps no response"
    );
}

#[test]
fn the_request_level_records_the_created_object_and_its_name() {
    let a = start();
    let ns = namespace(&a.server, "audit-body");
    a.server.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        &ns,
        "--from-literal=color=blue",
    ]);
    let events = events_where(&a.log, 2, |e| {
        by_kubectl(e) && is(e, "create", "configmaps", &ns)
    });
    let done = &events[1];
    assert_eq!(done["objectRef"]["name"], "settings", "{done}");
    assert_eq!(done["requestObject"]["kind"], "ConfigMap", "{done}");
    assert_eq!(done["requestObject"]["data"]["color"], "blue");
    assert_eq!(
        done["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    assert!(
        events[0].get("requestObject").is_none(),
        "not at RequestReceived"
    );
}

#[test]
fn a_secret_get_at_metadata_has_no_bodies_and_no_omitted_stage() {
    let a = start();
    let ns = namespace(&a.server, "audit-secret");
    a.server.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "token",
        "-n",
        &ns,
        "--from-literal=k=hush",
    ]);
    a.server
        .kubectl_ok(&["get", "secret", "token", "-n", &ns, "-o", "json"]);
    let gets = events_where(&a.log, 1, |e| is(e, "get", "secrets", &ns));
    assert_eq!(
        stages(&gets),
        ["ResponseComplete"],
        "RequestReceived is omitted"
    );
    let get = &gets[0];
    assert_eq!(get["level"], "Metadata");
    assert_eq!(get["objectRef"]["name"], "token");
    assert_eq!(get["responseStatus"]["code"], 200);
    assert!(get.get("requestObject").is_none());
    assert!(get.get("responseObject").is_none());
    let creates = events_where(&a.log, 1, |e| is(e, "create", "secrets", &ns));
    assert_eq!(stages(&creates), ["ResponseComplete"]);
    assert!(
        !std::fs::read_to_string(&a.log)
            .expect("the log")
            .contains("aHVzaA=="),
        "the secret's value is nowhere in the log"
    );
}

#[test]
fn a_forbidden_request_is_logged_with_403_and_the_forbid_decision() {
    let a = start();
    let ns = namespace(&a.server, "audit-forbid");
    let eve = a.server.signed_kubeconfig("eve.yaml", "eve", &["testers"]);
    let o = a.server.kubectl_as(&eve, &["get", "configmaps", "-n", &ns]);
    assert!(!o.status.success(), "eve holds no rights");
    let events = events_where(&a.log, 2, |e| {
        e["user"]["username"] == "eve" && is(e, "list", "configmaps", &ns)
    });
    let done = events
        .iter()
        .find(|e| e["stage"] == "ResponseComplete")
        .expect("a ResponseComplete event");
    assert_eq!(done["responseStatus"]["code"], 403);
    assert_eq!(done["responseStatus"]["reason"], "Forbidden");
    assert_eq!(done["responseStatus"]["status"], "Failure");
    assert!(
        done["responseStatus"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("User \"eve\" cannot list resource \"configmaps\"")),
        "{done}"
    );
    assert_eq!(
        done["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    assert!(
        done["annotations"]
            .get("authorization.k8s.io/reason")
            .is_some()
    );
}

#[test]
fn level_none_logs_nothing_for_its_user_and_for_health_checks() {
    let a = start();
    let ns = namespace(&a.server, "audit-none");
    let quiet = a
        .server
        .signed_kubeconfig("quiet.yaml", "quiet-user", &["testers"]);
    let loud = a
        .server
        .signed_kubeconfig("loud.yaml", "loud-user", &["testers"]);
    let _ = a
        .server
        .kubectl_as(&quiet, &["get", "configmaps", "-n", &ns]);
    let _ = a
        .server
        .kubectl_as(&loud, &["get", "configmaps", "-n", &ns]);
    let (code, _) = a.server.curl("/healthz", &[]);
    assert_eq!(code, 200);
    // Once the later request is in the log, the earlier one would be too.
    events_where(&a.log, 1, |e| e["user"]["username"] == "loud-user");
    let all = read_events(&a.log);
    assert!(
        !all.iter().any(|e| e["user"]["username"] == "quiet-user"),
        "quiet-user is not audited"
    );
    assert!(
        !all.iter().any(|e| e["requestURI"]
            .as_str()
            .is_some_and(|u| u.starts_with("/healthz") || u.starts_with("/readyz"))),
        "health checks are not audited"
    );
}

#[test]
fn the_audit_id_is_the_one_in_the_responses_audit_id_header() {
    let a = start();
    let ns = namespace(&a.server, "audit-id");
    let (code, text) = a.server.curl_admin(
        &format!("/api/v1/namespaces/{ns}/configmaps"),
        &[
            "-i",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"by-curl"}}"#,
        ],
    );
    assert_eq!(code, 201, "{text}");
    let id = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("audit-id")
                .then(|| v.trim().to_string())
        })
        .expect("an Audit-Id header");
    let events = events_where(&a.log, 2, |e| e["auditID"] == id.as_str());
    assert_eq!(stages(&events), ["RequestReceived", "ResponseComplete"]);
    assert!(is(&events[1], "create", "configmaps", &ns));

    // An Audit-ID the client sends is kept, as kube-apiserver keeps it.
    let (code, text) = a.server.curl_admin(
        &format!("/api/v1/namespaces/{ns}/configmaps"),
        &["-i", "-H", "Audit-ID: chosen-by-client-1"],
    );
    assert_eq!(code, 200);
    assert!(
        text.to_ascii_lowercase()
            .contains("audit-id: chosen-by-client-1"),
        "{text}"
    );
    let events = events_where(&a.log, 2, |e| e["auditID"] == "chosen-by-client-1");
    assert_eq!(events[1]["verb"], "list");
}

#[test]
fn a_watch_is_logged_when_it_starts_and_when_it_ends() {
    let a = start();
    let ns = namespace(&a.server, "audit-watch");
    // curl gives up after a second; the watch then ends on the server's side.
    let (_, text) = a.server.curl_admin(
        &format!("/api/v1/namespaces/{ns}/configmaps?watch=true"),
        &["--max-time", "1"],
    );
    assert!(!text.contains("\"Failure\""), "{text}");
    let events = events_where(&a.log, 3, |e| {
        by_kubectl(e) && is(e, "watch", "configmaps", &ns)
    });
    assert_eq!(
        stages(&events),
        ["RequestReceived", "ResponseStarted", "ResponseComplete"]
    );
    assert_eq!(events[1]["responseStatus"]["code"], 200);
    assert!(events.iter().all(|e| e.get("responseObject").is_none()));
    assert!(events[2]["stageTimestamp"].as_str() > events[1]["stageTimestamp"].as_str());
}

#[test]
fn an_audit_log_path_without_a_policy_logs_nothing_and_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("audit.log");
    let s = TestServer::start_with(Options {
        args: vec!["--audit-log-path".into(), log.display().to_string()],
    });
    s.kubectl_ok(&["get", "namespaces"]);
    assert!(
        s.log()
            .contains("without --audit-policy-file: no audit events will be written"),
        "{}",
        s.log()
    );
    assert!(read_events(&log).is_empty());
}

#[test]
fn a_policy_file_that_does_not_load_stops_the_server_with_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Everything\n",
    )
    .expect("write the policy");
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("server")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--https-listen-port", "0", "--bind-address", "127.0.0.1"])
        .arg("--disable-agent")
        .arg("--audit-policy-file")
        .arg(&policy)
        .env("SKIFF_LOG", "info")
        .output()
        .expect("run skiff server");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: --audit-policy-file {}: ",
            policy.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("rules[0].level: Unsupported value: \"Everything\""),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists(), "nothing was set up");
}
