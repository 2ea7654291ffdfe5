//! The session against a scripted peer on an in-memory connection, speaking frames
//! through the same codec.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use super::*;
use crate::frame::Setting;

/// The server side of a session, frame by frame.
struct Peer {
    read: ReadHalf<DuplexStream>,
    write: WriteHalf<DuplexStream>,
    compressor: Compressor,
    decompressor: Decompressor,
}

impl Peer {
    async fn send(&mut self, frame: Frame) {
        let mut bytes = Vec::new();
        frame
            .encode(&mut self.compressor, &mut bytes)
            .expect("encode");
        self.write.write_all(&bytes).await.expect("send a frame");
    }

    /// The next frame, `None` at the end of the connection.
    async fn recv(&mut self) -> Option<Frame> {
        tokio::time::timeout(
            Duration::from_secs(5),
            read_frame(&mut self.read, &mut self.decompressor),
        )
        .await
        .expect("a frame in time")
        .expect("a valid frame")
    }

    /// The next frame that is not a WINDOW_UPDATE.
    async fn recv_skipping_updates(&mut self) -> Option<Frame> {
        loop {
            match self.recv().await {
                Some(Frame::WindowUpdate { .. }) => continue,
                other => return other,
            }
        }
    }

    /// Whether a frame arrives within `wait`.
    async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, read_frame(&mut self.read, &mut self.decompressor))
            .await
            .is_err()
    }

    /// Receives the SYN_STREAM of a new stream and replies to it.
    async fn accept(&mut self) -> (u32, Headers) {
        match self.recv().await {
            Some(Frame::SynStream {
                stream, headers, ..
            }) => {
                self.send(Frame::SynReply {
                    stream,
                    fin: false,
                    headers: Headers::new(),
                })
                .await;
                (stream, headers)
            }
            other => panic!("expected SYN_STREAM, got {other:?}"),
        }
    }

    /// Data of `stream` up to its FIN.
    async fn data_until_fin(&mut self, stream: u32) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            match self.recv_skipping_updates().await {
                Some(Frame::Data {
                    stream: s,
                    fin,
                    data,
                }) if s == stream => {
                    all.extend_from_slice(&data);
                    if fin {
                        return all;
                    }
                }
                other => panic!("expected DATA on {stream}, got {other:?}"),
            }
        }
    }
}

fn pair() -> (Session, Peer) {
    let (client, server) = tokio::io::duplex(256 * 1024);
    let (read, write) = tokio::io::split(server);
    let peer = Peer {
        read,
        write,
        compressor: Compressor::new().expect("compressor"),
        decompressor: Decompressor::new(),
    };
    (Session::client(client), peer)
}

async fn read_all(r: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut out))
        .await
        .expect("read in time")
        .expect("read");
    out
}

#[tokio::test]
async fn a_stream_carries_data_both_ways_and_half_closes_each_way() {
    let (session, mut peer) = pair();
    let opening = tokio::spawn(async move {
        let stream = session
            .open_stream(Headers::new().with("streamType", "stdin"))
            .await;
        (session, stream)
    });
    let (id, headers) = peer.accept().await;
    assert_eq!(id, 1);
    assert_eq!(headers.get("streamtype"), Some("stdin"));
    let (session, stream) = opening.await.expect("task");
    let mut stream = stream.expect("the stream opens");
    assert_eq!(stream.id(), 1);

    stream.write_all(b"hello").await.expect("write");
    stream.shutdown().await.expect("FIN");
    assert_eq!(peer.data_until_fin(1).await, b"hello");
    assert!(stream.write_all(b"late").await.is_err());

    peer.send(Frame::Data {
        stream: 1,
        fin: false,
        data: Bytes::from_static(b"wor"),
    })
    .await;
    peer.send(Frame::Data {
        stream: 1,
        fin: true,
        data: Bytes::from_static(b"ld"),
    })
    .await;
    assert_eq!(read_all(&mut stream).await, b"world");

    // Stream IDs go up by two.
    let opening = tokio::spawn(async move {
        let stream = session.open_stream(Headers::new()).await;
        (session, stream)
    });
    assert_eq!(peer.accept().await.0, 3);
    let (_session, stream) = opening.await.expect("task");
    assert_eq!(stream.expect("opens").id(), 3);
}

#[tokio::test]
async fn a_reset_stream_reads_to_its_end_and_refuses_writes() {
    let (session, mut peer) = pair();
    let opening = tokio::spawn(async move {
        let stream = session.open_stream(Headers::new()).await;
        (session, stream)
    });
    let (id, _) = peer.accept().await;
    let (_session, stream) = opening.await.expect("task");
    let mut stream = stream.expect("opens");
    peer.send(Frame::Data {
        stream: id,
        fin: false,
        data: Bytes::from_static(b"status"),
    })
    .await;
    peer.send(Frame::RstStream {
        stream: id,
        status: frame::status::CANCEL,
    })
    .await;
    assert_eq!(read_all(&mut stream).await, b"status");
    let err = stream.write_all(b"x").await.expect_err("reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn a_stream_the_peer_refuses_fails_to_open() {
    let (session, mut peer) = pair();
    let opening = tokio::spawn(async move { session.open_stream(Headers::new()).await.err() });
    let Some(Frame::SynStream { stream, .. }) = peer.recv().await else {
        panic!("a SYN_STREAM");
    };
    peer.send(Frame::RstStream { stream, status: 3 }).await;
    let err = opening.await.expect("task").expect("refused");
    assert!(
        matches!(
            err,
            Error::StreamRefused {
                stream: 1,
                status: 3
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn pings_are_answered_and_streams_the_peer_opens_are_refused() {
    let (_session, mut peer) = pair();
    peer.send(Frame::Ping { id: 2 }).await;
    assert_eq!(peer.recv().await, Some(Frame::Ping { id: 2 }));
    peer.send(Frame::SynStream {
        stream: 2,
        associated: 0,
        priority: 0,
        fin: false,
        unidirectional: false,
        headers: Headers::new(),
    })
    .await;
    assert_eq!(
        peer.recv().await,
        Some(Frame::RstStream {
            stream: 2,
            status: frame::status::REFUSED_STREAM
        })
    );
}

/// Opens stream 1 with `peer` answering; returns the session and the stream.
async fn opened(session: Session, peer: &mut Peer) -> (Session, Stream) {
    let opening = tokio::spawn(async move {
        let stream = session.open_stream(Headers::new()).await;
        (session, stream)
    });
    peer.accept().await;
    let (session, stream) = opening.await.expect("task");
    (session, stream.expect("the stream opens"))
}

#[tokio::test]
async fn a_peer_that_keeps_no_windows_is_not_throttled_and_gets_no_updates() {
    let (session, mut peer) = pair();
    let (_session, stream) = opened(session, &mut peer).await;
    let id = stream.id();
    let (mut send, mut recv) = stream.split();

    // 200 KiB out, over three times the initial window: a peer that never sends
    // WINDOW_UPDATE (Go's spdystream) gets all of it.
    let payload: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let writing = tokio::spawn({
        let payload = payload.clone();
        async move {
            send.write_all(&payload).await.expect("write");
            send.shutdown().await.expect("FIN");
        }
    });
    assert_eq!(peer.data_until_fin(id).await, payload);
    writing.await.expect("task");

    // 128 KiB in, all read: nothing goes back to it.
    for chunk in payload[..128 * 1024].chunks(16 * 1024) {
        peer.send(Frame::Data {
            stream: id,
            fin: false,
            data: Bytes::copy_from_slice(chunk),
        })
        .await;
    }
    let mut got = vec![0u8; 128 * 1024];
    tokio::time::timeout(Duration::from_secs(5), recv.read_exact(&mut got))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(got, payload[..128 * 1024]);
    assert!(peer.quiet_for(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn a_peer_that_keeps_windows_gets_updates_as_the_application_reads() {
    let (session, mut peer) = pair();
    let (_session, mut stream) = opened(session, &mut peer).await;
    let id = stream.id();
    // 40 KiB read before the peer shows it keeps windows: no update yet...
    peer.send(Frame::Data {
        stream: id,
        fin: false,
        data: Bytes::from(vec![1u8; 40 * 1024]),
    })
    .await;
    let mut got = vec![0u8; 40 * 1024];
    stream.read_exact(&mut got).await.expect("read");
    assert!(peer.quiet_for(Duration::from_millis(100)).await);
    // ...then its first WINDOW_UPDATE has them acknowledged, stream and session.
    peer.send(Frame::WindowUpdate {
        stream: 0,
        delta: 1,
    })
    .await;
    let mut acked = [peer.recv().await, peer.recv().await];
    acked.sort_by_key(|f| match f {
        Some(Frame::WindowUpdate { stream, .. }) => *stream,
        _ => u32::MAX,
    });
    assert_eq!(
        acked,
        [
            Some(Frame::WindowUpdate {
                stream: 0,
                delta: 40 * 1024
            }),
            Some(Frame::WindowUpdate {
                stream: id,
                delta: 40 * 1024
            })
        ]
    );
    // From now on every half window read is acknowledged.
    for _ in 0..4 {
        peer.send(Frame::Data {
            stream: id,
            fin: false,
            data: Bytes::from(vec![2u8; 16 * 1024]),
        })
        .await;
    }
    let mut got = vec![0u8; 64 * 1024];
    stream.read_exact(&mut got).await.expect("read");
    let (mut stream_acked, mut session_acked) = (0, 0);
    while stream_acked < 64 * 1024 || session_acked < 64 * 1024 {
        match peer.recv().await {
            Some(Frame::WindowUpdate { stream: 0, delta }) => session_acked += delta,
            Some(Frame::WindowUpdate { stream, delta }) if stream == id => stream_acked += delta,
            other => panic!("expected WINDOW_UPDATE, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn once_the_peer_keeps_windows_sending_waits_for_them() {
    let (session, mut peer) = pair();
    peer.send(Frame::Settings {
        clear: false,
        entries: vec![Setting {
            flags: 0,
            id: SETTINGS_INITIAL_WINDOW_SIZE,
            value: 1000,
        }],
    })
    .await;
    // Let the session see the SETTINGS before the stream opens.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let opening = tokio::spawn(async move {
        let stream = session.open_stream(Headers::new()).await;
        (session, stream)
    });
    let (id, _) = peer.accept().await;
    let (_session, stream) = opening.await.expect("task");
    let mut stream = stream.expect("opens");
    // Shutting down waits for the FIN to go out, behind the data.
    let writing = tokio::spawn(async move {
        stream.write_all(&[7u8; 5000]).await.expect("buffered");
        stream.shutdown().await.expect("FIN");
    });

    let Some(Frame::Data { data, fin, .. }) = peer.recv().await else {
        panic!("DATA");
    };
    assert_eq!((data.len(), fin), (1000, false));
    assert!(
        peer.quiet_for(Duration::from_millis(200)).await,
        "nothing past the window"
    );
    peer.send(Frame::WindowUpdate {
        stream: id,
        delta: 4000,
    })
    .await;
    assert_eq!(peer.data_until_fin(id).await.len(), 4000);
    writing.await.expect("the FIN went out");
}

#[tokio::test]
async fn goaway_refuses_new_streams_and_close_says_goodbye() {
    let (session, mut peer) = pair();
    peer.send(Frame::GoAway {
        last_good: 0,
        status: 0,
    })
    .await;
    // Let the session read it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = session.open_stream(Headers::new()).await;
    assert!(matches!(refused, Err(Error::GoneAway)), "{refused:?}");
    session.close().await;
    assert!(matches!(
        peer.recv().await,
        Some(Frame::GoAway { last_good: 0, .. })
    ));
    assert_eq!(peer.recv().await, None, "the connection is closed");
}

#[tokio::test]
async fn the_end_of_the_connection_ends_every_stream() {
    let (session, mut peer) = pair();
    let opening = tokio::spawn(async move {
        let stream = session.open_stream(Headers::new()).await;
        (session, stream)
    });
    let (id, _) = peer.accept().await;
    let (session, stream) = opening.await.expect("task");
    let mut stream = stream.expect("opens");
    peer.send(Frame::Data {
        stream: id,
        fin: false,
        data: Bytes::from_static(b"last words"),
    })
    .await;
    drop(peer);
    assert_eq!(read_all(&mut stream).await, b"last words");
    assert!(stream.write_all(b"x").await.is_err());
    assert!(matches!(
        session.open_stream(Headers::new()).await,
        Err(Error::Closed { .. })
    ));
}

#[tokio::test]
async fn an_unread_stream_holds_the_peer_back_without_losing_data() {
    let (session, mut peer) = pair();
    let opening = tokio::spawn(async move {
        let stream = session.open_stream(Headers::new()).await;
        (session, stream)
    });
    let (id, _) = peer.accept().await;
    let (_session, stream) = opening.await.expect("task");
    let mut stream = stream.expect("opens");
    // 2 MiB, far more than the stream buffer and the in-memory pipe: the peer's
    // writes block until the application reads.
    let payload: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    let sending = tokio::spawn({
        let payload = payload.clone();
        async move {
            for (i, chunk) in payload.chunks(32 * 1024).enumerate() {
                peer.send(Frame::Data {
                    stream: id,
                    fin: i == 63,
                    data: Bytes::copy_from_slice(chunk),
                })
                .await;
            }
            peer
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!sending.is_finished(), "the peer is held back");
    assert_eq!(read_all(&mut stream).await, payload);
    sending.await.expect("the peer finishes");
}
