//! Exec, attach and port-forward: the runtime (containerd's CRI streaming server)
//! hands out a single-use URL for each session; the node API forwards the client's
//! upgrade request to it and, once both sides switched protocols, splices the two
//! connections. The streaming protocol (SPDY/3.1 or WebSocket, and its
//! `*.channel.k8s.io` / `portforward.k8s.io` version) is negotiated end to end
//! between the client and the runtime; a protocol the runtime does not speak gets
//! its refusal, so clients such as kubectl fall back to one it does.

use std::collections::HashMap;

use bytes::Bytes;
use cri::{Rpc, v1};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::{Body, Failure, lookup};

/// Which streaming session a request opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Session {
    /// `/exec/{namespace}/{pod}/{container}?command=...`
    Exec,
    /// `/attach/{namespace}/{pod}/{container}`
    Attach,
    /// `/portForward/{namespace}/{pod}`
    PortForward,
}

/// Largest error body relayed from the runtime.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Whether a query flag is on; `names` are its spellings (kubectl's `stdin`, the
/// kubelet's `input`).
fn flag(query: &HashMap<String, Vec<String>>, names: &[&str]) -> bool {
    names.iter().any(|n| {
        query
            .get(*n)
            .and_then(|v| v.last())
            .is_some_and(|v| matches!(v.as_str(), "true" | "1"))
    })
}

/// Whether the request asks to switch protocols.
fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        && req.headers().contains_key(header::UPGRADE)
}

/// Serves one exec, attach or port-forward request: asks the runtime for a streaming
/// URL and relays the upgrade to it.
pub(crate) async fn serve(
    runtime: &cri::Runtime,
    session: Session,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &HashMap<String, Vec<String>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    if !is_upgrade(&req) {
        return Err(Failure::bad_request("Upgrade request required"));
    }
    let stdin = flag(query, &["stdin", "input"]);
    let stdout = flag(query, &["stdout", "output"]);
    let stderr = flag(query, &["stderr", "error"]);
    let tty = flag(query, &["tty"]);
    let mut client = runtime.runtime();
    let url = match session {
        Session::Exec => {
            let cmd = query.get("command").cloned().unwrap_or_default();
            if cmd.is_empty() {
                return Err(Failure::bad_request("you must specify at least 1 command"));
            }
            let c = lookup::running_container(runtime, namespace, pod, container).await?;
            client
                .exec(v1::ExecRequest {
                    container_id: c.id,
                    cmd,
                    tty,
                    stdin,
                    stdout,
                    stderr: stderr && !tty,
                })
                .await
                .rpc("Exec")?
                .url
        }
        Session::Attach => {
            let c = lookup::running_container(runtime, namespace, pod, container).await?;
            client
                .attach(v1::AttachRequest {
                    container_id: c.id,
                    stdin,
                    tty,
                    stdout,
                    stderr: stderr && !tty,
                })
                .await
                .rpc("Attach")?
                .url
        }
        Session::PortForward => {
            let sandbox = lookup::sandbox(runtime, namespace, pod).await?;
            if sandbox.state != v1::PodSandboxState::SandboxReady as i32 {
                return Err(Failure::bad_request(format!("pod {pod} is not running")));
            }
            let port = query
                .get("port")
                .into_iter()
                .flatten()
                .filter_map(|p| p.parse().ok())
                .collect();
            client
                .port_forward(v1::PortForwardRequest {
                    pod_sandbox_id: sandbox.id,
                    port,
                })
                .await
                .rpc("PortForward")?
                .url
        }
    };
    relay(req, &url).await
}

/// Forwards the upgrade request `req` to `url` (plain HTTP on loopback) and, when the
/// runtime switches protocols, splices the client's connection with the runtime's.
async fn relay(mut req: Request<Incoming>, url: &str) -> Result<Response<Body>, Failure> {
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
    let target = match req.uri().query() {
        Some(q) => format!("{}?{q}", uri.path()),
        None => uri.path().to_owned(),
    };
    let mut upstream = Request::builder()
        .method(req.method().clone())
        .uri(target)
        .body(Empty::<Bytes>::new())
        .map_err(|e| Failure::internal(format!("building the stream request: {e}")))?;
    for (name, value) in req.headers() {
        if name != header::HOST
            && name != header::AUTHORIZATION
            && name != header::TRANSFER_ENCODING
        {
            upstream.headers_mut().append(name.clone(), value.clone());
        }
    }
    if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
        upstream.headers_mut().insert(header::HOST, host);
    }
    let client_side = hyper::upgrade::on(&mut req);
    let response = sender
        .send_request(upstream)
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
        return Ok(out);
    }
    let runtime_side = hyper::upgrade::on(response);
    tokio::spawn(async move {
        let (client, runtime) = match tokio::join!(client_side, runtime_side) {
            (Ok(c), Ok(r)) => (c, r),
            (c, r) => {
                tracing::debug!(client = ?c.err(), runtime = ?r.err(), "stream upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut runtime = TokioIo::new(runtime);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut runtime).await {
            tracing::debug!(error = %e, "stream relay ended");
        }
    });
    let mut out = Response::new(full(Bytes::new()));
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = headers;
    Ok(out)
}

fn full(body: Bytes) -> Body {
    Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync()
}
