//! Exec and attach over WebSocket `v5.channel.k8s.io`, served by the node API
//! itself and carried to the runtime over SPDY `v4.channel.k8s.io` (what the API
//! server's StreamTranslatorHandler does in Kubernetes; containerd's stream server
//! speaks WebSocket only up to v4).
//!
//! Each WebSocket message is a channel byte and data. Client to node: 0 stdin,
//! 4 terminal size (JSON), and v5's `[255, channel]` closing a channel (stdin:
//! half-close). Node to client: 1 stdout, 2 stderr, 3 the v4 status (a
//! `metav1.Status`, relayed from the runtime's error stream as it is). The SPDY
//! side opens the error, stdin, stdout, stderr and resize streams as client-go's
//! v4 executor does, each named by its `streamType` header.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::upstream::{self, Answer};
use super::websocket::{self, Socket};
use crate::server::{Body, Failure};

/// The WebSocket subprotocol served.
pub(super) const V5: &str = "v5.channel.k8s.io";
/// The SPDY protocol spoken to the runtime.
const V4: &str = "v4.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` closes the client's side of a channel.
const CLOSE: u8 = 255;

/// Largest chunk read from a runtime stream into one message.
const CHUNK: usize = 32 * 1024;
/// Most of the runtime's error stream kept (a status is a few hundred bytes).
const MAX_STATUS: usize = 64 * 1024;
/// How long the client has to answer the closing handshake once the session
/// ended (its unread output is still on the way to it).
const CLOSE_WAIT: Duration = Duration::from_secs(60);

/// Which streams the session has (as asked of the runtime: no stderr with a TTY).
#[derive(Debug, Clone, Copy)]
pub(super) struct Streams {
    pub(super) stdin: bool,
    pub(super) stdout: bool,
    pub(super) stderr: bool,
    pub(super) tty: bool,
}

/// The runtime's side of a session: its SPDY streams.
struct Runtime {
    session: spdy::Session,
    error: spdy::RecvStream,
    stdin: Option<spdy::SendStream>,
    stdout: Option<spdy::RecvStream>,
    stderr: Option<spdy::RecvStream>,
    resize: Option<spdy::SendStream>,
    /// The halves not used, kept open as client-go keeps them: it half-closes
    /// nothing but stdin.
    unused: (Vec<spdy::SendStream>, Vec<spdy::RecvStream>),
}

/// Accepts the client's v5 WebSocket and serves it over SPDY to the runtime's
/// streaming `url`. Fails (before switching protocols) when the runtime cannot be
/// reached or refuses.
pub(super) async fn serve(
    mut req: Request<Incoming>,
    url: &str,
    streams: Streams,
) -> Result<Response<Body>, Failure> {
    let response = websocket::accept(&req, V5)?;
    let answer = upstream::upgrade(
        url,
        req.uri().query(),
        Method::POST,
        upstream::spdy_headers([V4]),
    )
    .await?;
    let io = match answer {
        Answer::Switched { io, .. } => io,
        Answer::Refused(refusal) => return Ok(refusal),
    };
    let runtime = open(spdy::Session::client(io), streams)
        .await
        .map_err(|e| Failure::internal(format!("opening the runtime's streams: {e}")))?;
    let client = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match client.await {
            Ok(upgraded) => bridge(websocket::server(upgraded).await, runtime, streams).await,
            Err(e) => tracing::debug!(error = %e, "the client's WebSocket upgrade failed"),
        }
    });
    Ok(response)
}

/// Opens the streams client-go's v4 executor opens, in its order.
async fn open(session: spdy::Session, streams: Streams) -> Result<Runtime, spdy::Error> {
    let open = async |kind: &str, wanted: bool| match wanted {
        true => {
            let headers = spdy::Headers::new().with("streamType", kind);
            Ok(Some(session.open_stream(headers).await?.split()))
        }
        false => Ok::<_, spdy::Error>(None),
    };
    let (error_send, error) = open("error", true).await?.unzip();
    let stdin = open("stdin", streams.stdin).await?;
    let stdout = open("stdout", streams.stdout).await?;
    let stderr = open("stderr", streams.stderr && !streams.tty).await?;
    let resize = open("resize", streams.tty).await?;
    let (stdin, stdin_recv) = stdin.unzip();
    let (stdout_send, stdout) = stdout.unzip();
    let (stderr_send, stderr) = stderr.unzip();
    let (resize, resize_recv) = resize.unzip();
    let unused = (
        [error_send, stdout_send, stderr_send]
            .into_iter()
            .flatten()
            .collect(),
        [stdin_recv, resize_recv].into_iter().flatten().collect(),
    );
    let error = error.ok_or(spdy::Error::Closed {
        reason: "no error stream".into(),
    })?;
    Ok(Runtime {
        session,
        error,
        stdin,
        stdout,
        stderr,
        resize,
        unused,
    })
}

/// Runs the session until the runtime ends it (then the status goes to the client
/// and the WebSocket is closed) or the client leaves.
async fn bridge(socket: Socket, runtime: Runtime, streams: Streams) {
    let Runtime {
        session,
        error,
        stdin,
        stdout,
        stderr,
        resize,
        unused,
    } = runtime;
    let (mut sink, source) = socket.split();
    // As Kubernetes' servers do: an empty message on the lowest channel the client
    // reads tells it the session is up.
    let first = match (streams.stdout, streams.stderr && !streams.tty) {
        (true, _) => STDOUT,
        (false, true) => STDERR,
        _ => ERROR,
    };
    if sink.send(Message::binary(vec![first])).await.is_err() {
        return;
    }
    let mut input = tokio::spawn(input(source, stdin, resize));
    let status = tokio::select! {
        status = output(&mut sink, stdout, stderr, error) => status,
        _ = &mut input => {
            tracing::debug!("the client left before the session ended");
            session.close().await;
            return;
        }
    };
    drop(unused);
    session.close().await;
    let Some(status) = status else {
        input.abort();
        return;
    };
    tracing::debug!(
        status = %String::from_utf8_lossy(&status[1..]),
        "v5 session ended in the runtime"
    );
    let _ = sink.send(Message::binary(status)).await;
    // Close, then let the client read what is still on its way and answer.
    let _ = sink.send(websocket::normal_close()).await;
    if tokio::time::timeout(CLOSE_WAIT, &mut input).await.is_err() {
        input.abort();
    }
}

/// Copies stdout and stderr to the client until the runtime ended them and its
/// error stream; returns the status message to send, `None` if the client
/// cannot be written to.
async fn output<S>(
    sink: &mut S,
    mut stdout: Option<spdy::RecvStream>,
    mut stderr: Option<spdy::RecvStream>,
    mut error: spdy::RecvStream,
) -> Option<Vec<u8>>
where
    S: futures::Sink<Message> + Unpin,
{
    let mut out = vec![0u8; CHUNK];
    let mut err = vec![0u8; CHUNK];
    let mut status = vec![ERROR];
    let mut status_done = false;
    while stdout.is_some() || stderr.is_some() || !status_done {
        let message = tokio::select! {
            read = read_some(&mut stdout, &mut out), if stdout.is_some() => match read {
                Some(n) => channel(STDOUT, &out[..n]),
                None => { stdout = None; continue; }
            },
            read = read_some(&mut stderr, &mut err), if stderr.is_some() => match read {
                Some(n) => channel(STDERR, &err[..n]),
                None => { stderr = None; continue; }
            },
            read = error.read_buf(&mut status), if !status_done => {
                if !matches!(read, Ok(n) if n > 0) || status.len() > MAX_STATUS {
                    status_done = true;
                }
                continue;
            }
        };
        if sink.send(message).await.is_err() {
            return None;
        }
    }
    if status.len() == 1 {
        // The runtime ended the session without a status.
        let failure = serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "the container runtime ended the session without a status",
            "reason": "InternalError",
            "code": 500,
        });
        status.extend_from_slice(failure.to_string().as_bytes());
    }
    Some(status)
}

/// Reads from `stream` into `buf`: the count, `None` at its end.
async fn read_some(stream: &mut Option<spdy::RecvStream>, buf: &mut [u8]) -> Option<usize> {
    match stream.as_mut()?.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

fn channel(channel: u8, data: &[u8]) -> Message {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(channel);
    message.extend_from_slice(data);
    Message::binary(message)
}

/// Copies the client's stdin and terminal sizes to the runtime until the client
/// closes the WebSocket or goes away. Ends stdin on v5's CLOSE and at the end.
async fn input<S>(
    mut source: S,
    mut stdin: Option<spdy::SendStream>,
    mut resize: Option<spdy::SendStream>,
) where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(message)) = source.next().await {
        let data = match message {
            Message::Binary(data) => data,
            Message::Close(_) => break,
            _ => continue,
        };
        let Some((&channel, data)) = data.split_first() else {
            continue;
        };
        let (target, data) = match channel {
            STDIN => (&mut stdin, data),
            RESIZE => (&mut resize, data),
            CLOSE => {
                match data.first() {
                    Some(&STDIN) => finish(&mut stdin).await,
                    Some(&RESIZE) => finish(&mut resize).await,
                    _ => {}
                }
                continue;
            }
            _ => continue,
        };
        if let Some(stream) = target
            && stream.write_all(data).await.is_err()
        {
            // The runtime no longer reads it (the process exited).
            *target = None;
        }
    }
    finish(&mut stdin).await;
    finish(&mut resize).await;
}

/// Half-closes a stream (SPDY FIN).
async fn finish(stream: &mut Option<spdy::SendStream>) {
    if let Some(mut s) = stream.take() {
        let _ = s.shutdown().await;
    }
}
