//! SPDY/3 frames (SPDY/3.1 §2.2, §2.6): an 8-byte head, then the payload.
//!
//! ```text
//! control: |1| version (15) | type (16) | flags (8) | length (24) | payload
//! data:    |0| stream-id (31)           | flags (8) | length (24) | data
//! ```

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::Error;
use crate::headers::{Compressor, Decompressor, Headers};

/// The protocol version in every control frame.
pub(crate) const VERSION: u16 = 3;

/// FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS: the sender's last frame on the stream.
const FLAG_FIN: u8 = 0x01;
/// UNIDIRECTIONAL on SYN_STREAM: the recipient may not send on the stream.
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// CLEAR_SETTINGS on SETTINGS.
const FLAG_CLEAR_SETTINGS: u8 = 0x01;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// SETTINGS id of the initial stream window size.
pub(crate) const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// RST_STREAM status codes (SPDY/3.1 §2.6.2) this session sends.
pub(crate) mod status {
    /// The recipient does not accept the stream (a server push, here).
    pub(crate) const REFUSED_STREAM: u32 = 3;
    /// The stream is no longer needed.
    pub(crate) const CANCEL: u32 = 5;
}

/// Largest payload a frame can carry (24-bit length).
pub(crate) const MAX_LENGTH: usize = (1 << 24) - 1;

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Setting {
    pub(crate) flags: u8,
    pub(crate) id: u32,
    pub(crate) value: u32,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    Data {
        stream: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream: u32,
        associated: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Settings {
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
    /// A control frame type this session does not know; SPDY says to ignore it.
    Unknown {
        kind: u16,
    },
}

impl Frame {
    /// The frame's name, for errors and logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Frame::Data { .. } => "DATA",
            Frame::SynStream { .. } => "SYN_STREAM",
            Frame::SynReply { .. } => "SYN_REPLY",
            Frame::RstStream { .. } => "RST_STREAM",
            Frame::Settings { .. } => "SETTINGS",
            Frame::Ping { .. } => "PING",
            Frame::GoAway { .. } => "GOAWAY",
            Frame::Headers { .. } => "HEADERS",
            Frame::WindowUpdate { .. } => "WINDOW_UPDATE",
            Frame::Unknown { .. } => "unknown control",
        }
    }

    /// Appends the frame's bytes to `out`; header blocks go through `compressor`.
    pub(crate) fn encode(
        &self,
        compressor: &mut Compressor,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let fin = |f: bool| if f { FLAG_FIN } else { 0 };
        match self {
            Frame::Data {
                stream,
                fin: f,
                data,
            } => {
                check_length(self, data.len())?;
                out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(&flags_and_length(fin(*f), data.len()));
                out.extend_from_slice(data);
            }
            Frame::SynStream {
                stream,
                associated,
                priority,
                fin: f,
                unidirectional,
                headers,
            } => {
                let mut payload = Vec::new();
                payload.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                payload.extend_from_slice(&(associated & 0x7fff_ffff).to_be_bytes());
                payload.push((priority & 0x07) << 5);
                payload.push(0); // credential slot
                compressor.compress(&headers.to_block(), &mut payload)?;
                let flags = fin(*f)
                    | if *unidirectional {
                        FLAG_UNIDIRECTIONAL
                    } else {
                        0
                    };
                control(self, SYN_STREAM, flags, &payload, out)?;
            }
            Frame::SynReply {
                stream,
                fin: f,
                headers,
            } => {
                let mut payload = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
                compressor.compress(&headers.to_block(), &mut payload)?;
                control(self, SYN_REPLY, fin(*f), &payload, out)?;
            }
            Frame::Headers {
                stream,
                fin: f,
                headers,
            } => {
                let mut payload = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
                compressor.compress(&headers.to_block(), &mut payload)?;
                control(self, HEADERS, fin(*f), &payload, out)?;
            }
            Frame::RstStream { stream, status } => {
                control(
                    self,
                    RST_STREAM,
                    0,
                    &two_words(*stream & 0x7fff_ffff, *status),
                    out,
                )?;
            }
            Frame::Settings { clear, entries } => {
                let mut payload = (entries.len() as u32).to_be_bytes().to_vec();
                for e in entries {
                    payload.extend_from_slice(
                        &((u32::from(e.flags) << 24) | (e.id & 0x00ff_ffff)).to_be_bytes(),
                    );
                    payload.extend_from_slice(&e.value.to_be_bytes());
                }
                let flags = if *clear { FLAG_CLEAR_SETTINGS } else { 0 };
                control(self, SETTINGS, flags, &payload, out)?;
            }
            Frame::Ping { id } => control(self, PING, 0, &id.to_be_bytes(), out)?,
            Frame::GoAway { last_good, status } => {
                control(
                    self,
                    GOAWAY,
                    0,
                    &two_words(*last_good & 0x7fff_ffff, *status),
                    out,
                )?;
            }
            Frame::WindowUpdate { stream, delta } => {
                let payload = two_words(*stream & 0x7fff_ffff, *delta & 0x7fff_ffff);
                control(self, WINDOW_UPDATE, 0, &payload, out)?;
            }
            Frame::Unknown { kind } => control(self, *kind, 0, &[], out)?,
        }
        Ok(())
    }

    /// Decodes the frame of `head` from its `payload`; header blocks go through
    /// `decompressor` (which must see every header block of the session, in order).
    pub(crate) fn decode(
        head: [u8; 8],
        payload: Bytes,
        decompressor: &mut Decompressor,
    ) -> Result<Frame, Error> {
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            let stream = word(&head[0..4]) & 0x7fff_ffff;
            if stream == 0 {
                return Err(invalid("DATA", "stream 0"));
            }
            return Ok(Frame::Data {
                stream,
                fin: flags & FLAG_FIN != 0,
                data: payload,
            });
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let name = match kind {
            SYN_STREAM => "SYN_STREAM",
            SYN_REPLY => "SYN_REPLY",
            RST_STREAM => "RST_STREAM",
            SETTINGS => "SETTINGS",
            PING => "PING",
            GOAWAY => "GOAWAY",
            HEADERS => "HEADERS",
            WINDOW_UPDATE => "WINDOW_UPDATE",
            _ => return Ok(Frame::Unknown { kind }),
        };
        if version != VERSION {
            return Err(invalid(name, &format!("version {version}, not {VERSION}")));
        }
        let p = &payload[..];
        let need = |n: usize| {
            if p.len() < n {
                Err(invalid(
                    name,
                    &format!("{} bytes, at least {n} needed", p.len()),
                ))
            } else {
                Ok(())
            }
        };
        let exactly = |n: usize| {
            if p.len() != n {
                Err(invalid(name, &format!("{} bytes, not {n}", p.len())))
            } else {
                Ok(())
            }
        };
        let fin = flags & FLAG_FIN != 0;
        let frame = match kind {
            SYN_STREAM => {
                need(10)?;
                let block = decompressor.decompress(&p[10..], name)?;
                Frame::SynStream {
                    stream: nonzero(name, word(&p[0..4]) & 0x7fff_ffff)?,
                    associated: word(&p[4..8]) & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers: Headers::from_block(&block, name)?,
                }
            }
            SYN_REPLY | HEADERS => {
                need(4)?;
                let stream = nonzero(name, word(&p[0..4]) & 0x7fff_ffff)?;
                let block = decompressor.decompress(&p[4..], name)?;
                let headers = Headers::from_block(&block, name)?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream,
                        fin,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                exactly(8)?;
                Frame::RstStream {
                    stream: nonzero(name, word(&p[0..4]) & 0x7fff_ffff)?,
                    status: word(&p[4..8]),
                }
            }
            SETTINGS => {
                need(4)?;
                let count = word(&p[0..4]) as usize;
                exactly(4 + count.saturating_mul(8))?;
                let entries = p[4..]
                    .chunks_exact(8)
                    .map(|e| Setting {
                        flags: e[0],
                        id: word(&e[0..4]) & 0x00ff_ffff,
                        value: word(&e[4..8]),
                    })
                    .collect();
                Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                }
            }
            PING => {
                exactly(4)?;
                Frame::Ping { id: word(p) }
            }
            GOAWAY => {
                // SPDY/3 added the status word; accept a SPDY/2-sized one too.
                need(4)?;
                Frame::GoAway {
                    last_good: word(&p[0..4]) & 0x7fff_ffff,
                    status: if p.len() >= 8 { word(&p[4..8]) } else { 0 },
                }
            }
            _ => {
                exactly(8)?;
                Frame::WindowUpdate {
                    stream: word(&p[0..4]) & 0x7fff_ffff,
                    delta: word(&p[4..8]) & 0x7fff_ffff,
                }
            }
        };
        Ok(frame)
    }
}

/// Reads the next frame; `None` at a clean end of the connection (between frames).
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    decompressor: &mut Decompressor,
) -> Result<Option<Frame>, Error> {
    let mut head = [0u8; 8];
    let mut filled = 0;
    while filled < head.len() {
        let n = io.read(&mut head[filled..]).await.map_err(Error::Read)?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(Error::Read(std::io::ErrorKind::UnexpectedEof.into()));
        }
        filled += n;
    }
    let length = (word(&head[4..8]) & 0x00ff_ffff) as usize;
    let mut payload = vec![0u8; length];
    io.read_exact(&mut payload).await.map_err(Error::Read)?;
    Frame::decode(head, Bytes::from(payload), decompressor).map(Some)
}

fn word(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn two_words(a: u32, b: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&a.to_be_bytes());
    out[4..].copy_from_slice(&b.to_be_bytes());
    out
}

fn flags_and_length(flags: u8, length: usize) -> [u8; 4] {
    ((u32::from(flags) << 24) | (length as u32 & 0x00ff_ffff)).to_be_bytes()
}

fn check_length(frame: &Frame, length: usize) -> Result<(), Error> {
    if length > MAX_LENGTH {
        return Err(invalid(
            frame.name(),
            &format!("{length} bytes exceed {MAX_LENGTH}"),
        ));
    }
    Ok(())
}

fn control(
    frame: &Frame,
    kind: u16,
    flags: u8,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    check_length(frame, payload.len())?;
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&flags_and_length(flags, payload.len()));
    out.extend_from_slice(payload);
    Ok(())
}

fn nonzero(frame: &'static str, stream: u32) -> Result<u32, Error> {
    if stream == 0 {
        return Err(invalid(frame, "stream 0"));
    }
    Ok(stream)
}

fn invalid(frame: &'static str, reason: &str) -> Error {
    Error::InvalidFrame {
        frame,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) {
        let mut compressor = Compressor::new().expect("compressor");
        let mut decompressor = Decompressor::new();
        let mut bytes = Vec::new();
        frame.encode(&mut compressor, &mut bytes).expect("encode");
        let head: [u8; 8] = bytes[..8].try_into().expect("a head");
        let length = (word(&head[4..8]) & 0x00ff_ffff) as usize;
        assert_eq!(length, bytes.len() - 8, "{frame:?}");
        let decoded = Frame::decode(head, Bytes::copy_from_slice(&bytes[8..]), &mut decompressor)
            .expect("decode");
        assert_eq!(decoded, frame);
    }

    #[test]
    fn every_frame_type_round_trips() {
        let headers = Headers::new().with("streamtype", "stdout");
        for frame in [
            Frame::Data {
                stream: 3,
                fin: false,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream: 0x7fff_ffff,
                fin: true,
                data: Bytes::new(),
            },
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 7,
                fin: false,
                unidirectional: true,
                headers: headers.clone(),
            },
            Frame::SynReply {
                stream: 1,
                fin: true,
                headers: Headers::new(),
            },
            Frame::Headers {
                stream: 5,
                fin: false,
                headers: headers.clone(),
            },
            Frame::RstStream {
                stream: 7,
                status: status::CANCEL,
            },
            Frame::Settings {
                clear: true,
                entries: vec![Setting {
                    flags: 1,
                    id: SETTINGS_INITIAL_WINDOW_SIZE,
                    value: 1 << 20,
                }],
            },
            Frame::Ping { id: 2 },
            Frame::GoAway {
                last_good: 9,
                status: 0,
            },
            Frame::WindowUpdate {
                stream: 0,
                delta: 32768,
            },
        ] {
            round_trip(frame);
        }
    }

    #[test]
    fn frames_assembled_from_the_spec_decode() {
        let mut d = Decompressor::new();
        // WINDOW_UPDATE for stream 1 by 0x8000: control bit, version 3, type 9,
        // flags 0, length 8.
        let frame = Frame::decode(
            [0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08],
            Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0x80, 0]),
            &mut d,
        )
        .expect("WINDOW_UPDATE");
        assert_eq!(
            frame,
            Frame::WindowUpdate {
                stream: 1,
                delta: 0x8000
            }
        );
        // DATA on stream 3 with FIN and 2 bytes.
        let frame = Frame::decode(
            [0x00, 0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x02],
            Bytes::from_static(b"ok"),
            &mut d,
        )
        .expect("DATA");
        assert_eq!(
            frame,
            Frame::Data {
                stream: 3,
                fin: true,
                data: Bytes::from_static(b"ok")
            }
        );
        // A version-2 control frame is refused; an unknown type is passed over.
        assert!(
            Frame::decode(
                [0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4],
                Bytes::from_static(&[0, 0, 0, 1]),
                &mut d
            )
            .is_err()
        );
        assert_eq!(
            Frame::decode([0x80, 0x03, 0x00, 0x0a, 0, 0, 0, 0], Bytes::new(), &mut d)
                .expect("unknown"),
            Frame::Unknown { kind: 10 }
        );
    }

    #[test]
    fn a_syn_stream_compressed_by_another_zlib_decodes() {
        // SYN_STREAM for stream 1 with `streamtype: error`, as kubectl opens an
        // exec's error stream: its header block compressed by CPython's zlib
        // (zlib.compressobj(zdict=<the SPDY dictionary>), then a Z_SYNC_FLUSH).
        const FRAME: &[u8] = &[
            0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x28, // head: SYN_STREAM, 40 bytes
            0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // ids, priority, slot
            0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0xa6, 0x23, 0x46, 0x70, 0x3a, 0x2b, 0x29,
            0x4a, 0x4d, 0xcc, 0x85, 0x16, 0x25, 0xac, 0xa9, 0xa0, 0x80, 0x06, 0x00, 0x00, 0x00,
            0xff, 0xff,
        ];
        let mut d = Decompressor::new();
        let frame = Frame::decode(
            FRAME[..8].try_into().expect("head"),
            Bytes::from_static(&FRAME[8..]),
            &mut d,
        )
        .expect("SYN_STREAM");
        assert_eq!(
            frame,
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: Headers::new().with("streamtype", "error"),
            }
        );
    }

    #[tokio::test]
    async fn frames_are_read_off_a_byte_stream_until_its_end() {
        let mut compressor = Compressor::new().expect("compressor");
        let mut bytes = Vec::new();
        for frame in [
            Frame::Ping { id: 2 },
            Frame::SynReply {
                stream: 1,
                fin: false,
                headers: Headers::new(),
            },
            Frame::Data {
                stream: 1,
                fin: false,
                data: Bytes::from_static(b"x"),
            },
        ] {
            frame.encode(&mut compressor, &mut bytes).expect("encode");
        }
        let mut reader = &bytes[..];
        let mut d = Decompressor::new();
        let mut names = Vec::new();
        while let Some(frame) = read_frame(&mut reader, &mut d).await.expect("a frame") {
            names.push(frame.name());
        }
        assert_eq!(names, ["PING", "SYN_REPLY", "DATA"]);
        // A frame cut short is an error, not an end.
        let mut cut = &bytes[..bytes.len() - 1];
        let mut d = Decompressor::new();
        let mut result = Ok(None);
        for _ in 0..3 {
            result = read_frame(&mut cut, &mut d).await;
        }
        assert!(result.is_err());
    }
}
