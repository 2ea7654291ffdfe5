//! Restricted `runAsNonRoot` (v1.0+): the pod, or every container, must set
//! `runAsNonRoot=true`, and nothing may set it to false. From v1.35 pods in a user
//! namespace (`hostUsers: false`) are exempt.

use super::{Check, Pod, Versioned, containers_phrase};
use crate::level::Level;
use crate::violation::Violation;

pub(crate) const CHECK: Check = Check {
    id: "runAsNonRoot",
    level: Level::Restricted,
    versions: &[
        Versioned {
            since: 0,
            check: run_as_non_root_1_0,
            overrides: &[],
        },
        Versioned {
            since: 35,
            check: run_as_non_root_1_35,
            overrides: &[],
        },
    ],
};

const REASON: &str = "runAsNonRoot != true";

fn run_as_non_root_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let mut setters = Vec::new();
    let mut pod_non_root = false;
    match pod.security_context().and_then(|sc| sc.run_as_non_root) {
        Some(false) => setters.push("pod".to_owned()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for c in pod.containers() {
        match c.security_context.and_then(|sc| sc.run_as_non_root) {
            Some(false) => explicitly_bad.push(c.name),
            Some(true) => {}
            None if !pod_non_root => implicitly_bad.push(c.name),
            None => {}
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(containers_phrase(&explicitly_bad));
    }
    if !setters.is_empty() {
        return Some(Violation::new(
            CHECK.id,
            REASON,
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        ));
    }
    if implicitly_bad.is_empty() {
        return None;
    }
    Some(Violation::new(
        CHECK.id,
        REASON,
        format!(
            "pod or {} must set securityContext.runAsNonRoot=true",
            containers_phrase(&implicitly_bad)
        ),
    ))
}

fn run_as_non_root_1_35(pod: &Pod<'_>) -> Option<Violation> {
    if pod.in_user_namespace() {
        return None;
    }
    run_as_non_root_1_0(pod)
}
