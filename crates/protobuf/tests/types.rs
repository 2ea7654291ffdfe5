//! Go types with their own JSON forms, list types, merging and wire details.

mod common;

use common::{body, go_meta};
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use protobuf_codec::decode_to_json;
use serde_json::json;

#[test]
fn event_micro_time_and_non_omitempty_strings() {
    let ev = core::Event {
        metadata: Some(go_meta("e", &[])),
        involved_object: Some(core::ObjectReference {
            kind: Some("Pod".into()),
            name: Some("p".into()),
            ..Default::default()
        }),
        reason: Some("Started".into()),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_704_164_645),
            nanos: Some(123_456_789),
        }),
        count: Some(0),
        ..Default::default()
    };
    let got = decode_to_json(&body("v1", "Event", &ev)).unwrap();
    let want = json!({
        "kind": "Event", "apiVersion": "v1",
        "metadata": {"name": "e", "creationTimestamp": null},
        "involvedObject": {"kind": "Pod", "name": "p"},
        "reason": "Started",
        "source": {},
        "firstTimestamp": null,
        "lastTimestamp": null,
        "eventTime": "2024-01-02T03:04:05.123456Z",
        "reportingComponent": "",
        "reportingInstance": ""
    });
    assert_eq!(got.to_string(), want.to_string());
}

#[test]
fn lease_renew_time_is_micro_time() {
    let lease = coordination::Lease {
        metadata: Some(meta::ObjectMeta {
            name: Some("leader".into()),
            ..Default::default()
        }),
        spec: Some(coordination::LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(meta::MicroTime {
                seconds: Some(0),
                nanos: Some(1_000),
            }),
            ..Default::default()
        }),
    };
    let got = decode_to_json(&body("coordination.k8s.io/v1", "Lease", &lease)).unwrap();
    assert_eq!(
        got["spec"],
        json!({"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "1970-01-01T00:00:00.000001Z"})
    );
}

#[test]
fn raw_extension_json_and_nested_protobuf() {
    let inner = body(
        "v1",
        "ConfigMap",
        &core::ConfigMap {
            data: common::map(&[("k", "v")]),
            ..Default::default()
        },
    );
    for (raw, want) in [
        (br#"{"spec":{"x":1}}"#.to_vec(), json!({"spec": {"x": 1}})),
        (
            inner,
            json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"creationTimestamp": null}, "data": {"k": "v"}}),
        ),
    ] {
        let rev = apps::ControllerRevision {
            metadata: Some(meta::ObjectMeta {
                name: Some("r".into()),
                ..Default::default()
            }),
            data: Some(RawExtension { raw: Some(raw) }),
            revision: Some(2),
        };
        let got = decode_to_json(&body("apps/v1", "ControllerRevision", &rev)).unwrap();
        assert_eq!(got["data"], want);
        assert_eq!(got["revision"], json!(2));
    }
    let bad = apps::ControllerRevision {
        data: Some(RawExtension {
            raw: Some(b"{nope".to_vec()),
        }),
        ..Default::default()
    };
    assert!(matches!(
        decode_to_json(&body("apps/v1", "ControllerRevision", &bad)),
        Err(protobuf_codec::DecodeError::InvalidRawJson(_))
    ));
}

#[test]
fn managed_fields_v1_is_raw_json() {
    let cm = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: Some("c".into()),
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: Some("kubectl".into()),
                operation: Some("Update".into()),
                fields_type: Some("FieldsV1".into()),
                fields_v1: Some(meta::FieldsV1 {
                    raw: Some(br#"{"f:data":{}}"#.to_vec()),
                }),
                time: Some(meta::Time {
                    seconds: Some(86_400),
                    nanos: None,
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let got = decode_to_json(&body("v1", "ConfigMap", &cm)).unwrap();
    assert_eq!(
        got["metadata"]["managedFields"],
        json!([{"manager": "kubectl", "operation": "Update", "time": "1970-01-02T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}])
    );
}

#[test]
fn extra_values_are_arrays() {
    let sar = authz::SubjectAccessReview {
        metadata: None,
        spec: Some(authz::SubjectAccessReviewSpec {
            user: Some("jane".into()),
            extra: [(
                "scopes".to_owned(),
                authz::ExtraValue {
                    items: vec!["a".into(), "b".into()],
                },
            )]
            .into(),
            ..Default::default()
        }),
        status: None,
    };
    let got = decode_to_json(&body(
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        &sar,
    ))
    .unwrap();
    assert_eq!(
        got["spec"],
        json!({"user": "jane", "extra": {"scopes": ["a", "b"]}})
    );
    assert_eq!(got["status"], json!({"allowed": false}));
}

#[test]
fn crd_schema_unions_and_json_defaults() {
    let string = ext::JsonSchemaProps {
        r#type: Some("string".into()),
        ..Default::default()
    };
    let schema = ext::JsonSchemaProps {
        r#type: Some("object".into()),
        properties: [
            (
                "tags".to_owned(),
                ext::JsonSchemaProps {
                    r#type: Some("array".into()),
                    items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                        schema: Some(Box::new(string.clone())),
                        j_son_schemas: vec![],
                    })),
                    ..Default::default()
                },
            ),
            (
                "size".to_owned(),
                ext::JsonSchemaProps {
                    r#type: Some("integer".into()),
                    default: Some(ext::Json {
                        raw: Some(b"3".to_vec()),
                    }),
                    ..Default::default()
                },
            ),
        ]
        .into(),
        additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
            allows: Some(false),
            schema: None,
        })),
        ..Default::default()
    };
    let crd = ext::CustomResourceDefinition {
        metadata: Some(meta::ObjectMeta {
            name: Some("widgets.example.com".into()),
            ..Default::default()
        }),
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: Some("example.com".into()),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: Some("v1".into()),
                served: Some(true),
                storage: Some(true),
                schema: Some(ext::CustomResourceValidation {
                    open_apiv3_schema: Some(schema),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let got = decode_to_json(&body(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        &crd,
    ))
    .unwrap();
    assert_eq!(
        got["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        json!({
            "type": "object",
            "properties": {
                "size": {"type": "integer", "default": 3},
                "tags": {"type": "array", "items": {"type": "string"}}
            },
            "additionalProperties": false
        })
    );
}

#[test]
fn repeated_singular_messages_merge_and_unknown_fields_are_skipped() {
    // metadata twice (protobuf merges), then an unknown field 99 (varint).
    let first = meta::ObjectMeta {
        name: Some("x".into()),
        ..Default::default()
    };
    let second = meta::ObjectMeta {
        namespace: Some("ns".into()),
        ..Default::default()
    };
    let mut raw = Vec::new();
    for m in [first, second] {
        raw.extend(prost::Message::encode_to_vec(&core::ConfigMap {
            metadata: Some(m),
            ..Default::default()
        }));
    }
    raw.extend([0x98, 0x06, 0x01]);
    let got = decode_to_json(&common::envelope_raw("v1", "ConfigMap", raw)).unwrap();
    assert_eq!(
        got["metadata"],
        json!({"name": "x", "namespace": "ns", "creationTimestamp": null})
    );
}

#[test]
fn packed_and_unpacked_repeated_scalars() {
    // Pod.spec(2).securityContext(14).supplementalGroups(4) = [1, 300]
    let packed = [0x12, 7, 0x72, 5, 0x22, 3, 0x01, 0xac, 0x02];
    let unpacked = vec![0x12, 7, 0x72, 5, 0x20, 0x01, 0x20, 0xac, 0x02];
    for raw in [packed.to_vec(), unpacked] {
        let got = decode_to_json(&common::envelope_raw("v1", "Pod", raw)).unwrap();
        assert_eq!(
            got["spec"]["securityContext"],
            json!({"supplementalGroups": [1, 300]})
        );
    }
}
