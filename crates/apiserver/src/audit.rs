//! The audit log, as kube-apiserver keeps it (`--audit-policy-file`,
//! `--audit-log-path`): a policy decides per request whether it is recorded and at
//! which level (None, Metadata, Request, RequestResponse), and each recorded stage
//! of a request becomes one `audit.k8s.io/v1` `Event`, a JSON line appended to the
//! log by a background writer. The audit ID of the events is the one the response
//! carries in its `Audit-Id` header.
//!
//! - `policy`: the `Policy` file, validation, first-match evaluation.
//! - `record`: one request's events, written as it passes `handler::handle`.
//! - `event`: the event and its JSON.
//! - `writer`: the bounded queue, the writer thread and log rotation.

mod event;
mod policy;
mod record;
mod writer;

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderMap;

pub use policy::{AuditPolicy, AuditPolicyError};
pub(crate) use record::{Notes, Recording};

/// Audit settings (kube-apiserver's `--audit-*` flags). The default records nothing.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The policy (`--audit-policy-file`); none: nothing is recorded.
    pub policy: Option<AuditPolicy>,
    /// Where events go (`--audit-log-path`), `-` for standard output; none: nowhere.
    pub log_path: Option<PathBuf>,
    /// Rotate the log before it grows past this many megabytes; 0: never
    /// (`--audit-log-maxsize`).
    pub max_size_mb: u64,
    /// Rotated files to keep; 0: all (`--audit-log-maxbackup`).
    pub max_backups: usize,
    /// Days to keep rotated files, by the time in their names; 0: no limit
    /// (`--audit-log-maxage`).
    pub max_age_days: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            policy: None,
            log_path: None,
            max_size_mb: 100,
            max_backups: 100,
            max_age_days: 366,
        }
    }
}

/// The running audit log: the policy and the writer's queue.
pub(crate) struct Auditor {
    policy: AuditPolicy,
    sink: writer::Sink,
}

impl Auditor {
    /// Starts the writer when both a policy and a log path are set (as
    /// kube-apiserver, which records nothing without a policy).
    pub(crate) fn start(config: &AuditConfig) -> Result<Option<Self>, crate::Error> {
        let (Some(policy), Some(path)) = (&config.policy, &config.log_path) else {
            return Ok(None);
        };
        let rotation = writer::Rotation {
            max_bytes: config.max_size_mb.saturating_mul(1 << 20),
            max_backups: config.max_backups,
            max_age: Duration::from_secs(config.max_age_days.saturating_mul(86_400)),
        };
        let sink = writer::Sink::start(writer::Target::from_path(path), rotation)
            .map_err(|e| crate::Error::Io("opening the audit log".into(), e))?;
        tracing::info!(path = %path.display(), "audit log enabled");
        Ok(Some(Self {
            policy: policy.clone(),
            sink,
        }))
    }

    /// Starts the record of a request that just arrived (see [`Recording::begin`]).
    pub(crate) fn begin<B>(
        &self,
        audit_id: &str,
        who: &Result<crate::authn::Identity, ()>,
        peer: std::net::IpAddr,
        req: &http::Request<B>,
    ) -> Option<Recording> {
        Recording::begin(&self.policy, &self.sink, audit_id, who, peer, req)
    }
}

/// The request's audit ID: the client's `Audit-ID` header when it sent one (as
/// kube-apiserver keeps it), else a new UUID.
pub(crate) fn audit_id(headers: &HeaderMap) -> String {
    headers
        .get("audit-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), String::from)
}
