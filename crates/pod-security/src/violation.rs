//! One failed check, and the messages Kubernetes builds from a pod's failed checks.

use std::fmt;

use crate::level::LevelVersion;
use crate::quote::go_quote;

/// A check the pod fails: why (`reason`, e.g. `privileged`) and what exactly
/// (`detail`, e.g. `container "c" must not set securityContext.privileged=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The check's identifier in Kubernetes' registry (`privileged`,
    /// `seccompProfile_restricted`, …).
    pub check: &'static str,
    /// The short reason Kubernetes prints first.
    pub reason: String,
    /// The details Kubernetes prints in parentheses after the reason.
    pub detail: String,
}

impl Violation {
    pub(crate) fn new(check: &'static str, reason: impl Into<String>, detail: String) -> Self {
        Self {
            check,
            reason: reason.into(),
            detail,
        }
    }
}

impl fmt::Display for Violation {
    /// `reason (detail)`, or the reason alone when there is no detail.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{} ({})", self.reason, self.detail)
        }
    }
}

/// Every violation as `reason (detail)`, joined with `, ` (Kubernetes'
/// `ForbiddenDetail`).
pub fn violations_detail(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The reasons alone, joined with `, ` (Kubernetes' `ForbiddenReason`, used in the
/// warnings about existing pods when a namespace's enforce level is tightened).
pub fn violations_reason(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The message of the 403 Forbidden Status for a pod the enforce level rejects:
/// `pods "x" is forbidden: violates PodSecurity "restricted:latest": …`
/// (`pods is forbidden: …` when the name is empty).
pub fn forbidden_message(
    pod_name: &str,
    enforce: &LevelVersion,
    violations: &[Violation],
) -> String {
    let subject = if pod_name.is_empty() {
        "pods".to_owned()
    } else {
        format!("pods {}", go_quote(pod_name))
    };
    format!(
        "{subject} is forbidden: violates PodSecurity {}: {}",
        go_quote(&enforce.to_string()),
        violations_detail(violations)
    )
}

/// The warning (warn mode) and audit annotation (audit mode) text:
/// `would violate PodSecurity "restricted:latest": …`.
pub fn warning_message(level: &LevelVersion, violations: &[Violation]) -> String {
    format!(
        "would violate PodSecurity {}: {}",
        go_quote(&level.to_string()),
        violations_detail(violations)
    )
}

/// `"a", "b"`: Kubernetes' `joinQuote` (plain quotes, no escaping).
pub(crate) fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut out = String::from("\"");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str("\", \"");
        }
        out.push_str(item.as_ref());
    }
    out.push('"');
    out
}

/// `singular` when `count` is 1, else `plural`.
pub(crate) fn pluralize(
    singular: &'static str,
    plural: &'static str,
    count: usize,
) -> &'static str {
    if count == 1 { singular } else { plural }
}
