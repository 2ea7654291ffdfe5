//! The PodSecurity admission decision for one request (Kubernetes'
//! `pod-security-admission/admission`), as a pure function of the request, the
//! namespace and the configuration: whether to reject, which warnings to return and
//! which audit annotations to record.
//!
//! - Pods (create, update, and subresources that change the spec such as
//!   `ephemeralcontainers`): rejected when they violate the enforce level; warned
//!   about at the warn level and audited at the audit level.
//! - Workloads with a pod template: never rejected, only warned and audited.
//! - Namespaces: invalid PodSecurity labels are rejected; tightening the enforce
//!   level warns about existing pods that would now be rejected.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::evaluator::{DecodedPod, Evaluator};
use crate::level::{Level, LevelVersion, Version};
use crate::policy::{LABEL_PREFIX, LabelError, Policy, aggregate};
use crate::quote::go_quote;
use crate::template::{PodTemplate, has_pod_template, pod_template};
use crate::violation::{Violation, forbidden_message, violations_reason, warning_message};

/// Requests PodSecurity lets through without evaluation (Kubernetes'
/// `PodSecurityExemptions`). Exact matches only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exemptions {
    /// Authenticated usernames whose requests are not checked.
    pub usernames: Vec<String>,
    /// Namespaces whose pods are not checked.
    pub namespaces: Vec<String>,
    /// Pods (and templates) with one of these `runtimeClassName`s are not checked.
    pub runtime_classes: Vec<String>,
}

/// PodSecurity's configuration (Kubernetes' `PodSecurityConfiguration`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The policy of namespaces without labels (Kubernetes' default: every mode
    /// `privileged:latest`).
    pub defaults: Policy,
    /// Requests not checked.
    pub exemptions: Exemptions,
}

/// The request operations PodSecurity looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Create.
    Create,
    /// Update (including patch and apply).
    Update,
}

/// One admission request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Create or update.
    pub operation: Operation,
    /// API group of the resource ("" for core).
    pub group: &'a str,
    /// Resource plural (`pods`, `deployments`, `namespaces`, …).
    pub resource: &'a str,
    /// Subresource ("" for the main resource).
    pub subresource: &'a str,
    /// Namespace of the object (for namespaces, their own name or "").
    pub namespace: &'a str,
    /// Object name, after `generateName` was resolved (falls back to
    /// `object.metadata.name` when empty).
    pub name: &'a str,
    /// The requesting user's name.
    pub username: &'a str,
    /// The object as it would be stored (after defaulting).
    pub object: &'a Value,
    /// The stored object, for updates.
    pub old_object: Option<&'a Value>,
}

/// Why a request is rejected; each is one Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// 403 `Forbidden`, with `details: {name, kind: "pods"}` and this message
    /// (`pods "x" is forbidden: violates PodSecurity "restricted:latest": …`).
    Forbidden {
        /// The Status message.
        message: String,
    },
    /// 422 `Invalid` for a namespace: `Namespace "x" is invalid: <errors>` with one
    /// cause per label (`FieldValueInvalid`, field [`LabelError::field`]).
    Invalid {
        /// The namespace name.
        name: String,
        /// The invalid labels.
        errors: Vec<LabelError>,
    },
    /// 400 `BadRequest`: the pod could not be read.
    BadRequest {
        /// The Status message.
        message: String,
    },
    /// 500 `InternalError`: the pod's namespace could not be read.
    Internal {
        /// The error (`failed to lookup namespace "x"`); Kubernetes' Status message
        /// prefixes it with `Internal error occurred: `.
        message: String,
    },
}

/// The outcome of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Set when the request is rejected.
    pub denial: Option<Denial>,
    /// `Warning` headers (each sent as `299 - "<text>"`).
    pub warnings: Vec<String>,
    /// Audit annotations, keys already prefixed `pod-security.kubernetes.io/`
    /// (`enforce-policy`, `audit-violations`, `exempt`, `error`).
    pub audit_annotations: BTreeMap<String, String>,
    /// Namespace updates that tighten the enforce level: list the namespace's pods
    /// and append [`Admission::existing_pods_warnings`] for this level to
    /// `warnings`.
    pub check_existing_pods: Option<LevelVersion>,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }

    fn annotate(mut self, key: &str, value: impl Into<String>) -> Self {
        self.audit_annotations
            .insert(format!("{LABEL_PREFIX}{key}"), value.into());
        self
    }

    fn exempt(reason: &str) -> Self {
        Decision::default().annotate("exempt", reason)
    }
}

/// Pod subresources that never change what PodSecurity checks.
const IGNORED_POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

/// At most this many existing pods are checked when a namespace's enforce level is
/// tightened…
const NAMESPACE_MAX_PODS_TO_CHECK: usize = 3000;
/// …within this time.
const NAMESPACE_POD_CHECK_BUDGET: Duration = Duration::from_secs(1);

/// The warning to return when the namespace's pods cannot be listed for
/// [`Decision::check_existing_pods`].
pub const LIST_PODS_FAILED_WARNING: &str =
    "failed to list pods while checking new PodSecurity enforce level";

/// The PodSecurity admission plugin: configuration and evaluator.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    config: Config,
    evaluator: Evaluator,
}

impl Admission {
    /// A plugin with `config`, evaluating with `evaluator`.
    pub fn new(config: Config, evaluator: Evaluator) -> Self {
        Self { config, evaluator }
    }

    /// Whether PodSecurity looks at requests for this resource at all: pods,
    /// namespaces and the resources with a pod template.
    pub fn handles(group: &str, resource: &str) -> bool {
        (group.is_empty() && resource == "namespaces") || has_pod_template(group, resource)
    }

    /// The decision for `request`. `namespace` is the object's namespace as stored
    /// (`None` when it could not be read); it is not used for namespace requests.
    /// Requests for resources PodSecurity does not handle are allowed untouched.
    pub fn validate(&self, request: &Request<'_>, namespace: Option<&Value>) -> Decision {
        match (request.group, request.resource) {
            ("", "namespaces") => self.validate_namespace(request),
            ("", "pods") => self.validate_pod(request, namespace),
            (g, r) if has_pod_template(g, r) => self.validate_pod_controller(request, namespace),
            _ => Decision::default(),
        }
    }

    fn exempt_namespace(&self, namespace: &str) -> bool {
        !namespace.is_empty()
            && self
                .config
                .exemptions
                .namespaces
                .iter()
                .any(|n| n == namespace)
    }

    fn exempt_user(&self, username: &str) -> bool {
        !username.is_empty()
            && self
                .config
                .exemptions
                .usernames
                .iter()
                .any(|u| u == username)
    }

    fn exempt_runtime_class(&self, runtime_class: Option<&str>) -> bool {
        runtime_class.is_some_and(|rc| {
            !rc.is_empty()
                && self
                    .config
                    .exemptions
                    .runtime_classes
                    .iter()
                    .any(|r| r == rc)
        })
    }

    fn validate_pod(&self, req: &Request<'_>, namespace: Option<&Value>) -> Decision {
        if IGNORED_POD_SUBRESOURCES.contains(&req.subresource) {
            return Decision::default();
        }
        if self.exempt_namespace(req.namespace) {
            return Decision::exempt("namespace");
        }
        if self.exempt_user(req.username) {
            return Decision::exempt("user");
        }
        let Some(namespace) = namespace else {
            let message = format!("failed to lookup namespace {}", go_quote(req.namespace));
            return Decision {
                denial: Some(Denial::Internal {
                    message: message.clone(),
                }),
                ..Decision::default()
            }
            .annotate("error", message);
        };
        let (policy, errors) = Policy::from_namespace(namespace, &self.config.defaults);
        if errors.is_empty() && policy.is_fully_privileged() {
            let privileged = LevelVersion::new(Level::Privileged, Version::Latest);
            return Decision::default().annotate("enforce-policy", privileged.to_string());
        }
        let pod = match decode(pod_template("", "pods", req.object)) {
            Ok(Some(pod)) => pod,
            failed => {
                let detail = match failed {
                    Err(e) => format!("failed to decode object: {e}"),
                    Ok(_) => "failed to decode object".to_owned(),
                };
                return Decision {
                    denial: Some(Denial::BadRequest {
                        message: "failed to decode object".to_owned(),
                    }),
                    ..Decision::default()
                }
                .annotate("error", detail);
            }
        };
        if req.operation == Operation::Update
            && let Some(old) = req.old_object
            && !significant_pod_update(req.object, old)
        {
            return Decision::default();
        }
        let name = if req.name.is_empty() {
            req.object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
        } else {
            req.name
        };
        self.evaluate(&policy, &errors, &pod, Some(name))
    }

    fn validate_pod_controller(&self, req: &Request<'_>, namespace: Option<&Value>) -> Decision {
        if !req.subresource.is_empty() {
            return Decision::default();
        }
        if self.exempt_namespace(req.namespace) {
            return Decision::exempt("namespace");
        }
        if self.exempt_user(req.username) {
            return Decision::exempt("user");
        }
        let Some(namespace) = namespace else {
            return Decision::default().annotate(
                "error",
                format!("failed to lookup namespace {}", go_quote(req.namespace)),
            );
        };
        let (policy, errors) = Policy::from_namespace(namespace, &self.config.defaults);
        if errors.is_empty()
            && policy.warn.level == Level::Privileged
            && policy.audit.level == Level::Privileged
        {
            return Decision::default();
        }
        match decode(pod_template(req.group, req.resource, req.object)) {
            Ok(Some(pod)) => self.evaluate(&policy, &errors, &pod, None),
            Ok(None) => Decision::default(),
            Err(e) => Decision::default()
                .annotate("error", format!("failed to extract pod template: {e}")),
        }
    }

    /// Evaluates a decoded pod; `pod_name` is set for pods (enforced), `None` for
    /// workload templates (warned and audited only).
    fn evaluate(
        &self,
        policy: &Policy,
        policy_errors: &[LabelError],
        pod: &DecodedPod,
        pod_name: Option<&str>,
    ) -> Decision {
        if self.exempt_runtime_class(pod.runtime_class_name()) {
            return Decision::exempt("runtimeClass");
        }
        let mut decision = Decision::default();
        if !policy_errors.is_empty() {
            decision = decision.annotate(
                "error",
                format!("Failed to parse policy: {}", aggregate(policy_errors)),
            );
        }
        let view = pod.view();
        let mut cache: Vec<(LevelVersion, Vec<Violation>)> = Vec::new();
        let mut results = |level: LevelVersion| -> Vec<Violation> {
            if let Some((_, v)) = cache.iter().find(|(l, _)| *l == level) {
                return v.clone();
            }
            let v = self.evaluator.evaluate(&level, &view);
            cache.push((level, v.clone()));
            v
        };
        if let Some(name) = pod_name {
            decision = decision.annotate("enforce-policy", policy.enforce.to_string());
            let violations = results(policy.enforce);
            if !violations.is_empty() {
                decision.denial = Some(Denial::Forbidden {
                    message: forbidden_message(name, &policy.enforce, &violations),
                });
            }
        }
        let violations = results(policy.audit);
        if !violations.is_empty() {
            decision = decision.annotate(
                "audit-violations",
                warning_message(&policy.audit, &violations),
            );
        }
        // No warnings on a request that is rejected anyway.
        if decision.denial.is_none() {
            let violations = results(policy.warn);
            if !violations.is_empty() {
                decision
                    .warnings
                    .push(warning_message(&policy.warn, &violations));
            }
        }
        decision
    }

    fn validate_namespace(&self, req: &Request<'_>) -> Decision {
        if !req.subresource.is_empty() {
            return Decision::default();
        }
        let name = if req.name.is_empty() {
            req.object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
        } else {
            req.name
        };
        let (new, new_errors) = Policy::from_namespace(req.object, &self.config.defaults);
        let invalid = |errors: Vec<LabelError>| Decision {
            denial: Some(Denial::Invalid {
                name: name.to_owned(),
                errors,
            }),
            ..Decision::default()
        };
        if req.operation == Operation::Create {
            if !new_errors.is_empty() {
                return invalid(new_errors);
            }
            return self.exempt_namespace_decision(name, &new, req.object);
        }
        let (old, old_errors) = Policy::from_namespace(
            req.old_object.unwrap_or(&Value::Null),
            &self.config.defaults,
        );
        // Labels that were already invalid do not block unrelated updates.
        if !new_errors.is_empty() && (old_errors.is_empty() || new_errors != old_errors) {
            return invalid(new_errors);
        }
        if new.enforce == old.enforce
            || new.enforce.level == Level::Privileged
            || (new.enforce.version == old.enforce.version
                && new.enforce.level <= old.enforce.level)
        {
            return Decision::default();
        }
        if self.exempt_namespace(name) {
            return self.exempt_namespace_decision(name, &new, req.object);
        }
        Decision {
            check_existing_pods: Some(new.enforce),
            ..Decision::default()
        }
    }

    /// For exempt namespaces that set a policy of their own: a warning that it is
    /// ignored.
    fn exempt_namespace_decision(
        &self,
        name: &str,
        policy: &Policy,
        namespace: &Value,
    ) -> Decision {
        let mut decision = Decision::default();
        if !self.exempt_namespace(name)
            || policy.is_fully_privileged()
            || policy.equivalent(&self.config.defaults)
        {
            return decision;
        }
        let labels = namespace.pointer("/metadata/labels");
        let has = |key: &str| labels.and_then(|l| l.get(key)).is_some();
        let modes = [
            ("enforce", policy.enforce),
            ("audit", policy.audit),
            ("warn", policy.warn),
        ];
        let parts: Vec<String> = modes
            .iter()
            .filter(|(mode, lv)| {
                lv.level != Level::Privileged
                    && (has(&format!("{LABEL_PREFIX}{mode}"))
                        || has(&format!("{LABEL_PREFIX}{mode}-version")))
            })
            .map(|(mode, lv)| format!("{mode}={lv}"))
            .collect();
        decision.warnings.push(format!(
            "namespace {} is exempt from Pod Security, and the policy ({}) will be ignored",
            go_quote(name),
            parts.join(", ")
        ));
        decision
    }

    /// The warnings for a namespace whose enforce level is being tightened to
    /// `enforce` (see [`Decision::check_existing_pods`]), given its pods: one line
    /// per distinct set of violations naming the first pod (by name) and how many
    /// others share it. At most 3000 pods are checked, for at most one second; one
    /// pod per controller is checked first.
    pub fn existing_pods_warnings(
        &self,
        namespace: &str,
        enforce: &LevelVersion,
        pods: &[Value],
    ) -> Vec<String> {
        let started = Instant::now();
        let pods = self.prioritize(pods);
        let total = pods.len();
        let mut checked = total.min(NAMESPACE_MAX_PODS_TO_CHECK);
        // reason -> (lexically first pod name, count), in order of first sight.
        let mut seen: Vec<(String, String, usize)> = Vec::new();
        for (i, pod) in pods.iter().take(NAMESPACE_MAX_PODS_TO_CHECK).enumerate() {
            let violations = match decode(pod_template("", "pods", pod)) {
                Ok(Some(decoded)) => self.evaluator.evaluate(enforce, &decoded.view()),
                _ => Vec::new(),
            };
            if !violations.is_empty() {
                let reason = violations_reason(&violations);
                let name = pod
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match seen.iter_mut().find(|(r, _, _)| *r == reason) {
                    Some((_, first, count)) => {
                        if name < first.as_str() {
                            *first = name.to_owned();
                        }
                        *count += 1;
                    }
                    None => seen.push((reason, name.to_owned(), 1)),
                }
            }
            if started.elapsed() > NAMESPACE_POD_CHECK_BUDGET {
                checked = i + 1;
                break;
            }
        }
        let mut warnings = Vec::new();
        if checked < total {
            warnings.push(format!(
                "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
            ));
        }
        if !seen.is_empty() {
            warnings.push(format!(
                "existing pods in namespace {} violate the new PodSecurity enforce level {}",
                go_quote(namespace),
                go_quote(&enforce.to_string())
            ));
        }
        let mut per_pod: Vec<String> = seen
            .into_iter()
            .map(|(reason, first, count)| match count {
                1 => format!("{first}: {reason}"),
                2 => format!("{first} (and 1 other pod): {reason}"),
                n => format!("{first} (and {} other pods): {reason}", n - 1),
            })
            .collect();
        per_pod.sort();
        warnings.extend(per_pod);
        warnings
    }

    /// Pods not exempt by runtime class, the first pod of each controller (and pods
    /// without one) ahead of the controllers' other pods.
    fn prioritize<'a>(&self, pods: &'a [Value]) -> Vec<&'a Value> {
        let mut first = Vec::new();
        let mut duplicates = Vec::new();
        let mut controllers: Vec<&str> = Vec::new();
        for pod in pods {
            let runtime_class = pod
                .pointer("/spec/runtimeClassName")
                .and_then(Value::as_str);
            if self.exempt_runtime_class(runtime_class) {
                continue;
            }
            match controller_uid(pod) {
                None => first.push(pod),
                Some(uid) if controllers.contains(&uid) => duplicates.push(pod),
                Some(uid) => {
                    controllers.push(uid);
                    first.push(pod);
                }
            }
        }
        first.extend(duplicates);
        first
    }
}

/// Decodes the template's annotations and spec.
fn decode(template: Option<PodTemplate<'_>>) -> Result<Option<DecodedPod>, crate::Error> {
    let Some(t) = template else {
        return Ok(None);
    };
    DecodedPod::decode(t.metadata, t.spec, t.annotations_path, t.spec_path).map(Some)
}

/// The UID of the pod's controlling owner, if any.
fn controller_uid(pod: &Value) -> Option<&str> {
    pod.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
}

/// Whether a pod update can change the outcome: Kubernetes re-evaluates only when
/// containers are added or removed or a container image changes (the rest of a
/// pod's security-relevant spec is immutable).
fn significant_pod_update(new: &Value, old: &Value) -> bool {
    fn list<'a>(pod: &'a Value, key: &str) -> &'a [Value] {
        pod.get("spec")
            .and_then(|s| s.get(key))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
    fn image(c: &Value) -> &str {
        c.get("image").and_then(Value::as_str).unwrap_or_default()
    }
    for key in ["containers", "initContainers"] {
        let (n, o) = (list(new, key), list(old, key));
        if n.len() != o.len() || n.iter().zip(o).any(|(a, b)| image(a) != image(b)) {
            return true;
        }
    }
    let old_ephemeral = list(old, "ephemeralContainers");
    list(new, "ephemeralContainers").iter().any(|c| {
        let name = c.get("name");
        match old_ephemeral.iter().find(|o| o.get("name") == name) {
            None => true,
            Some(o) => image(o) != image(c),
        }
    })
}
