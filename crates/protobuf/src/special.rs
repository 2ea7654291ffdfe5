//! Messages whose Go types print their own JSON: times, durations, quantities,
//! int-or-string, raw JSON holders and the JSON-schema unions.

use serde_json::{Map, Value};

use crate::budget::Budget;
use crate::decode;
use crate::table::{Message, Special};
use crate::wire::{self, Fields};
use crate::{DecodeError, MAGIC};

/// Decodes the chunks of the special message `msg` (the caller has paid for
/// its value). No bytes at all yield the JSON of the Go zero value.
pub(crate) fn decode(
    s: Special,
    msg: &Message,
    chunks: &[&[u8]],
    depth: usize,
    budget: &mut Budget,
) -> Result<Value, DecodeError> {
    let empty = chunks.iter().all(|c| c.is_empty());
    match s {
        // Go encodes a zero Time as an empty message and prints it as null.
        Special::Time if empty => Ok(Value::Null),
        // metav1.Time drops nanoseconds on decode and prints whole seconds.
        Special::Time => Ok(Value::String(rfc3339(int(chunks, 1)?, None))),
        Special::MicroTime if empty => Ok(Value::Null),
        Special::MicroTime => {
            let nanos = i64::from(int(chunks, 2)? as i32);
            let total =
                i128::from(int(chunks, 1)?) * 1_000_000_000 + i128::from(nanos - nanos % 1000);
            let seconds = total.div_euclid(1_000_000_000) as i64;
            let micros = (total.rem_euclid(1_000_000_000) / 1000) as u32;
            Ok(Value::String(rfc3339(seconds, Some(micros))))
        }
        Special::Duration => Ok(Value::String(go_duration(int(chunks, 1)?))),
        Special::Quantity => {
            let s = string(chunks, 1)?.unwrap_or_default();
            let s = s.trim();
            Ok(Value::String(if s.is_empty() {
                "0".to_owned()
            } else {
                s.to_owned()
            }))
        }
        Special::IntOrString => match int(chunks, 1)? {
            0 => Ok(Value::from(int(chunks, 2)? as i32)),
            1 => Ok(Value::String(string(chunks, 3)?.unwrap_or_default())),
            other => Err(DecodeError::InvalidIntOrString(other)),
        },
        Special::RawJson => match last_bytes(chunks, 1)? {
            None | Some([]) => Ok(Value::Null),
            Some(raw) if raw.starts_with(MAGIC) => crate::decode_body(raw, depth + 1, budget),
            Some(raw) => {
                // serde_json makes at most one value per byte of `raw`; they are
                // paid for here, less the one the caller paid for.
                let value: Value =
                    serde_json::from_slice(raw).map_err(DecodeError::InvalidRawJson)?;
                budget.spend(crate::budget::count(&value) - 1)?;
                Ok(value)
            }
        },
        Special::SchemaOrArray | Special::SchemaOrBool | Special::SchemaOrStringArray => {
            let fields = decode::struct_fields(msg, chunks, depth, budget)?;
            Ok(schema_union(s, fields))
        }
    }
}

/// The JSON of the apiextensions unions, from their Go field names.
fn schema_union(s: Special, mut fields: Map<String, Value>) -> Value {
    let mut take = |name: &str| fields.remove(name).filter(|v| !v.is_null());
    let non_empty = |v: Option<Value>| v.filter(|v| v.as_array().is_some_and(|a| !a.is_empty()));
    match s {
        Special::SchemaOrArray => non_empty(take("JSONSchemas")).or_else(|| take("Schema")),
        Special::SchemaOrBool => {
            take("Schema").or_else(|| Some(Value::Bool(take("Allows") == Some(Value::Bool(true)))))
        }
        _ => non_empty(take("Property")).or_else(|| take("Schema")),
    }
    .unwrap_or(Value::Null)
}

/// The last value of a varint field in any chunk as i64 (0 when absent).
fn int(chunks: &[&[u8]], tag: u32) -> Result<i64, DecodeError> {
    let mut out = 0;
    for chunk in chunks {
        let mut fields = Fields::new(chunk);
        while let Some((t, v)) = fields.next_field()? {
            if t == tag {
                match v {
                    wire::Value::Varint(x) => out = x as i64,
                    _ => {
                        return Err(DecodeError::WrongWireType {
                            message: "special",
                            field: "int",
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The last value of a bytes field in any chunk.
fn last_bytes<'a>(chunks: &[&'a [u8]], tag: u32) -> Result<Option<&'a [u8]>, DecodeError> {
    let mut out = None;
    for chunk in chunks {
        let mut fields = Fields::new(chunk);
        while let Some((t, v)) = fields.next_field()? {
            if t == tag {
                match v {
                    wire::Value::Bytes(b) => out = Some(b),
                    _ => {
                        return Err(DecodeError::WrongWireType {
                            message: "special",
                            field: "bytes",
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

fn string(chunks: &[&[u8]], tag: u32) -> Result<Option<String>, DecodeError> {
    Ok(last_bytes(chunks, tag)?.map(|b| String::from_utf8_lossy(b).into_owned()))
}

/// `2006-01-02T15:04:05Z`, or with six fractional digits when `micros` is given.
pub(crate) fn rfc3339(seconds: i64, micros: Option<u32>) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let frac = micros.map(|u| format!(".{u:06}")).unwrap_or_default();
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{frac}Z")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let mut out = if u == 0 {
        "0s".to_owned()
    } else if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", frac(u, 3))
    } else if u < 1_000_000_000 {
        format!("{}ms", frac(u, 6))
    } else {
        let secs = frac(u % 60_000_000_000, 9);
        let minutes = u / 60_000_000_000;
        match (minutes / 60, minutes % 60) {
            (0, 0) => format!("{secs}s"),
            (0, m) => format!("{m}m{secs}s"),
            (h, m) => format!("{h}h{m}m{secs}s"),
        }
    };
    if neg {
        out.insert(0, '-');
    }
    out
}

/// `v / 10^prec` with the fraction's trailing zeros (and a bare point) dropped.
fn frac(v: u64, prec: u32) -> String {
    let scale = 10u64.pow(prec);
    let (int, fraction) = (v / scale, v % scale);
    if fraction == 0 {
        return int.to_string();
    }
    let digits = format!("{fraction:0width$}", width = prec as usize);
    format!("{int}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339(0, None), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_704_164_645, None), "2024-01-02T03:04:05Z");
        assert_eq!(
            rfc3339(1_704_164_645, Some(7)),
            "2024-01-02T03:04:05.000007Z"
        );
        assert_eq!(rfc3339(951_782_400, None), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1, None), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn formats_durations_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (1_500_000, "1.5ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-90_000_000_000, "-1m30s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (n, want) in cases {
            assert_eq!(go_duration(n), want, "{n}");
        }
    }
}
