//! The node API (the kubelet's port 10250): HTTPS with client certificates signed by
//! the cluster CA, serving container logs, exec, attach and port-forward for the API
//! server to proxy to, plus `/healthz`, `/stats/summary` and `/metrics/resource`.
//!
//! Only the API server (whose kubelet-client certificate is in `system:masters`) and
//! cluster administrators may call it: a certificate of another node or component,
//! though signed by the same CA, is answered 403 as the kubelet's authorizer would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::{AgentConfig, Error};

mod logs;
mod lookup;
mod stats;
mod stream;

/// A response body: a whole buffer or a stream of chunks (followed logs).
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The node API, bound to its port but not serving yet.
pub struct NodeApi {
    listener: TcpListener,
    tls: TlsAcceptor,
    state: Arc<State>,
}

/// What every request handler shares.
pub(crate) struct State {
    pub(crate) runtime: cri::Runtime,
    pub(crate) node_name: String,
    pub(crate) cpu: stats::CpuSampler,
    /// What `/metrics` serves.
    pub(crate) extra_metrics: crate::config::ExtraMetrics,
}

/// Binds the node API on the node's IP (`config.node_ip`, where the API server
/// reaches it) and `config.node_api_port` (port 0 picks a free one), with the
/// serving certificate of `config`, requiring client certificates signed by
/// `config.client_ca`.
pub async fn bind(config: &AgentConfig, runtime: cri::Runtime) -> Result<NodeApi, Error> {
    let tls = TlsAcceptor::from(Arc::new(tls_config(config)?));
    let addr = SocketAddr::new(config.node_ip, config.node_api_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("binding the node API on {addr}"), e))?;
    Ok(NodeApi {
        listener,
        tls,
        state: Arc::new(State {
            runtime,
            node_name: config.node_name.clone(),
            cpu: stats::CpuSampler::default(),
            extra_metrics: config.extra_metrics.clone(),
        }),
    })
}

fn tls_config(config: &AgentConfig) -> Result<rustls::ServerConfig, Error> {
    let tls = |what: &str, e: &dyn std::fmt::Display| {
        Error::Invalid(format!("node API TLS: {what}: {e}"))
    };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(config.serving_cert.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| tls("serving certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(config.serving_key.as_bytes())
        .map_err(|e| tls("serving key", &e))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(config.client_ca.as_bytes()) {
        let ca = ca.map_err(|e| tls("client CA", &e))?;
        roots.add(ca).map_err(|e| tls("client CA", &e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| tls("client verifier", &e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("protocol versions", &e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls("serving certificate", &e))?;
    // HTTP/1.1 only: exec, attach and port-forward are connection upgrades.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

impl NodeApi {
    /// The port the node API listens on (the one picked when configured as 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` turns true, then gives open connections 5 s to end.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) -> Result<(), Error> {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = async { let _ = shutdown.wait_for(|v| *v).await; } => break,
                accepted = self.listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "node API accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    conns.spawn(serve_connection(
                        self.state.clone(),
                        self.tls.clone(),
                        tcp,
                        peer,
                        shutdown.clone(),
                    ));
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(self.listener);
        let drain = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            conns.abort_all();
        }
        Ok(())
    }
}

async fn serve_connection(
    state: Arc<State>,
    tls: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "node API TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let caller = Arc::new(Caller::of(stream.get_ref().1.peer_certificates()));
    let service = service_fn(move |req| {
        let state = state.clone();
        let caller = caller.clone();
        async move { Ok::<_, std::convert::Infallible>(route(state, &caller, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "node API connection ended with error");
            }
        }
        _ = async { let _ = shutdown.wait_for(|v| *v).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// Who called: the user and groups of the client certificate (its CN and Os).
#[derive(Debug, Default)]
struct Caller {
    user: String,
    groups: Vec<String>,
}

impl Caller {
    fn of(certificates: Option<&[CertificateDer<'_>]>) -> Caller {
        let Some(leaf) = certificates.and_then(|c| c.first()) else {
            return Caller::default();
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
            return Caller::default();
        };
        let subject = cert.subject();
        let text =
            |a: &x509_parser::x509::AttributeTypeAndValue<'_>| a.as_str().ok().map(str::to_owned);
        Caller {
            user: subject
                .iter_common_name()
                .find_map(text)
                .unwrap_or_default(),
            groups: subject.iter_organization().filter_map(text).collect(),
        }
    }

    /// Whether the caller may use the node API: the API server and administrators
    /// (`system:masters`); not other nodes.
    fn may_call(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// The `nodes` subresource the kubelet's authorizer checks for a path.
fn subresource(path: &str) -> &'static str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "stats" => "stats",
        "metrics" => "metrics",
        "logs" => "log",
        "healthz" => "healthz",
        _ => "proxy",
    }
}

async fn route(
    state: Arc<State>,
    caller: &Caller,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let started = std::time::Instant::now();
    if !caller.may_call() {
        let verb = match method {
            http::Method::GET | http::Method::HEAD => "get",
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "*",
        };
        let message = format!(
            "Forbidden (user={}, verb={verb}, resource=nodes, subresource={})",
            caller.user,
            subresource(&path)
        );
        tracing::debug!(%method, %path, user = %caller.user, "node API request refused");
        return text(StatusCode::FORBIDDEN, message);
    }
    let response = match dispatch(&state, req).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    };
    tracing::debug!(%method, %path, code = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "node API request");
    response
}

async fn dispatch(
    state: &State,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Body>, Failure> {
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query());
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = req.method() == http::Method::GET;
    let get_or_post = get || req.method() == http::Method::POST;
    let runtime = &state.runtime;
    match segments.as_slice() {
        ["healthz"] if get => Ok(text(StatusCode::OK, "ok")),
        ["metrics"] if get => {
            let mut response = text(StatusCode::OK, state.extra_metrics.render());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(response)
        }
        ["metrics", "resource"] if get => {
            let body = match stats::read(runtime, &state.node_name, &state.cpu).await {
                Ok(readings) => stats::resource_metrics(&readings),
                Err(f) => {
                    tracing::warn!(error = %f.message, "reading resource metrics failed");
                    stats::resource_scrape_failed()
                }
            };
            let mut response = text(StatusCode::OK, body);
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(response)
        }
        ["stats", "summary"] if get => {
            let readings = stats::read(runtime, &state.node_name, &state.cpu).await?;
            let mut response = text(StatusCode::OK, stats::summary(&readings).to_string());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        ["containerLogs", ns, pod, container] if get => {
            let options = logs::LogOptions::parse(&query)?;
            let body = logs::serve(runtime, ns, pod, container, options).await?;
            let mut response = hyper::Response::new(body);
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            );
            Ok(response)
        }
        [kind @ ("exec" | "attach"), ns, pod, container]
        | [kind @ ("exec" | "attach"), ns, pod, _, container]
            if get_or_post =>
        {
            let session = if *kind == "exec" {
                stream::Session::Exec
            } else {
                stream::Session::Attach
            };
            stream::serve(runtime, session, ns, pod, container, &query, req).await
        }
        ["portForward", ns, pod] | ["portForward", ns, pod, _] if get_or_post => {
            stream::serve(
                runtime,
                stream::Session::PortForward,
                ns,
                pod,
                "",
                &query,
                req,
            )
            .await
        }
        [
            "healthz" | "containerLogs" | "exec" | "attach" | "portForward",
            ..,
        ] => Err(Failure {
            status: StatusCode::METHOD_NOT_ALLOWED,
            message: "405 method not allowed".into(),
        }),
        _ => Err(Failure {
            status: StatusCode::NOT_FOUND,
            message: "404 page not found".into(),
        }),
    }
}

/// A request that failed: the HTTP status and the plain-text message the client
/// (the API server) turns into a `Status`.
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    fn into_response(self) -> hyper::Response<Body> {
        if self.status.is_server_error() {
            tracing::warn!(message = %self.message, "node API request failed");
        }
        text(self.status, format!("{}\n", self.message))
    }
}

impl From<cri::Error> for Failure {
    fn from(e: cri::Error) -> Self {
        if e.is_not_found() {
            Self::not_found(e.to_string())
        } else {
            Self::internal(e.to_string())
        }
    }
}

/// Decodes a query string into its values by name (names may repeat, as
/// `command` does).
fn parse_query(query: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k))
            .or_default()
            .push(percent_decode(v));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A body streaming the chunks sent on `rx` until its sender is dropped.
pub(crate) fn stream_body(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
    use futures::StreamExt as _;
    let frames =
        tokio_stream::wrappers::ReceiverStream::new(rx).map(|b| Ok(hyper::body::Frame::data(b)));
    StreamBody::new(frames).boxed_unsync()
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> hyper::Response<Body> {
    let mut response = hyper::Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_query_names_keep_every_value_in_order() {
        let q = parse_query(Some(
            "command=sh&command=-c&command=exit+3&stdin=true&x=%27a%20b%27",
        ));
        assert_eq!(q["command"], ["sh", "-c", "exit 3"]);
        assert_eq!(q["stdin"], ["true"]);
        assert_eq!(q["x"], ["'a b'"]);
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%"), "%");
    }
}
