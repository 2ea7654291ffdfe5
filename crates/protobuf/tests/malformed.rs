//! Bad input gives a `DecodeError`, never a panic.

mod common;

use common::{body, envelope_raw};
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use prost::Message;
use protobuf_codec::{DecodeError, decode_to_json, is_protobuf_content_type};

#[test]
fn content_types() {
    assert!(is_protobuf_content_type(
        "application/vnd.kubernetes.protobuf"
    ));
    assert!(is_protobuf_content_type(
        "Application/Vnd.Kubernetes.Protobuf; charset=utf-8"
    ));
    assert!(is_protobuf_content_type(
        "application/vnd.kubernetes.protobuf;stream=watch"
    ));
    assert!(!is_protobuf_content_type("application/json"));
    assert!(!is_protobuf_content_type(
        "application/vnd.kubernetes.protobuf-x"
    ));
    assert!(!is_protobuf_content_type(""));
}

#[test]
fn envelope_errors() {
    assert!(matches!(
        decode_to_json(b"{}"),
        Err(DecodeError::NotProtobuf)
    ));
    assert!(matches!(
        decode_to_json(b"k8s\0"),
        Err(DecodeError::EmptyBody)
    ));
    assert!(matches!(
        decode_to_json(&envelope_raw("v1", "", vec![])),
        Err(DecodeError::MissingTypeMeta("kind"))
    ));
    assert!(matches!(
        decode_to_json(&envelope_raw("", "ConfigMap", vec![])),
        Err(DecodeError::MissingTypeMeta("apiVersion"))
    ));
    assert!(matches!(
        decode_to_json(&envelope_raw("v1", "Widget", vec![])),
        Err(DecodeError::UnknownKind { .. })
    ));
    let gz = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
        }),
        raw: Some(vec![]),
        content_encoding: Some("gzip".into()),
        content_type: None,
    };
    let mut gz_body = b"k8s\0".to_vec();
    gz_body.extend(gz.encode_to_vec());
    assert!(matches!(
        decode_to_json(&gz_body),
        Err(DecodeError::UnsupportedContentEncoding(_))
    ));
}

#[test]
fn empty_raw_is_the_zero_object() {
    let got = decode_to_json(&envelope_raw("v1", "ConfigMap", vec![])).unwrap();
    assert_eq!(
        got.to_string(),
        r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"creationTimestamp":null}}"#
    );
}

#[test]
fn wire_errors() {
    // metadata (field 1) sent as a varint
    assert!(matches!(
        decode_to_json(&envelope_raw("v1", "ConfigMap", vec![0x08, 1])),
        Err(DecodeError::WrongWireType { .. })
    ));
    // a length running past the end
    assert!(matches!(
        decode_to_json(&envelope_raw("v1", "ConfigMap", vec![0x0a, 9, 1])),
        Err(DecodeError::Truncated)
    ));
    // a group wire type
    assert!(matches!(
        decode_to_json(&envelope_raw("v1", "ConfigMap", vec![0x0b])),
        Err(DecodeError::InvalidWireType { .. })
    ));
    // an IntOrString of type 2
    let svc = core::Service {
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                target_port: Some(IntOrString {
                    r#type: Some(2),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(matches!(
        decode_to_json(&body("v1", "Service", &svc)),
        Err(DecodeError::InvalidIntOrString(2))
    ));
}

#[test]
fn deep_nesting_is_refused() {
    let mut inner = body("v1", "ConfigMap", &core::ConfigMap::default());
    for _ in 0..300 {
        let rev = apps::ControllerRevision {
            data: Some(RawExtension { raw: Some(inner) }),
            ..Default::default()
        };
        inner = body("apps/v1", "ControllerRevision", &rev);
    }
    assert!(matches!(decode_to_json(&inner), Err(DecodeError::TooDeep)));
}

fn sample_bodies() -> Vec<Vec<u8>> {
    let cm = core::ConfigMap {
        metadata: Some(common::go_meta("c", &[("a", "b")])),
        data: common::map(&[("k", "v")]),
        binary_data: [("b".to_owned(), vec![1, 2])].into(),
        ..Default::default()
    };
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("c".into()),
                args: vec!["x".into()],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![body("v1", "ConfigMap", &cm), body("v1", "Pod", &pod)]
}

proptest! {
    #[test]
    fn random_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_to_json(&bytes);
        let mut prefixed = b"k8s\0".to_vec();
        prefixed.extend(&bytes);
        let _ = decode_to_json(&prefixed);
    }

    #[test]
    fn random_raw_objects_never_panic(
        raw in proptest::collection::vec(any::<u8>(), 0..256),
        kind in prop::sample::select(vec![
            ("v1", "Pod"), ("v1", "Service"), ("v1", "ConfigMap"), ("apps/v1", "Deployment"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"), ("v1", "Event"),
        ]),
    ) {
        let _ = decode_to_json(&envelope_raw(kind.0, kind.1, raw));
    }

    #[test]
    fn mutated_real_bodies_never_panic(
        which in 0usize..2,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut b = sample_bodies().swap_remove(which);
        for (at, byte) in edits {
            let i = at.index(b.len());
            b[i] = byte;
        }
        let _ = decode_to_json(&b);
    }
}
