//! The HTTPS client of one webhook: where it is (`url`, or a Service resolved to a
//! ready endpoint and verified as `<service>.<namespace>.svc`), whom it trusts
//! (`caBundle`, else the system roots), and a few idle HTTP/1.1 connections kept
//! for the next request. Built when its configuration is stored and shared by
//! every request until the configuration changes.
//!
//! Failures are worded as kube-apiserver's Go client words them
//! (`Post "https://…?timeout=10s": dial tcp 127.0.0.1:9: connect: connection refused`,
//! `context deadline exceeded`), since users search for those messages.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio_rustls::TlsConnector;

/// The largest AdmissionReview response read from a webhook.
const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Idle connections kept per webhook.
const MAX_IDLE: usize = 4;
/// The most of an error body quoted in a message.
const MAX_QUOTED_BODY: usize = 1024;

/// Why calling a webhook failed (its failure policy decides what that means);
/// `Display` gives Kubernetes' wording after `failed calling webhook "<name>": `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CallError {
    /// The client could not be set up (bad `caBundle`, bad `clientConfig`).
    #[error("could not get REST client: {0}")]
    Client(String),
    /// No AdmissionReview version both sides speak.
    #[error("could not create admission objects: {0}")]
    Request(String),
    /// Resolving, connecting, TLS, or the time allowed ran out.
    #[error("failed to call webhook: Post {url:?}: {why}")]
    Post {
        /// The URL posted to, with its `?timeout=` parameter.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The webhook answered with an error status or an undecodable body.
    #[error("failed to call webhook: {0}")]
    Response(String),
    /// The answer is not a valid AdmissionReview response.
    #[error("received invalid webhook response: {0}")]
    InvalidResponse(String),
    /// The webhook is configured to be called with side effects on a dry run
    /// without saying whether it has any.
    #[error("Webhook SideEffects is nil")]
    SideEffectsUnknown,
}

/// Where a webhook is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `clientConfig.url`.
    Url {
        /// `https://host[:port]` as written.
        base: String,
        /// The host name or IP (IPv6 without brackets).
        host: String,
        port: u16,
        /// The path ("/" when none).
        path: String,
    },
    /// `clientConfig.service`.
    Service {
        namespace: String,
        name: String,
        port: u16,
        path: String,
    },
}

impl Target {
    /// A `clientConfig.url` (validated as `https://host[:port][/path]`).
    pub(crate) fn from_url(url: &str) -> Result<Target, String> {
        let parts = crate::strategy::webhook_config::parse_url(url)?;
        if parts.scheme != "https" || parts.host.is_empty() {
            return Err(format!("{url:?} is not an https URL with a host"));
        }
        let (host, port) = split_host_port(parts.host)?;
        Ok(Target::Url {
            base: format!("https://{}", parts.host),
            host,
            port,
            path: if parts.path.is_empty() {
                "/".into()
            } else {
                parts.path.to_string()
            },
        })
    }

    /// A `clientConfig.service`.
    pub(crate) fn service(namespace: &str, name: &str, port: u16, path: &str) -> Target {
        Target::Service {
            namespace: namespace.to_string(),
            name: name.to_string(),
            port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
        }
    }

    /// The name the webhook's certificate must carry.
    fn server_name(&self) -> Result<ServerName<'static>, String> {
        let name = match self {
            Target::Url { host, .. } => host.clone(),
            Target::Service {
                namespace, name, ..
            } => format!("{name}.{namespace}.svc"),
        };
        ServerName::try_from(name.clone()).map_err(|e| format!("invalid server name {name:?}: {e}"))
    }

    fn path(&self) -> &str {
        match self {
            Target::Url { path, .. } | Target::Service { path, .. } => path,
        }
    }

    fn host_header(&self) -> String {
        match self {
            Target::Url { base, .. } => base.trim_start_matches("https://").to_string(),
            Target::Service {
                namespace,
                name,
                port,
                ..
            } => format!("{name}.{namespace}.svc:{port}"),
        }
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), String> {
    let bad_port = |p: &str| format!("invalid port {p:?} in {hostport:?}");
    if let Some(rest) = hostport.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in host {hostport:?}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad_port(p))?,
            None => 443,
        };
        return Ok((ip.to_string(), port));
    }
    match hostport.rsplit_once(':') {
        Some((host, p)) => Ok((host.to_string(), p.parse().map_err(|_| bad_port(p))?)),
        None => Ok((hostport.to_string(), 443)),
    }
}

/// Where one call connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// A resolved address (a Service's endpoint, an IP in the URL).
    Addr(SocketAddr),
    /// A host name to look up.
    Lookup(String, u16),
    /// A Service that cannot be resolved, and why.
    Unresolved(String),
}

/// The system's trusted roots, loaded once.
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "a system root certificate could not be loaded");
            }
            let (_, ignored) = roots.add_parsable_certificates(found.certs);
            if ignored > 0 {
                tracing::debug!(ignored, "system root certificates ignored");
            }
            Arc::new(roots)
        })
        .clone()
}

fn tls_connector(ca_bundle: Option<&[u8]>) -> Result<TlsConnector, String> {
    let roots = match ca_bundle {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("unable to load root certificates: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("unable to load root certificates: {e}"))?;
            }
            if roots.is_empty() {
                return Err(
                    "unable to load root certificates: unable to parse bytes as PEM block".into(),
                );
            }
            Arc::new(roots)
        }
        None => system_roots(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A connection ready for the next request.
struct Idle {
    addr: SocketAddr,
    sender: http1::SendRequest<Full<Bytes>>,
}

/// The client of one webhook; see the module docs.
pub(crate) struct Client {
    target: Result<Target, String>,
    tls: Result<TlsConnector, String>,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// How one exchange failed.
enum Failure {
    /// Before a response arrived (Go's `url.Error`).
    Transport(String),
    /// The webhook answered with an error status.
    Status(String),
}

impl Client {
    /// A client for `target`, trusting `ca_bundle` (PEM) or the system roots.
    pub(crate) fn new(target: Target, ca_bundle: Option<&[u8]>) -> Client {
        Client {
            target: Ok(target),
            tls: tls_connector(ca_bundle),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A client whose every call fails with `why` (an unusable `clientConfig`).
    pub(crate) fn broken(why: String) -> Client {
        Client {
            target: Err(why.clone()),
            tls: Err(why),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Where the webhook is, or why its configuration cannot be used.
    pub(crate) fn target(&self) -> Result<&Target, CallError> {
        self.target
            .as_ref()
            .map_err(|e| CallError::Client(e.clone()))
    }

    /// The URL a call posts to, as Kubernetes prints it.
    pub(crate) fn url(&self, timeout: Duration) -> String {
        let seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        match &self.target {
            Ok(Target::Url { base, path, .. }) => format!("{base}{path}?timeout={seconds}s"),
            Ok(t @ Target::Service { path, .. }) => {
                format!("https://{}{path}?timeout={seconds}s", t.host_header())
            }
            Err(_) => String::new(),
        }
    }

    /// Posts an AdmissionReview and returns the response body, all within `timeout`.
    pub(crate) async fn post(
        &self,
        to: Destination,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let target = self
            .target
            .as_ref()
            .map_err(|e| CallError::Client(e.clone()))?;
        let tls = self
            .tls
            .as_ref()
            .map_err(|e| CallError::Client(e.clone()))?;
        let url = self.url(timeout);
        let server_name = target.server_name().map_err(CallError::Client)?;
        let path = format!(
            "{}?{}",
            target.path(),
            url.rsplit_once('?').map_or("", |x| x.1)
        );
        let call = async {
            let addr = match to {
                Destination::Addr(a) => a,
                Destination::Lookup(host, port) => lookup(&host, port).await?,
                Destination::Unresolved(why) => return Err(Failure::Transport(why)),
            };
            self.exchange(addr, tls, server_name, &target.host_header(), &path, body)
                .await
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(CallError::Post {
                url,
                why: "context deadline exceeded".into(),
            }),
            Ok(Err(Failure::Transport(why))) => Err(CallError::Post { url, why }),
            Ok(Err(Failure::Status(message))) => Err(CallError::Response(message)),
            Ok(Ok(body)) => Ok(body),
        }
    }

    /// One request on an idle connection to `addr` or a new one; a pooled
    /// connection the webhook closed meanwhile is replaced once.
    async fn exchange(
        &self,
        addr: SocketAddr,
        tls: &TlsConnector,
        server_name: ServerName<'static>,
        host: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Bytes, Failure> {
        let request = || {
            http::Request::post(path)
                .header(http::header::HOST, host)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::ACCEPT, "application/json, */*")
                .header(http::header::USER_AGENT, "kube-apiserver-admission")
                .body(Full::new(body.clone()))
                .map_err(|e| Failure::Transport(e.to_string()))
        };
        if let Some(mut sender) = self.take_idle(addr) {
            match sender.send_request(request()?).await {
                Ok(response) => return self.finish(addr, sender, response).await,
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "idle webhook connection failed; reconnecting")
                }
            }
        }
        let mut sender = connect(addr, tls, server_name).await?;
        let response = sender
            .send_request(request()?)
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?;
        self.finish(addr, sender, response).await
    }

    fn take_idle(&self, addr: SocketAddr) -> Option<http1::SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|i| !i.sender.is_closed());
        let at = idle
            .iter()
            .position(|i| i.addr == addr && i.sender.is_ready())?;
        Some(idle.swap_remove(at).sender)
    }

    async fn finish(
        &self,
        addr: SocketAddr,
        sender: http1::SendRequest<Full<Bytes>>,
        response: http::Response<hyper::body::Incoming>,
    ) -> Result<Bytes, Failure> {
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| Failure::Transport(e.to_string()))?
            .to_bytes();
        if !sender.is_closed() {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(Idle { addr, sender });
            }
        }
        if status.is_success() {
            Ok(body)
        } else {
            Err(Failure::Status(status_message(status.as_u16(), &body)))
        }
    }
}

async fn lookup(host: &str, port: u16) -> Result<SocketAddr, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Failure::Transport(format!("dial tcp: lookup {host}: {}", go_io(&e))))?;
    found
        .next()
        .ok_or_else(|| Failure::Transport(format!("dial tcp: lookup {host}: no such host")))
}

async fn connect(
    addr: SocketAddr,
    tls: &TlsConnector,
    server_name: ServerName<'static>,
) -> Result<http1::SendRequest<Full<Bytes>>, Failure> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| Failure::Transport(format!("dial tcp {addr}: connect: {}", go_io(&e))))?;
    let _ = tcp.set_nodelay(true);
    let stream = tls
        .connect(server_name, tcp)
        .await
        .map_err(|e| Failure::Transport(format!("tls: {e}")))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::Transport(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(%addr, error = %e, "webhook connection ended");
        }
    });
    Ok(sender)
}

/// An I/O error as Go words the common ones.
fn go_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        std::io::ErrorKind::HostUnreachable => "no route to host".into(),
        std::io::ErrorKind::NetworkUnreachable => "network is unreachable".into(),
        _ => {
            let s = e.to_string();
            match s.split_once(" (os error") {
                Some((head, _)) => head.to_lowercase(),
                None => s,
            }
        }
    }
}

/// What client-go says about an error status (`NewGenericServerResponse`),
/// preferring the message of a `Status` the webhook sent.
fn status_message(code: u16, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && v.get("kind").and_then(Value::as_str) == Some("Status")
        && let Some(m) = v
            .get("message")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
    {
        return m.to_string();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_QUOTED_BODY)])
        .trim()
        .to_string();
    match code {
        400 => "the server rejected our request for an unknown reason".into(),
        401 => "the server has asked for the client to provide credentials".into(),
        403 if !text.is_empty() => text,
        404 => "the server could not find the requested resource".into(),
        405 => "the server does not allow this method on the requested resource".into(),
        406 | 415 => {
            "the server was unable to respond with a content type that the client supports".into()
        }
        409 => "the server reported a conflict".into(),
        422 => "the server rejected our request due to an error in our request".into(),
        429 => {
            "the server has received too many requests and has asked us to try again later".into()
        }
        503 => "the server is currently unable to handle the request".into(),
        504 => "the server was unable to return a response in the time allotted, but may still be processing the request".into(),
        c if c >= 500 => {
            format!("an error on the server ({text:?}) has prevented the request from succeeding")
        }
        c => format!("the server responded with the status code {c} but did not return more information"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_host_and_gain_the_timeout_parameter() {
        let c = Client::new(
            Target::from_url("https://127.0.0.1:8443/validate").expect("a URL"),
            None,
        );
        assert_eq!(
            c.url(Duration::from_secs(10)),
            "https://127.0.0.1:8443/validate?timeout=10s"
        );
        let t = Target::from_url("https://[::1]/x").expect("a URL");
        assert_eq!(
            t,
            Target::Url {
                base: "https://[::1]".into(),
                host: "::1".into(),
                port: 443,
                path: "/x".into()
            }
        );
        assert!(Target::from_url("http://h/").is_err());
        let s = Client::new(Target::service("ns", "svc", 8443, "/m"), None);
        assert_eq!(
            s.url(Duration::from_millis(1500)),
            "https://svc.ns.svc:8443/m?timeout=2s"
        );
    }

    #[test]
    fn a_ca_bundle_that_is_not_pem_breaks_only_that_client() {
        let c = Client::new(
            Target::from_url("https://h/").expect("a URL"),
            Some(b"not a certificate"),
        );
        assert_eq!(
            c.tls.as_ref().err().map(String::as_str),
            Some("unable to load root certificates: unable to parse bytes as PEM block")
        );
    }

    #[test]
    fn error_statuses_are_worded_like_client_go() {
        assert_eq!(
            status_message(404, b"nope"),
            "the server could not find the requested resource"
        );
        assert_eq!(
            status_message(500, b"boom"),
            "an error on the server (\"boom\") has prevented the request from succeeding"
        );
        assert_eq!(
            status_message(
                500,
                br#"{"kind":"Status","apiVersion":"v1","message":"no such thing"}"#
            ),
            "no such thing"
        );
        assert_eq!(
            status_message(302, b""),
            "the server responded with the status code 302 but did not return more information"
        );
    }

    #[tokio::test]
    async fn a_closed_port_fails_like_go_dialing_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let c = Client::new(
            Target::from_url(&format!("https://{addr}/x")).expect("a URL"),
            None,
        );
        let err = c
            .post(
                Destination::Addr(addr),
                Bytes::new(),
                Duration::from_secs(5),
            )
            .await
            .expect_err("nothing listens");
        assert_eq!(
            err.to_string(),
            format!(
                "failed to call webhook: Post \"https://{addr}/x?timeout=5s\": dial tcp {addr}: connect: connection refused"
            )
        );
    }

    #[tokio::test]
    async fn the_timeout_covers_a_webhook_that_never_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Accepts, then never speaks TLS.
        let server = tokio::spawn(async move {
            let (_conn, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let c = Client::new(
            Target::from_url(&format!("https://{addr}/slow")).expect("a URL"),
            None,
        );
        let started = std::time::Instant::now();
        let err = c
            .post(
                Destination::Addr(addr),
                Bytes::new(),
                Duration::from_millis(300),
            )
            .await
            .expect_err("no answer");
        server.abort();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            err.to_string(),
            format!(
                "failed to call webhook: Post \"https://{addr}/slow?timeout=1s\": context deadline exceeded"
            )
        );
    }
}
