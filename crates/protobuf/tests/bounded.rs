//! What a body decodes to stays proportional to the body (issue 6's fuzz
//! finding: a 3 MiB list of empty items decoded to ~30 million JSON values).

mod common;

use common::{MAX_BODY, body, doubled_not_chain, empty_node_items, envelope_raw, field, go_meta};
use k8s_pb::api::core::v1 as core;
use protobuf_codec::{DecodeError, decode_to_json};
use serde_json::{Value, json};

/// The JSON values `decode_to_json` allows for `body`: 65,536 plus one per two
/// bytes.
fn limit(body: &[u8]) -> usize {
    (1 << 16) + body.len() / 2
}

/// The JSON values in `value`, itself included.
fn count(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(fields) => fields.values().map(count).sum(),
        _ => 0,
    }
}

#[test]
fn empty_items_of_a_3_mib_list_are_refused() {
    let body = envelope_raw("v1", "NodeList", empty_node_items(MAX_BODY - 64));
    match decode_to_json(&body) {
        Err(DecodeError::TooLarge { limit: got }) => assert_eq!(got, limit(&body)),
        other => panic!("want TooLarge, got {:?}", other.map(|v| count(&v))),
    }
}

#[test]
fn empty_items_within_the_budget_decode_to_zero_objects() {
    let body = envelope_raw("v1", "NodeList", empty_node_items(2 * 3000));
    let got = decode_to_json(&body).expect("decodes");
    let items = got["items"].as_array().expect("items");
    assert_eq!(items.len(), 3000);
    let zero = decode_to_json(&envelope_raw("v1", "Node", vec![])).expect("decodes");
    let mut zero = zero.as_object().expect("object").clone();
    zero.remove("kind");
    zero.remove("apiVersion");
    assert!(
        items
            .iter()
            .all(|item| *item == Value::Object(zero.clone()))
    );
    assert!(count(&got) <= limit(&body), "{} values", count(&got));
}

#[test]
fn a_3_mib_configmap_as_client_go_sends_it_decodes() {
    let n = 140_000;
    let cm = core::ConfigMap {
        metadata: Some(go_meta("big", &[("app", "web")])),
        data: (0..n)
            .map(|i| (format!("key-{i:06}"), "value".to_owned()))
            .collect(),
        ..Default::default()
    };
    let body = body("v1", "ConfigMap", &cm);
    assert!(
        body.len() > (5 << 20) / 2 && body.len() <= MAX_BODY,
        "{}",
        body.len()
    );
    let got = decode_to_json(&body).expect("decodes");
    assert_eq!(got["data"].as_object().map(|d| d.len()), Some(n));
    assert_eq!(got["data"]["key-054321"], json!("value"));
    // client-go's encoding costs two bytes or more per JSON value.
    assert!(count(&got) <= body.len() / 2, "{} values", count(&got));
}

#[test]
fn a_singular_field_repeated_at_every_level_merges_each_occurrence() {
    let levels = 90;
    let (body, description_len) = doubled_not_chain(levels, MAX_BODY);
    let got = decode_to_json(&body).expect("decodes");
    let mut schema = &got["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert!(schema.get("type").is_none());
    for _ in 0..levels {
        schema = &schema["not"];
        assert_eq!(schema["type"], json!("object"));
    }
    assert_eq!(
        schema["description"].as_str().map(str::len),
        Some(description_len)
    );
    assert!(schema.get("not").is_none());
}

#[test]
fn an_occurrence_cut_short_is_truncated_even_if_the_next_would_complete_it() {
    // metadata (1) twice: name (1) declares three bytes and has one; the second
    // occurrence holds the other two. Go reads each occurrence on its own.
    let mut raw = field(1, &[0x0a, 3, b'a']);
    raw.extend(field(1, b"bc"));
    assert!(matches!(
        decode_to_json(&envelope_raw("v1", "ConfigMap", raw)),
        Err(DecodeError::Truncated)
    ));
}
