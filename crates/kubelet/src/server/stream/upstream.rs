//! The runtime's side: an upgrade request to its single-use streaming URL (plain
//! HTTP on loopback), answered by a switch of protocols or a refusal.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;

use super::full;
use crate::server::{Body, Failure};

/// Largest error body passed on from the runtime.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How the runtime answered an upgrade request.
pub(super) enum Answer {
    /// It switched protocols: its response headers and the connection.
    Switched {
        headers: HeaderMap,
        io: TokioIo<Upgraded>,
    },
    /// It refused: its answer, to pass on to the client as it is.
    Refused(Response<Body>),
}

/// Sends `method` `url` (with the client's `query`) carrying `headers` to the
/// runtime and waits for its answer.
pub(super) async fn upgrade(
    url: &str,
    query: Option<&str>,
    method: Method,
    headers: HeaderMap,
) -> Result<Answer, Failure> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| Failure::internal(format!("runtime streaming URL {url:?}: {e}")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| Failure::internal(format!("runtime streaming URL {url:?} has no host")))?
        .clone();
    let tcp = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| {
            Failure::internal(format!(
                "connecting to the runtime's stream server {authority}: {e}"
            ))
        })?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| Failure::internal(format!("runtime stream server: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "runtime stream connection ended");
        }
    });
    // The URL's token names the session; the client's query (port-forward's `port`)
    // travels along.
    let target = match query {
        Some(q) => format!("{}?{q}", uri.path()),
        None => uri.path().to_owned(),
    };
    let mut request = Request::builder()
        .method(method)
        .uri(target)
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::internal(format!("building the stream request: {e}")))?;
    *request.headers_mut() = headers;
    if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
        request.headers_mut().insert(header::HOST, host);
    }
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| Failure::internal(format!("runtime stream server: {e}")))?;
    let status = response.status();
    let headers = response.headers().clone();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        // The runtime refused (e.g. a protocol version it does not speak): pass its
        // answer on, so the client may fall back.
        let body = Limited::new(response.into_body(), MAX_ERROR_BODY)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let mut out = Response::new(full(body));
        *out.status_mut() = status;
        for name in [header::CONTENT_TYPE, header::SEC_WEBSOCKET_VERSION] {
            if let Some(v) = headers.get(&name) {
                out.headers_mut().insert(name, v.clone());
            }
        }
        return Ok(Answer::Refused(out));
    }
    let io = hyper::upgrade::on(response)
        .await
        .map_err(|e| Failure::internal(format!("runtime stream upgrade: {e}")))?;
    Ok(Answer::Switched {
        headers,
        io: TokioIo::new(io),
    })
}

/// The headers of a SPDY/3.1 upgrade offering `protocols` (values of
/// `X-Stream-Protocol-Version`), as client-go's SPDY round tripper sends them.
pub(super) fn spdy_headers<'a>(protocols: impl IntoIterator<Item = &'a str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    for p in protocols {
        if let Ok(v) = HeaderValue::from_str(p) {
            headers.append(PROTOCOL_VERSION, v);
        }
    }
    headers
}

/// The header naming a streaming protocol version (offered, then chosen).
pub(super) const PROTOCOL_VERSION: &str = "x-stream-protocol-version";
