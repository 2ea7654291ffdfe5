//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`),
//! decoded to the JSON object Kubernetes' own JSON serializer prints for the
//! same object.
//!
//! client-go's typed clientsets (and so `kubectl create …`, `kubectl run`,
//! `kubectl expose`) send built-in objects as protobuf. Skiff handles objects as
//! JSON, so this crate owns the one translation: the `k8s\0` envelope
//! (`runtime.Unknown`), the wire format, and a descriptor table
//! (`src/table.txt`, generated from Kubernetes' `generated.proto` files and Go
//! structs by `tools/gen_table.py`) that carries each field's JSON name and Go
//! `omitempty`/pointer/inline facts. Encoding is not provided: responses are JSON.
//!
//! Regenerate the table (after fetching the three Kubernetes repositories) with
//! `python3 tools/gen_table.py v0.33.13 API APIMACHINERY APIEXTENSIONS > src/table.txt`.

mod budget;
mod decode;
mod special;
mod table;
mod wire;

use serde_json::{Map, Value};

use crate::budget::Budget;
use crate::table::Table;
use crate::wire::Fields;

/// The media type of Kubernetes protobuf bodies.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8] = b"k8s\0";

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body does not start with `k8s\0`.
    #[error("body is not Kubernetes protobuf: missing the k8s\\0 prefix")]
    NotProtobuf,
    /// Nothing follows the prefix.
    #[error("empty protobuf body")]
    EmptyBody,
    /// The envelope carries no kind or no apiVersion.
    #[error("protobuf body has no {0} in its type meta")]
    MissingTypeMeta(&'static str),
    /// No built-in type is known for this apiVersion and kind.
    #[error("no protobuf type is known for apiVersion {api_version:?}, kind {kind:?}")]
    UnknownKind {
        /// The envelope's apiVersion.
        api_version: String,
        /// The envelope's kind.
        kind: String,
    },
    /// The envelope declares a content encoding (compression) we do not undo.
    #[error("unsupported protobuf content encoding {0:?}")]
    UnsupportedContentEncoding(String),
    /// A length or value runs past the end of its message.
    #[error("truncated protobuf message")]
    Truncated,
    /// A varint longer than ten bytes.
    #[error("invalid varint")]
    InvalidVarint,
    /// Field number zero or beyond 2^29.
    #[error("invalid field number {0}")]
    InvalidTag(u64),
    /// Wire types 3, 4 (groups), 6 and 7.
    #[error("field {tag}: unsupported wire type {wire}")]
    InvalidWireType {
        /// Field number.
        tag: u32,
        /// Wire type.
        wire: u8,
    },
    /// A known field arrived with a wire type its proto type does not allow.
    #[error("{message}.{field}: unexpected wire type")]
    WrongWireType {
        /// Proto message name.
        message: &'static str,
        /// JSON field name.
        field: &'static str,
    },
    /// The table refers to a message it does not define (a table bug).
    #[error("unknown message {0}")]
    UnknownMessage(&'static str),
    /// An IntOrString whose type is neither 0 (int) nor 1 (string).
    #[error("invalid IntOrString type {0}")]
    InvalidIntOrString(i64),
    /// A RawExtension, FieldsV1 or JSON field whose bytes are not JSON.
    #[error("embedded raw object is not JSON: {0}")]
    InvalidRawJson(#[source] serde_json::Error),
    /// NaN or infinity, which JSON cannot carry.
    #[error("{message}.{field}: non-finite number")]
    NonFiniteFloat {
        /// Proto message name.
        message: &'static str,
        /// JSON field name.
        field: &'static str,
    },
    /// Messages nested deeper than the decoder allows.
    #[error("protobuf message nested too deeply")]
    TooDeep,
    /// The body decodes to more JSON values than its size allows (empty
    /// elements that each stand for a whole zero object, and the like).
    #[error("protobuf body decodes to more than {limit} JSON values, too many for its size")]
    TooLarge {
        /// The number of JSON values allowed for this body.
        limit: usize,
    },
}

/// Whether a `Content-Type` header value names Kubernetes protobuf
/// (parameters and case are ignored).
pub fn is_protobuf_content_type(ct: &str) -> bool {
    ct.split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(PROTOBUF_CONTENT_TYPE))
}

/// Decodes a whole Kubernetes protobuf body — `k8s\0` followed by a
/// `runtime.Unknown` whose `raw` holds the typed object — to the JSON object
/// Kubernetes would print for it, `kind` and `apiVersion` first.
///
/// The result is bounded by the body's size: decoding stops with
/// [`DecodeError::TooLarge`] past 65,536 JSON values plus one per two bytes of
/// `body` (what client-go's encoder writes costs two bytes or more per value),
/// and with [`DecodeError::TooDeep`] past 100 nested messages.
pub fn decode_to_json(body: &[u8]) -> Result<Value, DecodeError> {
    decode_body(body, 0, &mut Budget::for_body(body.len()))
}

/// [`decode_to_json`] at a nesting depth (bodies can nest inside RawExtensions),
/// spending from the outermost body's budget.
pub(crate) fn decode_body(
    body: &[u8],
    depth: usize,
    budget: &mut Budget,
) -> Result<Value, DecodeError> {
    let rest = body.strip_prefix(MAGIC).ok_or(DecodeError::NotProtobuf)?;
    if rest.is_empty() {
        return Err(DecodeError::EmptyBody);
    }
    let envelope = Envelope::parse(rest)?;
    if !envelope.content_encoding.is_empty() {
        return Err(DecodeError::UnsupportedContentEncoding(
            envelope.content_encoding,
        ));
    }
    if envelope.kind.is_empty() {
        return Err(DecodeError::MissingTypeMeta("kind"));
    }
    if envelope.api_version.is_empty() {
        return Err(DecodeError::MissingTypeMeta("apiVersion"));
    }
    let Some(msg) = Table::get().kind(&envelope.api_version, &envelope.kind) else {
        return Err(DecodeError::UnknownKind {
            api_version: envelope.api_version,
            kind: envelope.kind,
        });
    };
    // The object, its kind and its apiVersion.
    budget.spend(3)?;
    let fields = decode::struct_fields(msg, &[envelope.raw], depth, budget)?;
    let mut out = Map::new();
    out.insert("kind".to_owned(), Value::String(envelope.kind));
    out.insert("apiVersion".to_owned(), Value::String(envelope.api_version));
    out.extend(fields);
    Ok(Value::Object(out))
}

/// `runtime.Unknown`: typeMeta = 1 {apiVersion = 1, kind = 2}, raw = 2,
/// contentEncoding = 3, contentType = 4.
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Envelope<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut env = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
        };
        let mut fields = Fields::new(buf);
        while let Some((tag, value)) = fields.next_field()? {
            let wire::Value::Bytes(b) = value else {
                if (1..=4).contains(&tag) {
                    return Err(DecodeError::WrongWireType {
                        message: "runtime.Unknown",
                        field: "",
                    });
                }
                continue;
            };
            match tag {
                1 => {
                    let mut meta = Fields::new(b);
                    while let Some((t, v)) = meta.next_field()? {
                        match (t, v) {
                            (1, wire::Value::Bytes(s)) => env.api_version = text(s),
                            (2, wire::Value::Bytes(s)) => env.kind = text(s),
                            (1 | 2, _) => {
                                return Err(DecodeError::WrongWireType {
                                    message: "runtime.TypeMeta",
                                    field: "",
                                });
                            }
                            _ => {}
                        }
                    }
                }
                2 => env.raw = b,
                3 => env.content_encoding = text(b),
                _ => {}
            }
        }
        Ok(env)
    }
}
