//! Joining a node without the CA key ever leaving the server (k3s's bootstrap, in a
//! protocol of our own). Both sides live here:
//!
//! - The join token is `K10<sha256 of the CA certificate PEM, hex>::server:<secret>`
//!   ([`JoinToken`]); `skiff server` writes it to `<data-dir>/token`.
//! - `GET /cacerts` (no authentication) serves the cluster CA. The agent fetches it
//!   without verifying the server and keeps it only when its hash is the token's: the
//!   token pins the CA, there is no trust on first use.
//! - `POST /v1-skiff/node-credentials` with `Authorization: Bearer <secret>`, over a
//!   connection verified against that CA, carries certificate signing requests for two
//!   keys the agent generated. The server answers with a client certificate
//!   `system:node:<name>` (O=`system:nodes`) and a node API serving certificate for the
//!   node's IP and names, both signed by the cluster CA ([`join`] is the agent's side).
//! - A node name belongs to the first machine that joins with it (k3s's node
//!   password): the request carries a random password the agent keeps in its data
//!   dir; the server keeps its hash in the Secret `kube-system/<node>.node-password.skiff`
//!   and refuses another password for that name, so a token holder cannot take over
//!   an existing node's identity by joining under its name.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use api::status::ApiError;
use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, CertificateSigningRequestParams, DnType, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::handler::Reply;
use crate::serve::State;

/// Where the cluster CA is served.
pub const CA_PATH: &str = "/cacerts";
/// Where a joining node gets its certificates.
pub const CREDENTIALS_PATH: &str = "/v1-skiff/node-credentials";
/// The secure token's prefix (k3s's format, version 10).
const TOKEN_PREFIX: &str = "K10";
/// The user part of a secure token.
const TOKEN_USER: &str = "server";
/// The group of node client certificates.
const NODES_GROUP: &str = "system:nodes";
/// What a refused token is told.
const WRONG_TOKEN: &str = "the join token is not valid for this server: use the token from <data-dir>/token on the server";

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The token is malformed.
    #[error("invalid join token: {0}")]
    InvalidToken(String),
    /// The token is a bare secret, which cannot pin the server's CA.
    #[error(
        "the join token is a bare secret, which cannot verify the server: pass the full token from <data-dir>/token on the server (K10<CA hash>::server:<secret>)"
    )]
    BareToken,
    /// The `--server` URL is not usable.
    #[error("--server {url:?}: {why}")]
    InvalidServer {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The server could not be reached or spoke no HTTPS.
    #[error("cannot reach the server at {server}: {why}")]
    Unreachable {
        /// host:port.
        server: String,
        /// The cause.
        why: String,
    },
    /// The server's CA is not the one the token names.
    #[error(
        "the server's CA certificate (sha256 {got}) is not the one the join token names ({expected}): check --server and --token"
    )]
    CaMismatch {
        /// The token's hash.
        expected: String,
        /// The served CA's hash.
        got: String,
    },
    /// The server refused the request.
    #[error("the server refused to join this node ({code}): {message}")]
    Refused {
        /// HTTP status code.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// The server answered something unexpected.
    #[error("unexpected answer from the server: {0}")]
    BadResponse(String),
    /// Making keys or signing requests failed.
    #[error("node keys: {0}")]
    Keys(String),
}

/// A join token: the secret nodes present, and the hash of the CA they may trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the cluster CA certificate's PEM, lower-case hex (absent in a bare
    /// secret).
    pub ca_hash: Option<String>,
    /// The shared secret.
    pub secret: String,
}

impl JoinToken {
    /// The secure token for a cluster CA and a secret.
    pub fn new(ca_cert_pem: &str, secret: &str) -> JoinToken {
        JoinToken {
            ca_hash: Some(ca_hash(ca_cert_pem)),
            secret: secret.to_owned(),
        }
    }

    /// Parses `K10<hash>::server:<secret>` or a bare secret.
    pub fn parse(token: &str) -> Result<JoinToken, JoinError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(JoinError::InvalidToken("it is empty".into()));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(JoinError::InvalidToken("it contains white space".into()));
        }
        let Some((head, credentials)) = token.split_once("::") else {
            return Ok(JoinToken {
                ca_hash: None,
                secret: token.to_owned(),
            });
        };
        let hash = head.strip_prefix(TOKEN_PREFIX).ok_or_else(|| {
            JoinError::InvalidToken(format!("want {TOKEN_PREFIX}<CA hash>::server:<secret>"))
        })?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(JoinError::InvalidToken(
                "the CA hash is not 64 hex digits".into(),
            ));
        }
        let secret = credentials
            .split_once(':')
            .map_or(credentials, |(_, secret)| secret);
        if secret.is_empty() {
            return Err(JoinError::InvalidToken("the secret is empty".into()));
        }
        Ok(JoinToken {
            ca_hash: Some(hash.to_ascii_lowercase()),
            secret: secret.to_owned(),
        })
    }

    /// Whether this token pins the CA `ca_cert_pem` (a bare secret pins none).
    pub fn pins(&self, ca_cert_pem: &str) -> bool {
        self.ca_hash.as_deref() == Some(ca_hash(ca_cert_pem).as_str())
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ca_hash {
            Some(hash) => write!(f, "{TOKEN_PREFIX}{hash}::{TOKEN_USER}:{}", self.secret),
            None => f.write_str(&self.secret),
        }
    }
}

/// SHA-256 of a CA certificate's PEM text, lower-case hex.
pub fn ca_hash(ca_cert_pem: &str) -> String {
    sha2::Sha256::digest(ca_cert_pem.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a node asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialsRequest {
    node_name: String,
    node_ip: IpAddr,
    #[serde(default)]
    hostnames: Vec<String>,
    /// PKCS#10 request (PEM) for the client key.
    client_csr: String,
    /// PKCS#10 request (PEM) for the node API's serving key.
    serving_csr: String,
    /// The node's password: the same on every join of this node.
    node_password: String,
}

/// What the server answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialsResponse {
    ca_cert: String,
    client_cert: String,
    serving_cert: String,
}

/// The server's side: the CA and the secret of the join token.
pub(crate) struct Joiner {
    secret: Option<String>,
    ca_cert: String,
    ca_key: String,
}

impl Joiner {
    pub(crate) fn new(secret: Option<String>, pki: &crate::Pki) -> Joiner {
        Joiner {
            secret: secret.filter(|s| !s.is_empty()),
            ca_cert: pki.ca_cert.clone(),
            ca_key: pki.ca_key.clone(),
        }
    }
}

/// Whether `path` is served here.
pub(crate) fn handles(path: &str) -> bool {
    path == CA_PATH || path == CREDENTIALS_PATH
}

/// Serves the CA and node credentials.
pub(crate) async fn serve(state: &State, req: Request<Incoming>) -> Result<Reply, ApiError> {
    let joiner = &state.join;
    match (req.method(), req.uri().path()) {
        (&http::Method::GET, CA_PATH) => Ok(Reply::Raw(
            200,
            "application/x-pem-file",
            Bytes::from(joiner.ca_cert.clone()),
        )),
        (&http::Method::POST, CREDENTIALS_PATH) => {
            let Some(secret) = &joiner.secret else {
                return Err(ApiError::forbidden(
                    "joining nodes is switched off on this server",
                ));
            };
            let presented = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .and_then(|t| JoinToken::parse(t).ok());
            let accepted = presented.is_some_and(|t| {
                constant_time_eq(t.secret.as_bytes(), secret.as_bytes())
                    && (t.ca_hash.is_none() || t.pins(&joiner.ca_cert))
            });
            if !accepted {
                let mut refused = ApiError::unauthorized();
                refused.message = WRONG_TOKEN.into();
                return Err(refused);
            }
            let body = crate::handler::read_body(state, req.into_body()).await?;
            let request: CredentialsRequest = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("node credentials request: {e}")))?;
            let response = sign(joiner, &request)?;
            claim_node_name(state, &request.node_name, &request.node_password).await?;
            tracing::info!(node = %request.node_name, node_ip = %request.node_ip, "node joined: certificates issued");
            Ok(Reply::Json(
                200,
                serde_json::to_value(response).map_err(|e| ApiError::internal(e.to_string()))?,
            ))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The Secret holding the hash of a node's password.
fn password_secret(node_name: &str) -> String {
    format!("{node_name}.node-password.skiff")
}

fn password_hash(password: &str) -> String {
    sha2::Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Records `password` as `node_name`'s on its first join; refuses another password
/// for a name that is taken.
async fn claim_node_name(state: &State, node_name: &str, password: &str) -> Result<(), ApiError> {
    if password.len() < 16 {
        return Err(ApiError::bad_request(
            "the node password must be at least 16 characters",
        ));
    }
    let secrets = state
        .registry
        .lookup("", "v1", "secrets")
        .cloned()
        .ok_or_else(|| ApiError::internal("built-in resource secrets missing"))?;
    let name = password_secret(node_name);
    let wanted = password_hash(password);
    let refused = || {
        ApiError::forbidden(format!(
            "node password rejected: a node named {node_name:?} already exists, joined from another machine (or its <data-dir>/agent/node-password changed); pick another --node-name, or if that machine is gone: kubectl delete node {node_name}; kubectl -n kube-system delete secret {name}"
        ))
    };
    let matches = |secret: &serde_json::Value| {
        let stored = secret["data"]["hash"].as_str().and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        });
        stored.is_some_and(|h| constant_time_eq(&h, wanted.as_bytes()))
    };
    match state
        .storage
        .get(&secrets, Some("kube-system"), &name)
        .await
    {
        Ok(secret) => {
            return if matches(&secret) {
                Ok(())
            } else {
                Err(refused())
            };
        }
        Err(e) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    // A registered node without a password (the server's own, or one whose Secret was
    // deleted) is not up for grabs either.
    let nodes = state
        .registry
        .lookup("", "v1", "nodes")
        .cloned()
        .ok_or_else(|| ApiError::internal("built-in resource nodes missing"))?;
    match state.storage.get(&nodes, None, node_name).await {
        Ok(_) => return Err(refused()),
        Err(e) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    let encoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&wanted)
    };
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {"skiff.io/node-password": "true"},
        },
        "type": "skiff.io/node-password",
        "data": {"hash": encoded},
    });
    let strategy = crate::strategy::for_resource(&secrets);
    match crate::rest::write::create_object(state, &secrets, strategy, secret, false).await {
        Ok(_) => Ok(()),
        // Another join under this name won the race: compare with what it stored.
        Err(e) if e.reason == "AlreadyExists" => {
            let secret = state
                .storage
                .get(&secrets, Some("kube-system"), &name)
                .await?;
            if matches(&secret) {
                Ok(())
            } else {
                Err(refused())
            }
        }
        Err(e) => Err(e),
    }
}

/// Signs the node's two requests with the cluster CA; the names in the requests are
/// ignored, the certificates say what the server decides.
fn sign(joiner: &Joiner, request: &CredentialsRequest) -> Result<CredentialsResponse, ApiError> {
    if !is_dns_subdomain(&request.node_name) {
        return Err(ApiError::bad_request(format!(
            "node name {:?}: want a DNS-1123 subdomain (lower case letters, digits, '-' and '.')",
            request.node_name
        )));
    }
    if let Some(bad) = request.hostnames.iter().find(|h| !is_dns_subdomain(h)) {
        return Err(ApiError::bad_request(format!(
            "host name {bad:?}: want a DNS-1123 subdomain"
        )));
    }
    let internal = |e: crate::Error| ApiError::internal(e.to_string());
    let csr = |what: &str, pem: &str| {
        CertificateSigningRequestParams::from_pem(pem)
            .map_err(|e| ApiError::bad_request(format!("{what} signing request: {e}")))
    };
    let client_csr = csr("client", &request.client_csr)?;
    let serving_csr = csr("serving", &request.serving_csr)?;
    let issuer = crate::pki::issuer(&joiner.ca_cert, &joiner.ca_key).map_err(internal)?;
    let user = format!("system:node:{}", request.node_name);
    let client_cert = crate::pki::client_params(&user, &[NODES_GROUP])
        .signed_by(&client_csr.public_key, &issuer)
        .map_err(|e| ApiError::internal(format!("signing the client certificate: {e}")))?;
    let mut sans = vec![request.node_ip.to_string(), request.node_name.clone()];
    for h in &request.hostnames {
        if !sans.contains(h) {
            sans.push(h.clone());
        }
    }
    let serving_cert = crate::pki::serving_params(&user, &sans)
        .map_err(internal)?
        .signed_by(&serving_csr.public_key, &issuer)
        .map_err(|e| ApiError::internal(format!("signing the serving certificate: {e}")))?;
    Ok(CredentialsResponse {
        ca_cert: joiner.ca_cert.clone(),
        client_cert: client_cert.pem(),
        serving_cert: format!("{}{}", serving_cert.pem(), joiner.ca_cert),
    })
}

fn is_dns_subdomain(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| alnum(b) || b == b'-' || b == b'.')
        && name.bytes().next().is_some_and(alnum)
        && name.bytes().last().is_some_and(alnum)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a node gets by joining: the cluster CA and its own certificates and keys.
#[derive(Debug, Clone)]
pub struct NodeCredentials {
    /// The cluster CA (PEM), verified against the token.
    pub ca_cert: String,
    /// Client certificate `system:node:<name>`, O=`system:nodes` (PEM).
    pub client_cert: String,
    /// Its key (PEM), generated on the node.
    pub client_key: String,
    /// The node API's serving certificate, followed by the CA (PEM).
    pub serving_cert: String,
    /// Its key (PEM), generated on the node.
    pub serving_key: String,
}

/// The agent's side: verifies the server's CA against `token`, then asks for
/// certificates for keys made here, named `node_name` with the node's IP and
/// `hostnames` in the serving certificate.
pub async fn join(
    server: &str,
    token: &JoinToken,
    node_name: &str,
    node_ip: IpAddr,
    hostnames: &[String],
    node_password: &str,
) -> Result<NodeCredentials, JoinError> {
    let Some(expected) = token.ca_hash.clone() else {
        return Err(JoinError::BareToken);
    };
    let target = Target::parse(server)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    // 1. The CA, from a server not verified yet: the token decides.
    let unverified = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| JoinError::Keys(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider.clone())))
        .with_no_client_auth();
    let (code, body) = target
        .request(unverified, http::Method::GET, CA_PATH, None, None)
        .await?;
    if code != 200 {
        return Err(JoinError::BadResponse(format!(
            "GET {CA_PATH} answered {code}: is this a Skiff server?"
        )));
    }
    let ca_cert = String::from_utf8(body.to_vec())
        .map_err(|_| JoinError::BadResponse(format!("{CA_PATH} is not PEM")))?;
    let got = ca_hash(&ca_cert);
    if got != expected {
        return Err(JoinError::CaMismatch { expected, got });
    }

    // 2. Certificates for our own keys, over a connection verified against that CA.
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_cert.as_bytes()) {
        let der = der.map_err(|e| JoinError::BadResponse(format!("the CA: {e}")))?;
        roots
            .add(der)
            .map_err(|e| JoinError::BadResponse(format!("the CA: {e}")))?;
    }
    let verified = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| JoinError::Keys(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let user = format!("system:node:{node_name}");
    let (client_key, client_csr) = key_and_request(&user)?;
    let (serving_key, serving_csr) = key_and_request(&user)?;
    let request = CredentialsRequest {
        node_name: node_name.to_owned(),
        node_ip,
        hostnames: hostnames.to_vec(),
        client_csr,
        serving_csr,
        node_password: node_password.to_owned(),
    };
    let body = serde_json::to_vec(&request).map_err(|e| JoinError::Keys(e.to_string()))?;
    let (code, body) = target
        .request(
            verified,
            http::Method::POST,
            CREDENTIALS_PATH,
            Some(&token.secret),
            Some(body),
        )
        .await?;
    if code != 200 {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(JoinError::Refused { code, message });
    }
    let response: CredentialsResponse = serde_json::from_slice(&body)
        .map_err(|e| JoinError::BadResponse(format!("{CREDENTIALS_PATH}: {e}")))?;
    if response.ca_cert != ca_cert {
        return Err(JoinError::BadResponse(
            "the certificates come with another CA".into(),
        ));
    }
    Ok(NodeCredentials {
        ca_cert,
        client_cert: response.client_cert,
        client_key,
        serving_cert: response.serving_cert,
        serving_key,
    })
}

/// A new key (PEM) and a signing request for it (PEM).
fn key_and_request(common_name: &str) -> Result<(String, String), JoinError> {
    let keys = |e: rcgen::Error| JoinError::Keys(e.to_string());
    let key = KeyPair::generate().map_err(keys)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(keys)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let csr = params.serialize_request(&key).map_err(keys)?;
    Ok((key.serialize_pem(), csr.pem().map_err(keys)?))
}

/// Where the server is.
struct Target {
    host: String,
    port: u16,
    authority: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, JoinError> {
        let invalid = |why: &str| JoinError::InvalidServer {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let uri: http::Uri = url.parse().map_err(|_| invalid("want https://HOST:PORT"))?;
        if uri.scheme_str() != Some("https") {
            return Err(invalid("want https://HOST:PORT"));
        }
        let host = uri
            .host()
            .ok_or_else(|| invalid("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let authority = uri
            .authority()
            .map_or_else(|| host.clone(), |a| a.to_string());
        Ok(Target {
            host,
            port,
            authority,
        })
    }

    /// One HTTP/1.1 request over TLS; the status and the body.
    async fn request(
        &self,
        mut tls: rustls::ClientConfig,
        method: http::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), JoinError> {
        let unreachable = |why: String| JoinError::Unreachable {
            server: self.authority.clone(),
            why,
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = match self.host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(self.host.clone())
                .map_err(|e| unreachable(format!("host name: {e}")))?,
        };
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
                .connect(name, tcp)
                .await
                .map_err(|e| unreachable(format!("TLS: {e}")))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
            let connection = tokio::spawn(connection);
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header(header::HOST, &self.authority)
                .header(header::ACCEPT, "application/json");
            if let Some(secret) = bearer {
                request = request.header(header::AUTHORIZATION, format!("Bearer {secret}"));
            }
            if body.is_some() {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            let request = request
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| JoinError::BadResponse(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let code = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            connection.abort();
            Ok((code, bytes))
        };
        tokio::time::timeout(Duration::from_secs(15), exchange)
            .await
            .map_err(|_| unreachable("no answer within 15 s".into()))?
    }
}

/// Accepts any server certificate: only for fetching the CA, which the token then
/// verifies. Handshake signatures are still checked.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_tokens_round_trip_and_pin_their_ca() {
        let token = JoinToken::new("CA PEM", "s3cret");
        let text = token.to_string();
        assert!(text.starts_with("K10"), "{text}");
        assert!(text.ends_with("::server:s3cret"), "{text}");
        let parsed = JoinToken::parse(&format!("{text}\n")).expect("parses");
        assert_eq!(parsed, token);
        assert!(parsed.pins("CA PEM"));
        assert!(!parsed.pins("another CA"));
    }

    #[test]
    fn bare_secrets_parse_but_pin_nothing() {
        let token = JoinToken::parse("abc123").expect("parses");
        assert_eq!(token.secret, "abc123");
        assert!(token.ca_hash.is_none());
        assert!(!token.pins("CA PEM"));
        assert_eq!(token.to_string(), "abc123");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in ["", "K10abc::server:x", "X10::server:x", "a b"] {
            assert!(JoinToken::parse(bad).is_err(), "{bad:?}");
        }
        let hash = "0".repeat(64);
        assert!(JoinToken::parse(&format!("K10{hash}::server:")).is_err());
    }

    #[test]
    fn node_names_must_be_dns_subdomains() {
        assert!(is_dns_subdomain("node-1.example"));
        assert!(!is_dns_subdomain("Node_1"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain(""));
    }

    #[test]
    fn the_server_signs_the_nodes_own_keys_with_its_names() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = crate::Pki::load_or_create(&crate::PkiConfig {
            dir: dir.path().to_path_buf(),
            sans: vec!["127.0.0.1".into()],
        })
        .expect("pki");
        let joiner = Joiner::new(Some("s".into()), &pki);
        let (_, client_csr) = key_and_request("system:admin").expect("csr");
        let (_, serving_csr) = key_and_request("x").expect("csr");
        let response = sign(
            &joiner,
            &CredentialsRequest {
                node_name: "worker-1".into(),
                node_ip: IpAddr::from([10, 0, 0, 7]),
                hostnames: vec!["worker-1.lan".into()],
                client_csr,
                serving_csr,
                node_password: String::new(),
            },
        )
        .expect("signed");
        let der = CertificateDer::from_pem_slice(response.client_cert.as_bytes()).expect("pem");
        let id = crate::authn::identity_from_certificate(der.as_ref()).expect("identity");
        assert_eq!(id.user, "system:node:worker-1", "the CSR's name is ignored");
        assert!(id.groups.contains(&"system:nodes".to_owned()));
        let der = CertificateDer::from_pem_slice(response.serving_cert.as_bytes()).expect("pem");
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
        let sans = format!("{:?}", cert.subject_alternative_name().expect("ext"));
        for name in ["10.0.0.7", "worker-1", "worker-1.lan"] {
            assert!(
                sans.contains(name) || sans.contains("[10, 0, 0, 7]"),
                "{name} in {sans}"
            );
        }
        assert!(
            sign(
                &joiner,
                &CredentialsRequest {
                    node_name: "Bad_Name".into(),
                    node_ip: IpAddr::from([10, 0, 0, 7]),
                    hostnames: Vec::new(),
                    client_csr: String::new(),
                    serving_csr: String::new(),
                    node_password: String::new(),
                }
            )
            .is_err()
        );
    }
}
