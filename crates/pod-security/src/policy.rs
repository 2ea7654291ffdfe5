//! A namespace's policy: the level (and version) each mode — enforce, audit, warn —
//! applies, read from the `pod-security.kubernetes.io/*` labels over the
//! configured defaults.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::level::{INVALID_LEVEL_DETAIL, INVALID_VERSION_DETAIL, Level, LevelVersion, Version};
use crate::quote::go_quote;

/// Prefix of every PodSecurity label and audit annotation.
pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
/// Level whose violations reject a pod.
pub const ENFORCE_LEVEL_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// Version of the enforce level.
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
/// Level whose violations are recorded in the audit log.
pub const AUDIT_LEVEL_LABEL: &str = "pod-security.kubernetes.io/audit";
/// Version of the audit level.
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
/// Level whose violations are returned as warnings.
pub const WARN_LEVEL_LABEL: &str = "pod-security.kubernetes.io/warn";
/// Version of the warn level.
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

/// The level and version of each mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// Violations reject the pod (pods only; workloads are never rejected).
    pub enforce: LevelVersion,
    /// Violations are recorded as the `pod-security.kubernetes.io/audit-violations`
    /// audit annotation.
    pub audit: LevelVersion,
    /// Violations are returned to the client as warnings.
    pub warn: LevelVersion,
}

/// A PodSecurity label whose value Kubernetes rejects, as the field error of a
/// namespace create or update (`metadata.labels[…]: Invalid value: "x": …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    /// The label key.
    pub label: &'static str,
    /// The rejected value.
    pub value: String,
    /// Why: `must be one of privileged, baseline, restricted` or
    /// `must be "latest" or "v1.x"`.
    pub detail: &'static str,
}

impl LabelError {
    /// The field path: `metadata.labels[pod-security.kubernetes.io/enforce]`.
    pub fn field(&self) -> String {
        format!("metadata.labels[{}]", self.label)
    }
}

impl fmt::Display for LabelError {
    /// Kubernetes' field error text: `field: Invalid value: "x": detail`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: Invalid value: {}: {}",
            self.field(),
            go_quote(&self.value),
            self.detail
        )
    }
}

/// Several label errors as one, the way Kubernetes aggregates them: the message
/// alone when there is one, `[a, b]` otherwise.
pub(crate) fn aggregate(errors: &[LabelError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The labels in the order Kubernetes reads (and reports) them.
const LABEL_ORDER: [&str; 6] = [
    ENFORCE_LEVEL_LABEL,
    ENFORCE_VERSION_LABEL,
    AUDIT_LEVEL_LABEL,
    AUDIT_VERSION_LABEL,
    WARN_LEVEL_LABEL,
    WARN_VERSION_LABEL,
];

/// A level label: `None` when absent, `Some(None)` when set but invalid (recorded in
/// `errors`).
fn read_level(
    key: &'static str,
    value: Option<&str>,
    errors: &mut Vec<LabelError>,
) -> Option<Option<Level>> {
    let value = value?;
    let parsed = value.parse::<Level>().ok();
    if parsed.is_none() {
        errors.push(LabelError {
            label: key,
            value: value.to_owned(),
            detail: INVALID_LEVEL_DETAIL,
        });
    }
    Some(parsed)
}

/// A version label: `None` when absent; `latest` when invalid (recorded in
/// `errors`).
fn read_version(
    key: &'static str,
    value: Option<&str>,
    errors: &mut Vec<LabelError>,
) -> Option<Version> {
    let value = value?;
    Some(value.parse::<Version>().unwrap_or_else(|_| {
        errors.push(LabelError {
            label: key,
            value: value.to_owned(),
            detail: INVALID_VERSION_DETAIL,
        });
        Version::Latest
    }))
}

impl Policy {
    /// Every mode at `privileged:latest` (Kubernetes' default configuration).
    pub fn privileged() -> Self {
        Self::default()
    }

    /// The namespace policy from its labels over `defaults`, and the labels that
    /// were invalid. As Kubernetes does it:
    ///
    /// - an invalid enforce level enforces `restricted` (fails closed); an invalid
    ///   audit or warn level means `privileged` for that mode (fails open);
    /// - an invalid version means `latest`;
    /// - when an enforce level is set (validly) but no warn level, warn takes the
    ///   enforce level (and its version, unless a warn version is set) if that is
    ///   stricter than the default warn level.
    pub fn from_labels(
        labels: &BTreeMap<String, String>,
        defaults: &Policy,
    ) -> (Policy, Vec<LabelError>) {
        Self::from_lookup(|k| labels.get(k).map(String::as_str), defaults)
    }

    /// [`Policy::from_labels`] reading `metadata.labels` of a namespace object
    /// (labels whose values are not strings are ignored).
    pub fn from_namespace(namespace: &Value, defaults: &Policy) -> (Policy, Vec<LabelError>) {
        let labels = namespace.pointer("/metadata/labels");
        Self::from_lookup(
            |k| labels.and_then(|l| l.get(k)).and_then(Value::as_str),
            defaults,
        )
    }

    fn from_lookup<'a>(
        label: impl Fn(&str) -> Option<&'a str>,
        defaults: &Policy,
    ) -> (Policy, Vec<LabelError>) {
        let mut p = *defaults;
        let mut errors = Vec::new();
        let mut level = |key| read_level(key, label(key), &mut errors);
        let enforce_level = level(ENFORCE_LEVEL_LABEL);
        let audit_level = level(AUDIT_LEVEL_LABEL);
        let warn_level = level(WARN_LEVEL_LABEL);
        let mut version = |key| read_version(key, label(key), &mut errors);
        let enforce_version = version(ENFORCE_VERSION_LABEL);
        let audit_version = version(AUDIT_VERSION_LABEL);
        let warn_version = version(WARN_VERSION_LABEL);
        // Kubernetes reports the errors in label order: enforce, enforce-version,
        // audit, audit-version, warn, warn-version.
        errors.sort_by_key(|e| LABEL_ORDER.iter().position(|k| *k == e.label));

        if let Some(l) = enforce_level {
            p.enforce.level = l.unwrap_or(Level::Restricted); // fail closed
        }
        if let Some(v) = enforce_version {
            p.enforce.version = v;
        }
        if let Some(l) = audit_level {
            p.audit.level = l.unwrap_or(Level::Privileged); // fail open
        }
        if let Some(v) = audit_version {
            p.audit.version = v;
        }
        if let Some(l) = warn_level {
            p.warn.level = l.unwrap_or(Level::Privileged); // fail open
        }
        if let Some(v) = warn_version {
            p.warn.version = v;
        }
        let has_enforce_level = matches!(enforce_level, Some(Some(_)));
        if warn_level.is_none() && has_enforce_level && p.enforce.level > p.warn.level {
            p.warn.level = p.enforce.level;
            if warn_version.is_none() {
                p.warn.version = p.enforce.version;
            }
        }
        (p, errors)
    }

    /// Every mode privileged: nothing to check.
    pub fn is_fully_privileged(&self) -> bool {
        self.enforce.level == Level::Privileged
            && self.audit.level == Level::Privileged
            && self.warn.level == Level::Privileged
    }

    /// Every mode [equivalent](LevelVersion::equivalent) to `other`'s.
    pub fn equivalent(&self, other: &Policy) -> bool {
        self.enforce.equivalent(&other.enforce)
            && self.audit.equivalent(&other.audit)
            && self.warn.equivalent(&other.warn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn lv(level: Level, version: Version) -> LevelVersion {
        LevelVersion::new(level, version)
    }

    #[test]
    fn no_labels_mean_the_defaults() {
        let (p, errs) = Policy::from_labels(&BTreeMap::new(), &Policy::privileged());
        assert_eq!(p, Policy::privileged());
        assert!(errs.is_empty());
        assert!(p.is_fully_privileged());
    }

    #[test]
    fn each_mode_reads_its_level_and_version() {
        let (p, errs) = Policy::from_labels(
            &labels(&[
                (ENFORCE_LEVEL_LABEL, "baseline"),
                (ENFORCE_VERSION_LABEL, "v1.25"),
                (AUDIT_LEVEL_LABEL, "restricted"),
                (WARN_LEVEL_LABEL, "restricted"),
                (WARN_VERSION_LABEL, "v1.30"),
            ]),
            &Policy::privileged(),
        );
        assert!(errs.is_empty());
        assert_eq!(p.enforce, lv(Level::Baseline, Version::V1(25)));
        assert_eq!(p.audit, lv(Level::Restricted, Version::Latest));
        assert_eq!(p.warn, lv(Level::Restricted, Version::V1(30)));
    }

    #[test]
    fn an_enforce_level_alone_also_warns_at_that_level_and_version() {
        let (p, _) = Policy::from_labels(
            &labels(&[
                (ENFORCE_LEVEL_LABEL, "restricted"),
                (ENFORCE_VERSION_LABEL, "v1.28"),
            ]),
            &Policy::privileged(),
        );
        assert_eq!(p.warn, lv(Level::Restricted, Version::V1(28)));
        assert_eq!(p.audit, lv(Level::Privileged, Version::Latest));
        // An explicit warn version is kept.
        let (p, _) = Policy::from_labels(
            &labels(&[
                (ENFORCE_LEVEL_LABEL, "baseline"),
                (ENFORCE_VERSION_LABEL, "v1.28"),
                (WARN_VERSION_LABEL, "v1.20"),
            ]),
            &Policy::privileged(),
        );
        assert_eq!(p.warn, lv(Level::Baseline, Version::V1(20)));
        // An explicit warn level wins even when weaker.
        let (p, _) = Policy::from_labels(
            &labels(&[
                (ENFORCE_LEVEL_LABEL, "restricted"),
                (WARN_LEVEL_LABEL, "privileged"),
            ]),
            &Policy::privileged(),
        );
        assert_eq!(p.warn.level, Level::Privileged);
    }

    #[test]
    fn an_invalid_enforce_level_fails_closed_and_does_not_set_warn() {
        let (p, errs) = Policy::from_labels(
            &labels(&[(ENFORCE_LEVEL_LABEL, "strict")]),
            &Policy::privileged(),
        );
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(p.warn.level, Level::Privileged);
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#
            ]
        );
    }

    #[test]
    fn invalid_audit_and_warn_levels_fail_open_and_invalid_versions_mean_latest() {
        let defaults = Policy {
            enforce: lv(Level::Baseline, Version::V1(20)),
            audit: lv(Level::Baseline, Version::V1(20)),
            warn: lv(Level::Baseline, Version::V1(20)),
        };
        let (p, errs) = Policy::from_labels(
            &labels(&[
                (AUDIT_LEVEL_LABEL, "Restricted"),
                (WARN_LEVEL_LABEL, ""),
                (ENFORCE_VERSION_LABEL, "1.30"),
            ]),
            &defaults,
        );
        assert_eq!(p.audit, lv(Level::Privileged, Version::V1(20)));
        assert_eq!(p.warn, lv(Level::Privileged, Version::V1(20)));
        assert_eq!(p.enforce, lv(Level::Baseline, Version::Latest));
        assert_eq!(errs.len(), 3);
        assert_eq!(
            aggregate(&errs),
            "[metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: \"1.30\": must be \"latest\" or \"v1.x\", \
             metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: \"Restricted\": must be one of privileged, baseline, restricted, \
             metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: \"\": must be one of privileged, baseline, restricted]"
        );
    }

    #[test]
    fn labels_are_read_from_a_namespace_object() {
        let ns = serde_json::json!({"metadata": {"name": "x", "labels": {
            ENFORCE_LEVEL_LABEL: "baseline", AUDIT_LEVEL_LABEL: 3
        }}});
        let (p, errs) = Policy::from_namespace(&ns, &Policy::privileged());
        assert!(errs.is_empty());
        assert_eq!(p.enforce.level, Level::Baseline);
        assert_eq!(p.audit.level, Level::Privileged);
    }
}
