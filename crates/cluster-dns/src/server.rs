//! The DNS server: hickory-server's UDP and TCP loops answering from a [`SharedIndex`].

use std::{
    io,
    net::SocketAddr,
    sync::PoisonError,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode},
    rr::DNSClass,
};
use hickory_server::{
    net::{runtime::Time, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};
use tokio::{
    net::{TcpListener, UdpSocket},
    sync::watch,
};

use crate::{
    Answer, DnsConfig, Error, Metrics, SharedIndex, Upstream,
    forward::{Forwarder, is_response},
};

/// Responses queued per TCP connection before the connection waits.
const TCP_RESPONSE_BUFFER: usize = 32;
/// Tries at finding a port free for both UDP and TCP when the configured port is 0.
const FREE_PORT_TRIES: usize = 16;

/// The cluster DNS server with its sockets bound: UDP and TCP on every listen address.
///
/// Cluster names are answered from the index with AA set and RA clear (as CoreDNS's
/// `kubernetes` plugin answers). A UDP answer larger than the client's buffer (its
/// EDNS size, 512 bytes without EDNS) is cut to what fits and marked TC, so the client
/// asks again over TCP. Other names are relayed to the upstream over the client's
/// transport (SERVFAIL when there is none, or none answers in time). Questions of a
/// class other than IN are REFUSED, opcodes other than QUERY get NOTIMP.
///
/// Build with [`DnsServer::bind`] (fails at once on a taken port), read
/// [`DnsServer::local_addrs`], then [`DnsServer::run`] until shutdown.
pub struct DnsServer {
    handler: Handler,
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
    local_addrs: Vec<SocketAddr>,
    tcp_idle_timeout: Duration,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("local_addrs", &self.local_addrs)
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Binds UDP and TCP on each of `config.listen` (port 0: one free port for both)
    /// and reads the upstream servers (`config.upstream`), leaving out any that are
    /// this server's own addresses. A resolv.conf that cannot be read or names no
    /// other server leaves forwarding off (with a warning); an explicit server list
    /// that does is an error.
    pub async fn bind(index: SharedIndex, config: &DnsConfig) -> Result<Self, Error> {
        if config.listen.is_empty() {
            return Err(Error::NoListenAddress);
        }
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut local_addrs = Vec::new();
        for addr in &config.listen {
            let (u, t, local) = bind_pair(*addr).await?;
            udp.push(u);
            tcp.push(t);
            local_addrs.push(local);
        }
        let forwarder = match &config.upstream {
            None => None,
            Some(upstream) => {
                let mut ours = local_addrs.clone();
                ours.extend(config.nameservers.iter().map(|ip| SocketAddr::new(*ip, 53)));
                match upstream.servers(&ours) {
                    Ok(servers) => {
                        tracing::debug!(?servers, "forwarding names outside the cluster domain");
                        Some(Forwarder::new(servers, config.upstream_timeout))
                    }
                    // The default source: a host without usable nameservers still gets
                    // cluster DNS.
                    Err(error) if matches!(upstream, Upstream::ResolvConf(_)) => {
                        tracing::warn!(%error, "not forwarding names outside the cluster domain");
                        None
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        Ok(Self {
            handler: Handler {
                index,
                forwarder,
                metrics: config.metrics.clone(),
            },
            udp,
            tcp,
            local_addrs,
            tcp_idle_timeout: config.tcp_idle_timeout,
        })
    }

    /// The addresses served, with the ports actually bound (UDP and TCP share each).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Serves until `shutdown` turns true (or its sender is dropped).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), Error> {
        let mut server = hickory_server::Server::new(self.handler);
        for socket in self.udp {
            server.register_socket(socket);
        }
        for listener in self.tcp {
            server.register_listener(listener, self.tcp_idle_timeout, TCP_RESPONSE_BUFFER);
        }
        let token = server.shutdown_token().clone();
        let stop = tokio::spawn(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            token.cancel();
        });
        let result = server.block_until_done().await;
        stop.abort();
        result.map_err(|e| Error::ServerFailed(e.to_string()))
    }
}

/// Serves `index` on `config.listen` until `shutdown` turns true: for tests and tools
/// that fill an index by hand (no API server). Call [`crate::Index::set_synced`] first.
pub async fn serve_index(
    index: SharedIndex,
    config: &DnsConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    DnsServer::bind(index, config).await?.run(shutdown).await
}

/// Binds UDP and TCP on `addr`; with port 0, on one port free for both.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr), Error> {
    let failed = |addr, protocol, source| Error::BindFailed {
        addr,
        protocol,
        source,
    };
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| failed(addr, "udp", e))?;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| failed(addr, "tcp", e))?;
        return Ok((udp, tcp, addr));
    }
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for _ in 0..FREE_PORT_TRIES {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| failed(addr, "tcp", e))?;
        let local = tcp.local_addr().map_err(|e| failed(addr, "tcp", e))?;
        match UdpSocket::bind(local).await {
            Ok(udp) => return Ok((udp, tcp, local)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(failed(local, "udp", e)),
        }
    }
    Err(failed(addr, "udp", last))
}

/// Answers requests from the index, forwarding what is not its own.
struct Handler {
    index: SharedIndex,
    forwarder: Option<Forwarder>,
    metrics: Metrics,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let info = self.respond(request, response_handle).await;
        self.metrics.record(info.response_code, started.elapsed());
        info
    }
}

impl Handler {
    async fn respond<R: ResponseHandler>(&self, request: &Request, handle: R) -> ResponseInfo {
        // EDNS: answer in kind, with the client's buffer size (which bounds UDP answers).
        let mut edns = None;
        if let Some(asked) = &request.edns {
            let mut ours = Edns::new();
            ours.set_max_payload(asked.max_payload().max(512));
            ours.set_version(0);
            if asked.version() > 0 {
                return send_error(request, ResponseCode::BADVERS, Some(&ours), handle).await;
            }
            edns = Some(ours);
        }
        if request.metadata.op_code != OpCode::Query {
            return send_error(request, ResponseCode::NotImp, edns.as_ref(), handle).await;
        }
        let Ok(info) = request.request_info() else {
            return send_error(request, ResponseCode::FormErr, edns.as_ref(), handle).await;
        };
        let query = info.query.original();
        if query.query_class() != DNSClass::IN {
            return send_error(request, ResponseCode::Refused, edns.as_ref(), handle).await;
        }
        let qtype = query.query_type();
        let answer = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .answer(query.name(), qtype);
        match answer {
            Answer::Authoritative(mut response) => {
                if let (Some(target), Some(forwarder)) =
                    (&response.external_target, &self.forwarder)
                {
                    self.metrics.record_forwarded();
                    match forwarder.lookup(target, qtype).await {
                        Ok(upstream) => response.answers.extend(upstream.answers),
                        Err(error) => {
                            tracing::debug!(%error, %target, "ExternalName target not resolved");
                        }
                    }
                }
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.authoritative = response.rcode != ResponseCode::Refused;
                metadata.response_code = response.rcode;
                let message = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
                    metadata,
                    response.answers.iter(),
                    response.authorities.iter(),
                    std::iter::empty(),
                    response.additionals.iter(),
                );
                send(handle, message, metadata).await
            }
            Answer::NotAuthoritative => {
                let Some(forwarder) = &self.forwarder else {
                    return send_error(request, ResponseCode::ServFail, edns.as_ref(), handle)
                        .await;
                };
                self.metrics.record_forwarded();
                let tcp = request.protocol() == Protocol::Tcp;
                match forwarder.exchange(request.as_slice(), tcp).await {
                    Ok(upstream) if is_response(&upstream) => {
                        let mut metadata = upstream.metadata;
                        metadata.id = request.metadata.id;
                        let message = MessageResponseBuilder::new(&request.queries, edns.as_ref())
                            .build(
                                metadata,
                                upstream.answers.iter(),
                                upstream.authorities.iter(),
                                std::iter::empty(),
                                upstream.additionals.iter(),
                            );
                        send(handle, message, metadata).await
                    }
                    Ok(_) => {
                        send_error(request, ResponseCode::ServFail, edns.as_ref(), handle).await
                    }
                    Err(error) => {
                        tracing::debug!(%error, name = %query.name(), "forwarding failed");
                        send_error(request, ResponseCode::ServFail, edns.as_ref(), handle).await
                    }
                }
            }
        }
    }
}

type Message<'q, 'a, A, N, S, D> =
    hickory_server::zone_handler::MessageResponse<'q, 'a, A, N, S, D>;

async fn send<'q, 'a, R, A, N, S, D>(
    mut handle: R,
    message: Message<'q, 'a, A, N, S, D>,
    metadata: Metadata,
) -> ResponseInfo
where
    R: ResponseHandler,
    A: Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
    N: Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
    S: Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
    D: Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
{
    match handle.send_response(message).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "sending a DNS response failed");
            failed(metadata)
        }
    }
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    rcode: ResponseCode,
    edns: Option<&Edns>,
    mut handle: R,
) -> ResponseInfo {
    let message =
        MessageResponseBuilder::new(&request.queries, edns).error_msg(&request.metadata, rcode);
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = rcode;
    match handle.send_response(message).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "sending a DNS error response failed");
            failed(metadata)
        }
    }
}

/// What is reported when a response could not be sent.
fn failed(mut metadata: Metadata) -> ResponseInfo {
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}
