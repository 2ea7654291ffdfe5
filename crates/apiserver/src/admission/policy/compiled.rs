//! Stored policies and bindings in the form requests use them: selectors parsed,
//! every expression compiled once per object version (Kubernetes' policy source
//! compiles on informer events the same way). An expression that does not
//! compile (validation refuses those, but a stored object may predate a rule)
//! is kept as its error, reported when the policy runs, as Kubernetes does.

use std::collections::BTreeMap;

use api::selector::LabelSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

use super::matching::MatchResources;
use crate::strategy::admission_policy::cel::{self, Expression, Returns, Scope};

/// What happens when a policy cannot be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailurePolicy {
    /// The request is refused (the default).
    Fail,
    /// The policy is skipped.
    Ignore,
}

/// An expression, or why it does not compile.
pub(crate) type Compiled = Result<Expression, String>;

/// One entry of `spec.validations`.
#[derive(Debug)]
pub(crate) struct Validation {
    pub expression: Compiled,
    /// The expression as written (for `failed expression: ...`).
    pub source: String,
    pub message: String,
    pub message_expression: Option<Compiled>,
    /// `Invalid` unless the validation names another reason.
    pub reason: &'static str,
}

/// A ValidatingAdmissionPolicy ready to run.
#[derive(Debug)]
pub(crate) struct Policy {
    pub name: String,
    /// The spec it was compiled from (a new object version with the same spec
    /// reuses the compiled policy).
    pub spec: Value,
    pub failure_policy: FailurePolicy,
    /// `spec.paramKind` as (apiVersion, kind).
    pub param_kind: Option<(String, String)>,
    pub match_constraints: MatchResources,
    pub match_conditions: Vec<(String, Compiled)>,
    pub variables: Vec<(String, Compiled)>,
    pub validations: Vec<Validation>,
    /// Set when the policy cannot be used at all; reported on every matching
    /// request (`failed to configure policy: ...`).
    pub configuration_error: Option<String>,
}

/// What a binding does with a failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Deny,
    Warn,
    Audit,
}

/// A binding's `paramRef`.
#[derive(Debug, Clone)]
pub(crate) struct ParamRef {
    pub name: String,
    pub namespace: String,
    pub selector: Option<LabelSelector>,
    /// `parameterNotFoundAction: Deny`.
    pub deny_if_missing: bool,
}

/// A ValidatingAdmissionPolicyBinding ready to run.
#[derive(Debug)]
pub(crate) struct Binding {
    pub name: String,
    pub spec: Value,
    pub policy_name: String,
    pub actions: Vec<Action>,
    pub param_ref: Option<ParamRef>,
    pub match_resources: Option<MatchResources>,
    /// Set when the binding cannot be used (`failed to configure binding: ...`).
    pub configuration_error: Option<String>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The reasons a validation may give, as the `'static` strings errors carry.
fn reason(v: &Value) -> &'static str {
    match v.get("reason").and_then(Value::as_str) {
        Some("Forbidden") => "Forbidden",
        Some("Unauthorized") => "Unauthorized",
        Some("RequestEntityTooLarge") => "RequestEntityTooLarge",
        _ => "Invalid",
    }
}

impl Policy {
    /// Compiles a stored policy.
    pub(crate) fn compile(name: &str, obj: &Value) -> Policy {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let param_kind = spec
            .get("paramKind")
            .filter(|p| p.is_object())
            .map(|p| (text(p, "apiVersion"), text(p, "kind")));
        let (match_constraints, configuration_error) =
            match spec.get("matchConstraints").filter(|m| m.is_object()) {
                Some(m) => MatchResources::parse_lenient(m),
                None => (MatchResources::nothing(), None),
            };
        let base = Scope {
            params: param_kind.is_some(),
            authorizer: true,
            variables: None,
        };
        let match_conditions = list(spec, "matchConditions")
            .iter()
            .map(|c| {
                let expression = text(c, "expression");
                (
                    text(c, "name"),
                    cel::compile(&expression, base, Returns::Bool),
                )
            })
            .collect();
        let names: Vec<String> = list(spec, "variables")
            .iter()
            .map(|v| text(v, "name"))
            .collect();
        let variables = list(spec, "variables")
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let scope = Scope {
                    variables: Some(&names[..i]),
                    ..base
                };
                (
                    names[i].clone(),
                    cel::compile(&text(v, "expression"), scope, Returns::Any),
                )
            })
            .collect();
        let scope = Scope {
            variables: (!names.is_empty()).then_some(names.as_slice()),
            ..base
        };
        let validations = list(spec, "validations")
            .iter()
            .map(|v| {
                let source = text(v, "expression");
                let message_expression = Some(text(v, "messageExpression"))
                    .filter(|m| !m.trim().is_empty())
                    .map(|m| {
                        let scope = Scope {
                            authorizer: false,
                            ..scope
                        };
                        cel::compile(&m, scope, Returns::String)
                    });
                Validation {
                    expression: cel::compile(&source, scope, Returns::Bool),
                    source,
                    message: text(v, "message"),
                    message_expression,
                    reason: reason(v),
                }
            })
            .collect();
        Policy {
            name: name.to_string(),
            spec: spec.clone(),
            failure_policy: match spec.get("failurePolicy").and_then(Value::as_str) {
                Some("Ignore") => FailurePolicy::Ignore,
                _ => FailurePolicy::Fail,
            },
            param_kind,
            match_constraints,
            match_conditions,
            variables,
            validations,
            configuration_error,
        }
    }
}

fn label_selector(v: &Value) -> Result<LabelSelector, String> {
    let parsed: metav1::LabelSelector =
        serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    LabelSelector::from_label_selector(&parsed).map_err(|e| e.to_string())
}

impl Binding {
    /// Reads a stored binding.
    pub(crate) fn compile(name: &str, obj: &Value) -> Binding {
        let null = Value::Null;
        let spec = obj.get("spec").unwrap_or(&null);
        let mut configuration_error = None;
        let match_resources = spec
            .get("matchResources")
            .filter(|m| m.is_object())
            .map(|m| {
                let (parsed, error) = MatchResources::parse_lenient(m);
                configuration_error = configuration_error.take().or(error);
                parsed
            });
        let param_ref = spec
            .get("paramRef")
            .filter(|r| r.is_object())
            .map(|r| ParamRef {
                name: text(r, "name"),
                namespace: text(r, "namespace"),
                selector: r.get("selector").filter(|s| s.is_object()).map(|s| {
                    label_selector(s).unwrap_or_else(|e| {
                        configuration_error = Some(e);
                        LabelSelector::nothing()
                    })
                }),
                deny_if_missing: r.get("parameterNotFoundAction").and_then(Value::as_str)
                    == Some("Deny"),
            });
        let actions = list(spec, "validationActions")
            .iter()
            .filter_map(|a| match a.as_str() {
                Some("Deny") => Some(Action::Deny),
                Some("Warn") => Some(Action::Warn),
                Some("Audit") => Some(Action::Audit),
                _ => None,
            })
            .collect();
        Binding {
            name: name.to_string(),
            spec: spec.clone(),
            policy_name: text(spec, "policyName"),
            actions,
            param_ref,
            match_resources,
            configuration_error,
        }
    }
}

/// The compiled policies and bindings by name: what the follower keeps and
/// republishes as a [`Bound`] list after each change.
#[derive(Default)]
pub(crate) struct Objects {
    pub policies: BTreeMap<String, std::sync::Arc<Policy>>,
    pub bindings: BTreeMap<String, std::sync::Arc<Binding>>,
}

/// Every policy that has bindings, with them, ordered by name.
pub(crate) type Bound = Vec<(std::sync::Arc<Policy>, Vec<std::sync::Arc<Binding>>)>;

impl Objects {
    /// Sets (or with `None` removes) one policy; an unchanged spec keeps the
    /// compiled one.
    pub(crate) fn set_policy(&mut self, name: &str, obj: Option<&Value>) {
        match obj {
            None => {
                self.policies.remove(name);
            }
            Some(obj) => {
                let spec = obj.get("spec").unwrap_or(&Value::Null);
                if self.policies.get(name).is_some_and(|p| p.spec == *spec) {
                    return;
                }
                self.policies.insert(
                    name.to_string(),
                    std::sync::Arc::new(Policy::compile(name, obj)),
                );
            }
        }
    }

    /// Sets (or with `None` removes) one binding.
    pub(crate) fn set_binding(&mut self, name: &str, obj: Option<&Value>) {
        match obj {
            None => {
                self.bindings.remove(name);
            }
            Some(obj) => {
                let spec = obj.get("spec").unwrap_or(&Value::Null);
                if self.bindings.get(name).is_some_and(|b| b.spec == *spec) {
                    return;
                }
                self.bindings.insert(
                    name.to_string(),
                    std::sync::Arc::new(Binding::compile(name, obj)),
                );
            }
        }
    }

    /// Policies with their bindings; a binding of a missing policy is ignored,
    /// as is a policy nothing binds.
    pub(crate) fn bound(&self) -> Bound {
        let mut by_policy: BTreeMap<&str, Vec<std::sync::Arc<Binding>>> = BTreeMap::new();
        for b in self.bindings.values() {
            by_policy.entry(&b.policy_name).or_default().push(b.clone());
        }
        by_policy
            .into_iter()
            .filter_map(|(name, bindings)| Some((self.policies.get(name)?.clone(), bindings)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_bound_policies_are_published_and_unchanged_specs_are_not_recompiled() {
        let mut objects = Objects::default();
        let policy = json!({"metadata": {"name": "p"}, "spec": {
            "failurePolicy": "Ignore",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["deployments"]}]},
            "validations": [{"expression": "object.spec.replicas <= 5", "reason": "Forbidden"}]}});
        objects.set_policy("p", Some(&policy));
        assert!(
            objects.bound().is_empty(),
            "a policy without binding has no effect"
        );
        objects.set_binding(
            "b",
            Some(&json!({"spec": {"policyName": "p", "validationActions": ["Deny"]}})),
        );
        objects.set_binding(
            "orphan",
            Some(&json!({"spec": {"policyName": "missing", "validationActions": ["Deny"]}})),
        );
        let bound = objects.bound();
        assert_eq!(bound.len(), 1);
        assert_eq!(bound[0].0.failure_policy, FailurePolicy::Ignore);
        assert_eq!(bound[0].0.validations[0].reason, "Forbidden");
        assert_eq!(bound[0].1[0].actions, vec![Action::Deny]);
        let before = bound[0].0.clone();
        let mut status_only = policy.clone();
        status_only["status"] = json!({"observedGeneration": 1});
        objects.set_policy("p", Some(&status_only));
        assert!(std::sync::Arc::ptr_eq(&before, &objects.bound()[0].0));
        objects.set_binding("b", None);
        assert!(
            objects.bound().is_empty(),
            "deleting the binding stops enforcement"
        );
    }

    #[test]
    fn a_stored_expression_that_does_not_compile_keeps_its_error() {
        let p = Policy::compile(
            "p",
            &json!({"spec": {"validations": [{"expression": "object.spec.replicas <"}]}}),
        );
        assert!(
            p.validations[0]
                .expression
                .as_ref()
                .is_err_and(|e| e.starts_with("compilation failed: ERROR: <input>:1:23"))
        );
    }
}
