//! Dynamic admission control against the real binary: Validating and
//! MutatingWebhookConfigurations calling an HTTPS webhook served by the test
//! itself (on 127.0.0.1 only, with a certificate from a CA the test makes and
//! passes as `caBundle`). A denial reads as Kubernetes words it and stores
//! nothing; a JSONPatch shows in the stored object; failurePolicy, timeoutSeconds,
//! namespaceSelector, warnings, the AdmissionReview sent (caller, old object),
//! deletes, Service-resolved webhooks and configuration validation behave as in
//! Kubernetes.

#[path = "support/server.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use support::TestServer;

/// The webhook every configuration in these tests starts with: it refuses the
/// dry-run probe object, so a test knows when its configuration is in force.
const PROBE: &str = "probe.skiff.test";
/// The name of the probe object.
const PROBE_OBJECT: &str = "webhook-probe";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// One request the webhook served.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: String,
    review: Value,
}

/// An HTTPS admission webhook on 127.0.0.1; see [`respond`] for what each path does.
/// Stopped (its thread joined, its connections dropped) on drop.
struct WebhookServer {
    addr: SocketAddr,
    ca_pem: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebhookServer {
    /// Serves with a certificate for 127.0.0.1 and `dns_names`.
    fn start(dns_names: &[&str]) -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "admission webhook test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let mut names = vec!["127.0.0.1".to_string()];
        names.extend(dns_names.iter().map(|n| n.to_string()));
        let mut params = rcgen::CertificateParams::new(names).expect("serving names");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "admission webhook");
        let key = rcgen::KeyPair::generate().expect("serving key");
        let cert = params
            .signed_by(&key, &issuer)
            .expect("serving certificate");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("TLS config");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let record = seen.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(serve(listener, acceptor, record, stopped));
        });
        WebhookServer {
            addr,
            ca_pem: ca_cert.pem(),
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }

    fn client_config(&self, path: &str) -> Value {
        json!({"url": self.url(path), "caBundle": self.ca_bundle()})
    }

    /// The reviews received at `path` about objects named `name`.
    fn reviews(&self, path: &str, name: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|s| s.path == path && s.review["request"]["name"] == name)
            .cloned()
            .collect()
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    seen: Arc<Mutex<Vec<Seen>>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = &mut stopped => return,
        };
        let acceptor = acceptor.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| handle(req, seen.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use http_body_util::BodyExt as _;
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => bytes::Bytes::new(),
    };
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
        path: path.clone(),
        query,
        review: review.clone(),
    });
    if path == "/slow-deny" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let mut response = respond(&path, &review["request"]);
    response["uid"] = review["request"]["uid"].clone();
    let answer = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    });
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(
        answer.to_string(),
    )));
    resp.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn deny(code: u16, message: &str) -> Value {
    json!({"allowed": false, "status": {"code": code, "reason": "Forbidden", "message": message}})
}

/// The webhook's answer to a request at `path`.
fn respond(path: &str, request: &Value) -> Value {
    let object = if request["object"].is_object() {
        &request["object"]
    } else {
        &request["oldObject"]
    };
    let labels = &object["metadata"]["labels"];
    match path {
        "/deny-probe" if request["name"] == PROBE_OBJECT => deny(403, "the probe is refused"),
        "/deny-label" if labels.get("forbidden").is_some() => {
            deny(403, "the label \"forbidden\" is not allowed")
        }
        "/deny-all" | "/slow-deny" => deny(403, "nothing is allowed here"),
        "/protect" if labels["protected"] == "true" => {
            deny(403, "protected objects cannot be deleted")
        }
        "/warn" => json!({
            "allowed": true,
            "warnings": [format!("configmap {:?} has no owner", request["name"].as_str().unwrap_or_default())],
        }),
        "/add-label" => {
            let patch = if labels.is_object() {
                json!([{"op": "add", "path": "/metadata/labels/added-by", "value": "webhook"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {"added-by": "webhook"}}])
            };
            json!({
                "allowed": true,
                "patchType": "JSONPatch",
                "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string()),
            })
        }
        _ => json!({"allowed": true}),
    }
}

/// A rule for core/v1 `resources` on `operations`.
fn rule(operations: &[&str], resources: &[&str]) -> Value {
    json!({"operations": operations, "apiGroups": [""], "apiVersions": ["v1"], "resources": resources})
}

/// A webhook named `name` at `client` for `rules`, with `extra` fields on top.
fn webhook(name: &str, client: Value, rules: Value, extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "clientConfig": client,
        "rules": rules,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    if let (Some(m), Some(extra)) = (w.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    w
}

/// Creates a configuration of `kind` whose first webhook is the probe, then waits
/// until it is in force.
fn configure(s: &TestServer, hooks: &WebhookServer, kind: &str, name: &str, webhooks: Vec<Value>) {
    let mut all = vec![webhook(
        PROBE,
        hooks.client_config("/deny-probe"),
        json!([rule(&["CREATE"], &["configmaps"])]),
        json!({}),
    )];
    all.extend(webhooks);
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": all,
    });
    let out = s.kubectl_stdin(&["create", "-f", "-"], Some(&config.to_string()));
    assert!(
        out.status.success(),
        "creating {kind} {name}: {}",
        stderr(&out)
    );
    let probe = json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": PROBE_OBJECT, "namespace": "default"}})
    .to_string();
    let started = Instant::now();
    loop {
        let out = s.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], Some(&probe));
        if stderr(&out).contains(&format!("admission webhook \"{PROBE}\" denied the request")) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{kind} {name} never came into force: {}{}",
            stdout(&out),
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn configmap(name: &str, namespace: &str, labels: Value) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"k": "v"},
    })
    .to_string()
}

fn create(s: &TestServer, object: &str) -> Output {
    s.kubectl_stdin(&["create", "-f", "-"], Some(object))
}

fn labels_of(s: &TestServer, namespace: &str, name: &str) -> BTreeMap<String, String> {
    let out = s.kubectl_ok(&["get", "configmap", name, "-n", namespace, "-o", "json"]);
    let obj: Value = serde_json::from_str(&out).expect("JSON");
    serde_json::from_value(obj["metadata"]["labels"].clone()).unwrap_or_default()
}

fn exists(s: &TestServer, namespace: &str, name: &str) -> bool {
    s.kubectl(&["get", "configmap", name, "-n", namespace])
        .status
        .success()
}

/// POSTs a ConfigMap as the admin with curl; returns (HTTP code, body).
fn post_configmap(s: &TestServer, namespace: &str, body: &str) -> (u16, String) {
    s.curl_admin(
        &format!("/api/v1/namespaces/{namespace}/configmaps"),
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ],
    )
}

#[test]
fn a_validating_webhook_denial_reads_as_in_kubernetes_and_stores_nothing() {
    let s = TestServer::start();
    let hooks = WebhookServer::start(&[]);
    configure(
        &s,
        &hooks,
        "ValidatingWebhookConfiguration",
        "deny-forbidden-label",
        vec![webhook(
            "deny.skiff.test",
            hooks.client_config("/deny-label"),
            json!([rule(&["CREATE", "UPDATE"], &["configmaps"])]),
            json!({"failurePolicy": "Fail"}),
        )],
    );
    let out = create(
        &s,
        &configmap("bad", "default", json!({"forbidden": "yes"})),
    );
    assert!(!out.status.success(), "a forbidden label was admitted");
    let err = stderr(&out);
    assert!(
        err.contains(
            "Error from server (Forbidden): error when creating \"STDIN\": admission webhook \"deny.skiff.test\" denied the request: the label \"forbidden\" is not allowed"
        ),
        "{err}"
    );
    assert!(!exists(&s, "default", "bad"), "a denied object was stored");

    let (code, body) = post_configmap(
        &s,
        "default",
        &configmap("bad-too", "default", json!({"forbidden": "yes"})),
    );
    assert_eq!(code, 403, "{body}");
    let status: Value = serde_json::from_str(&body).expect("a Status");
    assert_eq!(status["kind"], "Status");
    assert_eq!(
        status["message"],
        "admission webhook \"deny.skiff.test\" denied the request: the label \"forbidden\" is not allowed"
    );

    let out = create(&s, &configmap("good", "default", json!({"team": "a"})));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(exists(&s, "default", "good"));
    // Updates are checked too.
    let out = s.kubectl(&["label", "configmap", "good", "forbidden=later"]);
    assert!(
        !out.status.success(),
        "an update adding the label was admitted"
    );
    assert!(
        stderr(&out).contains("admission webhook \"deny.skiff.test\" denied the request"),
        "{}",
        stderr(&out)
    );
    assert!(!labels_of(&s, "default", "good").contains_key("forbidden"));
}

#[test]
fn a_mutating_webhook_json_patch_shows_in_the_stored_object() {
    let s = TestServer::start();
    let hooks = WebhookServer::start(&[]);
    configure(
        &s,
        &hooks,
        "MutatingWebhookConfiguration",
        "add-label",
        vec![webhook(
            "add-label.skiff.test",
            hooks.client_config("/add-label"),
            json!([rule(&["CREATE"], &["configmaps"])]),
            json!({}),
        )],
    );
    let out = s.kubectl(&["create", "configmap", "plain", "--from-literal=a=b"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = create(&s, &configmap("labelled", "default", json!({"team": "a"})));
    assert!(out.status.success(), "{}", stderr(&out));

    let yaml = s.kubectl_ok(&["get", "configmap", "plain", "-o", "yaml"]);
    assert!(yaml.contains("added-by: webhook"), "{yaml}");
    assert_eq!(
        labels_of(&s, "default", "labelled"),
        BTreeMap::from([
            ("added-by".to_string(), "webhook".to_string()),
            ("team".to_string(), "a".to_string()),
        ])
    );
}

#[test]
fn the_failure_policy_decides_when_the_webhook_cannot_be_reached() {
    let s = TestServer::start();
    let hooks = WebhookServer::start(&[]);
    // A port nothing listens on any more.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    };
    let unreachable = json!({
        "url": format!("https://127.0.0.1:{closed}/validate"),
        "caBundle": hooks.ca_bundle(),
    });
    configure(
        &s,
        &hooks,
        "ValidatingWebhookConfiguration",
        "unreachable",
        vec![
            webhook(
                "closed-fail.skiff.test",
                unreachable.clone(),
                json!([rule(&["CREATE"], &["configmaps"])]),
                json!({"failurePolicy": "Fail", "objectSelector": {"matchLabels": {"policy": "fail"}}}),
            ),
            webhook(
                "closed-ignore.skiff.test",
                unreachable,
                json!([rule(&["CREATE"], &["configmaps"])]),
                json!({"failurePolicy": "Ignore", "objectSelector": {"matchLabels": {"policy": "ignore"}}}),
            ),
        ],
    );
    let out = create(
        &s,
        &configmap("failing", "default", json!({"policy": "fail"})),
    );
    assert!(!out.status.success(), "admitted without the webhook");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "Error from server (InternalError): error when creating \"STDIN\": Internal error occurred: failed calling webhook \"closed-fail.skiff.test\": failed to call webhook: Post \"https://127.0.0.1:{closed}/validate?timeout=10s\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
        )),
        "{err}"
    );
    let (code, _) = post_configmap(
        &s,
        "default",
        &configmap("failing-too", "default", json!({"policy": "fail"})),
    );
    assert_eq!(code, 500);
    assert!(!exists(&s, "default", "failing"));

    let out = create(
        &s,
        &configmap("ignored", "default", json!({"policy": "ignore"})),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(exists(&s, "default", "ignored"));
}

#[test]
fn timeout_seconds_is_honoured() {
    let s = TestServer::start();
    let hooks = WebhookServer::start(&[]);
    // The slow webhook denies after 3 s: with its 1 s timeout honoured that
    // denial never counts.
    configure(
        &s,
        &hooks,
        "ValidatingWebhookConfiguration",
        "slow",
        vec![
            webhook(
                "slow-fail.skiff.test",
                hooks.client_config("/slow-deny"),
                json!([rule(&["CREATE"], &["configmaps"])]),
                json!({"timeoutSeconds": 1, "failurePolicy": "Fail",
                       "objectSelector": {"matchLabels": {"policy": "fail"}}}),
            ),
            webhook(
                "slow-ignore.skiff.test",
                hooks.client_config("/slow-deny"),
                json!([rule(&["CREATE"], &["configmaps"])]),
                json!({"timeoutSeconds": 1, "failurePolicy": "Ignore",
                       "objectSelector": {"matchLabels": {"policy": "ignore"}}}),
            ),
        ],
    );
    let out = create(&s, &configmap("late", "default", json!({"policy": "fail"})));
    assert!(!out.status.success(), "admitted past a failing webhook");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "Internal error occurred: failed calling webhook \"slow-fail.skiff.test\": failed to call webhook: Post \"{}?timeout=1s\": context deadline exceeded",
            hooks.url("/slow-deny")
        )),
        "{err}"
    );
    assert!(!err.contains("nothing is allowed here"), "{err}");

    let out = create(
        &s,
        &configmap("on-time", "default", json!({"policy": "ignore"})),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(exists(&s, "default", "on-time"));
    let asked = hooks.reviews("/slow-deny", "on-time");
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].query, "timeout=1s");
}

#[test]
fn a_namespace_selector_excluding_a_namespace_skips_it() {
    let s = TestServer::start();
    let hooks = WebhookServer::start(&[]);
    s.kubectl_ok(&["create", "namespace", "checked"]);
    s.kubectl_ok(&["create", "namespace", "skipped"]);
    s.kubectl_ok(&["label", "namespace", "skipped", "skip-webhooks=true"]);
    configure(
        &s,
        &hooks,
        "ValidatingWebhookConfiguration",
        "deny-configmaps",
        vec![webhook(
            "deny-all.skiff.test",
            hooks.client_config("/deny-all"),
            json!([rule(&["CREATE"], &["configmaps"])]),
            json!({"namespaceSelector": {"matchExpressions": [
                {"key": "skip-webhooks", "operator": "DoesNotExist"}]}}),
        )],
    );
    let out = create(&s, &configmap("allowed", "skipped", json!({})));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(exists(&s, "skipped", "allowed"));
    let out = create(&s, &configmap("refused", "checked", json!({})));
    assert!(
        !out.status.success(),
        "the selected namespace was not checked"
    );
    assert!(
        stderr(&out).contains(
            "admission webhook \"deny-all.skiff.test\" denied the request: nothing is allowed here"
        ),
        "{}",
        stderr(&out)
    );
    assert!(hooks.reviews("/deny-all", "allowed").is_empty());
}

#[test]
fn writes_to_webhook_configurations_never_go_to_webhooks() {
    let s = TestServer::start();
    let hooks = WebhookServer::start(&[]);
    configure(
        &s,
        &hooks,
        "ValidatingWebhookConfiguration",
        "lock-everything",
        vec![webhook(
            "lock.skiff.test",
            hooks.client_config("/deny-all"),
            json!([{"operations": ["*"], "apiGroups": ["admissionregistration.k8s.io"],
                    "apiVersions": ["*"], "resources": ["*"]}]),
            json!({}),
        )],
    );
    s.kubectl_ok(&[
        "label",
        "validatingwebhookconfiguration",
        "lock-everything",
        "edited=yes",
    ]);
    s.kubectl_ok(&[
        "delete",
        "validatingwebhookconfiguration",
        "lock-everything",
    ]);
    let seen = hooks.seen.lock().unwrap_or_else(|e| e.into_inner());
    assert!(!seen.iter().any(|r| r.path == "/deny-all"), "{seen:?}");
}

#[test]
fn webhook_warnings_reach_kubectl() {
    let s = TestServer::start();
    let hooks = WebhookServer::start(&[]);
    configure(
        &s,
        &hooks,
        "ValidatingWebhookConfiguration",
        "warn",
        vec![webhook(
            "warn.skiff.test",
            hooks.client_config("/warn"),
            json!([rule(&["CREATE"], &["configmaps"])]),
            json!({}),
        )],
    );
    let out = s.kubectl(&["create", "configmap", "orphan", "--from-literal=a=b"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: configmap \"orphan\" has no owner"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_review_names_the_caller_and_carries_the_old_object_on_update() {
    let s = TestServer::start();
    let hooks = WebhookServer::start(&[]);
    configure(
        &s,
        &hooks,
        "ValidatingWebhookConfiguration",
        "record",
        vec![webhook(
            "record.skiff.test",
            hooks.client_config("/allow"),
            json!([rule(&["CREATE", "UPDATE"], &["configmaps"])]),
            json!({}),
        )],
    );
    let kubeconfig =
        s.signed_kubeconfig("tester.kubeconfig", "webhook-tester", &["system:masters"]);
    let out = s.kubectl_as(
        &kubeconfig,
        &["create", "configmap", "recorded", "--from-literal=a=1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.kubectl_as(
        &kubeconfig,
        &["label", "configmap", "recorded", "color=blue"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let seen = hooks.reviews("/allow", "recorded");
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (create, update) = (&seen[0], &seen[1]);
    assert_eq!(create.query, "timeout=10s");
    assert_eq!(create.review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(create.review["kind"], "AdmissionReview");
    let r = &create.review["request"];
    assert!(r["uid"].as_str().is_some_and(|u| !u.is_empty()), "{r}");
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(
        r["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(
        r["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(r["namespace"], "default");
    assert_eq!(r["userInfo"]["username"], "webhook-tester");
    let groups = r["userInfo"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(groups.contains(&json!("system:masters")), "{groups:?}");
    assert!(
        groups.contains(&json!("system:authenticated")),
        "{groups:?}"
    );
    assert_eq!(r["object"]["data"], json!({"a": "1"}));
    assert!(r["oldObject"].is_null(), "{r}");
    assert_eq!(r["dryRun"], false);
    assert_eq!(r["options"]["kind"], "CreateOptions");

    let r = &update.review["request"];
    assert_eq!(r["operation"], "UPDATE");
    assert_eq!(r["userInfo"]["username"], "webhook-tester");
    assert_eq!(r["object"]["metadata"]["labels"]["color"], "blue");
    assert_eq!(r["oldObject"]["metadata"]["name"], "recorded");
    assert!(
        r["oldObject"]["metadata"]["labels"]["color"].is_null(),
        "{}",
        r["oldObject"]
    );
    assert_eq!(r["options"]["kind"], "UpdateOptions");
}

#[test]
fn a_webhook_on_delete_can_refuse_it() {
    let s = TestServer::start();
    let hooks = WebhookServer::start(&[]);
    for (name, protected) in [("keep", "true"), ("drop", "false")] {
        let out = create(
            &s,
            &configmap(name, "default", json!({"protected": protected})),
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    configure(
        &s,
        &hooks,
        "ValidatingWebhookConfiguration",
        "protect",
        vec![webhook(
            "protect.skiff.test",
            hooks.client_config("/protect"),
            json!([rule(&["DELETE"], &["configmaps"])]),
            json!({}),
        )],
    );
    let out = s.kubectl(&["delete", "configmap", "keep"]);
    assert!(!out.status.success(), "a protected object was deleted");
    assert!(
        stderr(&out).contains(
            "admission webhook \"protect.skiff.test\" denied the request: protected objects cannot be deleted"
        ),
        "{}",
        stderr(&out)
    );
    assert!(exists(&s, "default", "keep"));
    s.kubectl_ok(&["delete", "configmap", "drop"]);
    assert!(!exists(&s, "default", "drop"));
    let seen = hooks.reviews("/protect", "keep");
    let r = &seen.first().expect("the delete was reviewed").review["request"];
    assert_eq!(r["operation"], "DELETE");
    assert!(r["object"].is_null(), "{r}");
    assert_eq!(r["oldObject"]["metadata"]["labels"]["protected"], "true");
    assert_eq!(r["options"]["kind"], "DeleteOptions");
}

#[test]
fn a_service_client_config_is_called_through_its_endpoint_slices() {
    let s = TestServer::start();
    let hooks = WebhookServer::start(&["hook-svc.webhook-system.svc"]);
    s.kubectl_ok(&["create", "namespace", "webhook-system"]);
    let port = hooks.addr.port();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "hook-svc", "namespace": "webhook-system"},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
    });
    // A Service without a selector, its endpoint the test's webhook on loopback.
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "hook-svc-1", "namespace": "webhook-system",
                     "labels": {"kubernetes.io/service-name": "hook-svc"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    for object in [service, slice] {
        let out = create(&s, &object.to_string());
        assert!(out.status.success(), "{}", stderr(&out));
    }
    configure(
        &s,
        &hooks,
        "ValidatingWebhookConfiguration",
        "by-service",
        vec![webhook(
            "svc-deny.skiff.test",
            json!({"service": {"namespace": "webhook-system", "name": "hook-svc",
                               "path": "/deny-label"},
                   "caBundle": hooks.ca_bundle()}),
            json!([rule(&["CREATE"], &["configmaps"])]),
            json!({}),
        )],
    );
    let out = create(
        &s,
        &configmap("via-service", "default", json!({"forbidden": "x"})),
    );
    assert!(
        !out.status.success(),
        "admitted without the Service's webhook"
    );
    assert!(
        stderr(&out).contains(
            "admission webhook \"svc-deny.skiff.test\" denied the request: the label \"forbidden\" is not allowed"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(hooks.reviews("/deny-label", "via-service").len(), 1);
    // The stored configuration shows the v1 defaults.
    let stored: Value = serde_json::from_str(&s.kubectl_ok(&[
        "get",
        "validatingwebhookconfiguration",
        "by-service",
        "-o",
        "json",
    ]))
    .expect("JSON");
    let hook = &stored["webhooks"][1];
    assert_eq!(hook["clientConfig"]["service"]["port"], 443);
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["matchPolicy"], "Equivalent");
    assert_eq!(hook["timeoutSeconds"], 10);
}

#[test]
fn an_invalid_configuration_is_refused_with_422() {
    let s = TestServer::start();
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "broken"},
        "webhooks": [{
            "name": "broken.skiff.test",
            "clientConfig": {"url": "http://127.0.0.1:1/validate"},
            "rules": [rule(&["CREATE"], &["configmaps"])],
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 60,
        }, {
            "name": "no-client.skiff.test",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }],
    })
    .to_string();
    let out = s.kubectl_stdin(&["create", "-f", "-"], Some(&config));
    assert!(!out.status.success(), "an invalid configuration was stored");
    let err = stderr(&out);
    for expected in [
        "The ValidatingWebhookConfiguration \"broken\" is invalid",
        "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun",
        "webhooks[0].timeoutSeconds: Invalid value: 60: the timeout value must be between 1 and 30 seconds",
        "webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]",
        "webhooks[1].clientConfig: Required value: exactly one of url or service is required",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let (code, body) = s.curl_admin(
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &config,
        ],
    );
    assert_eq!(code, 422, "{body}");
    let status: Value = serde_json::from_str(&body).expect("a Status");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["kind"], "ValidatingWebhookConfiguration");
    assert!(
        !s.kubectl(&["get", "validatingwebhookconfiguration", "broken"])
            .status
            .success()
    );
}
