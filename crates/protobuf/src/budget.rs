//! How much JSON a body may decode to: a count of JSON values proportional to
//! the body's size.
//!
//! Go prints every absent non-pointer struct field as its zero value, so two
//! bytes (an empty element of a repeated message field) can stand for a whole
//! zero object. Unchecked, a 3 MiB list of empty items decoded to ~30 million
//! JSON values and 6.4 GB.
//!
//! client-go's encoder writes every non-pointer field, and a field costs at
//! least two bytes on the wire (a key and a length or value), so what it sends
//! decodes to about one JSON value per two bytes at most. The budget is that,
//! plus a floor for small bodies, for the few values that cost no bytes (a nil
//! slice printed as `null`) and for encoders that leave zero fields out (the
//! largest zero object is 19 values). A value of this crate's JSON (an
//! insertion-ordered `serde_json::Value`) takes 100 to 250 bytes of memory, so
//! a decode peaks at about 125 times its body at most (JSON bodies parsed by
//! serde_json reach 25 to 55 times).

use serde_json::Value;

use crate::DecodeError;

/// Bytes of the whole body that buy one JSON value.
const BYTES_PER_VALUE: usize = 2;

/// JSON values allowed whatever the body's size.
const MIN_VALUES: usize = 1 << 16;

/// The JSON values a decode may still produce.
#[derive(Debug)]
pub(crate) struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    /// The budget of a body of `len` bytes.
    pub(crate) fn for_body(len: usize) -> Self {
        let limit = MIN_VALUES.saturating_add(len / BYTES_PER_VALUE);
        Self { left: limit, limit }
    }

    /// Takes `n` values from the budget, or fails once it is spent. Called
    /// before the work that produces them, so the work stays bounded too.
    pub(crate) fn spend(&mut self, n: usize) -> Result<(), DecodeError> {
        match self.left.checked_sub(n) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(DecodeError::TooLarge { limit: self.limit }),
        }
    }
}

/// The number of JSON values in `value`, itself included.
pub(crate) fn count(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(fields) => fields.values().map(count).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn spending_past_the_limit_fails_and_names_the_limit() {
        let mut b = Budget::for_body(10);
        assert!(b.spend(MIN_VALUES).is_ok());
        assert!(b.spend(5).is_ok());
        assert!(matches!(
            b.spend(1),
            Err(DecodeError::TooLarge { limit }) if limit == MIN_VALUES + 5
        ));
    }

    #[test]
    fn counts_every_value() {
        assert_eq!(count(&json!({"a": [1, 2, {"b": null}], "c": "d"})), 7);
    }
}
