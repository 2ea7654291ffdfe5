//! The session: one task reads frames and hands them to the streams, another
//! writes the queued control frames and the streams' buffered data (within the
//! peer's windows once it keeps them). Both share [`State`] under a mutex that is
//! never held across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

use crate::Error;
use crate::frame::{self, Frame, SETTINGS_INITIAL_WINDOW_SIZE, read_frame};
use crate::headers::{Compressor, Decompressor, Headers};
use crate::stream::Stream;

/// The initial window of every stream and of the session (SPDY/3.1 §2.6.8).
pub(crate) const INITIAL_WINDOW: i64 = 64 * 1024;
/// Bytes a stream buffers from the peer before the session stops reading.
pub(crate) const RECV_BUFFER: usize = INITIAL_WINDOW as usize;
/// Bytes a stream buffers from the application before its writes wait.
pub(crate) const SEND_BUFFER: usize = 64 * 1024;
/// Largest DATA frame sent.
const MAX_DATA_FRAME: usize = 32 * 1024;
/// How long a new stream waits for its SYN_REPLY (client-go waits as long).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A SPDY/3.1 client session over one connection. Dropping it (or
/// [`Session::close`]) ends the connection: keep it while its streams are in use.
pub struct Session {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// What the session's tasks and its streams share.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: frames queued, data buffered, windows opened, close asked.
    pub(crate) wake_writer: Notify,
    /// Wakes the reader when a stream's receive buffer drained.
    pub(crate) wake_reader: Notify,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why the connection ended.
#[derive(Debug, Clone)]
pub(crate) enum Ended {
    /// The peer closed it, or this side did.
    Clean(String),
    /// Reading or writing it failed.
    Failed(String),
}

impl Ended {
    pub(crate) fn reason(&self) -> &str {
        match self {
            Ended::Clean(r) | Ended::Failed(r) => r,
        }
    }
}

/// Where a stream's sending half stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendEnd {
    /// Writes are accepted.
    Open,
    /// Shut down: FIN goes out after the buffered data.
    FinRequested,
    /// FIN went out (or the stream was reset): nothing more is sent.
    Done,
}

/// One stream's buffers and windows.
pub(crate) struct StreamState {
    /// Answered by the SYN_REPLY (or RST_STREAM) while the stream is being opened.
    reply: Option<oneshot::Sender<Result<Headers, Error>>>,
    pub(crate) recv: VecDeque<Bytes>,
    pub(crate) recv_len: usize,
    /// The peer sent FIN.
    pub(crate) recv_fin: bool,
    /// The peer reset the stream (its RST_STREAM status).
    pub(crate) reset: Option<u32>,
    pub(crate) recv_waker: Option<Waker>,
    /// Bytes read by the application and not yet acknowledged by WINDOW_UPDATE.
    recv_unacked: i64,
    /// The application holds the receiving half.
    pub(crate) recv_open: bool,
    pub(crate) send: BytesMut,
    pub(crate) send_end: SendEnd,
    send_window: i64,
    pub(crate) send_waker: Option<Waker>,
    /// The application holds the sending half.
    pub(crate) send_open: bool,
}

/// The session's state.
pub(crate) struct State {
    next_stream: u32,
    pub(crate) streams: HashMap<u32, StreamState>,
    /// Control frames to write, in order.
    control: VecDeque<Frame>,
    session_window: i64,
    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE.
    initial_window: i64,
    /// The peer keeps windows: it sent WINDOW_UPDATE or an initial window size.
    peer_flow_control: bool,
    session_unacked: i64,
    peer_gone_away: bool,
    /// A close was asked for: the writer sends what is queued and ends.
    closing: bool,
    pub(crate) ended: Option<Ended>,
}

impl State {
    fn new() -> Self {
        Self {
            next_stream: 1,
            streams: HashMap::new(),
            control: VecDeque::new(),
            session_window: INITIAL_WINDOW,
            initial_window: INITIAL_WINDOW,
            peer_flow_control: false,
            session_unacked: 0,
            peer_gone_away: false,
            closing: false,
            ended: None,
        }
    }

    /// Queues a control frame (the caller wakes the writer).
    pub(crate) fn queue(&mut self, frame: Frame) {
        self.control.push_back(frame);
    }

    /// Whether writes can still go out.
    pub(crate) fn sendable(&self) -> Result<(), String> {
        match &self.ended {
            Some(end) => Err(end.reason().to_owned()),
            None if self.closing => Err("the session is closing".into()),
            None => Ok(()),
        }
    }

    /// Accounts for `n` bytes of stream `id` that the application read (or that were
    /// discarded), queueing WINDOW_UPDATEs once half a window was consumed, if the
    /// peer keeps windows. Returns whether a frame was queued.
    pub(crate) fn consumed(&mut self, id: u32, n: usize) -> bool {
        self.session_unacked += n as i64;
        if let Some(s) = self.streams.get_mut(&id)
            && !s.recv_fin
            && s.reset.is_none()
        {
            s.recv_unacked += n as i64;
        }
        self.acknowledge(INITIAL_WINDOW / 2)
    }

    /// Queues a WINDOW_UPDATE for the session and for every stream that consumed at
    /// least `threshold` bytes since the last one. Nothing for a peer that keeps no
    /// windows: Go's `spdystream` never reads them, and a frame it leaves unread
    /// when it closes the connection turns its close into a reset that drops the
    /// end of its output. Returns whether a frame was queued.
    fn acknowledge(&mut self, threshold: i64) -> bool {
        if !self.peer_flow_control {
            return false;
        }
        let mut updates = Vec::new();
        if self.session_unacked >= threshold.max(1) {
            updates.push((0, self.session_unacked));
            self.session_unacked = 0;
        }
        for (id, s) in &mut self.streams {
            if s.recv_unacked >= threshold.max(1) && !s.recv_fin && s.reset.is_none() {
                updates.push((*id, s.recv_unacked));
                s.recv_unacked = 0;
            }
        }
        let queued = !updates.is_empty();
        for (stream, delta) in updates {
            self.queue(Frame::WindowUpdate {
                stream,
                delta: delta.min(0x7fff_ffff) as u32,
            });
        }
        queued
    }

    /// Forgets stream `id` once nobody holds it and nothing is left to send.
    pub(crate) fn reap(&mut self, id: u32) {
        let done = self.streams.get(&id).is_some_and(|s| {
            !s.recv_open
                && !s.send_open
                && s.reply.is_none()
                && (s.send_end == SendEnd::Done || self.ended.is_some())
        });
        if done {
            self.streams.remove(&id);
        }
    }

    /// Ends the session for every stream: readers see the end after their buffered
    /// data, writers fail, streams being opened fail. Returns the wakers to wake.
    fn end(&mut self, how: Ended) -> Vec<Waker> {
        if self.ended.is_none() {
            tracing::debug!(reason = how.reason(), "SPDY session ended");
            self.ended = Some(how);
        }
        self.closing = true;
        let reason = self
            .ended
            .as_ref()
            .map(|e| e.reason().to_owned())
            .unwrap_or_default();
        let mut wakers = Vec::new();
        for s in self.streams.values_mut() {
            if let Some(reply) = s.reply.take() {
                let _ = reply.send(Err(Error::Closed {
                    reason: reason.clone(),
                }));
            }
            wakers.extend(s.recv_waker.take());
            wakers.extend(s.send_waker.take());
        }
        wakers
    }

    /// The frames to write next: every queued control frame, then at most one DATA
    /// frame per stream with buffered data (or a pending FIN) that the windows
    /// allow. Wakes writers whose buffers drained. `None` once the session is
    /// closing and everything queued was taken: the writer then ends.
    fn take_batch(&mut self, wakers: &mut Vec<Waker>) -> Option<Vec<Frame>> {
        let mut frames: Vec<Frame> = self.control.drain(..).collect();
        if self.closing {
            return (!frames.is_empty()).then_some(frames);
        }
        let mut ids: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.send.is_empty() || s.send_end == SendEnd::FinRequested)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            let enforce = self.peer_flow_control;
            let session_window = self.session_window;
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            let mut n = s.send.len().min(MAX_DATA_FRAME);
            if enforce {
                n = n.min(s.send_window.min(session_window).max(0) as usize);
            }
            if n == 0 && !s.send.is_empty() {
                continue; // the windows are shut
            }
            let data = s.send.split_to(n).freeze();
            s.send_window -= n as i64;
            let fin = s.send_end == SendEnd::FinRequested && s.send.is_empty();
            if fin {
                s.send_end = SendEnd::Done;
            }
            wakers.extend(s.send_waker.take());
            self.session_window -= n as i64;
            frames.push(Frame::Data {
                stream: id,
                fin,
                data,
            });
            if fin {
                self.reap(id);
            }
        }
        Some(frames)
    }

    /// Applies one frame read from the peer. Returns the wakers to wake and whether
    /// the writer has something new.
    fn on_frame(&mut self, frame: Frame, wakers: &mut Vec<Waker>) -> bool {
        match frame {
            Frame::Data { stream, fin, data } => {
                let len = data.len();
                let Some(s) = self.streams.get_mut(&stream) else {
                    return self.consumed(stream, len);
                };
                if s.reset.is_some() || s.recv_fin {
                    return self.consumed(stream, len);
                }
                s.recv_fin = fin;
                wakers.extend(s.recv_waker.take());
                if !s.recv_open {
                    let queued = self.consumed(stream, len);
                    self.reap(stream);
                    return queued;
                }
                if !data.is_empty() {
                    s.recv_len += len;
                    s.recv.push_back(data);
                }
                false
            }
            Frame::SynReply {
                stream,
                fin,
                headers,
            } => {
                let Some(s) = self.streams.get_mut(&stream) else {
                    return false;
                };
                let Some(reply) = s.reply.take() else {
                    return false;
                };
                s.recv_fin |= fin;
                if reply.send(Ok(headers)).is_err() {
                    // Nobody waits for it any more.
                    s.send_end = SendEnd::Done;
                    s.recv_open = false;
                    s.send_open = false;
                    self.queue(Frame::RstStream {
                        stream,
                        status: frame::status::CANCEL,
                    });
                    self.reap(stream);
                    return true;
                }
                false
            }
            Frame::Headers { stream, fin, .. } => {
                if let Some(s) = self.streams.get_mut(&stream)
                    && fin
                {
                    s.recv_fin = true;
                    wakers.extend(s.recv_waker.take());
                }
                false
            }
            Frame::RstStream { stream, status } => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.reset = Some(status);
                    s.send.clear();
                    s.send_end = SendEnd::Done;
                    if let Some(reply) = s.reply.take() {
                        let _ = reply.send(Err(Error::StreamRefused { stream, status }));
                    }
                    wakers.extend(s.recv_waker.take());
                    wakers.extend(s.send_waker.take());
                    self.reap(stream);
                }
                false
            }
            Frame::Settings { entries, .. } => {
                let was_keeping = self.peer_flow_control;
                for e in entries {
                    if e.id == SETTINGS_INITIAL_WINDOW_SIZE {
                        let value = i64::from(e.value & 0x7fff_ffff);
                        let delta = value - self.initial_window;
                        self.initial_window = value;
                        self.peer_flow_control = true;
                        for s in self.streams.values_mut() {
                            s.send_window += delta;
                        }
                    }
                }
                if !was_keeping {
                    // What was read before the peer showed it keeps windows.
                    self.acknowledge(1);
                }
                true
            }
            Frame::WindowUpdate { stream, delta } => {
                let was_keeping = self.peer_flow_control;
                self.peer_flow_control = true;
                if stream == 0 {
                    self.session_window += i64::from(delta);
                } else if let Some(s) = self.streams.get_mut(&stream) {
                    s.send_window += i64::from(delta);
                }
                if !was_keeping {
                    self.acknowledge(1);
                }
                true
            }
            Frame::Ping { id } => {
                // Pings the server starts have even IDs; odd ones would answer ours.
                if id % 2 == 0 {
                    self.queue(Frame::Ping { id });
                    return true;
                }
                false
            }
            Frame::GoAway { .. } => {
                self.peer_gone_away = true;
                false
            }
            Frame::SynStream { stream, .. } => {
                self.queue(Frame::RstStream {
                    stream,
                    status: frame::status::REFUSED_STREAM,
                });
                true
            }
            Frame::Unknown { .. } => false,
        }
    }
}

impl Session {
    /// Starts a client session on `io`, a connection that has just switched to
    /// SPDY/3.1. Spawns the session's reader and writer on the current Tokio runtime
    /// (so it must be called within one).
    pub fn client<T>(io: T) -> Session
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new()),
            wake_writer: Notify::new(),
            wake_reader: Notify::new(),
        });
        let (read_half, write_half) = tokio::io::split(io);
        let reader = tokio::spawn(read_loop(shared.clone(), read_half));
        let writer = tokio::spawn(write_loop(
            shared.clone(),
            write_half,
            reader.abort_handle(),
        ));
        Session {
            shared,
            writer: Some(writer),
        }
    }

    /// Opens a stream: sends SYN_STREAM with `headers` and waits (30 s at most) for
    /// the peer's SYN_REPLY.
    pub async fn open_stream(&self, headers: Headers) -> Result<Stream, Error> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = self.shared.lock();
            st.sendable().map_err(|reason| Error::Closed { reason })?;
            if st.peer_gone_away {
                return Err(Error::GoneAway);
            }
            let id = st.next_stream;
            if id > 0x7fff_ffff {
                return Err(Error::Closed {
                    reason: "stream IDs exhausted".into(),
                });
            }
            st.next_stream += 2;
            let window = st.initial_window;
            st.streams.insert(
                id,
                StreamState {
                    reply: Some(tx),
                    recv: VecDeque::new(),
                    recv_len: 0,
                    recv_fin: false,
                    reset: None,
                    recv_waker: None,
                    recv_unacked: 0,
                    recv_open: true,
                    send: BytesMut::new(),
                    send_end: SendEnd::Open,
                    send_window: window,
                    send_waker: None,
                    send_open: true,
                },
            );
            st.queue(Frame::SynStream {
                stream: id,
                associated: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers,
            });
            id
        };
        self.shared.wake_writer.notify_one();
        let outcome = tokio::time::timeout(REPLY_TIMEOUT, rx).await;
        let failed = |e: Error| {
            let mut st = self.shared.lock();
            st.streams.remove(&id);
            if matches!(e, Error::ReplyTimeout { .. }) {
                st.queue(Frame::RstStream {
                    stream: id,
                    status: frame::status::CANCEL,
                });
                drop(st);
                self.shared.wake_writer.notify_one();
            }
            Err(e)
        };
        match outcome {
            Ok(Ok(Ok(reply))) => Ok(Stream::new(self.shared.clone(), id, reply)),
            Ok(Ok(Err(e))) => failed(e),
            Ok(Err(_)) => failed(Error::Closed {
                reason: "the session ended".into(),
            }),
            Err(_) => failed(Error::ReplyTimeout {
                stream: id,
                timeout: REPLY_TIMEOUT,
            }),
        }
    }

    /// Ends the session: sends GOAWAY after the control frames already queued and
    /// closes the connection. Data still buffered for sending is dropped: shut the
    /// streams down and wait for the peer's answer first for an orderly end.
    pub async fn close(mut self) {
        self.request_close();
        if let Some(writer) = self.writer.take() {
            let _ = writer.await;
        }
    }

    fn request_close(&self) {
        {
            let mut st = self.shared.lock();
            if !st.closing && st.ended.is_none() {
                st.closing = true;
                st.queue(Frame::GoAway {
                    last_good: 0,
                    status: 0,
                });
            }
        }
        self.shared.wake_writer.notify_one();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.request_close();
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Session")
            .field("streams", &st.streams.len())
            .field("closing", &st.closing)
            .field("ended", &st.ended)
            .finish()
    }
}

/// Reads frames until the connection ends and applies them.
async fn read_loop<R: AsyncRead + Unpin>(shared: Arc<Shared>, mut io: R) {
    let mut decompressor = Decompressor::new();
    let end = loop {
        let frame = match read_frame(&mut io, &mut decompressor).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ended::Clean("the peer closed the connection".into()),
            Err(e) => break Ended::Failed(e.to_string()),
        };
        if let Frame::Data { stream, data, .. } = &frame {
            wait_for_room(&shared, *stream, data.len()).await;
        }
        let mut wakers = Vec::new();
        let wake_writer = shared.lock().on_frame(frame, &mut wakers);
        wakers.into_iter().for_each(Waker::wake);
        if wake_writer {
            shared.wake_writer.notify_one();
        }
    };
    let wakers = shared.lock().end(end);
    wakers.into_iter().for_each(Waker::wake);
    shared.wake_writer.notify_one();
}

/// Waits while stream `id` holds more than its buffer's worth unread: the back
/// pressure for peers that ignore our windows.
async fn wait_for_room(shared: &Shared, id: u32, incoming: usize) {
    loop {
        let drained = shared.wake_reader.notified();
        let full = shared.lock().streams.get(&id).is_some_and(|s| {
            s.recv_open
                && s.reset.is_none()
                && s.recv_len > 0
                && s.recv_len + incoming > RECV_BUFFER
        });
        if !full {
            return;
        }
        drained.await;
    }
}

/// Writes queued frames until the session closes, then shuts the connection down
/// and stops the reader.
async fn write_loop<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut io: W, reader: AbortHandle) {
    let end = match Compressor::new() {
        Ok(mut compressor) => write_frames(&shared, &mut io, &mut compressor).await,
        Err(e) => Ended::Failed(e.to_string()),
    };
    let _ = io.shutdown().await;
    reader.abort();
    let wakers = shared.lock().end(end);
    wakers.into_iter().for_each(Waker::wake);
}

async fn write_frames<W: AsyncWrite + Unpin>(
    shared: &Shared,
    io: &mut W,
    compressor: &mut Compressor,
) -> Ended {
    let mut buf = Vec::new();
    loop {
        let mut wakers = Vec::new();
        let batch = shared.lock().take_batch(&mut wakers);
        wakers.into_iter().for_each(Waker::wake);
        let Some(frames) = batch else {
            return Ended::Clean("the session was closed".into());
        };
        if frames.is_empty() {
            shared.wake_writer.notified().await;
            continue;
        }
        buf.clear();
        for frame in &frames {
            if let Err(e) = frame.encode(compressor, &mut buf) {
                return Ended::Failed(e.to_string());
            }
        }
        if let Err(e) = io.write_all(&buf).await {
            return Ended::Failed(Error::Write(e).to_string());
        }
        if let Err(e) = io.flush().await {
            return Ended::Failed(Error::Write(e).to_string());
        }
    }
}

#[cfg(test)]
mod tests;
