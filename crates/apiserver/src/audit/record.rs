//! One request's audit record, kept by `handler::handle`: the policy is evaluated
//! when the request arrives (`RequestReceived`), and the events of the later
//! stages are written when the response leaves (`ResponseComplete`) or, for
//! long-running requests, when its headers leave (`ResponseStarted`) and when its
//! body ends (`ResponseComplete`). What only the pipeline learns (the authorizer's
//! decision, the request body, an impersonated user) reaches the record through
//! [`Notes`].

use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use api::status::ApiError;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, SizeHint};
use serde_json::json;

use super::event::{Event, ObjectRef, Outcome, Payload, RequestFacts, UserInfo};
use super::policy::{Attributes, AuditPolicy, Decision, Level, Stage};
use super::writer::Sink;
use crate::authn::Identity;
use crate::authz::Authorizer;
use crate::handler::Body;
use crate::request::{self, RequestInfo};

const DECISION: &str = "authorization.k8s.io/decision";
const REASON: &str = "authorization.k8s.io/reason";
/// kube-apiserver cuts user agents here.
const MAX_USER_AGENT: usize = 1024;

/// What the request pipeline learns that the audit event records; filled by
/// `dispatch`, read once the response is ready.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    /// The authorizer's answer: allowed, and its reason.
    authorization: Option<(bool, String)>,
    request_body: Option<Payload>,
    /// The user the request runs as after impersonation.
    acting_as: Option<Identity>,
}

impl Notes {
    /// Authorizes like [`Authorizer::authorize`] and keeps the decision and its
    /// reason for the `authorization.k8s.io/decision` and `/reason` annotations.
    pub(crate) fn authorize(
        &mut self,
        authorizer: &dyn Authorizer,
        who: &Identity,
        info: &RequestInfo,
    ) -> Result<(), ApiError> {
        let attrs = crate::authz::Attributes::from_request(who, info);
        let decision = authorizer.decide(&attrs);
        let allowed = decision.allowed();
        let reason = decision.reason().to_string();
        let result = if allowed {
            Ok(())
        } else {
            Err(attrs.denied(&reason))
        };
        self.authorization = Some((allowed, reason));
        result
    }

    /// Keeps the request body (a reference, not a copy) for `requestObject`.
    pub(crate) fn request_body(&mut self, body: &Bytes, content_type: Option<&str>) {
        self.request_body = Some(Payload {
            bytes: body.clone(),
            content_type: content_type.map(String::from),
        });
    }

    /// The user the request runs as; recorded as `impersonatedUser` when it is not
    /// the authenticated one.
    pub(crate) fn acting_as(&mut self, who: &Identity) {
        self.acting_as = Some(who.clone());
    }
}

/// The record of one audited request.
pub(crate) struct Recording {
    facts: Arc<RequestFacts>,
    decision: Decision,
    sink: Sink,
    authenticated: Option<Identity>,
    long_running: bool,
    /// Authentication failed: kube-apiserver writes only a `ResponseStarted` event
    /// with why.
    failed_authentication: Option<String>,
}

/// The request as the authorizer and the policy see it; a path the API does not
/// serve counts as a non-resource request.
fn request_info(method: &http::Method, uri: &http::Uri) -> RequestInfo {
    let path = uri.path();
    let parsed = request::parse(method, path, uri.query()).or_else(|e| {
        // `nodes/proxy` and `services/proxy` carry a path of their own.
        match path.find("/proxy/") {
            Some(i) => request::parse(method, &path[..i + "/proxy".len()], uri.query()),
            None => Err(e),
        }
    });
    parsed.unwrap_or_else(|_| RequestInfo {
        path: path.to_string(),
        verb: method.as_str().to_ascii_lowercase(),
        ..RequestInfo::default()
    })
}

/// kube-apiserver's source IPs: `X-Forwarded-For`, then `X-Real-Ip` unless listed,
/// then the peer unless it is the last one already.
fn source_ips(headers: &HeaderMap, peer: IpAddr) -> Vec<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut ips: Vec<IpAddr> = header("x-forwarded-for")
        .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .unwrap_or_default();
    if let Some(real) = header("x-real-ip").and_then(|v| v.trim().parse().ok())
        && !ips.contains(&real)
    {
        ips.push(real);
    }
    let peer = peer.to_canonical();
    if ips.last() != Some(&peer) {
        ips.push(peer);
    }
    ips.iter().map(IpAddr::to_string).collect()
}

/// What kube-apiserver says when authentication failed: the methods tried.
fn authentication_failure(headers: &HeaderMap, query: Option<&str>) -> String {
    let mut tried = Vec::new();
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    let scheme = auth
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if scheme == "basic" {
        tried.push("basic");
    }
    if scheme == "bearer" && auth.contains(' ') {
        tried.push("bearer");
    }
    if request::parse_query(query)
        .get("access_token")
        .is_some_and(|t| !t.trim().is_empty())
    {
        tried.push("access_token");
    }
    if tried.is_empty() {
        "Authentication failed, no credentials provided".into()
    } else {
        format!("Authentication failed, attempted: {}", tried.join(", "))
    }
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

impl Recording {
    /// Evaluates the policy for a request that just arrived and writes its
    /// `RequestReceived` event; `None` when the policy records nothing of it.
    pub(crate) fn begin<B>(
        policy: &AuditPolicy,
        sink: &Sink,
        audit_id: &str,
        who: &Result<Identity, ()>,
        peer: IpAddr,
        req: &Request<B>,
    ) -> Option<Self> {
        let received = jiff::Timestamp::now();
        let info = request_info(req.method(), req.uri());
        let authenticated = who.as_ref().ok();
        // kube-apiserver's request info gives a namespace its own name as namespace.
        let namespace = match (&info.namespace, info.resource.as_str(), &info.name) {
            (Some(ns), _, _) => ns.as_str(),
            (None, "namespaces", Some(name)) => name.as_str(),
            _ => "",
        };
        let name = info.name.as_deref().unwrap_or_default();
        let decision = policy.evaluate(&Attributes {
            user: authenticated,
            verb: &info.verb,
            is_resource: info.is_resource,
            path: &info.path,
            namespace,
            group: &info.group,
            resource: &info.resource,
            subresource: &info.subresource,
            name,
        });
        if decision.level == Level::None {
            return None;
        }
        let mut user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if user_agent.len() > MAX_USER_AGENT {
            let mut cut = MAX_USER_AGENT;
            while !user_agent.is_char_boundary(cut) {
                cut -= 1;
            }
            user_agent.truncate(cut);
            user_agent.push_str("...TRUNCATED");
        }
        let object_ref = info.is_resource.then(|| ObjectRef {
            resource: info.resource.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            api_group: info.group.clone(),
            api_version: info.version.clone(),
            subresource: info.subresource.clone(),
        });
        let long_running = info.verb == "watch"
            || (info.is_resource
                && matches!(
                    info.subresource.as_str(),
                    "attach" | "exec" | "proxy" | "log" | "portforward"
                ));
        let facts = RequestFacts {
            audit_id: audit_id.to_string(),
            level: decision.level,
            request_uri: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string()),
            verb: info.verb,
            user: authenticated.map(UserInfo::from),
            source_ips: source_ips(req.headers(), peer),
            user_agent,
            object_ref,
            received,
            omit_managed_fields: decision.omit_managed_fields,
        };
        let rec = Self {
            facts: Arc::new(facts),
            decision,
            sink: sink.clone(),
            authenticated: authenticated.cloned(),
            long_running,
            failed_authentication: who
                .is_err()
                .then(|| authentication_failure(req.headers(), req.uri().query())),
        };
        if rec.failed_authentication.is_none() {
            rec.emit(rec.event(Stage::RequestReceived, received));
        }
        Some(rec)
    }

    fn event(&self, stage: Stage, at: jiff::Timestamp) -> Event {
        Event {
            request: self.facts.clone(),
            stage,
            at,
            impersonated: None,
            outcome: None,
            request_body: None,
            response_body: None,
            annotations: Vec::new(),
        }
    }

    fn emit(&self, event: Event) {
        if !self.decision.omit_stages.contains(event.stage) {
            self.sink.send(event);
        }
    }

    /// Writes the events of a finished request (for a long-running one,
    /// `ResponseStarted` now and `ResponseComplete` when its body ends) and gives
    /// the response back.
    pub(crate) async fn finish(
        self,
        resp: Response<Body>,
        error: Option<&ApiError>,
        notes: Notes,
    ) -> Response<Body> {
        let code = resp.status().as_u16();
        let mut ev = self.event(Stage::ResponseComplete, jiff::Timestamp::now());
        ev.outcome = Some(match (error, &self.failed_authentication) {
            (_, Some(message)) => Outcome::Status(code, json!({ "message": message })),
            (Some(e), None) => Outcome::Status(code, e.to_status()),
            (None, None) => Outcome::Code(code),
        });
        if let Some((allowed, reason)) = notes.authorization {
            let decision = if allowed { "allow" } else { "forbid" };
            ev.annotations = vec![(DECISION, decision.into()), (REASON, reason)];
        }
        ev.impersonated = notes
            .acting_as
            .filter(|a| Some(a) != self.authenticated.as_ref())
            .map(|a| UserInfo::from(&a));
        ev.request_body = notes.request_body;
        if self.failed_authentication.is_some() {
            ev.stage = Stage::ResponseStarted;
            self.emit(ev);
            return resp;
        }
        if self.long_running {
            let mut started = self.event(Stage::ResponseStarted, ev.at);
            started.outcome = ev.outcome.clone();
            started.annotations = ev.annotations.clone();
            started.impersonated = ev.impersonated.clone();
            self.emit(started);
            let done =
                (!self.decision.omit_stages.contains(Stage::ResponseComplete)).then(|| OnDrop {
                    sink: self.sink.clone(),
                    event: Some(ev),
                });
            return resp.map(|inner| BodyExt::boxed_unsync(Completing { inner, done }));
        }
        let (parts, body) = resp.into_parts();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let structured = content_type.as_deref().is_some_and(|ct| {
            ct.contains("json") || ct.contains("yaml") || ct.contains("protobuf")
        });
        // The body is already in memory (not a stream): keep a reference to it for
        // `responseObject`, or to read a Status a delete or a failure answered with.
        let wanted = error.is_none()
            && self.facts.object_ref.is_some()
            && structured
            && hyper::body::Body::size_hint(&body).exact().is_some()
            && (self.decision.level >= Level::RequestResponse
                || code >= 400
                || self.facts.verb.starts_with("delete"));
        let body = if wanted {
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            ev.response_body = Some(Payload {
                bytes: bytes.clone(),
                content_type,
            });
            full(bytes)
        } else {
            body
        };
        ev.at = jiff::Timestamp::now();
        self.emit(ev);
        Response::from_parts(parts, body)
    }

    /// Writes the `Panic` event of a request whose handling panicked.
    pub(crate) fn panicked(&self, payload: &(dyn std::any::Any + Send)) {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let mut ev = self.event(Stage::Panic, jiff::Timestamp::now());
        ev.outcome = Some(Outcome::Status(
            500,
            json!({"status": "Failure", "reason": "InternalError",
                   "message": format!("APIServer panic'd: {what}")}),
        ));
        self.emit(ev);
    }
}

/// Sends its event when dropped: at the end of a long-running response, also when
/// the client goes away first.
struct OnDrop {
    sink: Sink,
    event: Option<Event>,
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(mut ev) = self.event.take() {
            ev.at = jiff::Timestamp::now();
            self.sink.send(ev);
        }
    }
}

/// A response body that writes the `ResponseComplete` event when it ends.
struct Completing {
    inner: Body,
    done: Option<OnDrop>,
}

impl hyper::body::Body for Completing {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.done = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests;
