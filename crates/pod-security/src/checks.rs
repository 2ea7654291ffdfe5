//! The Pod Security Standards checks, one module per check as Kubernetes registers
//! them (`k8s.io/pod-security-admission/policy`), each with the versions at which
//! its rule changed.
//!
//! A check looks at a pod's annotations and spec and returns at most one
//! [`Violation`]; the [`Evaluator`](crate::Evaluator) picks which checks (and which
//! version of each) apply to a level at a version.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerPort, Lifecycle, PodSpec, Probe, SecurityContext};

use crate::level::Level;
use crate::violation::Violation;

mod allow_privilege_escalation;
mod app_armor;
mod capabilities;
mod host_namespaces;
mod host_ports;
mod host_probes;
mod privileged;
mod proc_mount;
mod run_as_non_root;
mod run_as_user;
mod se_linux;
mod seccomp;
mod sysctls;
mod volumes;
mod windows_host_process;

/// What a check sees of a pod (or pod template).
pub(crate) struct Pod<'a> {
    /// `metadata.annotations` (the old seccomp and AppArmor annotations).
    pub annotations: &'a BTreeMap<String, String>,
    /// The pod spec.
    pub spec: &'a PodSpec,
}

/// The fields of a container, init container or ephemeral container that checks
/// read.
pub(crate) struct ContainerRef<'a> {
    pub name: &'a str,
    pub security_context: Option<&'a SecurityContext>,
    pub ports: &'a [ContainerPort],
    pub liveness_probe: Option<&'a Probe>,
    pub readiness_probe: Option<&'a Probe>,
    pub startup_probe: Option<&'a Probe>,
    pub lifecycle: Option<&'a Lifecycle>,
}

impl<'a> Pod<'a> {
    /// Init containers, then containers, then ephemeral containers (Kubernetes'
    /// `visitContainers` order, which is the order names appear in messages).
    pub fn containers(&self) -> impl Iterator<Item = ContainerRef<'a>> + 'a {
        let spec = self.spec;
        let init = spec.init_containers.as_deref().unwrap_or_default().iter();
        let regular = spec.containers.iter();
        let plain = init.chain(regular).map(|c| ContainerRef {
            name: &c.name,
            security_context: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
            liveness_probe: c.liveness_probe.as_ref(),
            readiness_probe: c.readiness_probe.as_ref(),
            startup_probe: c.startup_probe.as_ref(),
            lifecycle: c.lifecycle.as_ref(),
        });
        let ephemeral = spec
            .ephemeral_containers
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|c| ContainerRef {
                name: &c.name,
                security_context: c.security_context.as_ref(),
                ports: c.ports.as_deref().unwrap_or_default(),
                liveness_probe: c.liveness_probe.as_ref(),
                readiness_probe: c.readiness_probe.as_ref(),
                startup_probe: c.startup_probe.as_ref(),
                lifecycle: c.lifecycle.as_ref(),
            });
        plain.chain(ephemeral)
    }

    /// `spec.os.name == "windows"`: Windows pods may not set the Linux-only fields
    /// some restricted checks require (exempt from them since v1.25).
    pub fn is_windows(&self) -> bool {
        self.spec.os.as_ref().is_some_and(|os| os.name == "windows")
    }

    /// `spec.hostUsers == false`: the pod runs in a user namespace (relaxes some
    /// checks since v1.35).
    pub fn in_user_namespace(&self) -> bool {
        self.spec.host_users == Some(false)
    }

    /// The pod-level security context, if any.
    pub fn security_context(&self) -> Option<&'a k8s_openapi::api::core::v1::PodSecurityContext> {
        self.spec.security_context.as_ref()
    }
}

/// A rule: the violation the pod commits, if any.
pub(crate) type CheckFn = fn(&Pod<'_>) -> Option<Violation>;

/// One version of a check's rule.
pub(crate) struct Versioned {
    /// The first minor version (of v1) this rule applies to.
    pub since: u32,
    /// The rule.
    pub check: CheckFn,
    /// Baseline checks this restricted check replaces while it applies.
    pub overrides: &'static [&'static str],
}

/// A registered check.
pub(crate) struct Check {
    /// Kubernetes' check ID; messages list baseline checks first, then restricted
    /// ones, each in ID order.
    pub id: &'static str,
    /// The lowest level the check belongs to (restricted includes baseline).
    pub level: Level,
    /// Rules in increasing `since` order.
    pub versions: &'static [Versioned],
}

impl Check {
    /// The rule that applies at minor version `minor`, if the check exists yet.
    pub fn at(&self, minor: u32) -> Option<&Versioned> {
        self.versions.iter().rev().find(|v| v.since <= minor)
    }
}

/// Every check, baseline ones first, each group sorted by ID (byte order, as Go
/// sorts strings): the order violations are reported in.
pub(crate) static CHECKS: &[Check] = &[
    app_armor::CHECK,
    capabilities::BASELINE,
    host_namespaces::CHECK,
    volumes::HOST_PATH,
    host_ports::CHECK,
    host_probes::CHECK,
    privileged::CHECK,
    proc_mount::BASELINE,
    se_linux::CHECK,
    seccomp::BASELINE,
    sysctls::CHECK,
    windows_host_process::CHECK,
    allow_privilege_escalation::CHECK,
    capabilities::RESTRICTED,
    proc_mount::RESTRICTED,
    volumes::RESTRICTED,
    run_as_non_root::CHECK,
    run_as_user::CHECK,
    seccomp::RESTRICTED,
];

/// The subject of a detail: `container "a"` / `containers "a", "b"`.
pub(crate) fn containers_phrase<S: AsRef<str>>(names: &[S]) -> String {
    format!(
        "{} {}",
        crate::violation::pluralize("container", "containers", names.len()),
        crate::violation::join_quote(names)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_listed_baseline_first_then_restricted_each_in_id_order() {
        let baseline: Vec<&str> = CHECKS
            .iter()
            .filter(|c| c.level == Level::Baseline)
            .map(|c| c.id)
            .collect();
        let restricted: Vec<&str> = CHECKS
            .iter()
            .filter(|c| c.level == Level::Restricted)
            .map(|c| c.id)
            .collect();
        let mut sorted_b = baseline.clone();
        sorted_b.sort_unstable();
        let mut sorted_r = restricted.clone();
        sorted_r.sort_unstable();
        assert_eq!(baseline, sorted_b);
        assert_eq!(restricted, sorted_r);
        let ids: Vec<&str> = CHECKS.iter().map(|c| c.id).collect();
        assert_eq!(ids, [baseline.clone(), restricted.clone()].concat());
        assert_eq!(baseline.len(), 12);
        assert_eq!(restricted.len(), 7);
    }

    #[test]
    fn versions_increase_and_only_restricted_checks_override_baseline_ones() {
        for c in CHECKS {
            assert!(!c.versions.is_empty(), "{}", c.id);
            assert!(
                c.versions.windows(2).all(|w| w[0].since < w[1].since),
                "{}",
                c.id
            );
            for v in c.versions {
                for o in v.overrides {
                    assert_eq!(c.level, Level::Restricted, "{} overrides {o}", c.id);
                    let target = CHECKS.iter().find(|t| t.id == *o);
                    assert_eq!(target.map(|t| t.level), Some(Level::Baseline), "{o}");
                }
            }
        }
    }
}
