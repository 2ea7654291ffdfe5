//! Walks encoded messages by the descriptor table and prints them the way Go's
//! `encoding/json` prints the corresponding Kubernetes structs.
//!
//! Go rules reproduced here: fields come out in struct order; inline structs are
//! flattened; nil pointers, nil slices and nil maps are omitted under
//! `omitempty` and `null` otherwise; non-pointer scalars are omitted under
//! `omitempty` when zero and printed (zero included) otherwise; non-pointer
//! structs are always printed (absent ones as their zero value); maps are printed
//! with sorted keys; `[]byte` is base64.
//!
//! A singular message field that occurs several times is one message merged
//! from all occurrences; like Go, the decoder reads each occurrence (a chunk)
//! in turn rather than copying them into one buffer. Every JSON value made is
//! first paid for from the body's [`Budget`].

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use crate::DecodeError;
use crate::budget::Budget;
use crate::special;
use crate::table::{Card, Field, Message, Scalar, Table, Type};
use crate::wire::{self, Fields};

/// Nesting limit for messages (JSON schemas nest; malicious input nests more).
pub(crate) const MAX_DEPTH: usize = 100;

/// Decodes the chunks of one message, `msg`, into its JSON value (an object
/// for struct messages).
pub(crate) fn message(
    msg: &Message,
    chunks: &[&[u8]],
    depth: usize,
    budget: &mut Budget,
) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    budget.spend(1)?;
    if let Some(s) = msg.special {
        return special::decode(s, msg, chunks, depth, budget);
    }
    if msg.list {
        let occ = occurrences(msg, chunks)?;
        let items = match (msg.fields.first(), occ.first()) {
            (Some(f), Some(o)) => repeated(msg, f, o, depth, budget)?,
            _ => Vec::new(),
        };
        return Ok(if items.is_empty() {
            Value::Null
        } else {
            Value::Array(items)
        });
    }
    struct_fields(msg, chunks, depth, budget).map(Value::Object)
}

/// Decodes a struct message's fields into a JSON object, ignoring any special
/// JSON form of the message itself.
pub(crate) fn struct_fields(
    msg: &Message,
    chunks: &[&[u8]],
    depth: usize,
    budget: &mut Budget,
) -> Result<Map<String, Value>, DecodeError> {
    let occ = occurrences(msg, chunks)?;
    let mut out = Map::new();
    for (field, occ) in msg.fields.iter().zip(&occ) {
        let value = match field.card {
            Card::Map(key) => {
                let entries = map(msg, field, key, occ, depth, budget)?;
                nil_if_empty(field, Value::Object(entries), budget)?
            }
            Card::Repeated => {
                let items = repeated(msg, field, occ, depth, budget)?;
                nil_if_empty(field, Value::Array(items), budget)?
            }
            Card::Optional => optional(msg, field, occ, depth, budget)?,
        };
        match value {
            Some(Value::Object(inner)) if field.inline => out.extend(inner),
            Some(_) if field.inline => {}
            Some(v) => {
                out.insert(field.json.to_owned(), v);
            }
            None => {}
        }
    }
    Ok(out)
}

/// Every occurrence of every known field in all chunks, by field index.
/// Unknown tags are skipped.
fn occurrences<'a>(
    msg: &Message,
    chunks: &[&'a [u8]],
) -> Result<Vec<Vec<wire::Value<'a>>>, DecodeError> {
    let mut occ = vec![Vec::new(); msg.fields.len()];
    for chunk in chunks {
        let mut fields = Fields::new(chunk);
        while let Some((tag, value)) = fields.next_field()? {
            if let Some(i) = msg.field_index(tag) {
                occ[i].push(value);
            }
        }
    }
    Ok(occ)
}

/// A slice or map field's value (its items paid for), `null` for a nil one,
/// or nothing for a nil one under `omitempty`.
fn nil_if_empty(
    field: &Field,
    value: Value,
    budget: &mut Budget,
) -> Result<Option<Value>, DecodeError> {
    let empty = match &value {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    let value = match (empty, field.omitempty) {
        (false, _) => value,
        (true, true) => return Ok(None),
        (true, false) => Value::Null,
    };
    budget.spend(1)?;
    Ok(Some(value))
}

fn sub_message(field: &Field) -> Result<&'static Message, DecodeError> {
    match field.ty {
        Type::Message(name) => Table::get()
            .message(name)
            .ok_or(DecodeError::UnknownMessage(name)),
        Type::Scalar(_) => Err(DecodeError::UnknownMessage("scalar")),
    }
}

fn optional(
    msg: &Message,
    field: &Field,
    occ: &[wire::Value<'_>],
    depth: usize,
    budget: &mut Budget,
) -> Result<Option<Value>, DecodeError> {
    let absent = occ.is_empty();
    if absent && field.pointer {
        if field.omitempty {
            return Ok(None);
        }
        budget.spend(1)?;
        return Ok(Some(Value::Null));
    }
    match field.ty {
        Type::Scalar(s) => {
            let value = match occ.last() {
                Some(v) => scalar(msg, field, s, *v)?,
                None if s == Scalar::Bytes => Value::Null,
                None => zero(s),
            };
            let omit = !field.pointer && field.omitempty && is_zero(&value);
            if omit {
                return Ok(None);
            }
            budget.spend(1)?;
            Ok(Some(value))
        }
        Type::Message(_) => {
            let sub = sub_message(field)?;
            let value = message(sub, &chunks(msg, field, occ)?, depth + 1, budget)?;
            // Only a Go slice type (a list message) can be empty under omitempty;
            // structs are always printed.
            let omit = sub.list && field.omitempty && value.is_null();
            Ok((!omit).then_some(value))
        }
    }
}

/// The payloads of a singular message field, one chunk per occurrence:
/// protobuf merges repeats into one message.
fn chunks<'a>(
    msg: &Message,
    field: &Field,
    occ: &[wire::Value<'a>],
) -> Result<Vec<&'a [u8]>, DecodeError> {
    occ.iter()
        .map(|v| match *v {
            wire::Value::Bytes(b) => Ok(b),
            _ => Err(wrong_wire(msg, field)),
        })
        .collect()
}

fn repeated(
    msg: &Message,
    field: &Field,
    occ: &[wire::Value<'_>],
    depth: usize,
    budget: &mut Budget,
) -> Result<Vec<Value>, DecodeError> {
    // One value per occurrence at least, each of which took two bytes or more.
    let mut out = Vec::with_capacity(occ.len());
    for v in occ {
        match (field.ty, *v) {
            (Type::Scalar(s), wire::Value::Bytes(b)) if s.packable() => {
                unpack(msg, field, s, b, &mut out, budget)?
            }
            (Type::Scalar(s), v) => {
                budget.spend(1)?;
                out.push(scalar(msg, field, s, v)?)
            }
            (Type::Message(_), wire::Value::Bytes(b)) => {
                out.push(message(sub_message(field)?, &[b], depth + 1, budget)?)
            }
            (Type::Message(_), _) => return Err(wrong_wire(msg, field)),
        }
    }
    Ok(out)
}

/// A packed run of scalars.
fn unpack(
    msg: &Message,
    field: &Field,
    s: Scalar,
    buf: &[u8],
    out: &mut Vec<Value>,
    budget: &mut Budget,
) -> Result<(), DecodeError> {
    let width = match s {
        Scalar::Fixed32 | Scalar::Sfixed32 | Scalar::Float => 4,
        Scalar::Fixed64 | Scalar::Sfixed64 | Scalar::Double => 8,
        _ => 0,
    };
    if width == 0 {
        let mut r = Fields::new(buf);
        while !r.is_empty() {
            budget.spend(1)?;
            out.push(scalar(msg, field, s, wire::Value::Varint(r.varint()?))?);
        }
        return Ok(());
    }
    if !buf.len().is_multiple_of(width) {
        return Err(DecodeError::Truncated);
    }
    for chunk in buf.chunks_exact(width) {
        budget.spend(1)?;
        let mut bytes = [0u8; 8];
        bytes[..width].copy_from_slice(chunk);
        let v = if width == 4 {
            wire::Value::Fixed32(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        } else {
            wire::Value::Fixed64(u64::from_le_bytes(bytes))
        };
        out.push(scalar(msg, field, s, v)?);
    }
    Ok(())
}

/// A map field: repeated entries with key = 1 and value = 2; later keys win.
fn map(
    msg: &Message,
    field: &Field,
    key_type: Scalar,
    occ: &[wire::Value<'_>],
    depth: usize,
    budget: &mut Budget,
) -> Result<Map<String, Value>, DecodeError> {
    let mut entries = BTreeMap::new();
    for v in occ {
        let wire::Value::Bytes(entry) = *v else {
            return Err(wrong_wire(msg, field));
        };
        let (mut key, mut values) = (None, Vec::new());
        let mut fields = Fields::new(entry);
        while let Some((tag, v)) = fields.next_field()? {
            match tag {
                1 => key = Some(v),
                2 => values.push(v),
                _ => {}
            }
        }
        let key = match key {
            Some(k) => scalar(msg, field, key_type, k)?,
            None => zero(key_type),
        };
        let key = match key {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let value = match field.ty {
            Type::Scalar(s) => {
                budget.spend(1)?;
                match values.last() {
                    Some(v) => scalar(msg, field, s, *v)?,
                    None => zero(s),
                }
            }
            Type::Message(_) => message(
                sub_message(field)?,
                &chunks(msg, field, &values)?,
                depth + 1,
                budget,
            )?,
        };
        entries.insert(key, value);
    }
    Ok(entries.into_iter().collect())
}

fn wrong_wire(msg: &Message, field: &Field) -> DecodeError {
    DecodeError::WrongWireType {
        message: msg.name,
        field: field.json,
    }
}

/// The zero value Go prints for a non-pointer scalar.
fn zero(s: Scalar) -> Value {
    match s {
        Scalar::Bool => Value::Bool(false),
        Scalar::String | Scalar::Bytes => Value::String(String::new()),
        _ => Value::from(0),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// One scalar, converted to JSON as Go's `encoding/json` would.
pub(crate) fn scalar(
    msg: &Message,
    field: &Field,
    s: Scalar,
    v: wire::Value<'_>,
) -> Result<Value, DecodeError> {
    use wire::Value as W;
    let float = |f: f64| {
        Number::from_f64(f)
            .map(Value::Number)
            .ok_or(DecodeError::NonFiniteFloat {
                message: msg.name,
                field: field.json,
            })
    };
    Ok(match (s, v) {
        (Scalar::Int32, W::Varint(x)) => Value::from(x as i32),
        (Scalar::Int64, W::Varint(x)) => Value::from(x as i64),
        (Scalar::Uint32, W::Varint(x)) => Value::from(x as u32),
        (Scalar::Uint64, W::Varint(x)) => Value::from(x),
        (Scalar::Sint32, W::Varint(x)) => Value::from(((x as u32) >> 1) as i32 ^ -((x & 1) as i32)),
        (Scalar::Sint64, W::Varint(x)) => Value::from((x >> 1) as i64 ^ -((x & 1) as i64)),
        (Scalar::Bool, W::Varint(x)) => Value::Bool(x != 0),
        (Scalar::Fixed32, W::Fixed32(x)) => Value::from(x),
        (Scalar::Sfixed32, W::Fixed32(x)) => Value::from(x as i32),
        // Go prints a float32 by its shortest 32-bit form.
        (Scalar::Float, W::Fixed32(x)) => {
            let f = f32::from_bits(x);
            float(f.to_string().parse().unwrap_or(f64::NAN))?
        }
        (Scalar::Fixed64, W::Fixed64(x)) => Value::from(x),
        (Scalar::Sfixed64, W::Fixed64(x)) => Value::from(x as i64),
        (Scalar::Double, W::Fixed64(x)) => float(f64::from_bits(x))?,
        // Go does not validate UTF-8 when decoding; encoding/json then prints U+FFFD.
        (Scalar::String, W::Bytes(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        (Scalar::Bytes, W::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        _ => return Err(wrong_wire(msg, field)),
    })
}
