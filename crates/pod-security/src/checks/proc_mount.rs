//! `/proc` masking.
//!
//! Baseline `procMount` (v1.0+): `securityContext.procMount` must be unset or
//! `Default`; from v1.35 any value is allowed for pods in a user namespace
//! (`hostUsers: false`).
//!
//! Restricted `procMount_restricted` (v1.35+, replacing the baseline check): the
//! unconditional v1.0 rule, user namespace or not.

use std::collections::BTreeSet;

use super::{Check, Pod, Versioned, containers_phrase};
use crate::level::Level;
use crate::violation::{Violation, join_quote};

pub(crate) const BASELINE: Check = Check {
    id: "procMount",
    level: Level::Baseline,
    versions: &[
        Versioned {
            since: 0,
            check: proc_mount_1_0,
            overrides: &[],
        },
        Versioned {
            since: 35,
            check: baseline_1_35,
            overrides: &[],
        },
    ],
};

pub(crate) const RESTRICTED: Check = Check {
    id: "procMount_restricted",
    level: Level::Restricted,
    versions: &[Versioned {
        since: 35,
        check: restricted_1_35,
        overrides: &[BASELINE.id],
    }],
};

fn proc_mount_1_0(pod: &Pod<'_>) -> Option<Violation> {
    proc_mount(pod, BASELINE.id)
}

fn baseline_1_35(pod: &Pod<'_>) -> Option<Violation> {
    if pod.in_user_namespace() {
        return None;
    }
    proc_mount(pod, BASELINE.id)
}

fn restricted_1_35(pod: &Pod<'_>) -> Option<Violation> {
    proc_mount(pod, RESTRICTED.id)
}

fn proc_mount(pod: &Pod<'_>, id: &'static str) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in pod.containers() {
        if let Some(t) = c.security_context.and_then(|sc| sc.proc_mount.as_deref())
            && t != "Default"
        {
            bad.push(c.name);
            types.insert(t);
        }
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<&str> = types.into_iter().collect();
    Some(Violation::new(
        id,
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&types)
        ),
    ))
}
