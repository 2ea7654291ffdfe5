//! A SPDY/3.1 client session, as much of it as Kubernetes streaming needs: the
//! exec, attach and port-forward protocols (`v4.channel.k8s.io`,
//! `portforward.k8s.io`) spoken to a CRI runtime's streaming server after an HTTP
//! `Upgrade: SPDY/3.1`.
//!
//! [`Session::client`] takes the upgraded connection; [`Session::open_stream`]
//! sends a SYN_STREAM with the given [`Headers`] and returns the [`Stream`] once
//! the peer replied. A stream reads ([`tokio::io::AsyncRead`]) what the peer sends
//! until its FIN, and writes ([`tokio::io::AsyncWrite`]) until shut down, which
//! sends FIN (a half-close). Header blocks are zlib-compressed with the SPDY/3
//! dictionary; PINGs are answered.
//!
//! Flow control (64 KiB initial windows per stream and for the session) is used
//! with a peer that uses it: once the peer sends a WINDOW_UPDATE or
//! SETTINGS_INITIAL_WINDOW_SIZE, sending honours its windows and reading sends
//! WINDOW_UPDATEs (including for what was read before). Go's `spdystream`, under
//! containerd, CRI-O and the kubelet, does neither and ignores WINDOW_UPDATE, so
//! none is sent to it (one it has not read yet when it closes the connection turns
//! the close into a TCP reset that drops the end of its output); sending to it is
//! paced by the connection, receiving by the application's reads (a stream
//! buffers at most 64 KiB before the session stops reading). A peer that keeps
//! windows but shows it only after sending 64 KiB would stall.
//!
//! Not implemented, as Kubernetes streaming does not use them: server push
//! (streams the peer opens are refused), sending PINGs, priorities, and the
//! server side.

mod dictionary;
mod frame;
mod headers;
mod session;
mod stream;

pub use headers::Headers;
pub use session::Session;
pub use stream::{RecvStream, SendStream, Stream};

use std::time::Duration;

/// What went wrong in a SPDY session.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading from the connection failed.
    #[error("reading the SPDY connection: {0}")]
    Read(#[source] std::io::Error),
    /// Writing to the connection failed.
    #[error("writing the SPDY connection: {0}")]
    Write(#[source] std::io::Error),
    /// The peer sent a frame that does not parse.
    #[error("invalid SPDY {frame} frame: {reason}")]
    InvalidFrame {
        /// The frame type.
        frame: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A header block could not be (de)compressed.
    #[error("SPDY header compression: {0}")]
    HeaderCompression(String),
    /// The peer answered a new stream with RST_STREAM.
    #[error("SPDY stream {stream} refused by the peer (RST_STREAM status {status})")]
    StreamRefused {
        /// The stream's ID.
        stream: u32,
        /// The RST_STREAM status code.
        status: u32,
    },
    /// The peer did not answer a new stream in time.
    #[error("SPDY stream {stream}: no SYN_REPLY within {timeout:?}")]
    ReplyTimeout {
        /// The stream's ID.
        stream: u32,
        /// How long the session waited.
        timeout: Duration,
    },
    /// The peer sent GOAWAY: it accepts no new streams.
    #[error("the SPDY peer is going away and accepts no new streams")]
    GoneAway,
    /// The session has ended.
    #[error("the SPDY session has ended: {reason}")]
    Closed {
        /// Why it ended.
        reason: String,
    },
}
