//! A minimal WebSocket client (RFC 6455 framing) for the `*.channel.k8s.io`
//! streaming protocols (one byte of channel, then the data) and for the
//! `SPDY/3.1+portforward.k8s.io` tunnel (SPDY bytes in binary messages).

use std::time::Duration;

use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf,
};

/// A WebSocket client session (RFC 6455 framing, binary messages).
pub struct WebSocket<S> {
    reader: Reader<S>,
    writer: Writer<S>,
    /// The subprotocol the server chose.
    pub protocol: String,
}

/// The receiving half of a [`WebSocket`].
pub struct Reader<S> {
    stream: ReadHalf<S>,
    /// The status code of the server's close frame, once one arrived.
    pub close_code: Option<u16>,
    /// Close frames received are answered through this (a client must).
    close_reply: Option<tokio::sync::mpsc::UnboundedSender<()>>,
}

/// The sending half of a [`WebSocket`].
pub struct Writer<S> {
    stream: WriteHalf<S>,
    close_reply: Option<tokio::sync::mpsc::UnboundedReceiver<()>>,
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
    let header = |wanted: &str| {
        head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case(wanted)
                .then(|| value.trim().to_owned())
        })
    };
    // (kubectl and kube-rs check Sec-WebSocket-Accept in node_api_kubectl.rs.)
    assert!(
        header("sec-websocket-accept").is_some(),
        "no Sec-WebSocket-Accept: {head}"
    );
    let protocol = header("sec-websocket-protocol").unwrap_or_default();
    let (read, write) = tokio::io::split(stream);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    Ok(WebSocket {
        reader: Reader {
            stream: read,
            close_code: None,
            close_reply: Some(tx),
        },
        writer: Writer {
            stream: write,
            close_reply: Some(rx),
        },
        protocol,
    })
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Sends one binary message.
    pub async fn send(&mut self, payload: &[u8]) {
        self.writer.send(payload).await;
    }

    /// The next data message; `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        let message = self.reader.recv().await;
        self.writer.answer_close().await;
        message
    }

    /// The status code of the server's close frame, once one arrived.
    pub fn close_code(&self) -> Option<u16> {
        self.reader.close_code
    }

    /// The two halves, to send and receive from different tasks. A close frame the
    /// reader receives is answered by the writer's next call (or [`Writer::close`]).
    pub fn split(self) -> (Reader<S>, Writer<S>) {
        (self.reader, self.writer)
    }

    /// A byte stream whose writes go out as binary messages and whose reads return
    /// the binary messages received: the client end of a tunnel.
    pub fn into_tunnel(self) -> DuplexStream
    where
        S: Send + 'static,
    {
        let (local, remote) = tokio::io::duplex(256 * 1024);
        let (mut from_local, mut to_local) = tokio::io::split(remote);
        let (mut reader, mut writer) = self.split();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from_local.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => writer.send(&buf[..n]).await,
                }
            }
            writer.close().await;
        });
        tokio::spawn(async move {
            while let Some(message) = reader.recv().await {
                if to_local.write_all(&message).await.is_err() {
                    break;
                }
            }
            let _ = to_local.shutdown().await;
        });
        local
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Writer<S> {
    /// Sends one binary message (masked, as a client must).
    pub async fn send(&mut self, payload: &[u8]) {
        self.answer_close().await;
        self.frame(0x2, payload).await;
    }

    /// Sends a normal close frame (once).
    pub async fn close(&mut self) {
        if self.close_reply.take().is_some() {
            self.frame(0x8, &1000u16.to_be_bytes()).await;
        }
    }

    async fn answer_close(&mut self) {
        if let Some(rx) = self.close_reply.as_mut()
            && rx.try_recv().is_ok()
        {
            self.close().await;
        }
    }

    async fn frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = vec![0x80 | opcode];
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
        // The server may be gone already; the test asserts what it received.
        let _ = self.stream.write_all(&frame).await;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Reader<S> {
    /// The next data message; `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        let mut message = Vec::new();
        loop {
            let mut header = [0u8; 2];
            self.stream.read_exact(&mut header).await.ok()?;
            let fin = header[0] & 0x80 != 0;
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
                0x8 => {
                    self.close_code = Some(
                        payload
                            .get(..2)
                            .map(|c| u16::from_be_bytes([c[0], c[1]]))
                            .unwrap_or(1005),
                    );
                    if let Some(tx) = self.close_reply.take() {
                        let _ = tx.send(());
                    }
                    return None;
                }
                0x0..=0x2 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return Some(message);
                    }
                }
                _ => continue, // ping, pong
            }
        }
    }
}

/// The output of a `*.channel.k8s.io` session: stdout, stderr and the status message.
#[derive(Debug, Default)]
pub struct ChannelOutput {
    pub stdout: String,
    pub stderr: String,
    pub status: Option<serde_json::Value>,
    /// Every message as it came: its channel and length.
    pub messages: Vec<(u8, usize)>,
    /// The server's close code (1000 for a normal end); `None` if it only hung up.
    pub close_code: Option<u16>,
}

/// Reads channel messages until the server closes the session.
pub async fn read_channels<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<S>,
) -> ChannelOutput {
    let mut out = ChannelOutput::default();
    let deadline = Duration::from_secs(30);
    while let Ok(Some(message)) = tokio::time::timeout(deadline, ws.recv()).await {
        collect(&mut out, &message);
    }
    out.close_code = ws.close_code();
    out
}

/// Reads channel messages from a reader until the server closes the session.
pub async fn read_channels_from<S: AsyncRead + AsyncWrite + Unpin>(
    reader: &mut Reader<S>,
) -> ChannelOutput {
    let mut out = ChannelOutput::default();
    let deadline = Duration::from_secs(60);
    while let Ok(Some(message)) = tokio::time::timeout(deadline, reader.recv()).await {
        collect(&mut out, &message);
    }
    out.close_code = reader.close_code;
    out
}

fn collect(out: &mut ChannelOutput, message: &[u8]) {
    let Some((channel, data)) = message.split_first() else {
        return;
    };
    out.messages.push((*channel, data.len()));
    let text = String::from_utf8_lossy(data);
    match channel {
        1 => out.stdout.push_str(&text),
        2 => out.stderr.push_str(&text),
        3 if !data.is_empty() => out.status = serde_json::from_slice(data).ok(),
        _ => {}
    }
}
