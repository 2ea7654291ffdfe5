//! The request pipeline: authentication → request info → authorization → dispatch to
//! health, discovery, OpenAPI or the REST verbs. Every failure leaves here as a
//! Kubernetes `Status`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use api::status::ApiError;
use bytes::Bytes;
use futures::Stream;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::Value;

use crate::authn::Identity;
use crate::negotiate::Output;
use crate::request;
use crate::serve::State;

/// Response body: a buffer or a stream (watch).
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What a handler produces before it is written out.
pub(crate) enum Reply {
    /// A JSON value with an HTTP status.
    Json(u16, Value),
    /// Raw bytes with a content type.
    Raw(u16, &'static str, Bytes),
    /// A chunked stream of watch events.
    Stream(std::pin::Pin<Box<dyn Stream<Item = Bytes> + Send>>),
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn respond(reply: Reply, output: Output, warnings: &[String]) -> Response<Body> {
    let mut resp = match reply {
        Reply::Json(code, v) => {
            let (ct, body) = if output == Output::Yaml {
                (
                    "application/yaml",
                    serde_yaml::to_string(&v)
                        .map(Bytes::from)
                        .unwrap_or_default(),
                )
            } else {
                (
                    "application/json",
                    Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
                )
            };
            let mut r = Response::new(full(body));
            *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            r
        }
        Reply::Raw(code, ct, body) => {
            let mut r = Response::new(full(body));
            *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            r
        }
        Reply::Stream(s) => {
            use futures::StreamExt as _;
            let body = StreamBody::new(s.map(|b| Ok::<_, Infallible>(Frame::data(b))));
            let mut r = Response::new(BodyExt::boxed_unsync(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, private"),
            );
            r
        }
    };
    add_warnings(&mut resp, warnings);
    // `handle` sets `Audit-Id` on every response, the ID its audit events carry.
    resp
}

/// Adds `Warning: 299 - "..."` headers, as kube-apiserver sends warnings.
fn add_warnings(resp: &mut Response<Body>, warnings: &[String]) {
    for w in warnings {
        let v = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(h) = HeaderValue::from_str(&v) {
            resp.headers_mut().append("Warning", h);
        }
    }
}

/// Renders an error as a Status response.
pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = respond(Reply::Json(e.code, e.to_status()), Output::Json, &[]);
    if let Some(s) = e.retry_after_seconds
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version"];

/// Handles one request end to end, from `peer`, and records it in the audit log
/// when the policy asks for it.
pub(crate) async fn handle(
    state: Arc<State>,
    who: Result<Identity, ()>,
    peer: std::net::IpAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let audit_id = crate::audit::audit_id(req.headers());
    let recording = state
        .audit
        .as_ref()
        .and_then(|a| a.begin(&audit_id, &who, peer, &req));
    let mut notes = crate::audit::Notes::default();
    let mut extras = Extras::default();
    let work = dispatch(&state, who, req, &mut notes, &mut extras);
    let result = match &recording {
        None => work.await,
        Some(rec) => {
            use futures::FutureExt as _;
            match std::panic::AssertUnwindSafe(work).catch_unwind().await {
                Ok(result) => result,
                Err(panic) => {
                    rec.panicked(panic.as_ref());
                    std::panic::resume_unwind(panic)
                }
            }
        }
    };
    let (mut resp, error) = match result {
        Ok(r) => (r, None),
        Err(e) => (error_response(&e), Some(e)),
    };
    extras.apply(&mut resp, error.is_some());
    if let Ok(id) = HeaderValue::from_str(&audit_id) {
        resp.headers_mut().insert("Audit-Id", id);
    }
    if let Some(rec) = recording {
        resp = rec.finish(resp, error.as_ref(), notes).await;
    }
    tracing::debug!(%method, %path, code = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    resp
}

pub(crate) async fn read_body(state: &State, body: Incoming) -> Result<Bytes, ApiError> {
    let limit = state.config.max_request_bytes;
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(limit)),
        Err(e) => Err(ApiError::bad_request(format!("reading request body: {e}"))),
    }
}

/// What every response of a request carries, also an error response: the flow
/// schema and priority level that served it, and warnings gathered before it failed.
#[derive(Default)]
struct Extras {
    flow: Option<(String, String)>,
    warnings: Vec<String>,
}

impl Extras {
    fn apply(self, resp: &mut Response<Body>, failed: bool) {
        if let Some((schema, level)) = &self.flow {
            for (name, uid) in [
                ("X-Kubernetes-PF-FlowSchema-UID", schema),
                ("X-Kubernetes-PF-PriorityLevel-UID", level),
            ] {
                if !uid.is_empty()
                    && let Ok(v) = HeaderValue::from_str(uid)
                {
                    resp.headers_mut().insert(name, v);
                }
            }
        }
        if failed {
            add_warnings(resp, &self.warnings);
        }
    }
}

async fn dispatch(
    state: &Arc<State>,
    who: Result<Identity, ()>,
    req: Request<Incoming>,
    audit: &mut crate::audit::Notes,
    extras: &mut Extras,
) -> Result<Response<Body>, ApiError> {
    if crate::join::handles(req.uri().path()) {
        // The cluster CA and node credentials: the join token authenticates.
        return crate::join::serve(state, req)
            .await
            .map(|r| respond(r, Output::Json, &[]));
    }
    // Impersonation headers switch the user once the requester may act as it.
    let who = match who {
        Ok(id) if !id.is_anonymous() => {
            Ok(crate::impersonation::resolve(state, id, req.headers())?)
        }
        other => other,
    };
    if let Ok(id) = &who {
        audit.acting_as(id);
    }
    if let Some(target) = crate::rest::node_proxy::target(req.uri().path()) {
        // Logs, exec, attach, port-forward and node proxy: served by the node agent.
        let who = match who {
            Ok(id) if !id.is_anonymous() => id,
            _ => return Err(ApiError::unauthorized()),
        };
        return crate::rest::node_proxy::serve(state, &who, target, req).await;
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let is_public = PUBLIC_PATHS
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    let who = match who {
        Ok(id) => id,
        Err(()) => return Err(ApiError::unauthorized()),
    };
    if who.is_anonymous() && !is_public {
        return Err(ApiError::unauthorized());
    }
    let info = request::parse(&parts.method, &path, parts.uri.query())?;
    let long_running = info.verb == "watch";
    let Some(fc) = &state.flow_control else {
        // Without flow control: a fixed number of requests at once, 429 beyond.
        let _permit = if long_running || !info.is_resource {
            None
        } else {
            match state.inflight.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => return Err(ApiError::too_many_requests(1)),
            }
        };
        return serve_admitted(state, who, info, is_public, parts, body, audit, extras).await;
    };
    let admitted = fc
        .admit(&who, &info, long_running, || {
            list_estimate(state, fc, &info)
        })
        .await;
    match admitted {
        Ok(admission) => {
            extras.flow = Some((admission.schema_uid.clone(), admission.level_uid.clone()));
            let resp =
                serve_admitted(state, who, info, is_public, parts, body, audit, extras).await;
            drop(admission);
            resp
        }
        Err((e, schema, level)) => {
            extras.flow = Some((schema, level));
            Err(e)
        }
    }
}

/// The objects a list request would return, as far as the flow control's cached
/// counts know (kube-apiserver's list work estimate): the stored objects of the
/// resource (in the namespace), at most `limit` when no selector filters them.
fn list_estimate(
    state: &Arc<State>,
    fc: &Arc<crate::flowcontrol::FlowControl>,
    info: &request::RequestInfo,
) -> Option<usize> {
    let res = state
        .registry
        .lookup(&info.group, &info.version, &info.resource)?;
    let prefix = match info.namespace.as_deref() {
        Some(ns) if res.namespaced && !ns.is_empty() => res.namespace_prefix(ns),
        _ => res.key_prefix(),
    };
    let store = state.storage.store.clone();
    let count_prefix = prefix.clone();
    let stored = fc.object_count(&prefix, move || async move {
        store.count(&count_prefix).await.ok()
    })?;
    let selected = ["labelSelector", "fieldSelector"]
        .iter()
        .any(|p| info.param(p).is_some_and(|s| !s.is_empty()));
    let limit = info
        .param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0 && !selected);
    Some(limit.map_or(stored, |l| l.min(stored)))
}

/// Serves a request once flow control let it through: authorization, then
/// discovery, reviews or the REST verbs.
#[allow(clippy::too_many_arguments)]
async fn serve_admitted(
    state: &Arc<State>,
    who: Identity,
    info: request::RequestInfo,
    is_public: bool,
    parts: http::request::Parts,
    body: Incoming,
    audit: &mut crate::audit::Notes,
    extras: &mut Extras,
) -> Result<Response<Body>, ApiError> {
    if !is_public {
        audit.authorize(state.authorizer.as_ref(), &who, &info)?;
    }
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());

    if !info.is_resource {
        return crate::discovery::non_resource(state, &info, accept)
            .await
            .map(|r| respond(r, Output::Json, &[]));
    }

    let output = crate::negotiate::output(accept)?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = if matches!(
        parts.method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH | http::Method::DELETE
    ) {
        read_body(state, body).await?
    } else {
        Bytes::new()
    };
    audit.request_body(&body, content_type.as_deref());
    if crate::review::handles(&info) {
        let reply =
            crate::review::serve(state, &who, &info, content_type.as_deref(), &body).await?;
        return Ok(respond(reply, output, &[]));
    }
    // Non-apply writes name their field manager after the client when
    // `?fieldManager=` is not given.
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let mut ctx = crate::rest::Ctx::new(state, &who, &info, output, &user_agent)?;
    let reply = match ctx.serve(content_type.as_deref(), body).await {
        Ok(r) => r,
        Err(e) => {
            // Warnings (admission webhooks, PodSecurity) go out with a refusal too.
            extras.warnings = std::mem::take(&mut ctx.warnings);
            return Err(e);
        }
    };
    crate::rbac::after_write(state, &info).await;
    Ok(respond(reply, output, &ctx.warnings))
}
