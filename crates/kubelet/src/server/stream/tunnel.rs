//! Port-forward over WebSocket, KEP-4006's tunnel: the client speaks SPDY/3.1
//! (`portforward.k8s.io`) inside WebSocket binary messages (subprotocol
//! `SPDY/3.1+portforward.k8s.io`); the node API upgrades to SPDY at the runtime and
//! copies bytes between the messages and that connection without parsing SPDY
//! (Kubernetes' TunnelingHandler does the same in the API server).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::upstream::{self, Answer, PROTOCOL_VERSION};
use super::websocket::{self, Socket};
use crate::server::{Body, Failure};

/// The WebSocket subprotocol prefix of a tunneled SPDY protocol.
pub(super) const PREFIX: &str = "SPDY/3.1+";
/// The suffix of every Kubernetes streaming protocol.
const KUBERNETES_SUFFIX: &str = ".k8s.io";

/// Largest chunk read from the runtime into one message.
const CHUNK: usize = 32 * 1024;
/// How long one direction may stay open once the other ended.
const LINGER: Duration = Duration::from_secs(30);

/// The SPDY protocols tunneled in the offered WebSocket subprotocols, prefix removed.
pub(super) fn tunneled_protocols(offered: &[String]) -> Vec<&str> {
    offered
        .iter()
        .filter_map(|p| p.strip_prefix(PREFIX))
        .filter(|p| p.ends_with(KUBERNETES_SUFFIX))
        .collect()
}

/// Upgrades to SPDY at the runtime's streaming `url` offering `protocols`, then
/// accepts the client's WebSocket with the protocol the runtime chose and tunnels.
pub(super) async fn serve(
    mut req: Request<Incoming>,
    url: &str,
    protocols: &[&str],
) -> Result<Response<Body>, Failure> {
    // Check the client's handshake before dialing the runtime.
    websocket::accept(&req, "")?;
    let answer = upstream::upgrade(
        url,
        req.uri().query(),
        Method::POST,
        upstream::spdy_headers(protocols.iter().copied()),
    )
    .await?;
    let (headers, io) = match answer {
        Answer::Switched { headers, io } => (headers, io),
        Answer::Refused(refusal) => return Ok(refusal),
    };
    let chosen = headers
        .get(PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!("{PREFIX}{}", v.trim()))
        .unwrap_or_default();
    let response = websocket::accept(&req, &chosen)?;
    let client = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match client.await {
            Ok(upgraded) => pump(websocket::server(upgraded).await, io).await,
            Err(e) => tracing::debug!(error = %e, "the client's WebSocket upgrade failed"),
        }
    });
    Ok(response)
}

/// Copies WebSocket binary messages to the runtime and the runtime's bytes back as
/// binary messages, until both directions ended.
async fn pump<R>(socket: Socket, runtime: R)
where
    R: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut sink, mut source) = socket.split();
    let (mut from_runtime, mut to_runtime) = tokio::io::split(runtime);
    let upstream = async move {
        while let Some(Ok(message)) = source.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) | Message::Text(_) => break,
                _ => continue,
            };
            if to_runtime.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = to_runtime.shutdown().await;
    };
    let downstream = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from_runtime.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(websocket::normal_close()).await;
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        _ = &mut upstream => {
            let _ = tokio::time::timeout(LINGER, downstream).await;
        }
        _ = &mut downstream => {
            let _ = tokio::time::timeout(LINGER, upstream).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tunneled_kubernetes_protocols_are_offered_to_the_runtime() {
        let offered = [
            "SPDY/3.1+portforward.k8s.io",
            "portforward.k8s.io",
            "SPDY/3.1+something.example.com",
            "v4.channel.k8s.io",
        ]
        .map(str::to_owned);
        assert_eq!(tunneled_protocols(&offered), ["portforward.k8s.io"]);
    }
}
