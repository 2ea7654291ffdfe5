//! Restricted `runAsUser` (v1.23+): neither the pod nor any container may set
//! `runAsUser=0`. From v1.35 pods in a user namespace (`hostUsers: false`) are
//! exempt.

use super::{Check, Pod, Versioned, containers_phrase};
use crate::level::Level;
use crate::violation::Violation;

pub(crate) const CHECK: Check = Check {
    id: "runAsUser",
    level: Level::Restricted,
    versions: &[
        Versioned {
            since: 23,
            check: run_as_user_1_23,
            overrides: &[],
        },
        Versioned {
            since: 35,
            check: run_as_user_1_35,
            overrides: &[],
        },
    ],
};

fn run_as_user_1_23(pod: &Pod<'_>) -> Option<Violation> {
    let mut setters = Vec::new();
    if pod.security_context().and_then(|sc| sc.run_as_user) == Some(0) {
        setters.push("pod".to_owned());
    }
    let bad: Vec<&str> = pod
        .containers()
        .filter(|c| c.security_context.and_then(|sc| sc.run_as_user) == Some(0))
        .map(|c| c.name)
        .collect();
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    Some(Violation::new(
        CHECK.id,
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    ))
}

fn run_as_user_1_35(pod: &Pod<'_>) -> Option<Violation> {
    if pod.in_user_namespace() {
        return None;
    }
    run_as_user_1_23(pod)
}
