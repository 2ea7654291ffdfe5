//! PEM blocks as Go's `encoding/pem` reads them (what Kubernetes validates
//! `spec.request` and `status.certificate` with): text before a block is skipped,
//! `Key: value` headers may follow the BEGIN line, the base64 body may be wrapped,
//! and a malformed block is passed over in favour of the next one.

use base64::Engine as _;

const BEGIN: &[u8] = b"-----BEGIN ";
const END: &[u8] = b"-----END ";
const DASHES: &[u8] = b"-----";

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Block {
    /// The type in the BEGIN line (`CERTIFICATE REQUEST`).
    pub label: String,
    /// Whether the block carried `Key: value` headers.
    pub has_headers: bool,
    /// The decoded body.
    pub der: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A line and what follows it (the newline dropped, a trailing `\r` trimmed).
fn line(data: &[u8]) -> (&[u8], &[u8]) {
    let (l, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    (l.strip_suffix(b"\r").unwrap_or(l), rest)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &s[start..end.max(start)]
}

/// Where the next BEGIN line starts: at the very start or after a newline.
fn next_begin(data: &[u8]) -> Option<usize> {
    if data.starts_with(BEGIN) {
        return Some(0);
    }
    let mut from = 0;
    while let Some(i) = find(&data[from..], BEGIN) {
        let at = from + i;
        if data[at - 1] == b'\n' {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The block whose BEGIN line is `type_line`, its headers and body in `rest`.
fn block(type_line: &[u8], rest: &[u8]) -> Option<(Block, usize)> {
    let label = type_line.strip_suffix(DASHES)?;
    let label = std::str::from_utf8(label).ok()?.to_string();
    // Headers: `Key: value` lines up to the first line without a colon (a blank
    // line ends them and is skipped).
    let mut body_at = 0;
    let mut has_headers = false;
    loop {
        let (l, after) = line(&rest[body_at..]);
        if l.is_empty() && has_headers {
            body_at = rest.len() - after.len();
            break;
        }
        if !l.contains(&b':') || l.starts_with(END) {
            break;
        }
        has_headers = true;
        body_at = rest.len() - after.len();
        if after.is_empty() {
            break;
        }
    }
    let body = &rest[body_at..];
    // The END line: at the body's start (empty body) or after a newline.
    let end_at = if body.starts_with(END) {
        0
    } else {
        find(body, b"\n-----END ")? + 1
    };
    let (end_line, _) = line(&body[end_at..]);
    let end_label = trim(end_line.strip_prefix(END)?).strip_suffix(DASHES)?;
    if end_label != label.as_bytes() {
        return None;
    }
    let encoded: Vec<u8> = body[..end_at]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let consumed = body_at + end_at + line(&body[end_at..]).0.len();
    Some((
        Block {
            label,
            has_headers,
            der,
        },
        consumed,
    ))
}

/// The first PEM block in `data` and the data after it, as Go's `pem.Decode`.
pub(crate) fn decode(data: &[u8]) -> Option<(Block, &[u8])> {
    let mut data = data;
    loop {
        let at = next_begin(data)?;
        let (type_line, rest) = line(&data[at + BEGIN.len()..]);
        match block(trim(type_line), rest) {
            Some((b, consumed)) => {
                let after = &rest[consumed..];
                // Skip the rest of the END line.
                let after = line(after).1;
                return Some((b, after));
            }
            None => data = rest,
        }
    }
}

/// Every PEM block in `data`, in order.
pub(crate) fn blocks(data: &[u8]) -> Vec<Block> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((b, after)) = decode(rest) {
        out.push(b);
        rest = after;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_around_blocks_is_skipped_and_every_block_is_found() {
        let data = b"junk\n-----BEGIN A-----\nAQID\n-----END A-----\nmore\n-----BEGIN B-----\nBAUG\nBw==\n-----END B-----\n";
        let all = blocks(data);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].label, "A");
        assert_eq!(all[0].der, vec![1, 2, 3]);
        assert_eq!(all[1].label, "B");
        assert_eq!(all[1].der, vec![4, 5, 6, 7]);
        assert!(!all[0].has_headers);
    }

    #[test]
    fn headers_are_noticed_and_not_part_of_the_body() {
        let data = b"-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\n\nAQID\n-----END X-----\n";
        let (b, rest) = decode(data).expect("a block");
        assert!(b.has_headers);
        assert_eq!(b.der, vec![1, 2, 3]);
        assert!(rest.is_empty());
    }

    #[test]
    fn a_block_without_its_end_or_with_bad_base64_is_no_block() {
        assert_eq!(decode(b"-----BEGIN X-----\nAQID\n"), None);
        assert_eq!(decode(b"-----BEGIN X-----\n!!!!\n-----END X-----\n"), None);
        assert_eq!(decode(b"-----BEGIN X-----\nAQID\n-----END Y-----\n"), None);
        assert_eq!(decode(b"not pem at all"), None);
        assert_eq!(decode(b""), None);
    }

    #[test]
    fn a_begin_inside_a_line_does_not_start_a_block() {
        assert_eq!(decode(b"x-----BEGIN X-----\nAQID\n-----END X-----\n"), None);
    }

    #[test]
    fn crlf_line_ends_are_read() {
        let (b, _) = decode(b"-----BEGIN X-----\r\nAQID\r\n-----END X-----\r\n").expect("a block");
        assert_eq!(b.der, vec![1, 2, 3]);
    }
}
