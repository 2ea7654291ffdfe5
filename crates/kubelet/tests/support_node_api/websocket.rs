//! A minimal WebSocket client (RFC 6455 framing) for the `*.channel.k8s.io`
//! streaming protocols: one byte of channel, then the data.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A WebSocket client session (RFC 6455 framing, binary messages).
pub struct WebSocket<S> {
    stream: S,
    /// The subprotocol the server chose.
    pub protocol: String,
}

/// Opens a WebSocket to `path` over `stream` offering `protocols`. On a refused
/// upgrade returns the status code and the head of the answer.
pub async fn websocket<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    path: &str,
    protocols: &[&str],
) -> Result<WebSocket<S>, (u16, String)> {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes());
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: {}\r\n\r\n",
        protocols.join(", ")
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.expect("read the answer");
        if n == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if code != 101 {
        return Err((code, head));
    }
    let protocol = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-protocol")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    Ok(WebSocket { stream, protocol })
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Sends one binary message (masked, as a client must).
    pub async fn send(&mut self, payload: &[u8]) {
        let mut frame = vec![0x82u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = *uuid::Uuid::new_v4().as_bytes();
        frame.extend_from_slice(&mask[..4]);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.expect("send a frame");
    }

    /// The next data message; `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        loop {
            let mut header = [0u8; 2];
            self.stream.read_exact(&mut header).await.ok()?;
            let opcode = header[0] & 0x0f;
            let len = match header[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.stream.read_exact(&mut b).await.ok()?;
                    u16::from_be_bytes(b) as usize
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.stream.read_exact(&mut b).await.ok()?;
                    u64::from_be_bytes(b) as usize
                }
                n => n as usize,
            };
            let mask = if header[1] & 0x80 != 0 {
                let mut m = [0u8; 4];
                self.stream.read_exact(&mut m).await.ok()?;
                Some(m)
            } else {
                None
            };
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).await.ok()?;
            if let Some(m) = mask {
                payload
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b ^= m[i % 4]);
            }
            match opcode {
                0x8 => return None,
                0x0..=0x2 => return Some(payload),
                _ => continue, // ping, pong
            }
        }
    }
}

/// The output of a v4.channel.k8s.io session: stdout, stderr and the status message.
#[derive(Debug, Default)]
pub struct ChannelOutput {
    pub stdout: String,
    pub stderr: String,
    pub status: Option<serde_json::Value>,
}

/// Reads channel messages until the server closes the session.
pub async fn read_channels<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
) -> ChannelOutput {
    let mut out = ChannelOutput::default();
    let deadline = Duration::from_secs(30);
    while let Ok(Some(message)) = tokio::time::timeout(deadline, ws.recv()).await {
        let Some((channel, data)) = message.split_first() else {
            continue;
        };
        let text = String::from_utf8_lossy(data);
        match channel {
            1 => out.stdout.push_str(&text),
            2 => out.stderr.push_str(&text),
            3 if !data.is_empty() => out.status = serde_json::from_slice(data).ok(),
            _ => {}
        }
    }
    out
}
