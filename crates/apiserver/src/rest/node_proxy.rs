//! The subresources served by a node agent: `pods/log`, `pods/exec`, `pods/attach`,
//! `pods/portforward` and `nodes/proxy`. The API server finds the pod's node, connects
//! to its node API (the Node's InternalIP and `status.daemonEndpoints.kubeletEndpoint`)
//! over HTTPS with its kubelet-client certificate, verifying the node's serving
//! certificate against the cluster CA, and passes the exchange through: a log is
//! streamed; an upgrade (SPDY or WebSocket) is forwarded with its headers and the
//! two connections are spliced once the node switched protocols, so the streaming
//! protocol is negotiated end to end between the client and the node.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use api::status::ApiError;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio_rustls::TlsConnector;

use crate::authn::Identity;
use crate::handler::Body;
use crate::request::RequestInfo;
use crate::serve::State;
use crate::{Error, Pki};

/// The kubelet's port when a Node does not publish one.
const DEFAULT_KUBELET_PORT: u16 = 10250;
/// How long connecting to a node API may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest error body read from a node API.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Connects to node APIs as `kube-apiserver-kubelet-client`.
pub(crate) struct NodeClient {
    tls: TlsConnector,
}

impl NodeClient {
    /// A client presenting the PKI's kubelet-client certificate and trusting node
    /// serving certificates signed by the cluster CA.
    pub(crate) fn new(pki: &Pki) -> Result<Self, Error> {
        let tls = |e: &dyn std::fmt::Display| Error::Tls(format!("kubelet client: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(pki.ca_cert.as_bytes()) {
            roots.add(ca.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
        }
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pki.kubelet_client_cert.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| tls(&e))?;
        let key = PrivateKeyDer::from_pem_slice(pki.kubelet_client_key.as_bytes())
            .map_err(|e| tls(&e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(&e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| tls(&e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }
}

/// What a request proxied to a node addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `pods/{log,exec,attach,portforward}` of a pod.
    Pod {
        namespace: String,
        name: String,
        subresource: &'static str,
    },
    /// `nodes/{name}/proxy/{path}`.
    Node { name: String, path: String },
}

/// Recognises the paths served by node agents.
pub(crate) fn target(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", name, sub] => {
            let subresource = match *sub {
                "log" => "log",
                "exec" => "exec",
                "attach" => "attach",
                "portforward" => "portforward",
                _ => return None,
            };
            Some(Target::Pod {
                namespace: (*ns).to_owned(),
                name: (*name).to_owned(),
                subresource,
            })
        }
        ["api", "v1", "nodes", name, "proxy", rest @ ..] => Some(Target::Node {
            name: (*name).to_owned(),
            path: format!("/{}", rest.join("/")),
        }),
        _ => None,
    }
}

/// Serves a request for `target`: validation against the pod, then the node.
pub(crate) async fn serve(
    state: &Arc<State>,
    who: &Identity,
    target: Target,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let query = crate::request::parse_query(req.uri().query());
    let method = req.method().clone();
    let verb = if method == http::Method::GET {
        "get"
    } else {
        "create"
    };
    let info = RequestInfo {
        path: req.uri().path().to_owned(),
        is_resource: true,
        verb: verb.into(),
        version: "v1".into(),
        query: query.clone(),
        ..Default::default()
    };
    match target {
        Target::Pod {
            namespace,
            name,
            subresource,
        } => {
            state.authorizer.authorize(
                who,
                &RequestInfo {
                    resource: "pods".into(),
                    subresource: subresource.into(),
                    namespace: Some(namespace.clone()),
                    name: Some(name.clone()),
                    ..info
                },
            )?;
            let allowed = match subresource {
                "log" => method == http::Method::GET,
                _ => matches!(method, http::Method::GET | http::Method::POST),
            };
            if !allowed {
                return Err(ApiError::method_not_allowed());
            }
            let pods = resource(state, "pods")?;
            let pod = state.storage.get(&pods, Some(&namespace), &name).await?;
            let node = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let path = match subresource {
                "portforward" => {
                    if node.is_empty() {
                        return Err(no_host(&name));
                    }
                    format!("/portForward/{namespace}/{name}")
                }
                _ => {
                    let container = container(&pod, &name, query.get("container"))?;
                    if subresource == "log" && node.is_empty() {
                        // Kubernetes answers an unscheduled pod's log with nothing.
                        return Ok(empty_log());
                    }
                    if subresource != "log" {
                        if node.is_empty() {
                            return Err(no_host(&name));
                        }
                        let phase = pod
                            .pointer("/status/phase")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        if matches!(phase, "Succeeded" | "Failed") {
                            return Err(ApiError::bad_request(format!(
                                "cannot {subresource} into a container in a completed pod; current phase is {phase}"
                            )));
                        }
                    }
                    let kubelet_path = if subresource == "log" {
                        "containerLogs"
                    } else {
                        subresource
                    };
                    format!("/{kubelet_path}/{namespace}/{name}/{container}")
                }
            };
            let query = req
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            forward(state, &node, &format!("{path}{query}"), req).await
        }
        Target::Node { name, path } => {
            state.authorizer.authorize(
                who,
                &RequestInfo {
                    resource: "nodes".into(),
                    subresource: "proxy".into(),
                    name: Some(name.clone()),
                    ..info
                },
            )?;
            let query = req
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            forward(state, &name, &format!("{path}{query}"), req).await
        }
    }
}

fn resource(state: &State, plural: &str) -> Result<Arc<api::resource::ResourceInfo>, ApiError> {
    state
        .registry
        .lookup("", "v1", plural)
        .cloned()
        .ok_or_else(|| ApiError::internal(format!("the {plural} resource is not registered")))
}

fn no_host(pod: &str) -> ApiError {
    ApiError::bad_request(format!("pod {pod} does not have a host assigned"))
}

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request addresses, checked as Kubernetes checks it.
fn container(pod: &Value, pod_name: &str, asked: Option<&String>) -> Result<String, ApiError> {
    let containers = names(pod, "containers");
    let init = names(pod, "initContainers");
    let ephemeral = names(pod, "ephemeralContainers");
    match asked.map(String::as_str).filter(|c| !c.is_empty()) {
        Some(c) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c)
            {
                Ok(c.to_owned())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None if containers.is_empty() => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {pod_name}"
        ))),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

fn empty_log() -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

/// Where a Node's agent listens: its InternalIP (else another address) and the
/// published kubelet port.
async fn node_endpoint(state: &State, node: &str) -> Result<(String, u16), ApiError> {
    let nodes = resource(state, "nodes")?;
    let obj = state.storage.get(&nodes, None, node).await?;
    let addresses = obj
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let address = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|ty| {
            addresses
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) == Some(ty))
                .and_then(|a| a.get("address").and_then(Value::as_str))
        })
        .ok_or_else(|| {
            ApiError::internal(format!("node {node} has no address to reach its agent at"))
        })?;
    let port = obj
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok((address.to_owned(), port))
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        && req.headers().contains_key(header::UPGRADE)
}

/// Headers never passed to a node: the client's credentials and framing.
fn passes(name: &header::HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host" | "authorization" | "transfer-encoding" | "impersonate-user" | "impersonate-group"
    )
}

/// Sends `req` to the node API of `node` at `path_and_query` and passes its answer
/// (a stream, an upgraded connection, or an error turned into a `Status`) back.
async fn forward(
    state: &State,
    node: &str,
    path_and_query: &str,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (host, port) = node_endpoint(state, node).await?;
    let unreachable =
        |e: &dyn std::fmt::Display| ApiError::internal(format!("error dialing backend: {e}"));
    let server_name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.clone()).map_err(|e| unreachable(&e))?,
    };
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| unreachable(&format!("dial tcp {host}:{port}: i/o timeout")))?
    .map_err(|e| unreachable(&format!("dial tcp {host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let tls = tokio::time::timeout(
        CONNECT_TIMEOUT,
        state.node_client.tls.connect(server_name, tcp),
    )
    .await
    .map_err(|_| unreachable(&"TLS handshake timeout"))?
    .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "node API connection ended");
        }
    });

    let upgrade = is_upgrade(&req);
    let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(path_and_query);
    for (name, value) in &parts.headers {
        if passes(name) {
            builder = builder.header(name, value);
        }
    }
    builder = builder.header(header::HOST, format!("{host}:{port}"));
    // Upgrades carry no body; other requests (nodes/proxy) stream theirs.
    let body = if upgrade {
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync()
    } else {
        body.boxed_unsync()
    };
    let outgoing = builder
        .body(body)
        .map_err(|e| ApiError::internal(format!("building the node request: {e}")))?;
    let response = sender
        .send_request(outgoing)
        .await
        .map_err(|e| unreachable(&e))?;
    let status = response.status();

    if let Some(client_side) = client_side {
        if status != StatusCode::SWITCHING_PROTOCOLS {
            return Err(node_error(response).await);
        }
        let headers = response.headers().clone();
        let node_side = hyper::upgrade::on(response);
        tokio::spawn(async move {
            let (client, node) = match tokio::join!(client_side, node_side) {
                (Ok(c), Ok(n)) => (c, n),
                (c, n) => {
                    tracing::debug!(client = ?c.err(), node = ?n.err(), "stream upgrade failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut node = TokioIo::new(node);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut node).await {
                tracing::debug!(error = %e, "stream relay ended");
            }
        });
        let mut out = Response::new(full(Bytes::new()));
        *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *out.headers_mut() = headers;
        return Ok(out);
    }
    if !status.is_success() {
        return Err(node_error(response).await);
    }
    let headers = response.headers().clone();
    let body = stream(response.into_body());
    let mut out = Response::new(body);
    *out.status_mut() = status;
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(v) = headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    Ok(out)
}

/// A node's body, passed on chunk by chunk as it arrives; a broken connection ends it.
fn stream(body: Incoming) -> Body {
    use futures::StreamExt as _;
    let frames = body
        .into_data_stream()
        .take_while(|chunk| {
            if let Err(e) = chunk {
                tracing::debug!(error = %e, "node stream ended");
            }
            std::future::ready(chunk.is_ok())
        })
        .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk.unwrap_or_default())));
    BodyExt::boxed_unsync(StreamBody::new(frames))
}

/// A node's refusal as a `Status`: its HTTP code and its message.
async fn node_error(response: Response<Incoming>) -> ApiError {
    let code = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ERROR_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    // A node may answer with a Status of its own.
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
        .unwrap_or(text);
    let message = if message.is_empty() {
        format!("the node answered {code}")
    } else {
        message
    };
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    };
    ApiError {
        code,
        reason,
        message,
        details: None,
        retry_after_seconds: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_paths_are_recognised() {
        assert_eq!(
            target("/api/v1/namespaces/default/pods/web/log"),
            Some(Target::Pod {
                namespace: "default".into(),
                name: "web".into(),
                subresource: "log",
            })
        );
        assert_eq!(
            target("/api/v1/nodes/n1/proxy/stats/summary"),
            Some(Target::Node {
                name: "n1".into(),
                path: "/stats/summary".into(),
            })
        );
        assert_eq!(
            target("/api/v1/nodes/n1/proxy"),
            Some(Target::Node {
                name: "n1".into(),
                path: "/".into(),
            })
        );
        assert_eq!(target("/api/v1/namespaces/default/pods/web/status"), None);
        assert_eq!(target("/api/v1/namespaces/default/pods/web"), None);
    }

    #[test]
    fn containers_are_checked_with_kubernetes_wording() {
        let pod = json!({"spec": {
            "containers": [{"name": "a"}, {"name": "b"}],
            "initContainers": [{"name": "i"}],
        }});
        assert_eq!(
            container(&pod, "p", Some(&"i".into())).ok(),
            Some("i".into())
        );
        let e = container(&pod, "p", Some(&"x".into())).expect_err("unknown");
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "container x is not valid for pod p")
        );
        let e = container(&pod, "p", None).expect_err("ambiguous");
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(container(&single, "p", None).ok(), Some("only".into()));
    }
}
