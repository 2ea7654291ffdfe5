//! Skiff's Kubernetes-compatible API server: the only writer of the store.
//!
//! A request flows through one pipeline (see [`handler`]):
//! authentication → request info → authorization → admission → per-resource
//! strategy (defaults, validation) → store. Discovery and OpenAPI documents are
//! served from the resource registry in the `api` crate.

mod admission;
mod allocator;
mod audit;
mod authn;
mod authz;
mod bootstrap;
mod config;
mod conversion;
mod crd;
mod csr;
mod discovery;
mod error;
mod feed;
mod flowcontrol;
mod handler;
mod impersonation;
pub mod join;
mod negotiate;
mod node_authz;
mod object;
mod openapi;
mod pki;
mod rbac;
mod request;
pub(crate) mod rest;
mod review;
mod serve;
mod storage;
mod strategy;
mod tokens;
mod typecheck;

#[cfg(test)]
mod robustness;
mod watch;
mod watch_cache;

pub use audit::{AuditConfig, AuditPolicy, AuditPolicyError};
pub use authz::AuthorizationMode;
pub use config::{ApiServerConfig, StaticToken};
pub use error::Error;
pub use pki::{
    CLUSTER_DNS_USER, CONTROLLER_MANAGER_USER, KUBELET_CLIENT_USER, Pki, PkiConfig, SCHEDULER_USER,
    kubeconfig_yaml, sign_client_cert, sign_serving_cert, sign_user_cert, write_kubeconfig,
};
pub use serve::{ApiServer, MetricsSource, Readiness, RunningApiServer};
