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
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &operations)
        .map_err(|e| PatchError::JsonPatchFailed(e.to_string()))?;
    Ok(doc)
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
