use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::audit::writer::{Rotation, Target};

const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  users: [quiet]
- level: RequestResponse
  resources: [{group: "", resources: [configmaps]}]
- level: Metadata
  omitStages: [ResponseStarted]
  resources: [{group: "", resources: [secrets]}]
- level: Metadata
"#;

struct Log {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    sink: Sink,
    policy: AuditPolicy,
}

fn log() -> Log {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("audit.log");
    let sink = Sink::start(
        Target::File(path.clone()),
        Rotation {
            max_bytes: 0,
            max_backups: 0,
            max_age: Duration::ZERO,
        },
    )
    .expect("starts");
    Log {
        _dir: dir,
        path,
        sink,
        policy: AuditPolicy::parse(POLICY).expect("parses"),
    }
}

/// Waits until the log has `n` events.
fn events(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON lines"))
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            assert_eq!(lines.len(), n, "events: {text}");
            return lines;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn admin() -> Identity {
    Identity {
        user: "system:admin".into(),
        uid: String::new(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
        extra: Default::default(),
    }
}

fn request(method: &str, uri: &str) -> Request<()> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("user-agent", "kubectl/v1.33.0 (linux/amd64)")
        .header("x-forwarded-for", "10.0.0.7, 10.0.0.8")
        .body(())
        .expect("a request")
}

fn json_response(code: u16, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = http::StatusCode::from_u16(code).expect("a code");
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const CM: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","namespace":"default","uid":"u1"},"data":{"k":"v"}}"#;

#[tokio::test]
async fn a_create_is_recorded_when_it_arrives_and_when_it_completes() {
    let l = log();
    let req = request(
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create",
    );
    let rec =
        Recording::begin(&l.policy, &l.sink, "id-1", &Ok(admin()), PEER, &req).expect("recorded");
    let mut notes = Notes::default();
    notes
        .authorize(
            &crate::authz::AlwaysAllow,
            &admin(),
            &request_info(req.method(), req.uri()),
        )
        .expect("allowed");
    notes.request_body(&Bytes::from_static(CM.as_bytes()), Some("application/json"));
    let resp = rec.finish(json_response(201, CM), None, notes).await;
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(
        body,
        CM.as_bytes(),
        "the client gets the body it would have got"
    );
    let ev = events(&l.path, 2);
    assert_eq!(ev[0]["stage"], "RequestReceived");
    assert!(ev[0].get("responseStatus").is_none());
    assert!(ev[0].get("requestObject").is_none());
    assert_eq!(ev[0]["stageTimestamp"], ev[0]["requestReceivedTimestamp"]);
    let done = &ev[1];
    assert_eq!(done["stage"], "ResponseComplete");
    assert_eq!(done["auditID"], "id-1");
    assert_eq!(done["level"], "RequestResponse");
    assert_eq!(done["verb"], "create");
    assert_eq!(
        done["requestURI"],
        "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create"
    );
    assert_eq!(done["user"]["username"], "system:admin");
    assert_eq!(
        done["sourceIPs"],
        serde_json::json!(["10.0.0.7", "10.0.0.8", "127.0.0.1"])
    );
    assert_eq!(done["userAgent"], "kubectl/v1.33.0 (linux/amd64)");
    assert_eq!(
        done["objectRef"],
        serde_json::json!({"resource": "configmaps", "namespace": "default", "name": "cm", "apiVersion": "v1"})
    );
    assert_eq!(
        done["responseStatus"],
        serde_json::json!({"metadata": {}, "code": 201})
    );
    assert_eq!(done["requestObject"]["data"]["k"], "v");
    assert_eq!(done["responseObject"]["metadata"]["uid"], "u1");
    assert_eq!(
        done["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
}

#[tokio::test]
async fn a_refused_request_carries_the_decision_and_the_status() {
    let l = log();
    let req = request("GET", "/api/v1/namespaces/default/secrets/s");
    let bob = Identity {
        user: "bob".into(),
        ..admin()
    };
    let bob = Identity {
        groups: vec!["system:authenticated".into()],
        ..bob
    };
    let rec = Recording::begin(&l.policy, &l.sink, "id-2", &Ok(bob.clone()), PEER, &req)
        .expect("recorded");
    let mut notes = Notes::default();
    let err = notes
        .authorize(
            &crate::authz::AlwaysDeny,
            &bob,
            &request_info(req.method(), req.uri()),
        )
        .expect_err("refused");
    assert_eq!(err.code, 403);
    let resp = json_response(403, "{}");
    rec.finish(resp, Some(&err), notes).await;
    let ev = events(&l.path, 2);
    let done = &ev[1];
    assert_eq!(done["level"], "Metadata");
    assert_eq!(done["responseStatus"]["code"], 403);
    assert_eq!(done["responseStatus"]["reason"], "Forbidden");
    assert_eq!(done["responseStatus"]["status"], "Failure");
    assert_eq!(
        done["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    assert_eq!(
        done["annotations"]["authorization.k8s.io/reason"],
        "Everything is forbidden."
    );
}

#[tokio::test]
async fn a_watch_is_recorded_when_it_starts_and_when_its_stream_ends() {
    let l = log();
    let req = request("GET", "/api/v1/namespaces/default/configmaps?watch=true");
    let rec =
        Recording::begin(&l.policy, &l.sink, "id-3", &Ok(admin()), PEER, &req).expect("recorded");
    let stream = futures::stream::iter(vec![Bytes::from_static(b"{\"type\":\"ADDED\"}\n")]);
    use futures::StreamExt as _;
    let body = http_body_util::StreamBody::new(stream.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let resp = Response::new(BodyExt::boxed_unsync(body));
    let resp = rec.finish(resp, None, Notes::default()).await;
    let ev = events(&l.path, 2);
    assert_eq!(ev[1]["stage"], "ResponseStarted");
    assert_eq!(ev[1]["responseStatus"]["code"], 200);
    assert!(
        ev[1].get("responseObject").is_none(),
        "streams are not recorded"
    );
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(bytes, &b"{\"type\":\"ADDED\"}\n"[..]);
    let ev = events(&l.path, 3);
    assert_eq!(ev[2]["stage"], "ResponseComplete");
    assert_eq!(ev[2]["verb"], "watch");
}

#[tokio::test]
async fn omitted_stages_and_level_none_write_nothing() {
    let l = log();
    // Secrets omit ResponseStarted: a watch has RequestReceived and ResponseComplete.
    let req = request("GET", "/api/v1/secrets?watch=1");
    let rec =
        Recording::begin(&l.policy, &l.sink, "id-4", &Ok(admin()), PEER, &req).expect("recorded");
    drop(
        rec.finish(json_response(200, "{}"), None, Notes::default())
            .await,
    );
    let quiet = Identity {
        user: "quiet".into(),
        ..admin()
    };
    assert!(
        Recording::begin(&l.policy, &l.sink, "id-5", &Ok(quiet), PEER, &req).is_none(),
        "level None records nothing"
    );
    let ev = events(&l.path, 2);
    let stages: Vec<&str> = ev.iter().filter_map(|e| e["stage"].as_str()).collect();
    assert_eq!(stages, ["RequestReceived", "ResponseComplete"]);
}

#[tokio::test]
async fn failed_authentication_is_one_response_started_event() {
    let l = log();
    let mut req = request("GET", "/api/v1/namespaces");
    req.headers_mut().insert(
        header::AUTHORIZATION,
        http::HeaderValue::from_static("Bearer nope"),
    );
    let rec = Recording::begin(&l.policy, &l.sink, "id-6", &Err(()), PEER, &req).expect("recorded");
    let err = ApiError::unauthorized();
    rec.finish(json_response(401, "{}"), Some(&err), Notes::default())
        .await;
    let ev = events(&l.path, 1);
    assert_eq!(ev[0]["stage"], "ResponseStarted");
    assert_eq!(ev[0]["user"], serde_json::json!({}));
    assert_eq!(
        ev[0]["responseStatus"],
        serde_json::json!({"metadata": {}, "message": "Authentication failed, attempted: bearer", "code": 401})
    );
}

#[tokio::test]
async fn an_impersonated_user_is_recorded_beside_the_authenticated_one() {
    let l = log();
    let req = request("GET", "/api/v1/namespaces/default/configmaps/cm");
    let rec =
        Recording::begin(&l.policy, &l.sink, "id-7", &Ok(admin()), PEER, &req).expect("recorded");
    let mut notes = Notes::default();
    notes.acting_as(&Identity {
        user: "jane".into(),
        uid: String::new(),
        groups: vec!["system:authenticated".into()],
        extra: Default::default(),
    });
    rec.finish(json_response(200, CM), None, notes).await;
    let ev = events(&l.path, 2);
    assert_eq!(ev[1]["user"]["username"], "system:admin");
    assert_eq!(ev[1]["impersonatedUser"]["username"], "jane");
}

#[test]
fn the_client_audit_id_is_kept_and_a_new_one_made_otherwise() {
    let mut headers = HeaderMap::new();
    let fresh = crate::audit::audit_id(&headers);
    assert!(uuid::Uuid::parse_str(&fresh).is_ok(), "{fresh}");
    headers.insert("Audit-ID", http::HeaderValue::from_static("mine-42"));
    assert_eq!(crate::audit::audit_id(&headers), "mine-42");
}

#[test]
fn node_proxy_paths_and_unknown_paths_still_get_request_attributes() {
    let info = request_info(
        &http::Method::GET,
        &"/api/v1/nodes/n1/proxy/stats/summary"
            .parse()
            .expect("a uri"),
    );
    assert_eq!(
        (
            info.resource.as_str(),
            info.subresource.as_str(),
            info.name.as_deref()
        ),
        ("nodes", "proxy", Some("n1"))
    );
    let info = request_info(&http::Method::POST, &"/v1-skiff/x".parse().expect("a uri"));
    assert!(!info.is_resource);
    assert_eq!(info.verb, "post");
}
