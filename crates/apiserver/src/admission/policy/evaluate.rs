//! One policy evaluated for one request, binding and param (Kubernetes'
//! `validating.validator.Validate`): match conditions first (any `false` skips
//! the policy; errors follow the failure policy), then variables, then each
//! validation; a failed validation's message comes from `messageExpression`,
//! else `message`, else `failed expression: <expression>`.
//!
//! Kubernetes evaluates variables lazily; here they are evaluated in order
//! before the validations (a variable only sees earlier ones), and one that
//! fails is reported only where an expression uses it, worded as Kubernetes
//! words it (`composited variable "x" fails to evaluate: ...`).

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::value::Val;
use cel::objects::Key;
use cel::{ExecutionError, Value};

use super::compiled::{Compiled, FailurePolicy, Policy, Validation};
use crate::strategy::admission_policy::cel::{self as celx, Activation, Expression};

/// Kubernetes' cap on a message computed by `messageExpression`.
const MAX_MESSAGE_BYTES: usize = 5 * 1024;

/// The request's variables, converted to CEL once per request.
pub(crate) struct Inputs {
    pub object: Box<dyn Val>,
    pub old_object: Box<dyn Val>,
    pub request: Box<dyn Val>,
    pub namespace_object: Box<dyn Val>,
}

/// A validation (or an evaluation under `failurePolicy: Fail`) that refuses the
/// request, before the binding's actions decide what that means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denial {
    pub message: String,
    /// The Status reason (`Invalid` unless the validation names another).
    pub reason: &'static str,
}

/// The variables one expression sees.
struct Scope<'a> {
    inputs: &'a Inputs,
    params: &'a dyn Val,
    variables: Option<&'a dyn Val>,
    /// Variables that failed, with Kubernetes' message for each.
    failed: &'a HashMap<String, String>,
}

impl Scope<'_> {
    fn run(&self, expr: &Expression) -> Result<Value, String> {
        let activation = Activation {
            vars: [
                ("object", Some(self.inputs.object.as_ref())),
                ("oldObject", Some(self.inputs.old_object.as_ref())),
                ("request", Some(self.inputs.request.as_ref())),
                (
                    "namespaceObject",
                    Some(self.inputs.namespace_object.as_ref()),
                ),
                ("params", Some(self.params)),
                ("variables", self.variables),
            ],
        };
        expr.evaluate(&activation)
            .map_err(|e| self.explain(expr, &e))
    }

    /// A failed variable is missing from `variables`: say why instead.
    fn explain(&self, expr: &Expression, e: &ExecutionError) -> String {
        if let ExecutionError::NoSuchKey(k) = e
            && expr.variables().contains(k.as_str())
            && let Some(why) = self.failed.get(k.as_str())
        {
            return why.clone();
        }
        celx::describe(e)
    }

    /// `expression '<src>' resulted in error: ...`, or the compile error.
    fn run_compiled(&self, compiled: &Compiled) -> Result<Value, String> {
        match compiled {
            Err(e) => Err(format!("compilation error: {e}")),
            Ok(expr) => self
                .run(expr)
                .map_err(|why| format!("expression '{}' resulted in error: {why}", expr.source())),
        }
    }
}

fn variables_value(values: &[(String, Value)]) -> Box<dyn Val> {
    let map: HashMap<Key, Value> = values
        .iter()
        .map(|(k, v)| (Key::String(Arc::new(k.clone())), v.clone()))
        .collect();
    celx::bound(Value::Map(cel::objects::Map { map: Arc::new(map) }))
}

/// `utilerrors.NewAggregate(...).Error()`.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Evaluates `policy`; `params` is the param object (CEL `null` when none).
pub(crate) fn evaluate(policy: &Policy, inputs: &Inputs, params: &dyn Val) -> Vec<Denial> {
    let fail = policy.failure_policy == FailurePolicy::Fail;
    let mut failed = HashMap::new();
    // Match conditions cannot use variables (Kubernetes compiles them without).
    let conditions = Scope {
        inputs,
        params,
        variables: None,
        failed: &failed,
    };
    let mut errors = Vec::new();
    for (name, condition) in &policy.match_conditions {
        match conditions.run_compiled(condition) {
            Err(e) => errors.push(e),
            Ok(Value::Bool(false)) => {
                tracing::debug!(policy = %policy.name, condition = %name, "match condition is false");
                return Vec::new();
            }
            Ok(_) => {}
        }
    }
    if !errors.is_empty() {
        return if fail {
            vec![Denial {
                message: aggregate(&errors),
                reason: "Invalid",
            }]
        } else {
            Vec::new()
        };
    }

    let mut values: Vec<(String, Value)> = Vec::new();
    for (name, compiled) in &policy.variables {
        let so_far = variables_value(&values);
        let step = Scope {
            inputs,
            params,
            variables: Some(so_far.as_ref()),
            failed: &failed,
        };
        let outcome = match compiled {
            Err(e) => Err(format!(
                "composited variable {name:?} fails to compile: {e}"
            )),
            Ok(expr) => step
                .run(expr)
                .map_err(|why| format!("composited variable {name:?} fails to evaluate: {why}")),
        };
        match outcome {
            Ok(v) => values.push((name.clone(), v)),
            Err(why) => {
                failed.insert(name.clone(), why);
            }
        }
    }
    let all = variables_value(&values);
    let scope = Scope {
        inputs,
        params,
        variables: (!policy.variables.is_empty()).then_some(all.as_ref()),
        failed: &failed,
    };

    let mut denials = Vec::new();
    for v in &policy.validations {
        match scope.run_compiled(&v.expression) {
            Err(message) => {
                if fail {
                    denials.push(Denial {
                        message,
                        reason: "Invalid",
                    });
                } else {
                    tracing::debug!(policy = %policy.name, error = %message, "validation error ignored (failurePolicy Ignore)");
                }
            }
            Ok(Value::Bool(true)) => {}
            Ok(_) => denials.push(Denial {
                message: message(&scope, v),
                reason: v.reason,
            }),
        }
    }
    denials
}

/// The message of a failed validation.
fn message(scope: &Scope<'_>, v: &Validation) -> String {
    if let Some(compiled) = &v.message_expression {
        match scope.run_compiled(compiled) {
            Ok(Value::String(s)) => {
                let s = s.trim();
                if !s.is_empty() && s.len() <= MAX_MESSAGE_BYTES && !s.contains('\n') {
                    return s.to_string();
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "messageExpression failed"),
        }
    }
    let m = v.message.trim();
    if !m.is_empty() {
        return m.to_string();
    }
    format!("failed expression: {}", v.source.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value as Json, json};

    fn inputs(object: Json) -> Inputs {
        Inputs {
            object: celx::json(&object),
            old_object: celx::json(&Json::Null),
            request: celx::json(&json!({"operation": "CREATE", "name": "web"})),
            namespace_object: celx::json(&Json::Null),
        }
    }

    fn policy(spec: Json) -> Policy {
        Policy::compile("demo-policy.example.com", &json!({"spec": spec}))
    }

    fn run(spec: Json, object: Json, params: Json) -> Vec<Denial> {
        let params = celx::json(&params);
        evaluate(&policy(spec), &inputs(object), params.as_ref())
    }

    fn deployment(replicas: i64) -> Json {
        json!({"metadata": {"name": "web"}, "spec": {"replicas": replicas}})
    }

    #[test]
    fn the_documented_example_denies_more_than_five_replicas() {
        let spec = json!({"validations": [{"expression": "object.spec.replicas <= 5"}]});
        assert_eq!(run(spec.clone(), deployment(3), Json::Null), vec![]);
        assert_eq!(
            run(spec, deployment(6), Json::Null),
            vec![Denial {
                message: "failed expression: object.spec.replicas <= 5".into(),
                reason: "Invalid"
            }]
        );
    }

    #[test]
    fn messages_come_from_message_expression_then_message() {
        let spec = json!({"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}, "validations": [
            {"expression": "object.spec.replicas <= int(params.data.maxReplicas)",
             "messageExpression": "'object.spec.replicas must be no greater than ' + params.data.maxReplicas",
             "message": "too many", "reason": "Forbidden"},
            {"expression": "false", "messageExpression": "'two\\nlines'", "message": "fallback"},
            {"expression": "false", "messageExpression": "1 / 0 == 1 ? 'x' : 'y'"},
        ]});
        let denials = run(spec, deployment(6), json!({"data": {"maxReplicas": "5"}}));
        assert_eq!(
            denials,
            vec![
                Denial {
                    message: "object.spec.replicas must be no greater than 5".into(),
                    reason: "Forbidden"
                },
                Denial {
                    message: "fallback".into(),
                    reason: "Invalid"
                },
                Denial {
                    message: "failed expression: false".into(),
                    reason: "Invalid"
                },
            ]
        );
    }

    #[test]
    fn runtime_errors_follow_the_failure_policy() {
        let spec = |fp: &str| json!({"failurePolicy": fp, "validations": [{"expression": "object.spec.missing > 1"}]});
        assert_eq!(
            run(spec("Fail"), deployment(1), Json::Null),
            vec![Denial {
                message:
                    "expression 'object.spec.missing > 1' resulted in error: no such key: missing"
                        .into(),
                reason: "Invalid"
            }]
        );
        assert_eq!(run(spec("Ignore"), deployment(1), Json::Null), vec![]);
    }

    #[test]
    fn a_false_match_condition_skips_the_policy_and_errors_follow_the_failure_policy() {
        let spec = json!({"matchConditions": [
            {"name": "only-web", "expression": "object.metadata.name == 'web'"}],
            "validations": [{"expression": "false"}]});
        assert_eq!(run(spec.clone(), deployment(1), Json::Null).len(), 1);
        let other = json!({"metadata": {"name": "api"}, "spec": {}});
        assert_eq!(run(spec, other, Json::Null), vec![]);
        let broken = json!({"matchConditions": [
            {"name": "a", "expression": "object.nope"}, {"name": "b", "expression": "object.nada"}],
            "validations": [{"expression": "false"}]});
        assert_eq!(
            run(broken, deployment(1), Json::Null)[0].message,
            "[expression 'object.nope' resulted in error: no such key: nope, expression 'object.nada' resulted in error: no such key: nada]"
        );
    }

    #[test]
    fn variables_compose_and_a_failed_one_is_named_where_used() {
        let spec = json!({"variables": [
            {"name": "replicas", "expression": "object.spec.replicas"},
            {"name": "doubled", "expression": "variables.replicas * 2"},
            {"name": "broken", "expression": "object.spec.nope"}],
            "validations": [
                {"expression": "variables.doubled <= 10"},
                {"expression": "variables.broken == 1"}]});
        let denials = run(spec, deployment(6), Json::Null);
        assert_eq!(
            denials[0].message,
            "failed expression: variables.doubled <= 10"
        );
        assert_eq!(
            denials[1].message,
            "expression 'variables.broken == 1' resulted in error: composited variable \"broken\" fails to evaluate: no such key: nope"
        );
    }
}
