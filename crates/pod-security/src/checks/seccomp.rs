//! Seccomp.
//!
//! Baseline `seccompProfile_baseline`: a profile, where set, must be the runtime
//! default or a localhost one. Up to v1.18 this reads the old alpha annotations;
//! from v1.19 the `securityContext.seccompProfile.type` fields.
//!
//! Restricted `seccompProfile_restricted` (v1.19+, replacing the baseline check):
//! the profile must be set (on the pod, or on every container) to `RuntimeDefault`
//! or `Localhost`; Windows pods are exempt from v1.25.

use std::collections::BTreeSet;

use super::{Check, Pod, Versioned, containers_phrase};
use crate::level::Level;
use crate::quote::go_quote;
use crate::violation::{Violation, join_quote, pluralize};

pub(crate) const BASELINE: Check = Check {
    id: "seccompProfile_baseline",
    level: Level::Baseline,
    versions: &[
        Versioned {
            since: 0,
            check: baseline_1_0,
            overrides: &[],
        },
        Versioned {
            since: 19,
            check: baseline_1_19,
            overrides: &[],
        },
    ],
};

pub(crate) const RESTRICTED: Check = Check {
    id: "seccompProfile_restricted",
    level: Level::Restricted,
    versions: &[
        Versioned {
            since: 19,
            check: restricted_1_19,
            overrides: &[BASELINE.id],
        },
        Versioned {
            since: 25,
            check: restricted_1_25,
            overrides: &[BASELINE.id],
        },
    ],
};

const POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

fn valid_type(t: &str) -> bool {
    t == "Localhost" || t == "RuntimeDefault"
}

fn valid_annotation(v: &str) -> bool {
    v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/")
}

fn baseline_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let mut forbidden = BTreeSet::new();
    let mut inspect = |key: &str| {
        if let Some(v) = pod.annotations.get(key)
            && !valid_annotation(v)
        {
            forbidden.insert(format!("{key}={}", go_quote(v)));
        }
    };
    inspect(POD_ANNOTATION);
    for c in pod.containers() {
        inspect(&format!("{CONTAINER_ANNOTATION_PREFIX}{}", c.name));
    }
    if forbidden.is_empty() {
        return None;
    }
    let forbidden: Vec<String> = forbidden.into_iter().collect();
    Some(Violation::new(
        BASELINE.id,
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", forbidden.len()),
            forbidden.join(", ")
        ),
    ))
}

fn baseline_1_19(pod: &Pod<'_>) -> Option<Violation> {
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    if let Some(p) = pod
        .security_context()
        .and_then(|sc| sc.seccomp_profile.as_ref())
        && !valid_type(&p.type_)
    {
        setters.push("pod".to_owned());
        values.insert(p.type_.as_str());
    }
    let mut bad = Vec::new();
    for c in pod.containers() {
        if let Some(p) = c
            .security_context
            .and_then(|sc| sc.seccomp_profile.as_ref())
            && !valid_type(&p.type_)
        {
            bad.push(c.name);
            values.insert(p.type_.as_str());
        }
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    Some(bad_types(BASELINE.id, &setters, values))
}

fn bad_types(id: &'static str, setters: &[String], values: BTreeSet<&str>) -> Violation {
    let values: Vec<&str> = values.into_iter().collect();
    Violation::new(
        id,
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

fn restricted_1_19(pod: &Pod<'_>) -> Option<Violation> {
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    let mut pod_set = false;
    if let Some(p) = pod
        .security_context()
        .and_then(|sc| sc.seccomp_profile.as_ref())
    {
        if valid_type(&p.type_) {
            pod_set = true;
        } else {
            setters.push("pod".to_owned());
            values.insert(p.type_.as_str());
        }
    }
    let mut explicitly_bad = Vec::new();
    let mut implicitly_bad = Vec::new();
    for c in pod.containers() {
        match c
            .security_context
            .and_then(|sc| sc.seccomp_profile.as_ref())
        {
            Some(p) if !valid_type(&p.type_) => {
                explicitly_bad.push(c.name);
                values.insert(p.type_.as_str());
            }
            Some(_) => {}
            None if !pod_set => implicitly_bad.push(c.name),
            None => {}
        }
    }
    if !explicitly_bad.is_empty() {
        setters.push(containers_phrase(&explicitly_bad));
    }
    if !setters.is_empty() {
        return Some(bad_types(RESTRICTED.id, &setters, values));
    }
    if implicitly_bad.is_empty() {
        return None;
    }
    Some(Violation::new(
        RESTRICTED.id,
        "seccompProfile",
        format!(
            r#"pod or {} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
            containers_phrase(&implicitly_bad)
        ),
    ))
}

fn restricted_1_25(pod: &Pod<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    restricted_1_19(pod)
}
