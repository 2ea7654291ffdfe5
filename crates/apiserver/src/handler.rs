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
    for w in warnings {
        let v = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(h) = HeaderValue::from_str(&v) {
            resp.headers_mut().append("Warning", h);
        }
    }
    resp.headers_mut().insert(
        "Audit-Id",
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("uuid is ASCII"),
    );
    resp
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

/// Handles one request end to end.
pub(crate) async fn handle(
    state: Arc<State>,
    who: Result<Identity, ()>,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let result = dispatch(&state, who, req).await;
    let resp = match result {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
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

async fn dispatch(
    state: &Arc<State>,
    who: Result<Identity, ()>,
    req: Request<Incoming>,
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
    if !is_public {
        state.authorizer.authorize(&who, &info)?;
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
    let long_running = info.verb == "watch";
    let _permit = if long_running {
        None
    } else {
        match state.inflight.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => return Err(ApiError::too_many_requests(1)),
        }
    };
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
    let reply = ctx.serve(content_type.as_deref(), body).await?;
    crate::rbac::after_write(state, &info).await;
    Ok(respond(reply, output, &ctx.warnings))
}
