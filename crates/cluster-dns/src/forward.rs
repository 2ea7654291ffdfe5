//! Forwarding questions outside the cluster domain to upstream servers, as CoreDNS's
//! `forward` plugin does: the client's message as it came, over the client's transport,
//! to each upstream in turn until one answers.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Message, MessageType, Query},
    rr::{Name, RecordType},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

/// The EDNS buffer size advertised on our own upstream lookups (the DNS flag day value).
const EDNS_PAYLOAD: u16 = 1232;

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("upstream {server}: {source}")]
    Io {
        server: SocketAddr,
        source: io::Error,
    },
    #[error("upstream {server} did not answer in time")]
    Timeout { server: SocketAddr },
    #[error("upstream {server} sent an undecodable message: {detail}")]
    Undecodable { server: SocketAddr, detail: String },
    #[error("encoding the upstream question: {0}")]
    Encode(String),
    #[error("no upstream server")]
    NoServer,
}

/// Upstream servers and how long each may take.
#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

impl Forwarder {
    pub(crate) fn new(servers: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self { servers, timeout }
    }

    /// Sends a client's message (wire format) upstream over TCP (`tcp`) or UDP and
    /// returns the first answer with the same ID.
    pub(crate) async fn exchange(&self, query: &[u8], tcp: bool) -> Result<Message, ForwardError> {
        let id = query
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .unwrap_or(0);
        let mut last = ForwardError::NoServer;
        for &server in &self.servers {
            let attempt = async {
                if tcp {
                    tcp_exchange(server, query).await
                } else {
                    udp_exchange(server, query, id).await
                }
            };
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok(bytes)) => {
                    return Message::from_vec(&bytes).map_err(|e| ForwardError::Undecodable {
                        server,
                        detail: e.to_string(),
                    });
                }
                Ok(Err(source)) => last = ForwardError::Io { server, source },
                Err(_) => last = ForwardError::Timeout { server },
            }
        }
        Err(last)
    }

    /// Asks upstream for `name`/`qtype` with recursion desired: over UDP, then over
    /// TCP when the answer came truncated.
    pub(crate) async fn lookup(
        &self,
        name: &Name,
        qtype: RecordType,
    ) -> Result<Message, ForwardError> {
        let mut query = Message::query();
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(name.clone(), qtype));
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        query.set_edns(edns);
        let bytes = query
            .to_vec()
            .map_err(|e| ForwardError::Encode(e.to_string()))?;
        let answer = self.exchange(&bytes, false).await?;
        if answer.metadata.truncation {
            return self.exchange(&bytes, true).await;
        }
        Ok(answer)
    }
}

async fn udp_exchange(server: SocketAddr, query: &[u8], id: u16) -> io::Result<Vec<u8>> {
    let local = match server.ip() {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Only a response with our ID counts; anything else on the port is ignored.
        if n >= 12 && u16::from_be_bytes([buf[0], buf[1]]) == id && buf[2] & 0x80 != 0 {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let len = u16::try_from(query.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    let mut stream = TcpStream::connect(server).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Whether a decoded message is a response (not a stray query).
pub(crate) fn is_response(message: &Message) -> bool {
    message.metadata.message_type == MessageType::Response
}
