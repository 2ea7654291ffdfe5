//! Kubernetes' Pod Security Standards as a pure library, like
//! `k8s.io/pod-security-admission`: the `privileged`, `baseline` and `restricted`
//! levels at each policy version, the `pod-security.kubernetes.io/*` namespace
//! labels, every baseline and restricted check (over containers, init containers
//! and ephemeral containers), the messages Kubernetes words from them, and the
//! PodSecurity admission decision (enforce, audit, warn, exemptions).
//!
//! No IO: the API server feeds objects as JSON and turns a [`Decision`] into a
//! Forbidden/Invalid `Status`, `Warning` headers and audit annotations.
//!
//! ```
//! use pod_security::{Level, Version, check_pod_value, forbidden_message, LevelVersion};
//! let pod = serde_json::json!({
//!     "metadata": {"name": "x"},
//!     "spec": {"containers": [{"name": "c", "image": "busybox",
//!         "securityContext": {"privileged": true}}]}
//! });
//! let v = check_pod_value(Level::Baseline, Version::Latest, &pod["metadata"], &pod["spec"]).unwrap();
//! let enforce = LevelVersion::new(Level::Baseline, Version::Latest);
//! assert_eq!(
//!     forbidden_message("x", &enforce, &v),
//!     r#"pods "x" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#
//! );
//! ```

mod admission;
mod checks;
mod error;
mod evaluator;
mod level;
mod policy;
mod quote;
mod template;
mod violation;

pub use admission::{
    Admission, Config, Decision, Denial, Exemptions, LIST_PODS_FAILED_WARNING, Operation, Request,
};
pub use error::Error;
pub use evaluator::{Evaluator, check_pod, check_pod_value};
pub use level::{Level, LevelVersion, Version};
pub use policy::{
    AUDIT_LEVEL_LABEL, AUDIT_VERSION_LABEL, ENFORCE_LEVEL_LABEL, ENFORCE_VERSION_LABEL,
    LABEL_PREFIX, LabelError, Policy, WARN_LEVEL_LABEL, WARN_VERSION_LABEL,
};
pub use template::{PodTemplate, has_pod_template, pod_template};
pub use violation::{
    Violation, forbidden_message, violations_detail, violations_reason, warning_message,
};
