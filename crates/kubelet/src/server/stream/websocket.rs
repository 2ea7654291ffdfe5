//! The client's side when the node API itself accepts a WebSocket (RFC 6455): the
//! offered subprotocols, the 101 answer, and the server end of the connection once
//! it switched.

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::full;
use crate::server::{Body, Failure};

/// A WebSocket the node API serves.
pub(super) type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// The subprotocols a WebSocket upgrade request offers, in its order; `None` when
/// the request is no WebSocket upgrade.
pub(super) fn offered_protocols<B>(req: &Request<B>) -> Option<Vec<String>> {
    let websocket = req
        .headers()
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        });
    if !websocket {
        return None;
    }
    Some(
        req.headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect(),
    )
}

/// The 101 answer accepting the WebSocket of `req` with subprotocol `protocol`
/// (none when empty); a 400 when the request's handshake is incomplete.
pub(super) fn accept<B>(req: &Request<B>, protocol: &str) -> Result<Response<Body>, Failure> {
    let version = req.headers().get(header::SEC_WEBSOCKET_VERSION);
    if version.map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(Failure::bad_request(
            "unsupported WebSocket version: Sec-WebSocket-Version must be 13",
        ));
    }
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| Failure::bad_request("the WebSocket upgrade has no Sec-WebSocket-Key"))?;
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|e| Failure::internal(format!("Sec-WebSocket-Accept: {e}")))?;
    let mut response = Response::new(full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if !protocol.is_empty() {
        let protocol = HeaderValue::from_str(protocol)
            .map_err(|e| Failure::internal(format!("Sec-WebSocket-Protocol: {e}")))?;
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    Ok(response)
}

/// The server end of the WebSocket on the client's switched connection.
pub(super) async fn server(upgraded: Upgraded) -> Socket {
    WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Server,
        Some(WebSocketConfig::default()),
    )
    .await
}

/// The close frame ending a session normally.
pub(super) fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().uri("/exec/ns/pod/c");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a request")
    }

    #[test]
    fn offered_protocols_come_from_every_header_in_order() {
        let req = request(&[
            ("upgrade", "websocket"),
            (
                "sec-websocket-protocol",
                "v5.channel.k8s.io, v4.channel.k8s.io",
            ),
            ("sec-websocket-protocol", "base64.channel.k8s.io"),
        ]);
        assert_eq!(
            offered_protocols(&req).expect("a WebSocket"),
            [
                "v5.channel.k8s.io",
                "v4.channel.k8s.io",
                "base64.channel.k8s.io"
            ]
        );
        let spdy = request(&[("upgrade", "SPDY/3.1"), ("x-stream-protocol-version", "v4")]);
        assert_eq!(offered_protocols(&spdy), None);
    }

    #[test]
    fn the_answer_carries_rfc_6455s_accept_key_and_the_protocol() {
        // The example of RFC 6455 §1.3.
        let req = request(&[
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        let response = accept(&req, "v5.channel.k8s.io").expect("accepted");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let h = response.headers();
        assert_eq!(
            h[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(h[header::SEC_WEBSOCKET_PROTOCOL], "v5.channel.k8s.io");
        assert_eq!(h[header::UPGRADE], "websocket");
        let old = request(&[("sec-websocket-version", "8"), ("sec-websocket-key", "x")]);
        assert!(accept(&old, "").is_err());
        let keyless = request(&[("sec-websocket-version", "13")]);
        assert!(accept(&keyless, "").is_err());
    }
}
