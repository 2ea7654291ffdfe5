//! A stream's two halves: [`RecvStream`] reads what the peer sends, [`SendStream`]
//! buffers what the application writes for the session's writer.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::frame::{self, Frame};
use crate::headers::Headers;
use crate::session::{Ended, SEND_BUFFER, SendEnd, Shared};

/// An open stream: both halves and the peer's SYN_REPLY headers.
#[derive(Debug)]
pub struct Stream {
    send: SendStream,
    recv: RecvStream,
    reply: Headers,
}

/// The sending half of a stream. Shutting it down (or dropping it) sends FIN after
/// the data written so far.
pub struct SendStream {
    shared: Arc<Shared>,
    id: u32,
}

/// The receiving half of a stream: the peer's data until its FIN, RST_STREAM or
/// the end of the session, then end of file (as Go's `spdystream` reads a reset
/// stream); a failed connection is an error after the data already received.
/// Each stream buffers 64 KiB: read every stream you open, as a peer that ignores
/// flow control stalls the session while one buffer stays full.
pub struct RecvStream {
    shared: Arc<Shared>,
    id: u32,
}

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, id: u32, reply: Headers) -> Self {
        Self {
            send: SendStream {
                shared: shared.clone(),
                id,
            },
            recv: RecvStream { shared, id },
            reply,
        }
    }

    /// The stream's ID (odd: this side opened it).
    pub fn id(&self) -> u32 {
        self.send.id
    }

    /// The headers of the peer's SYN_REPLY.
    pub fn reply_headers(&self) -> &Headers {
        &self.reply
    }

    /// The two halves, to use from different tasks.
    pub fn split(self) -> (SendStream, RecvStream) {
        (self.send, self.recv)
    }
}

impl SendStream {
    /// The stream's ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Aborts the stream: drops what is buffered and sends RST_STREAM (CANCEL).
    pub fn reset(self) {
        {
            let mut st = self.shared.lock();
            let Some(s) = st.streams.get_mut(&self.id) else {
                return;
            };
            if s.send_end == SendEnd::Done && s.reset.is_some() {
                return;
            }
            s.send.clear();
            s.send_end = SendEnd::Done;
            st.queue(Frame::RstStream {
                stream: self.id,
                status: frame::status::CANCEL,
            });
        }
        self.shared.wake_writer.notify_one();
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = self.shared.lock();
        if let Err(reason) = st.sendable() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, reason)));
        }
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        if let Some(status) = s.reset {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!(
                    "SPDY stream {} reset by the peer (status {status})",
                    self.id
                ),
            )));
        }
        if s.send_end != SendEnd::Open {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = SEND_BUFFER.saturating_sub(s.send.len());
        if room == 0 {
            s.send_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        s.send.extend_from_slice(&buf[..n]);
        drop(st);
        self.shared.wake_writer.notify_one();
        Poll::Ready(Ok(n))
    }

    /// Ready once everything written was handed to the session's writer.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        let ended = st.ended.clone();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        if s.send.is_empty() || s.reset.is_some() {
            return Poll::Ready(Ok(()));
        }
        if let Some(end) = ended {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                end.reason().to_owned(),
            )));
        }
        s.send_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Sends FIN after the buffered data; ready once it went to the writer.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        let ended = st.ended.clone();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        match s.send_end {
            SendEnd::Done => return Poll::Ready(Ok(())),
            _ if s.reset.is_some() => return Poll::Ready(Ok(())),
            SendEnd::Open => s.send_end = SendEnd::FinRequested,
            SendEnd::FinRequested => {}
        }
        if let Some(end) = ended {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                end.reason().to_owned(),
            )));
        }
        s.send_waker = Some(cx.waker().clone());
        drop(st);
        self.shared.wake_writer.notify_one();
        Poll::Pending
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            let Some(s) = st.streams.get_mut(&self.id) else {
                return;
            };
            s.send_open = false;
            s.send_waker = None;
            if s.send_end == SendEnd::Open {
                s.send_end = SendEnd::FinRequested;
            }
            st.reap(self.id);
        }
        self.shared.wake_writer.notify_one();
    }
}

impl RecvStream {
    /// The stream's ID.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        let ended = st.ended.clone();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Ok(()));
        };
        if let Some(front) = s.recv.front_mut() {
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front.split_to(n));
            if front.is_empty() {
                s.recv.pop_front();
            }
            s.recv_len -= n;
            let queued = st.consumed(self.id, n);
            drop(st);
            if queued {
                self.shared.wake_writer.notify_one();
            }
            // The reader may be waiting for this stream's buffer to drain.
            self.shared.wake_reader.notify_one();
            return Poll::Ready(Ok(()));
        }
        if s.recv_fin || s.reset.is_some() {
            return Poll::Ready(Ok(()));
        }
        match ended {
            Some(Ended::Clean(_)) => Poll::Ready(Ok(())),
            Some(Ended::Failed(reason)) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                reason,
            ))),
            None => {
                s.recv_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        let queued = {
            let mut st = self.shared.lock();
            let Some(s) = st.streams.get_mut(&self.id) else {
                return;
            };
            s.recv_open = false;
            s.recv_waker = None;
            let unread = s.recv_len;
            s.recv.clear();
            s.recv_len = 0;
            let queued = st.consumed(self.id, unread);
            st.reap(self.id);
            queued
        };
        if queued {
            self.shared.wake_writer.notify_one();
        }
        self.shared.wake_reader.notify_one();
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.send).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_shutdown(cx)
    }
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream").field("id", &self.id).finish()
    }
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream").field("id", &self.id).finish()
    }
}
