//! Builds Kubernetes protobuf bodies from k8s-pb messages, as client-go would.

#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

/// The largest request body Kubernetes' API server reads.
pub const MAX_BODY: usize = 3 << 20;

/// `k8s\0` + `runtime.Unknown{typeMeta, raw}`.
pub fn body(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// ObjectMeta as client-go's gogo encoder writes it: every non-pointer field is
/// on the wire, zero or not, and a zero creationTimestamp is an empty message.
pub fn go_meta(name: &str, labels: &[(&str, &str)]) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        self_link: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        labels: map(labels),
        ..Default::default()
    }
}

/// A string map.
pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

/// Decodes and returns the compact JSON text (field order matters).
pub fn decode(body: &[u8]) -> String {
    protobuf_codec::decode_to_json(body)
        .expect("decodes")
        .to_string()
}

/// An envelope around hand-made `raw` bytes.
pub fn envelope_raw(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        ..Default::default()
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// A length-delimited field: key, length, payload.
pub fn field(tag: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    encode_key(tag, WireType::LengthDelimited, &mut out);
    encode_varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// A NodeList whose items are all empty (two bytes each), `len` bytes of raw.
pub fn empty_node_items(len: usize) -> Vec<u8> {
    field(2, &[]).repeat(len / 2)
}

/// `JSONSchemaProps` in a CRD, where each level holds its `not` (field 28)
/// twice: the inner schema, then `{"type": "object"}` to merge into it.
/// Returns the body and the innermost description's length.
pub fn doubled_not_chain(levels: usize, size: usize) -> (Vec<u8>, usize) {
    let description_len = size - 64 - levels * 16;
    let mut schema = field(4, &vec![b'd'; description_len]);
    for _ in 0..levels {
        let mut outer = field(28, &schema);
        outer.extend(field(28, &field(5, b"object")));
        schema = outer;
    }
    let validation = field(1, &schema);
    let mut version = field(1, b"v1");
    version.extend(field(4, &validation));
    let spec = field(7, &version);
    let crd = field(2, &spec);
    let body = envelope_raw("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd);
    (body, description_len)
}
