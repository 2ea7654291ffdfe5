//! Server-side apply field management, as Kubernetes does it: a pure
//! library over `serde_json::Value` objects, no IO.
//!
//! This crate owns what kube-apiserver takes from structured-merge-diff
//! (sigs.k8s.io/structured-merge-diff v4/v6) and apimachinery's
//! `managedfields`:
//!
//! - field paths and sets ([`PathElement`], [`FieldPath`], [`FieldSet`]) and
//!   their `FieldsV1` form ([`fieldsv1`]);
//! - the schema objects are typed against ([`Schema`]): built-in kinds from
//!   [`api::schema`]'s definitions (the ones strategic merge patch uses),
//!   custom resources from their CRD's `openAPIV3Schema`;
//! - `metadata.managedFields` entries ([`ManagedFieldsEntry`]);
//! - the write-path bookkeeping ([`FieldManager`]): [`FieldManager::apply`]
//!   merges an applied configuration (conflicts as [`Conflicts`], with
//!   Kubernetes' message and `409` Status), [`FieldManager::update`]
//!   records creates, updates and non-apply patches;
//! - manager names from requests ([`manager_from_user_agent`],
//!   [`validate_field_manager`]).

mod conflict;
mod fieldmanager;
pub mod fieldsv1;
mod managers;
mod path;
mod request;
mod schema;
mod set;
mod typed;
mod updater;

use serde_json::Value;

pub use conflict::{Conflict, Conflicts};
pub use fieldmanager::{
    Applied, Error, FieldManager, LAST_APPLIED_ANNOTATION, MAX_UPDATE_MANAGERS,
};
pub use managers::{
    FIELDS_V1, ManagedFieldsEntry, ManagedFieldsError, ManagerKey, Operation, decode_entries,
    encode_entries,
};
pub use path::{FieldPath, PathElement, PathElementError};
pub use request::{
    FIELD_MANAGER_MAX_LENGTH, manager_from_user_agent, manager_or_user_agent,
    validate_field_manager,
};
pub use schema::Schema;
pub use set::FieldSet;
pub use typed::{TypeError, TypeErrors};

/// The fields `value` sets, typed by `schema` (structured-merge-diff's
/// `ToFieldSet`: leaves, list items, and map entries).
pub fn field_set(value: &Value, schema: &Schema) -> FieldSet {
    typed::to_field_set(value, schema.root())
}
