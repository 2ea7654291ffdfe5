//! Validation shared by the `admissionregistration.k8s.io` kinds (webhook
//! configurations, ValidatingAdmissionPolicies and their bindings): the rules of
//! what a webhook or policy matches (`RuleWithOperations`) and label selectors,
//! with Kubernetes' field paths and messages
//! (`pkg/apis/admissionregistration/validation`).

use std::collections::BTreeSet;

use api::status::FieldError;
use serde_json::{Value, json};

const OPERATIONS: [&str; 5] = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
const SCOPES: [&str; 3] = ["*", "Cluster", "Namespaced"];

/// The string at `key` (empty when absent or not a string).
pub(super) fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The list of strings at `key` (empty when absent; an item that is not a
/// string reads as empty).
pub(super) fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `validateRuleWithOperations`: operations, API groups and versions, resources
/// and scope of one rule at `at`.
pub(super) fn validate_rule(errs: &mut Vec<FieldError>, rule: &Value, at: &str) {
    let operations = strings(rule, "operations");
    if operations.is_empty() {
        errs.push(FieldError::required(format!("{at}.operations"), ""));
    }
    if operations.len() > 1 && operations.iter().any(|o| o == "*") {
        errs.push(FieldError::invalid(
            format!("{at}.operations"),
            json!(operations),
            "if '*' is present, must not specify other operations",
        ));
    }
    for (i, op) in operations.iter().enumerate() {
        if !OPERATIONS.contains(&op.as_str()) {
            errs.push(FieldError::not_supported(
                format!("{at}.operations[{i}]"),
                op.as_str(),
                &OPERATIONS,
            ));
        }
    }
    for (key, what) in [("apiGroups", "API groups"), ("apiVersions", "API versions")] {
        let values = strings(rule, key);
        if values.is_empty() {
            errs.push(FieldError::required(format!("{at}.{key}"), ""));
        }
        if values.len() > 1 && values.iter().any(|v| v == "*") {
            errs.push(FieldError::invalid(
                format!("{at}.{key}"),
                json!(values),
                format!("if '*' is present, must not specify other {what}"),
            ));
        }
        if key == "apiVersions" {
            for (i, v) in values.iter().enumerate() {
                if v.is_empty() {
                    errs.push(FieldError::required(format!("{at}.{key}[{i}]"), ""));
                }
            }
        }
    }
    validate_resources(
        errs,
        &strings(rule, "resources"),
        &format!("{at}.resources"),
    );
    if let Some(scope) = rule.get("scope").filter(|s| !s.is_null())
        && !scope.as_str().is_some_and(|s| SCOPES.contains(&s))
    {
        errs.push(FieldError::not_supported(
            format!("{at}.scope"),
            scope.clone(),
            &SCOPES,
        ));
    }
}

/// `validateResources`: `resource`, `resource/subresource`, `*`, `*/*`,
/// `resource/*` and `*/subresource`, without contradicting wildcards.
fn validate_resources(errs: &mut Vec<FieldError>, resources: &[String], at: &str) {
    if resources.is_empty() {
        errs.push(FieldError::required(at, ""));
    }
    let mut with_wildcard_sub = BTreeSet::new();
    let mut sub_with_wildcard_res = BTreeSet::new();
    let (mut double, mut single, mut plain) = (false, false, false);
    for (i, res_sub) in resources.iter().enumerate() {
        if res_sub.is_empty() {
            errs.push(FieldError::required(format!("{at}[{i}]"), ""));
            continue;
        }
        double |= res_sub == "*/*";
        single |= res_sub == "*";
        let Some((res, sub)) = res_sub.split_once('/') else {
            plain = res_sub != "*";
            continue;
        };
        if with_wildcard_sub.contains(res) {
            errs.push(FieldError::invalid(
                format!("{at}[{i}]"),
                res_sub.as_str(),
                format!("if '{res}/*' is present, must not specify {res_sub}"),
            ));
        }
        if sub_with_wildcard_res.contains(sub) {
            errs.push(FieldError::invalid(
                format!("{at}[{i}]"),
                res_sub.as_str(),
                format!("if '*/{sub}' is present, must not specify {res_sub}"),
            ));
        }
        if sub == "*" {
            with_wildcard_sub.insert(res.to_string());
        }
        if res == "*" {
            sub_with_wildcard_res.insert(sub.to_string());
        }
    }
    if resources.len() > 1 && double {
        errs.push(FieldError::invalid(
            at,
            json!(resources),
            "if '*/*' is present, must not specify other resources",
        ));
    }
    if single && plain {
        errs.push(FieldError::invalid(
            at,
            json!(resources),
            "if '*' is present, must not specify other resources without subresources",
        ));
    }
}

/// `metav1validation.ValidateLabelSelector` (keys must be qualified names and
/// values valid label values).
pub(super) fn validate_label_selector(errs: &mut Vec<FieldError>, selector: &Value, at: &str) {
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        let field = format!("{at}.matchLabels");
        for (k, v) in labels {
            for problem in api::selector::is_qualified_name(k) {
                errs.push(FieldError::invalid(&field, k.as_str(), problem));
            }
            let value = v.as_str().unwrap_or_default();
            for problem in api::selector::is_valid_label_value(value) {
                errs.push(FieldError::invalid(&field, value, problem));
            }
        }
    }
    let expressions = selector.get("matchExpressions").and_then(Value::as_array);
    for (i, expr) in expressions.into_iter().flatten().enumerate() {
        let at = format!("{at}.matchExpressions[{i}]");
        let values = strings(expr, "values");
        match text(expr, "operator") {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                format!("{at}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(
                format!("{at}.operator"),
                other,
                "not a valid selector operator",
            )),
        }
        let key = text(expr, "key");
        for problem in api::selector::is_qualified_name(key) {
            errs.push(FieldError::invalid(format!("{at}.key"), key, problem));
        }
        for (j, v) in values.iter().enumerate() {
            for problem in api::selector::is_valid_label_value(v) {
                errs.push(FieldError::invalid(
                    format!("{at}.values[{j}]"),
                    v.as_str(),
                    problem,
                ));
            }
        }
    }
}
