//! Capabilities.
//!
//! Baseline `capabilities_baseline` (v1.0+): `securityContext.capabilities.add`
//! may only hold capabilities of the container runtime's default set.
//!
//! Restricted `capabilities_restricted` (v1.22+, replacing the baseline check):
//! every container must drop `ALL` and may add only `NET_BIND_SERVICE`; Windows pods
//! are exempt from v1.25.

use std::collections::BTreeSet;

use super::{Check, Pod, Versioned, containers_phrase};
use crate::level::Level;
use crate::violation::{Violation, join_quote};

pub(crate) const BASELINE: Check = Check {
    id: "capabilities_baseline",
    level: Level::Baseline,
    versions: &[Versioned {
        since: 0,
        check: baseline_1_0,
        overrides: &[],
    }],
};

pub(crate) const RESTRICTED: Check = Check {
    id: "capabilities_restricted",
    level: Level::Restricted,
    versions: &[
        Versioned {
            since: 22,
            check: restricted_1_22,
            overrides: &[BASELINE.id],
        },
        Versioned {
            since: 25,
            check: restricted_1_25,
            overrides: &[BASELINE.id],
        },
    ],
};

/// The runtime's default capabilities, which baseline lets a container add back.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn baseline_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut added = BTreeSet::new();
    for c in pod.containers() {
        let Some(caps) = c.security_context.and_then(|sc| sc.capabilities.as_ref()) else {
            continue;
        };
        let mut valid = true;
        for cap in caps.add.as_deref().unwrap_or_default() {
            if !DEFAULT_CAPABILITIES.contains(&cap.as_str()) {
                valid = false;
                added.insert(cap.as_str());
            }
        }
        if !valid {
            bad.push(c.name);
        }
    }
    if bad.is_empty() {
        return None;
    }
    let added: Vec<&str> = added.into_iter().collect();
    Some(Violation::new(
        BASELINE.id,
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&added)
        ),
    ))
}

fn restricted_1_22(pod: &Pod<'_>) -> Option<Violation> {
    let mut missing_drop_all = Vec::new();
    let mut adding_forbidden = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in pod.containers() {
        let Some(caps) = c.security_context.and_then(|sc| sc.capabilities.as_ref()) else {
            missing_drop_all.push(c.name);
            continue;
        };
        if !caps
            .drop
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|d| d == "ALL")
        {
            missing_drop_all.push(c.name);
        }
        let mut adds_forbidden = false;
        for cap in caps.add.as_deref().unwrap_or_default() {
            if cap != "NET_BIND_SERVICE" {
                adds_forbidden = true;
                forbidden.insert(cap.as_str());
            }
        }
        if adds_forbidden {
            adding_forbidden.push(c.name);
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            r#"{} must set securityContext.capabilities.drop=["ALL"]"#,
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding_forbidden.is_empty() {
        let forbidden: Vec<&str> = forbidden.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding_forbidden),
            join_quote(&forbidden)
        ));
    }
    if details.is_empty() {
        return None;
    }
    Some(Violation::new(
        RESTRICTED.id,
        "unrestricted capabilities",
        details.join("; "),
    ))
}

fn restricted_1_25(pod: &Pod<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    restricted_1_22(pod)
}
