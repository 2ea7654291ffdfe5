//! Exec, attach and port-forward: the runtime (containerd's CRI streaming server)
//! hands out a single-use URL for each session, and the node API carries the
//! client's upgrade to it.
//!
//! - WebSocket `v5.channel.k8s.io` exec/attach (kubectl 1.30+, kube-rs): served
//!   here and translated to SPDY `v4.channel.k8s.io` at the runtime ([`translate`]).
//! - WebSocket `SPDY/3.1+portforward.k8s.io` port-forward (kubectl 1.31+): the
//!   tunneled SPDY bytes go to a SPDY upgrade at the runtime ([`tunnel`]).
//! - Anything else (SPDY/3.1, WebSocket v4 and older): the upgrade request is
//!   relayed and, once both sides switched protocols, the connections spliced; a
//!   protocol the runtime does not speak gets its refusal.

mod translate;
mod tunnel;
mod upstream;
mod websocket;

use std::collections::HashMap;

use bytes::Bytes;
use cri::{Rpc, v1};
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
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
/// URL and carries the upgrade to it.
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
    let offered = websocket::offered_protocols(&req).unwrap_or_default();
    let tunneled = tunnel::tunneled_protocols(&offered);
    match session {
        Session::Exec | Session::Attach if offered.iter().any(|p| p == translate::V5) => {
            let streams = translate::Streams {
                stdin,
                stdout,
                stderr,
                tty,
            };
            translate::serve(req, &url, streams).await
        }
        Session::PortForward if !tunneled.is_empty() => tunnel::serve(req, &url, &tunneled).await,
        _ => relay(req, &url).await,
    }
}

/// Forwards the upgrade request `req` to `url` with the client's headers and, when
/// the runtime switches protocols, splices the client's connection with the
/// runtime's.
async fn relay(mut req: Request<Incoming>, url: &str) -> Result<Response<Body>, Failure> {
    let mut headers = HeaderMap::new();
    for (name, value) in req.headers() {
        if name != header::HOST
            && name != header::AUTHORIZATION
            && name != header::TRANSFER_ENCODING
        {
            headers.append(name.clone(), value.clone());
        }
    }
    let client_side = hyper::upgrade::on(&mut req);
    let answer = upstream::upgrade(url, req.uri().query(), req.method().clone(), headers).await?;
    let (headers, mut runtime) = match answer {
        upstream::Answer::Switched { headers, io } => (headers, io),
        upstream::Answer::Refused(refusal) => return Ok(refusal),
    };
    tokio::spawn(async move {
        let client = match client_side.await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "stream upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
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
