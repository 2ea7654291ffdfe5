//! Baseline `appArmorProfile` (v1.0+): the runtime's default AppArmor profile must
//! not be overridden except by a localhost profile — through the
//! `securityContext.appArmorProfile.type` fields (`RuntimeDefault`, `Localhost`)
//! or the deprecated `container.apparmor.security.beta.kubernetes.io/*`
//! annotations (`runtime/default`, `localhost/*`, empty).

use std::collections::BTreeSet;

use super::{Check, Pod, Versioned, containers_phrase};
use crate::level::Level;
use crate::quote::go_quote;
use crate::violation::{Violation, join_quote, pluralize};

pub(crate) const CHECK: Check = Check {
    id: "appArmorProfile",
    level: Level::Baseline,
    versions: &[Versioned {
        since: 0,
        check: app_armor_1_0,
        overrides: &[],
    }],
};

const ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn allowed_type(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

fn allowed_annotation(v: &str) -> bool {
    v.is_empty() || v == "runtime/default" || v.starts_with("localhost/")
}

fn app_armor_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let mut setters = Vec::new();
    let mut values = BTreeSet::new();
    if let Some(p) = pod
        .security_context()
        .and_then(|sc| sc.app_armor_profile.as_ref())
        && !allowed_type(&p.type_)
    {
        setters.push("pod".to_owned());
        values.insert(p.type_.clone());
    }
    let mut bad = Vec::new();
    for c in pod.containers() {
        if let Some(p) = c
            .security_context
            .and_then(|sc| sc.app_armor_profile.as_ref())
            && !allowed_type(&p.type_)
        {
            bad.push(c.name);
            values.insert(p.type_.clone());
        }
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    let mut annotations: Vec<String> = pod
        .annotations
        .iter()
        .filter(|(k, v)| k.starts_with(ANNOTATION_PREFIX) && !allowed_annotation(v))
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    // Profile types first (sorted), then the annotations (sorted), in one list.
    let mut listed: Vec<String> = values.into_iter().collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_owned());
        listed.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    Some(Violation::new(
        CHECK.id,
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            listed.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&listed)
        ),
    ))
}
