//! JSON patch (RFC 6902) and JSON merge patch (RFC 7386).

use api::patch::{
    MAX_JSON_PATCH_OPERATIONS, PatchError, json_patch, merge_patch, merge_patch_bytes,
};
use serde_json::json;

#[test]
fn json_patch_applies_operations_in_order() {
    let original = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
    let out = json_patch(
        &original,
        br#"[
            {"op": "test", "path": "/spec/replicas", "value": 1},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "remove", "path": "/metadata/labels/a"}
        ]"#,
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"metadata": {"labels": {"b": "2"}}, "spec": {"replicas": 3}})
    );
}

#[test]
fn a_failing_json_patch_operation_is_unprocessable() {
    let original = json!({"spec": {"replicas": 1}});
    let err = json_patch(
        &original,
        br#"[{"op": "test", "path": "/spec/replicas", "value": 2}]"#,
    )
    .unwrap_err();
    assert!(matches!(err, PatchError::JsonPatchFailed(_)), "{err:?}");
    assert_eq!(err.http_status(), 422);
    let err = json_patch(&original, br#"[{"op": "remove", "path": "/spec/nope"}]"#).unwrap_err();
    assert_eq!(err.http_status(), 422);
}

#[test]
fn an_undecodable_json_patch_is_a_bad_request() {
    let err = json_patch(&json!({}), br#"{"op": "add"}"#).unwrap_err();
    assert!(matches!(err, PatchError::InvalidJsonPatch(_)), "{err:?}");
    assert_eq!(err.http_status(), 400);
}

#[test]
fn too_many_json_patch_operations_are_refused() {
    let ops: Vec<_> = (0..=MAX_JSON_PATCH_OPERATIONS)
        .map(|_| json!({"op": "test", "path": "", "value": {}}))
        .collect();
    let body = serde_json::to_vec(&ops).unwrap();
    let err = json_patch(&json!({}), &body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "The allowed maximum operations in a JSON patch is 10000, got 10001"
    );
    assert_eq!(err.http_status(), 413);
}

#[test]
fn merge_patch_merges_objects_replaces_lists_and_deletes_nulls() {
    let original = json!({
        "metadata": {"labels": {"a": "1", "b": "2"}},
        "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}
    });
    let out = merge_patch(
        &original,
        &json!({"metadata": {"labels": {"b": null, "c": "3"}}, "spec": {"containers": [{"name": "a", "image": "y"}]}}),
    );
    assert_eq!(
        out,
        json!({
            "metadata": {"labels": {"a": "1", "c": "3"}},
            "spec": {"containers": [{"name": "a", "image": "y"}]}
        })
    );
}

#[test]
fn merge_patch_bytes_rejects_invalid_json() {
    let err = merge_patch_bytes(&json!({}), b"{not json").unwrap_err();
    assert_eq!(err, PatchError::InvalidMergePatch);
    assert_eq!(err.to_string(), "Invalid JSON Patch");
    assert_eq!(err.http_status(), 400);
    assert_eq!(
        merge_patch_bytes(&json!({"a": 1}), br#"{"b": 2}"#).unwrap(),
        json!({"a": 1, "b": 2})
    );
}
