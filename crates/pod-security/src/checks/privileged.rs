//! Baseline `privileged`: containers must not run privileged (v1.0+).
//!
//! Restricted fields: `securityContext.privileged` of every container, init
//! container and ephemeral container. Allowed: unset, `false`.

use super::{Check, Pod, Versioned, containers_phrase};
use crate::level::Level;
use crate::violation::Violation;

pub(crate) const CHECK: Check = Check {
    id: "privileged",
    level: Level::Baseline,
    versions: &[Versioned {
        since: 0,
        check: privileged_1_0,
        overrides: &[],
    }],
};

fn privileged_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| c.security_context.and_then(|sc| sc.privileged) == Some(true))
        .map(|c| c.name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    Some(Violation::new(
        CHECK.id,
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    ))
}
