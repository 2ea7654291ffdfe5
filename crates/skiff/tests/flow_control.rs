//! API Priority and Fairness against the real binary: Kubernetes' default
//! FlowSchemas and PriorityLevelConfigurations exist and print as kubectl prints
//! them; every response names the schema and level that served it; a user whose
//! priority level is full waits in its queue, is refused with 429 and Retry-After
//! once the queue is full too, and gets served when seats free up, while another
//! user is not held up at all.

#[path = "support/server.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::TestServer;

/// Columns of the row of `name` in kubectl's table output.
fn row(table: &str, name: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
}

struct User {
    kubeconfig: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn user(s: &TestServer, name: &str) -> User {
    let kubeconfig = s.signed_kubeconfig(&format!("{name}.yaml"), name, &[]);
    User {
        cert: kubeconfig.with_extension("crt"),
        key: kubeconfig.with_extension("key"),
        kubeconfig,
    }
}

fn curl_args(s: &TestServer, u: &User, path: &str) -> Vec<String> {
    vec![
        "-sk".into(),
        "--max-time".into(),
        "60".into(),
        "--cert".into(),
        u.cert.display().to_string(),
        "--key".into(),
        u.key.display().to_string(),
        format!("https://127.0.0.1:{}{path}", s.port),
    ]
}

/// `curl -i` as `u`: (status code, headers and body).
fn curl_as(s: &TestServer, u: &User, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .arg("-i")
        .args(curl_args(s, u, path))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A create whose body never finishes arriving: it holds its seat until killed.
struct StalledUpload(Child);

impl StalledUpload {
    fn start(s: &TestServer, u: &User) -> Self {
        let child = Command::new("curl")
            .args([
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-H",
                "Expect:",
            ])
            .args(["-T", "-"])
            .args(curl_args(s, u, "/api/v1/namespaces/default/configmaps"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("curl");
        Self(child)
    }
}

impl Drop for StalledUpload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn metric(s: &TestServer, line_prefix: &str) -> Option<u64> {
    let (code, text) = s.curl_admin("/metrics", &[]);
    assert_eq!(code, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn uid(s: &TestServer, kind: &str, name: &str) -> String {
    s.kubectl_ok(&["get", kind, name, "-o", "jsonpath={.metadata.uid}"])
}

fn kubectl_as_ok(s: &TestServer, kubeconfig: &Path, args: &[&str]) -> String {
    let o = s.kubectl_as(kubeconfig, args);
    assert!(
        o.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn kubernetes_default_flow_schemas_and_priority_levels_exist_and_name_every_response() {
    let s = TestServer::start();
    let schemas = s.kubectl_ok(&["get", "flowschemas"]);
    assert_eq!(
        row(&schemas, "NAME"),
        [
            "NAME",
            "PRIORITYLEVEL",
            "MATCHINGPRECEDENCE",
            "DISTINGUISHERMETHOD",
            "AGE",
            "MISSINGPL"
        ]
    );
    let global = row(&schemas, "global-default");
    assert_eq!(global[1..4], ["global-default", "9900", "ByUser"]);
    assert_eq!(row(&schemas, "exempt")[1..4], ["exempt", "1", "<none>"]);
    assert_eq!(
        row(&schemas, "system-nodes")[1..4],
        ["system", "500", "ByUser"]
    );
    let levels = s.kubectl_ok(&["get", "prioritylevelconfigurations"]);
    assert_eq!(
        row(&levels, "global-default")[1..6],
        ["Limited", "20", "128", "6", "50"]
    );
    assert_eq!(
        row(&levels, "catch-all")[1..6],
        ["Limited", "5", "<none>", "<none>", "<none>"]
    );
    assert_eq!(
        row(&levels, "exempt")[1..6],
        ["Exempt", "<none>", "<none>", "<none>", "<none>"]
    );

    // Each schema says whether its priority level exists (MISSINGPL).
    eventually(
        "the Dangling conditions are set",
        Duration::from_secs(10),
        || {
            let t = s.kubectl_ok(&["get", "flowschemas"]);
            row(&t, "global-default")[5] == "False"
        },
    );
    s.apply(
        r#"apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: orphan}
spec:
  priorityLevelConfiguration: {name: nowhere}
  rules:
  - subjects: [{kind: User, user: {name: nobody}}]
    nonResourceRules: [{verbs: ["get"], nonResourceURLs: ["/nothing"]}]
"#,
    );
    eventually(
        "a schema without its level is Dangling",
        Duration::from_secs(10),
        || {
            let t = s.kubectl_ok(&["get", "flowschemas"]);
            let orphan = row(&t, "orphan");
            orphan[2] == "1000" && orphan[5] == "True"
        },
    );
    // Bad configurations are refused with Kubernetes' field errors.
    let o = s.kubectl_stdin(
        &["create", "-f", "-"],
        Some(
            r#"apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {name: lopsided}
spec:
  type: Limited
  limited:
    limitResponse:
      type: Queue
      queuing: {queues: 2, handSize: 8, queueLengthLimit: 5}
"#,
        ),
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains(
            "spec.limited.limitResponse.queuing.handSize: Invalid value: 8: should not be greater than queues (2)"
        ),
        "{stderr}"
    );

    // An ordinary user is served by global-default; the administrator
    // (system:masters) by exempt. Refusals name them too.
    let jane = user(&s, "jane");
    let (code, response) = curl_as(&s, &jane, "/api/v1/namespaces/default/configmaps");
    assert_eq!(code, 403, "{response}");
    assert_eq!(
        header(&response, "X-Kubernetes-PF-FlowSchema-UID"),
        Some(uid(&s, "flowschema", "global-default").as_str()),
        "{response}"
    );
    assert_eq!(
        header(&response, "X-Kubernetes-PF-PriorityLevel-UID"),
        Some(uid(&s, "prioritylevelconfiguration", "global-default").as_str()),
        "{response}"
    );
    let (code, response) = s.curl_admin("/api/v1/namespaces/default/configmaps", &["-i"]);
    assert_eq!(code, 200, "{response}");
    assert_eq!(
        header(&response, "X-Kubernetes-PF-FlowSchema-UID"),
        Some(uid(&s, "flowschema", "exempt").as_str()),
        "{response}"
    );
}

#[test]
fn a_user_flooding_its_priority_level_queues_then_gets_429_while_others_are_served() {
    let s = TestServer::start();
    let flooder = user(&s, "flooder");
    let calm = user(&s, "calm");
    s.apply(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: apf-test-edit}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: flooder}
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: calm}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {name: tiny}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 1
    limitResponse:
      type: Queue
      queuing: {queues: 1, handSize: 1, queueLengthLimit: 1}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: flooder}
spec:
  priorityLevelConfiguration: {name: tiny}
  matchingPrecedence: 100
  distinguisherMethod: {type: ByUser}
  rules:
  - subjects: [{kind: User, user: {name: flooder}}]
    resourceRules:
    - {verbs: ["*"], apiGroups: ["*"], resources: ["*"], clusterScope: true, namespaces: ["*"]}
"#,
    );
    let tiny = uid(&s, "prioritylevelconfiguration", "tiny");
    eventually(
        "the flooder's requests go to the tiny level",
        Duration::from_secs(10),
        || {
            let (_, r) = curl_as(&s, &flooder, "/api/v1/namespaces/default/configmaps");
            header(&r, "X-Kubernetes-PF-PriorityLevel-UID") == Some(tiny.as_str())
        },
    );
    let seats = metric(
        &s,
        "apiserver_flowcontrol_nominal_limit_seats{priority_level=\"tiny\"} ",
    )
    .expect("tiny's seats in /metrics");
    assert!((1..=10).contains(&seats), "{seats}");

    // Hold every seat of the level with creates whose bodies never arrive.
    let mut holders: Vec<StalledUpload> = (0..seats)
        .map(|_| StalledUpload::start(&s, &flooder))
        .collect();
    let executing = "apiserver_flowcontrol_current_executing_seats{priority_level=\"tiny\"} ";
    eventually("the seats are taken", Duration::from_secs(10), || {
        metric(&s, executing) == Some(seats)
    });

    // The next request waits in the level's only queue...
    let queued = {
        let args = curl_args(&s, &flooder, "/api/v1/namespaces/default/configmaps");
        std::thread::spawn(move || {
            let out = Command::new("curl")
                .args(["-o", "/dev/null", "-w", "%{http_code}"])
                .args(args)
                .output()
                .expect("curl");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let inqueue = "apiserver_flowcontrol_current_inqueue_requests{priority_level=\"tiny\"} ";
    eventually(
        "a request waits in the queue",
        Duration::from_secs(10),
        || metric(&s, inqueue) == Some(1),
    );

    // ... and one more finds the queue full: 429 with Retry-After, as Kubernetes.
    let (code, response) = curl_as(&s, &flooder, "/api/v1/namespaces/default/configmaps");
    assert_eq!(code, 429, "{response}");
    assert!(header(&response, "Retry-After").is_some(), "{response}");
    assert!(
        response.contains(r#""reason":"TooManyRequests""#)
            && response.contains("Too many requests, please try again later."),
        "{response}"
    );
    assert_eq!(
        header(&response, "X-Kubernetes-PF-PriorityLevel-UID"),
        Some(tiny.as_str())
    );

    // Another user is not held up by the flooder.
    kubectl_as_ok(
        &s,
        &calm.kubeconfig,
        &["create", "configmap", "calm-1", "-n", "default"],
    );
    let listed = kubectl_as_ok(
        &s,
        &calm.kubeconfig,
        &["get", "configmaps", "-n", "default"],
    );
    assert!(listed.contains("calm-1"), "{listed}");

    // A seat frees up: the queued request is served.
    holders.pop();
    assert_eq!(queued.join().expect("queued request"), "200");
    let rejected = metric(
        &s,
        "apiserver_flowcontrol_rejected_requests_total{priority_level=\"tiny\",reason=\"queue-full\"} ",
    )
    .expect("rejections counted");
    assert!(rejected >= 1, "{rejected}");
    drop(holders);
    eventually("the seats are free again", Duration::from_secs(10), || {
        metric(&s, executing) == Some(0)
    });
}

#[test]
fn priority_and_fairness_can_be_switched_off() {
    let s = TestServer::start_with(support::Options {
        args: vec!["--enable-priority-and-fairness=false".into()],
    });
    let (code, response) = s.curl_admin("/api/v1/namespaces/default/configmaps", &["-i"]);
    assert_eq!(code, 200, "{response}");
    assert_eq!(header(&response, "X-Kubernetes-PF-FlowSchema-UID"), None);
    let schemas = s.kubectl_ok(&["get", "flowschemas"]);
    assert!(!schemas.contains("global-default"), "{schemas}");
}
