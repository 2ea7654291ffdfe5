//! Restricted `allowPrivilegeEscalation` (v1.8+): every container must set
//! `securityContext.allowPrivilegeEscalation=false`; Windows pods are exempt from
//! v1.25.

use super::{Check, Pod, Versioned, containers_phrase};
use crate::level::Level;
use crate::violation::Violation;

pub(crate) const CHECK: Check = Check {
    id: "allowPrivilegeEscalation",
    level: Level::Restricted,
    versions: &[
        Versioned {
            since: 8,
            check: allow_privilege_escalation_1_8,
            overrides: &[],
        },
        Versioned {
            since: 25,
            check: allow_privilege_escalation_1_25,
            overrides: &[],
        },
    ],
};

fn allow_privilege_escalation_1_8(pod: &Pod<'_>) -> Option<Violation> {
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| {
            c.security_context
                .and_then(|sc| sc.allow_privilege_escalation)
                != Some(false)
        })
        .map(|c| c.name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    Some(Violation::new(
        CHECK.id,
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    ))
}

fn allow_privilege_escalation_1_25(pod: &Pod<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    allow_privilege_escalation_1_8(pod)
}
