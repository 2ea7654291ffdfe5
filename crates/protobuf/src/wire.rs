//! The protobuf wire format: varints, fixed-width numbers and length-delimited
//! payloads, read from a byte slice without copying.

use crate::DecodeError;

/// One field value as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: strings, bytes, messages, packed repeated scalars.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

/// Reads `(tag, value)` pairs from an encoded message.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// Reads one base-128 varint.
    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some((&byte, rest)) = self.buf.split_first() else {
                return Err(DecodeError::Truncated);
            };
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::InvalidVarint)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// The next field, or `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| DecodeError::InvalidTag(key >> 3))?;
        if tag == 0 {
            return Err(DecodeError::InvalidTag(0));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.fixed()?)),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::Truncated)?;
                Value::Bytes(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.fixed()?)),
            wire => {
                return Err(DecodeError::InvalidWireType {
                    tag,
                    wire: wire as u8,
                });
            }
        };
        Ok(Some((tag, value)))
    }

    /// Whether all input was consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_wire_type() {
        // tag 1 varint 300, tag 2 bytes "hi", tag 3 fixed32 1, tag 4 fixed64 2
        let buf = [
            0x08, 0xac, 0x02, 0x12, 2, b'h', b'i', 0x1d, 1, 0, 0, 0, 0x21, 2, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut f = Fields::new(&buf);
        assert_eq!(f.next_field().unwrap(), Some((1, Value::Varint(300))));
        assert_eq!(f.next_field().unwrap(), Some((2, Value::Bytes(b"hi"))));
        assert_eq!(f.next_field().unwrap(), Some((3, Value::Fixed32(1))));
        assert_eq!(f.next_field().unwrap(), Some((4, Value::Fixed64(2))));
        assert_eq!(f.next_field().unwrap(), None);
    }

    #[test]
    fn rejects_truncation_and_bad_wire_types() {
        assert!(matches!(
            Fields::new(&[0x12, 5, 1]).next_field(),
            Err(DecodeError::Truncated)
        ));
        assert!(matches!(
            Fields::new(&[0x0b]).next_field(),
            Err(DecodeError::InvalidWireType { tag: 1, wire: 3 })
        ));
        assert!(matches!(
            Fields::new(&[0xff; 11]).next_field(),
            Err(DecodeError::InvalidVarint)
        ));
        assert!(matches!(
            Fields::new(&[0x00, 0x00]).next_field(),
            Err(DecodeError::InvalidTag(0))
        ));
    }
}
