//! Baseline `seLinuxOptions` (v1.0+): the SELinux type may only be one of the
//! container types, and user and role must not be set, at pod or container level.
//! v1.31 adds `container_engine_t` to the allowed types.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::SELinuxOptions;

use super::{Check, Pod, Versioned, containers_phrase};
use crate::level::Level;
use crate::violation::{Violation, join_quote, pluralize};

pub(crate) const CHECK: Check = Check {
    id: "seLinuxOptions",
    level: Level::Baseline,
    versions: &[
        Versioned {
            since: 0,
            check: se_linux_1_0,
            overrides: &[],
        },
        Versioned {
            since: 31,
            check: se_linux_1_31,
            overrides: &[],
        },
    ],
};

const TYPES_1_0: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
const TYPES_1_31: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

fn se_linux_1_0(pod: &Pod<'_>) -> Option<Violation> {
    se_linux(pod, TYPES_1_0)
}

fn se_linux_1_31(pod: &Pod<'_>) -> Option<Violation> {
    se_linux(pod, TYPES_1_31)
}

/// What was found wrong across the pod's SELinux options.
#[derive(Default)]
struct Findings<'a> {
    types: BTreeSet<&'a str>,
    user: bool,
    role: bool,
}

impl<'a> Findings<'a> {
    /// Records what is wrong with `opts`; true when nothing is.
    fn record(&mut self, opts: &'a SELinuxOptions, allowed: &[&str]) -> bool {
        let mut valid = true;
        let t = opts.type_.as_deref().unwrap_or_default();
        if !allowed.contains(&t) {
            valid = false;
            self.types.insert(t);
        }
        if !opts.user.as_deref().unwrap_or_default().is_empty() {
            valid = false;
            self.user = true;
        }
        if !opts.role.as_deref().unwrap_or_default().is_empty() {
            valid = false;
            self.role = true;
        }
        valid
    }
}

fn se_linux(pod: &Pod<'_>, allowed: &[&str]) -> Option<Violation> {
    let mut found = Findings::default();
    let mut setters = Vec::new();
    if let Some(opts) = pod
        .security_context()
        .and_then(|sc| sc.se_linux_options.as_ref())
        && !found.record(opts, allowed)
    {
        setters.push("pod".to_owned());
    }
    let mut bad = Vec::new();
    for c in pod.containers() {
        if let Some(opts) = c
            .security_context
            .and_then(|sc| sc.se_linux_options.as_ref())
            && !found.record(opts, allowed)
        {
            bad.push(c.name);
        }
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !found.types.is_empty() {
        let types: Vec<&str> = found.types.iter().copied().collect();
        data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
    }
    if found.user {
        data.push("user may not be set".to_owned());
    }
    if found.role {
        data.push("role may not be set".to_owned());
    }
    Some(Violation::new(
        CHECK.id,
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    ))
}
