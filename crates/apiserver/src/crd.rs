//! CustomResourceDefinitions (`apiextensions.k8s.io/v1`) and the custom resources
//! they define, served the way kube-apiserver's apiextensions-apiserver serves them:
//!
//! - [`strategy`]: the CRD resource's defaults and validation ([`validation`],
//!   [`structural`]) and the one generic strategy of all custom resources;
//! - [`controller`]: inside the API server, fed by its watch cache: names
//!   (`NamesAccepted`), `Established`, deletion of a CRD's objects before the CRD
//!   goes (`customresourcecleanup.apiextensions.k8s.io`), and publishing what is
//!   served ([`served`]) — discovery, OpenAPI and the REST layer follow;
//! - [`resource`]: one served version: pruning, defaulting and validation against
//!   its structural [`schema`], storage version, status and scale subresources,
//!   printer columns ([`printer`], [`jsonpath`]).

pub(crate) mod controller;
pub(crate) mod definition;
mod format;
pub(crate) mod jsonpath;
pub(crate) mod openapi;
mod printer;
pub(crate) mod resource;
pub(crate) mod schema;
pub(crate) mod served;
pub(crate) mod strategy;
mod structural;
mod validation;

pub(crate) use resource::CustomResource;
pub(crate) use served::{ServedResources, Snapshot};
pub(crate) use strategy::{CrdStrategy, CustomResourceStrategy};
