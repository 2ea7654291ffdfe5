//! The three patch types of `PATCH` requests, applied as the API server applies them:
//!
//! - [`json_patch`]: RFC 6902 (`application/json-patch+json`), via the `json-patch` crate.
//! - [`merge_patch`]: RFC 7386 (`application/merge-patch+json`).
//! - [`strategic_merge`]: Kubernetes' strategic merge patch
//!   (`application/strategic-merge-patch+json`, what `kubectl apply` and
//!   `kubectl patch` send), with `$patch`, `$retainKeys`, `$setElementOrder/…`
//!   and `$deleteFromPrimitiveList/…` directives, list merge keys and strategies
//!   from [`meta`] read through the [`crate::schema`] definitions.
//!
//! Errors carry the messages of apimachinery `pkg/util/mergepatch` and
//! `strategicpatch`; [`PatchError::http_status`] gives the code the API server
//! answers with (`interpretStrategicMergePatchError` and the JSON patcher).

mod gofmt;
pub mod meta;
mod strategic;

use serde_json::Value;

pub use meta::{PatchMeta, patch_meta};

use crate::schema::navigate::Node;

/// The most operations a JSON patch may have (`maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The most bytes (as JSON) the `copy` operations of one JSON patch may add
/// together (kube-apiserver's `JSONPatchMaxCopyBytes`). Without a cap each copy
/// of the document into itself doubles it: a few dozen operations exhaust memory.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// Why a patch could not be applied; `Display` gives Kubernetes' message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The original is not a JSON object (`mergepatch.ErrBadJSONDoc`).
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// A strategic merge patch body that is not a JSON object.
    #[error("json: cannot unmarshal {actual} into Go value of type map[string]interface {{}}")]
    PatchNotAnObject {
        /// The JSON type found (`array`, `string`, `number`, `bool`).
        actual: String,
    },
    /// A list whose elements are lists (`mergepatch.ErrNoListOfLists`).
    #[error("lists of lists are not supported")]
    NoListOfLists,
    /// A malformed `$deleteFromPrimitiveList` key.
    #[error("invalid patch format of primitive list")]
    BadPatchFormatForPrimitiveList,
    /// A malformed `$retainKeys` directive, or a patch key it does not list.
    #[error("invalid patch format of retainKeys")]
    BadPatchFormatForRetainKeys,
    /// A malformed `$setElementOrder` key.
    #[error("invalid patch format of setElementOrder list")]
    BadPatchFormatForSetElementOrderList,
    /// Strategic merge patch on a type without patch metadata (custom resources).
    #[error("strategic merge patch format is not supported")]
    UnsupportedStrategicMergePatchFormat,
    /// An item of a merged list lacks the merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The item, as Go prints a map.
        map: String,
        /// The merge key.
        key: String,
    },
    /// A value of the wrong JSON type where a list or object was expected.
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        /// The Go type expected.
        expected: String,
        /// The Go type found.
        actual: String,
    },
    /// An unknown `$patch` directive (`merge` is only valid in lists).
    #[error("unknown patch type: {directive} in map: {map}")]
    BadPatchType {
        /// The directive.
        directive: String,
        /// The object carrying it.
        map: String,
    },
    /// `$patch: merge` inside a list.
    #[error("merging lists cannot yet be specified in the patch")]
    MergingListsUnsupported,
    /// A merge-strategy list of objects without a merge key.
    #[error("cannot merge lists without merge key for {name}")]
    NoMergeKeyForList {
        /// The element type's kind, as Go names it.
        name: String,
    },
    /// Elements of different JSON types in lists being merged.
    #[error("list element types are not identical: {lists}")]
    ListElementTypesNotIdentical {
        /// The lists, as Go prints them.
        lists: String,
    },
    /// A `$setElementOrder` for lists that are empty on both sides.
    #[error("no elements in any of the given slices")]
    NoElements,
    /// A list element that should be an object is not.
    #[error("value for key {index} is not a map")]
    NotAMap {
        /// Its index.
        index: usize,
    },
    /// Patch list items out of the `$setElementOrder` order.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch {
        /// The patch list, as Go prints it.
        patch: String,
        /// The order list, as Go prints it.
        order: String,
    },
    /// A patch strategy tag that makes no sense.
    #[error("unexpected patch strategy: {strategies}")]
    UnexpectedPatchStrategy {
        /// The strategies, as Go prints a `[]string`.
        strategies: String,
    },
    /// A JSON patch body that does not decode as a list of operations.
    #[error("{0}")]
    InvalidJsonPatch(String),
    /// A JSON patch with more than [`MAX_JSON_PATCH_OPERATIONS`] operations.
    #[error("The allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyJsonPatchOperations {
        /// The limit.
        max: usize,
        /// The number of operations sent.
        got: usize,
    },
    /// A JSON patch operation that failed (bad path, failed `test`).
    #[error("{0}")]
    JsonPatchFailed(String),
    /// A merge patch body that is not JSON (`jsonpatch.ErrBadJSONPatch`).
    #[error("Invalid JSON Patch")]
    InvalidMergePatch,
}

impl PatchError {
    /// The HTTP status the API server answers with: 400 (BadRequest), 413
    /// (RequestEntityTooLarge), 422 (Invalid/Unprocessable) or 500 (InternalError,
    /// what Kubernetes returns for the remaining strategic merge errors).
    pub fn http_status(&self) -> u16 {
        match self {
            PatchError::BadJsonDoc
            | PatchError::PatchNotAnObject { .. }
            | PatchError::BadPatchFormatForPrimitiveList
            | PatchError::BadPatchFormatForRetainKeys
            | PatchError::BadPatchFormatForSetElementOrderList
            | PatchError::UnsupportedStrategicMergePatchFormat
            | PatchError::InvalidJsonPatch(_)
            | PatchError::InvalidMergePatch => 400,
            PatchError::TooManyJsonPatchOperations { .. } => 413,
            PatchError::NoListOfLists | PatchError::JsonPatchFailed(_) => 422,
            _ => 500,
        }
    }
}

/// Applies a strategic merge patch to `original`, an object of the schema
/// definition `definition` (e.g. `io.k8s.api.apps.v1.Deployment`, see
/// [`crate::schema::definition_name_for`]). A `null` patch changes nothing.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    definition: &str,
) -> Result<Value, PatchError> {
    let defs = crate::schema::definitions();
    let node = Node::definition(defs, definition)
        .ok_or(PatchError::UnsupportedStrategicMergePatchFormat)?;
    let Value::Object(original) = original else {
        return Err(PatchError::BadJsonDoc);
    };
    let patch = match patch {
        Value::Null => return Ok(Value::Object(original.clone())),
        Value::Object(patch) => patch.clone(),
        other => {
            return Err(PatchError::PatchNotAnObject {
                actual: gofmt::json_kind(other).to_owned(),
            });
        }
    };
    strategic::merge_map(original.clone(), patch, node).map(Value::Object)
}

/// Applies an RFC 6902 JSON patch given as its request body.
pub fn json_patch(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let operations: json_patch::Patch =
        serde_json::from_slice(patch).map_err(|e| PatchError::InvalidJsonPatch(e.to_string()))?;
    if operations.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyJsonPatchOperations {
            max: MAX_JSON_PATCH_OPERATIONS,
            got: operations.0.len(),
        });
    }
    // One operation at a time on a copy (dropped on failure), so that copies are
    // counted against the limit before they are made.
    let mut doc = original.clone();
    let mut copied: usize = 0;
    for (index, operation) in operations.0.iter().enumerate() {
        if let json_patch::PatchOperation::Copy(copy) = operation
            && let Some(value) = doc.pointer(copy.from.as_str())
        {
            copied = copied.saturating_add(json_len(value));
            if copied > MAX_JSON_PATCH_COPY_BYTES {
                return Err(PatchError::JsonPatchFailed(format!(
                    "Unable to complete the copy, the accumulated size increase of copy is \
                     {copied}, exceeding the limit {MAX_JSON_PATCH_COPY_BYTES}"
                )));
            }
        }
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(operation)).map_err(|mut e| {
            e.operation = index;
            PatchError::JsonPatchFailed(e.to_string())
        })?;
    }
    Ok(doc)
}

/// The length of `value` printed as JSON, without printing it anywhere.
fn json_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Applies an RFC 7386 JSON merge patch: objects merge recursively, `null`
/// deletes, anything else (lists included) replaces.
pub fn merge_patch(original: &Value, patch: &Value) -> Value {
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// [`merge_patch`] with the patch given as its request body.
pub fn merge_patch_bytes(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let patch: Value = serde_json::from_slice(patch).map_err(|_| PatchError::InvalidMergePatch)?;
    Ok(merge_patch(original, &patch))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_patch_copies_are_capped_like_kube_apiserver() {
        // Found by fuzzing: 40 copies of the document into itself (1.8 KB of
        // patch) doubled it 40 times and ran the server out of memory.
        let ops: Vec<Value> = (0..40)
            .map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")}))
            .collect();
        let body = serde_json::to_vec(&ops).unwrap();
        let err = json_patch(&json!({"a": "x".repeat(16)}), &body).unwrap_err();
        assert_eq!(err.http_status(), 422);
        assert!(
            err.to_string().starts_with(
                "Unable to complete the copy, the accumulated size increase of copy is "
            ),
            "{err}"
        );
    }

    #[test]
    fn json_patch_copies_under_the_cap_apply() {
        let body = br#"[{"op": "copy", "from": "/a", "path": "/b"},
                        {"op": "copy", "from": "/b", "path": "/c/-"}]"#;
        let out = json_patch(&json!({"a": [1, 2], "c": []}), body).unwrap();
        assert_eq!(out, json!({"a": [1, 2], "c": [[1, 2]], "b": [1, 2]}));
    }

    #[test]
    fn json_patch_errors_name_the_failing_operation() {
        let body = br#"[{"op": "add", "path": "/a", "value": 1},
                        {"op": "remove", "path": "/nope"}]"#;
        let err = json_patch(&json!({}), body).unwrap_err();
        assert!(err.to_string().contains("operation '/1'"), "{err}");
    }
}
