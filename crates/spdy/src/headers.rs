//! Header blocks (SPDY/3 §2.6.10): name/value pairs with 32-bit lengths, compressed
//! with one zlib stream per direction of the session, preset with the SPDY
//! dictionary and sync-flushed at the end of every block.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::Error;
use crate::dictionary::DICTIONARY;

/// Largest header block accepted after decompression.
const MAX_BLOCK: usize = 256 * 1024;

/// The headers of a SYN_STREAM, SYN_REPLY or HEADERS frame. Names are lowercase
/// (SPDY requires it); a name given twice keeps both values, NUL-separated on the
/// wire as SPDY/3 carries repeated headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    pairs: Vec<(String, String)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// These headers plus `name: value`.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.insert(name, value);
        self
    }

    /// Adds `name: value` (`name` is lowercased); a second value of a name is
    /// appended to the first.
    pub fn insert(&mut self, name: &str, value: impl Into<String>) {
        let name = name.to_ascii_lowercase();
        let value = value.into();
        match self.pairs.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push('\0');
                existing.push_str(&value);
            }
            None => self.pairs.push((name, value)),
        }
    }

    /// The value of `name` (any case); several values come NUL-separated.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every name and value, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of names.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The uncompressed block: the number of pairs, then each name and value with
    /// its length, all lengths 32-bit big-endian.
    pub(crate) fn to_block(&self) -> Vec<u8> {
        let mut block = Vec::with_capacity(
            4 + self
                .pairs
                .iter()
                .map(|(n, v)| 8 + n.len() + v.len())
                .sum::<usize>(),
        );
        block.extend_from_slice(&(self.pairs.len() as u32).to_be_bytes());
        for (name, value) in &self.pairs {
            block.extend_from_slice(&(name.len() as u32).to_be_bytes());
            block.extend_from_slice(name.as_bytes());
            block.extend_from_slice(&(value.len() as u32).to_be_bytes());
            block.extend_from_slice(value.as_bytes());
        }
        block
    }

    /// Parses an uncompressed block.
    pub(crate) fn from_block(block: &[u8], frame: &'static str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidFrame {
            frame,
            reason: format!("header block: {reason}"),
        };
        let mut rest = block;
        let mut take = |n: usize| -> Result<&[u8], Error> {
            if rest.len() < n {
                return Err(invalid("truncated"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let u32_at = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let count = u32_at(take(4)?);
        let mut headers = Headers::new();
        for _ in 0..count {
            let len = u32_at(take(4)?);
            let name = std::str::from_utf8(take(len)?).map_err(|_| invalid("name not UTF-8"))?;
            if name.is_empty() {
                return Err(invalid("empty name"));
            }
            let name = name.to_owned();
            let len = u32_at(take(4)?);
            let value = String::from_utf8_lossy(take(len)?).into_owned();
            headers.insert(&name, value);
        }
        if !rest.is_empty() {
            return Err(invalid("bytes after the last pair"));
        }
        Ok(headers)
    }
}

/// The sending side's zlib stream.
pub(crate) struct Compressor {
    z: Compress,
}

impl Compressor {
    pub(crate) fn new() -> Result<Self, Error> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&DICTIONARY)
            .map_err(|e| Error::HeaderCompression(format!("presetting the dictionary: {e}")))?;
        Ok(Self { z })
    }

    /// Appends `block` compressed and sync-flushed to `out`.
    pub(crate) fn compress(&mut self, block: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let start = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start) as usize;
            out.reserve(block.len() - consumed + 64);
            self.z
                .compress_vec(&block[consumed..], out, FlushCompress::Sync)
                .map_err(|e| Error::HeaderCompression(e.to_string()))?;
            // A sync flush is complete once all input is in and the output was
            // not filled up.
            if self.z.total_in() - start == block.len() as u64 && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}

/// The receiving side's zlib stream.
pub(crate) struct Decompressor {
    z: Decompress,
}

impl Decompressor {
    pub(crate) fn new() -> Self {
        Self {
            z: Decompress::new(true),
        }
    }

    /// Decompresses one header block, `input` being the compressed bytes of one frame.
    pub(crate) fn decompress(
        &mut self,
        input: &[u8],
        frame: &'static str,
    ) -> Result<Vec<u8>, Error> {
        let failed = |reason: String| Error::HeaderCompression(format!("{frame}: {reason}"));
        let start = self.z.total_in();
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            let consumed = (self.z.total_in() - start) as usize;
            if out.len() == out.capacity() {
                out.reserve(out.len().max(256));
            }
            let produced = out.len();
            match self
                .z
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::Ok | Status::BufError | Status::StreamEnd) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| failed(format!("presetting the dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(failed(e.to_string())),
            }
            let now_consumed = (self.z.total_in() - start) as usize;
            if now_consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if out.len() > MAX_BLOCK {
                return Err(failed(format!("header block over {MAX_BLOCK} bytes")));
            }
            if now_consumed == consumed && out.len() == produced && out.len() < out.capacity() {
                return Err(failed("truncated compressed block".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_share_one_nul_separated_value() {
        let h = Headers::new()
            .with("StreamType", "data")
            .with("port", "80")
            .with("streamtype", "error");
        assert_eq!(h.len(), 2);
        assert_eq!(h.get("STREAMTYPE"), Some("data\0error"));
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("streamtype", "data\0error"), ("port", "80")]
        );
    }

    #[test]
    fn blocks_round_trip_through_one_zlib_stream_per_direction() {
        let mut compressor = Compressor::new().expect("compressor");
        let mut decompressor = Decompressor::new();
        let blocks = [
            Headers::new().with("streamtype", "error"),
            Headers::new().with("streamtype", "stdin"),
            Headers::new(),
            Headers::new()
                .with("streamtype", "data")
                .with("port", "8080")
                .with("requestid", "0")
                .with("x-long", "v".repeat(100_000)),
        ];
        for headers in &blocks {
            let mut compressed = Vec::new();
            compressor
                .compress(&headers.to_block(), &mut compressed)
                .expect("compress");
            // Every block ends in a sync flush marker.
            assert!(compressed.ends_with(&[0, 0, 0xff, 0xff]), "{compressed:x?}");
            let block = decompressor
                .decompress(&compressed, "SYN_STREAM")
                .expect("decompress");
            assert_eq!(
                &Headers::from_block(&block, "SYN_STREAM").expect("parse"),
                headers
            );
        }
    }

    #[test]
    fn the_first_block_names_the_spdy_dictionary() {
        let mut compressor = Compressor::new().expect("compressor");
        let mut compressed = Vec::new();
        compressor
            .compress(&Headers::new().to_block(), &mut compressed)
            .expect("compress");
        // zlib header with FDICT set, then the dictionary's Adler-32.
        assert_eq!(compressed[0] & 0x0f, 8, "deflate");
        assert_ne!(compressed[1] & 0x20, 0, "FDICT");
        assert_eq!(
            u16::from_be_bytes([compressed[0], compressed[1]]) % 31,
            0,
            "FCHECK"
        );
        assert_eq!(compressed[2..6], [0xe3, 0xc6, 0xa7, 0xc2]);
    }

    #[test]
    fn garbage_and_truncated_blocks_are_errors() {
        let mut decompressor = Decompressor::new();
        assert!(decompressor.decompress(b"not zlib", "HEADERS").is_err());
        assert!(Headers::from_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a'], "HEADERS").is_err());
        assert!(Headers::from_block(&[0, 0, 0, 0, 1], "HEADERS").is_err());
    }
}
