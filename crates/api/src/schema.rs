//! OpenAPI definitions of the served types, and field validation against them.
//!
//! Definitions come from k8s-openapi's `schemars` impls (names such as
//! `io.k8s.api.apps.v1.Deployment`), finished as Kubernetes' own document:
//! - `<Kind>List` definitions for every listable kind (k8s-openapi's `List<T>`
//!   has no schema), with `apiVersion`, `kind`, `metadata` (ListMeta), `items`;
//! - `x-kubernetes-group-version-kind` on every top-level kind (kubectl finds
//!   definitions by it; `DeleteOptions` and `WatchEvent` list every served
//!   group version);
//! - `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` from
//!   [`crate::patch::meta`] (kubectl apply reads them from `/openapi/v3`);
//! - IntOrString as `format: int-or-string` (v2 `type: string`, v3
//!   `oneOf: [integer, string]`) and Quantity (v2 `type: string`, v3
//!   `oneOf: [string, number]`).
//!
//! [`definitions`] is for Swagger 2.0 (`#/definitions/`, `$ref` with sibling
//! `description` like Kubernetes' v2 document); [`definitions_v3`] for
//! OpenAPI 3.0 (`#/components/schemas/`, `allOf: [{$ref}]` where a `$ref`
//! has siblings). Both are built once, lazily.
//!
//! Field validation ([`find_unknown_fields`], [`parse_json_detect_duplicates`],
//! [`strict_decoding_errors`]) reports problems as kube-apiserver's strict
//! decoding does; see [`StrictError`].

mod build;
pub(crate) mod navigate;
mod strict;

use std::sync::OnceLock;

use serde_json::{Map, Value};

pub use build::KindDefinition;
pub use strict::{
    StrictError, find_unknown_fields, parse_json_detect_duplicates, strict_decoding_errors,
    strict_decoding_message,
};

/// All definitions, Swagger 2.0 flavour (`$ref: #/definitions/<name>`), sorted by name.
pub fn definitions() -> &'static Map<String, Value> {
    static DEFS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFS.get_or_init(|| build::build(build::Flavor::V2))
}

/// All definitions, OpenAPI 3.0 flavour (`$ref: #/components/schemas/<name>`), sorted by name.
pub fn definitions_v3() -> &'static Map<String, Value> {
    static DEFS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFS.get_or_init(|| build::build(build::Flavor::V3))
}

/// Every served group/version/kind that has a definition (lists included).
pub fn kinds() -> &'static [KindDefinition] {
    static KINDS: OnceLock<Vec<KindDefinition>> = OnceLock::new();
    KINDS.get_or_init(build::kinds)
}

/// The definition name of a group/version/kind, e.g.
/// `("apps", "v1", "Deployment")` → `io.k8s.api.apps.v1.Deployment`,
/// `("", "v1", "PodList")` → `io.k8s.api.core.v1.PodList`.
pub fn definition_name_for(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    kinds()
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
        .map(|k| k.definition.as_str())
}
