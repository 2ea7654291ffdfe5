//! Skiff's API data: pure types and functions, no IO and no async.
//!
//! - [`resource`]: the registry of served resources (group, version, kind, plural, scope, verbs).
//! - [`quantity`]: resource quantities (`500m`, `128Mi`) as exact integers.
//! - [`quota`]: what an object costs against ResourceQuota resource names.
//! - [`status`]: Kubernetes `Status` errors with the right reason and HTTP code.
//! - [`selector`]: label and field selectors.
//! - [`schema`]: OpenAPI definitions from k8s-openapi, field validation.
//! - [`patch`]: JSON, merge and strategic merge patches.
//! - [`table`]: `kubectl get` columns per kind (meta.k8s.io/v1 Table rows).

pub use k8s_openapi;

pub mod patch;
pub mod quantity;
pub mod quota;
pub mod resource;
pub mod schema;
pub mod selector;
pub mod status;
pub mod table;
