//! HTTP GET probes as the kubelet's prober makes them: HTTP or HTTPS (certificates
//! not verified), `User-Agent: kube-probe/1.33` and `Accept: */*` unless the probe
//! sets them, its other headers, no keep-alive; 200 <= code < 400 passes; redirects
//! are followed (at most 10) only to the same host, and a redirect elsewhere is a
//! pass with a warning; at most [`MAX_OUTPUT`] bytes of body are read.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{MAX_OUTPUT, Outcome, Target, USER_AGENT, go_quote, resolve_port, tcp};

/// The most redirects followed (Go's http.Client stops after 10).
const MAX_REDIRECTS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A URL a probe fetches; its host is always the probe's own.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    scheme: Scheme,
    /// The host as written, without brackets.
    host: String,
    port: u16,
    /// Path and query as written (may be empty).
    path: String,
}

impl Url {
    /// `host:port`, bracketed for IPv6.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn text(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path
        )
    }

    /// The URL a `Location` header points to.
    fn resolve(&self, location: &str) -> Result<Url, String> {
        let lower = location.to_ascii_lowercase();
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || location.starts_with("//")
        {
            let full = if location.starts_with("//") {
                format!("{}:{location}", self.scheme.as_str())
            } else {
                location.to_owned()
            };
            let uri: http::Uri = full
                .parse()
                .map_err(|e: http::uri::InvalidUri| e.to_string())?;
            let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
                Some("https") => Scheme::Https,
                _ => Scheme::Http,
            };
            let host = uri
                .host()
                .ok_or("missing host")?
                .trim_matches(['[', ']'])
                .to_owned();
            return Ok(Url {
                scheme,
                host,
                port: uri.port_u16().unwrap_or(scheme.default_port()),
                path: uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
            });
        }
        let path = if location.starts_with('/') {
            location.to_owned()
        } else {
            let base = self.path.split('?').next().unwrap_or_default();
            let dir = base.rfind('/').map_or("/", |i| &base[..=i]);
            format!("{dir}{location}")
        };
        Ok(Url {
            path,
            ..self.clone()
        })
    }
}

/// An HTTP probe's request.
#[derive(Debug, Clone)]
pub(super) struct Request {
    url: Url,
    /// Where to connect: the pod's IP, whatever the URL says.
    ip: IpAddr,
    /// A `Host` header given by the probe.
    host_header: Option<String>,
    /// The probe's other headers.
    headers: Vec<(String, String)>,
}

impl Request {
    /// The request of `get` for container `c`, or why it cannot be made.
    pub(super) fn of(
        get: &HTTPGetAction,
        c: &Container,
        target: &Target,
    ) -> Result<Request, String> {
        let scheme = match get
            .scheme
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("" | "http") => Scheme::Http,
            Some("https") => Scheme::Https,
            Some(other) => return Err(format!("unsupported scheme: {other:?}")),
        };
        let ip = target.resolve(get.host.as_deref())?;
        let host = get
            .host
            .as_deref()
            .map(|h| h.trim().trim_matches(['[', ']']).to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| ip.to_string());
        let port = resolve_port(&get.port, c)?;
        let mut path = get.path.clone().unwrap_or_default();
        if !path.is_empty() && !path.starts_with('/') {
            path.insert(0, '/');
        }
        let mut host_header = None;
        let mut headers = Vec::new();
        for h in get.http_headers.iter().flatten() {
            if h.name.eq_ignore_ascii_case("host") {
                host_header.get_or_insert_with(|| h.value.clone());
            } else {
                headers.push((h.name.clone(), h.value.clone()));
            }
        }
        Ok(Request {
            url: Url {
                scheme,
                host,
                port,
                path,
            },
            ip,
            host_header,
            headers,
        })
    }
}

/// What came back.
struct Response {
    status: u16,
    location: Option<String>,
    body: String,
}

enum FetchError {
    /// No response (connect, TLS, protocol): a failure.
    Transport(String),
    /// The body could not be read: the probe errored.
    Body(String),
}

/// Runs the probe within `timeout` (redirects and body included).
pub(super) async fn probe(request: &Request, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut url = request.url.clone();
    let mut host_header = request.host_header.clone();
    let mut followed = 0;
    loop {
        let fetch = fetch(&url, request, host_header.as_deref(), deadline);
        let response = match tokio::time::timeout_at(deadline, fetch).await {
            Err(_) => {
                return Outcome::Failure(format!(
                    "Get {}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                    go_quote(&url.text())
                ));
            }
            Ok(Err(FetchError::Transport(e))) => {
                return Outcome::Failure(format!("Get {}: {e}", go_quote(&url.text())));
            }
            Ok(Err(FetchError::Body(e))) => return Outcome::Error(e),
            Ok(Ok(response)) => response,
        };
        if matches!(response.status, 301 | 302 | 303 | 307 | 308)
            && let Some(location) = &response.location
        {
            let next = match url.resolve(location) {
                Ok(next) => next,
                Err(e) => {
                    return Outcome::Failure(format!(
                        "Get {}: failed to parse Location header {}: {e}",
                        go_quote(&url.text()),
                        go_quote(location)
                    ));
                }
            };
            // Another host is never contacted: the redirect itself is the answer.
            if next.host == request.url.host {
                if followed >= MAX_REDIRECTS {
                    return Outcome::Failure(format!(
                        "Get {}: stopped after {MAX_REDIRECTS} redirects",
                        go_quote(&next.text())
                    ));
                }
                followed += 1;
                if next.authority() != url.authority() || next.scheme != url.scheme {
                    host_header = None;
                }
                url = next;
                continue;
            }
        }
        return classify(response.status, response.body);
    }
}

/// The outcome of a final response.
fn classify(status: u16, body: String) -> Outcome {
    match status {
        200..=299 => Outcome::Success,
        300..=399 => Outcome::Warning(format!("Probe terminated redirects, Response body: {body}")),
        _ => Outcome::Failure(format!("HTTP probe failed with statuscode: {status}")),
    }
}

async fn fetch(
    url: &Url,
    request: &Request,
    host_header: Option<&str>,
    deadline: Instant,
) -> Result<Response, FetchError> {
    let addr = SocketAddr::new(request.ip, url.port);
    let stream = tcp::connect_stream(addr).await.map_err(|e| {
        FetchError::Transport(format!("dial tcp {addr}: connect: {}", tcp::go_error(&e)))
    })?;
    match url.scheme {
        Scheme::Http => exchange(stream, url, request, host_header, deadline).await,
        Scheme::Https => {
            let connector = tls().map_err(FetchError::Transport)?;
            let name = rustls::pki_types::ServerName::IpAddress(request.ip.into());
            let stream = connector
                .connect(name, stream)
                .await
                .map_err(|e| FetchError::Transport(e.to_string()))?;
            exchange(stream, url, request, host_header, deadline).await
        }
    }
}

/// Aborts the connection task when the exchange ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One GET over an established connection; reads at most [`MAX_OUTPUT`] of body.
async fn exchange<S>(
    stream: S,
    url: &Url,
    request: &Request,
    host_header: Option<&str>,
    deadline: Instant,
) -> Result<Response, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let transport = |e: hyper::Error| FetchError::Transport(e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(transport)?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let path = if url.path.is_empty() { "/" } else { &url.path };
    let given = |name: &str| {
        request
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let mut builder = http::Request::get(path)
        .header(
            http::header::HOST,
            host_header.map_or_else(|| url.authority(), str::to_owned),
        )
        .header(http::header::CONNECTION, "close");
    if !given("user-agent") {
        builder = builder.header(http::header::USER_AGENT, USER_AGENT);
    }
    if !given("accept") {
        builder = builder.header(http::header::ACCEPT, "*/*");
    }
    for (name, value) in &request.headers {
        // An empty Accept removes the default one.
        if name.eq_ignore_ascii_case("accept") && value.is_empty() {
            continue;
        }
        builder = builder.header(name.as_str(), value.as_str());
    }
    let outgoing = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Transport(e.to_string()))?;
    let response = sender.send_request(outgoing).await.map_err(transport)?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = response.into_body();
    let mut read: Vec<u8> = Vec::new();
    let reading = async {
        while read.len() < MAX_OUTPUT {
            match body.frame().await {
                None => break,
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        read.extend_from_slice(&data);
                    }
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout_at(deadline, reading).await {
        Err(_) => {
            return Err(FetchError::Body(
                "context deadline exceeded (Client.Timeout or context cancellation while reading body)"
                    .into(),
            ));
        }
        Ok(Err(e)) => return Err(FetchError::Body(e)),
        Ok(Ok(())) => {}
    }
    read.truncate(MAX_OUTPUT);
    Ok(Response {
        status,
        location,
        body: String::from_utf8_lossy(&read).into_owned(),
    })
}

/// A TLS connector that does not verify the server's certificate (the kubelet's
/// probes skip verification), though it still checks the handshake's signatures.
fn tls() -> Result<tokio_rustls::TlsConnector, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Ok(Arc::new(config))
    });
    config.clone().map(tokio_rustls::TlsConnector::from)
}

/// Accepts any server certificate.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::Full;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;

    /// An HTTP/1.1 server on loopback: `/ok` 200, `/fail` 500, `/hop` redirects to
    /// `/ok`, `/loop` to itself, `/away` to another host, `/big` sends 64 KiB,
    /// `/echo` answers with the request's headers. Returns its port.
    async fn server() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let reply = |code: u16, body: String| {
                            http::Response::builder()
                                .status(code)
                                .body(Full::new(Bytes::from(body)))
                                .expect("response")
                        };
                        let redirect = |to: &str| {
                            http::Response::builder()
                                .status(302)
                                .header("location", to)
                                .body(Full::new(Bytes::from("moved")))
                                .expect("response")
                        };
                        let response = match req.uri().path() {
                            "/ok" => reply(200, "fine".into()),
                            "/fail" => reply(500, "broken".into()),
                            "/hop" => redirect("/ok"),
                            "/loop" => redirect("/loop"),
                            "/away" => redirect("http://192.0.2.1:9/elsewhere"),
                            "/big" => reply(301, "x".repeat(64 * 1024)),
                            "/slow" => {
                                tokio::time::sleep(Duration::from_secs(5)).await;
                                reply(200, String::new())
                            }
                            _ => {
                                let mut seen: Vec<String> = req
                                    .headers()
                                    .iter()
                                    .map(|(n, v)| format!("{n}={}", v.to_str().unwrap_or_default()))
                                    .collect();
                                seen.sort();
                                reply(301, seen.join("\n"))
                            }
                        };
                        Ok::<_, Infallible>(response)
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        port
    }

    fn request(port: u16, path: &str, headers: serde_json::Value) -> Request {
        let get: HTTPGetAction = serde_json::from_value(serde_json::json!({
            "path": path, "port": port, "httpHeaders": headers,
        }))
        .expect("httpGet");
        let target = Target {
            pod_ip: Some(IpAddr::from([127, 0, 0, 1])),
            host_network: false,
            node_ip: IpAddr::from([127, 0, 0, 1]),
        };
        Request::of(&get, &Container::default(), &target).expect("request")
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn codes_below_400_pass_and_others_fail_with_the_status_code() {
        let port = server().await;
        let empty = serde_json::json!([]);
        assert_eq!(
            probe(&request(port, "/ok", empty.clone()), SECOND).await,
            Outcome::Success
        );
        assert_eq!(
            probe(&request(port, "/fail", empty.clone()), SECOND).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        assert_eq!(
            probe(&request(port, "/hop", empty.clone()), SECOND).await,
            Outcome::Success
        );
        assert_eq!(
            probe(&request(port, "/loop", empty.clone()), SECOND).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{port}/loop\": stopped after 10 redirects"
            ))
        );
        assert_eq!(
            probe(&request(port, "/away", empty.clone()), SECOND).await,
            Outcome::Warning("Probe terminated redirects, Response body: moved".into()),
            "a redirect to another host is not followed"
        );
        let Outcome::Warning(big) = probe(&request(port, "/big", empty.clone()), SECOND).await
        else {
            panic!("a 301 without location is a warning");
        };
        assert!(big.len() <= MAX_OUTPUT + 64, "{}", big.len());
        assert_eq!(
            probe(&request(port, "/slow", empty), SECOND).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ))
        );
    }

    #[tokio::test]
    async fn the_kubelets_headers_are_sent_unless_the_probe_sets_its_own() {
        let port = server().await;
        let Outcome::Warning(seen) =
            probe(&request(port, "/echo", serde_json::json!([])), SECOND).await
        else {
            panic!("echo answers 301");
        };
        assert!(seen.contains("user-agent=kube-probe/1.33"), "{seen}");
        assert!(seen.contains("accept=*/*"), "{seen}");
        assert!(seen.contains(&format!("host=127.0.0.1:{port}")), "{seen}");
        let custom = serde_json::json!([
            {"name": "User-Agent", "value": "mine"},
            {"name": "X-Probe", "value": "yes"},
            {"name": "Host", "value": "example.test"},
            {"name": "Accept", "value": ""},
        ]);
        let Outcome::Warning(seen) = probe(&request(port, "/echo", custom), SECOND).await else {
            panic!("echo answers 301");
        };
        assert!(
            seen.contains("user-agent=mine") && seen.contains("x-probe=yes"),
            "{seen}"
        );
        assert!(seen.contains("host=example.test"), "{seen}");
        assert!(!seen.contains("accept="), "{seen}");
    }

    #[tokio::test]
    async fn https_probes_do_not_verify_the_certificate() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = apiserver::Pki::load_or_create(&apiserver::PkiConfig {
            dir: dir.path().to_path_buf(),
            sans: vec!["127.0.0.1".into()],
        })
        .expect("pki");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pki.serving_cert.as_bytes())
                .collect::<Result<_, _>>()
                .expect("certs");
        let key = PrivateKeyDer::from_pem_slice(pki.serving_key.as_bytes()).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(tls) = acceptor.accept(stream).await else {
                    continue;
                };
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("secure"))))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service),
                );
            }
        });
        let get: HTTPGetAction = serde_json::from_value(serde_json::json!({
            "path": "/", "port": port, "scheme": "HTTPS",
        }))
        .expect("httpGet");
        let target = Target {
            pod_ip: Some(IpAddr::from([127, 0, 0, 1])),
            host_network: false,
            node_ip: IpAddr::from([127, 0, 0, 1]),
        };
        let request = Request::of(&get, &Container::default(), &target).expect("request");
        assert_eq!(probe(&request, SECOND).await, Outcome::Success);
    }

    #[tokio::test]
    async fn a_closed_port_fails_as_go_says() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        assert_eq!(
            probe(&request(port, "/healthz", serde_json::json!([])), SECOND).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }

    #[test]
    fn redirect_locations_resolve_against_the_current_url() {
        let url = Url {
            scheme: Scheme::Http,
            host: "10.42.0.7".into(),
            port: 8080,
            path: "/a/b?x=1".into(),
        };
        assert_eq!(
            url.resolve("/c").expect("abs path").text(),
            "http://10.42.0.7:8080/c"
        );
        assert_eq!(
            url.resolve("c").expect("rel").text(),
            "http://10.42.0.7:8080/a/c"
        );
        let other = url.resolve("https://10.42.0.7/d").expect("absolute");
        assert_eq!((other.scheme, other.port), (Scheme::Https, 443));
        assert_eq!(
            url.resolve("//evil.example:81/")
                .expect("scheme-relative")
                .host,
            "evil.example"
        );
    }

    #[test]
    fn the_request_refuses_hosts_other_than_the_pod_and_unknown_schemes() {
        let target = Target {
            pod_ip: Some(IpAddr::from([10, 42, 0, 7])),
            host_network: false,
            node_ip: IpAddr::from([192, 168, 1, 10]),
        };
        let get = |host: Option<&str>, scheme: Option<&str>| HTTPGetAction {
            host: host.map(str::to_owned),
            scheme: scheme.map(str::to_owned),
            port: IntOrString::Int(80),
            ..Default::default()
        };
        let c = Container::default();
        let ok = Request::of(&get(None, Some("HTTPS")), &c, &target).expect("pod IP");
        assert_eq!(ok.url.text(), "https://10.42.0.7:80");
        assert!(Request::of(&get(Some("192.0.2.1"), None), &c, &target).is_err());
        assert!(Request::of(&get(None, Some("FTP")), &c, &target).is_err());
    }
}
