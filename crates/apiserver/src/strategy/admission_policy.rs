//! ValidatingAdmissionPolicies and their bindings (Kubernetes'
//! `pkg/registry/admissionregistration/validatingadmissionpolicy{,binding}` and
//! `pkg/apis/admissionregistration/validation`): defaults, validation with
//! Kubernetes' field paths and messages, and the CEL every expression is compiled
//! with — a policy whose expression does not compile is refused at create, as
//! `spec.validations[0].expression: Invalid value: "...": compilation failed: ...`.
//! The admission plugin (`admission::policy`) compiles stored policies with the
//! same [`cel`] module.

use std::collections::BTreeSet;

use api::status::FieldError;
use serde_json::{Value, json};

use super::Strategy;
use super::admission_rules::{strings, text, validate_label_selector};

pub(crate) mod cel;
mod library;
mod rules;

use cel::{Returns, Scope};
use rules::{path_segment_problems, validate_match_resources};

const FAILURE_POLICIES: [&str; 2] = ["Fail", "Ignore"];
const REASONS: [&str; 3] = ["Forbidden", "Invalid", "RequestEntityTooLarge"];
const ACTIONS: [&str; 3] = ["Audit", "Deny", "Warn"];
const NOT_FOUND_ACTIONS: [&str; 2] = ["Deny", "Allow"];
/// Words CEL reserves, which a variable may not be named.
const CEL_RESERVED: [&str; 22] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
    "",
];

/// `admissionregistration.k8s.io/v1` ValidatingAdmissionPolicy.
pub(crate) struct ValidatingAdmissionPolicyStrategy;

/// `admissionregistration.k8s.io/v1` ValidatingAdmissionPolicyBinding.
pub(crate) struct ValidatingAdmissionPolicyBindingStrategy;

impl Strategy for ValidatingAdmissionPolicyStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if spec.get("failurePolicy").is_none_or(Value::is_null) {
            spec.insert("failurePolicy".into(), json!("Fail"));
        }
        if let Some(m) = spec.get_mut("matchConstraints").filter(|m| m.is_object()) {
            default_match_resources(m);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_policy(obj)
    }
    fn tracks_generation(&self) -> bool {
        true
    }
}

impl Strategy for ValidatingAdmissionPolicyBindingStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(m) = obj
            .pointer_mut("/spec/matchResources")
            .filter(|m| m.is_object())
        {
            default_match_resources(m);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_binding(obj)
    }
    fn tracks_generation(&self) -> bool {
        true
    }
}

/// The strategy of `validatingadmissionpolicies` or `validatingadmissionpolicybindings`.
pub(crate) fn for_plural(plural: &str) -> &'static dyn Strategy {
    if plural == "validatingadmissionpolicybindings" {
        &ValidatingAdmissionPolicyBindingStrategy
    } else {
        &ValidatingAdmissionPolicyStrategy
    }
}

/// `SetDefaults_MatchResources` and `SetDefaults_Rule`.
fn default_match_resources(m: &mut Value) {
    let Some(map) = m.as_object_mut() else {
        return;
    };
    if map.get("matchPolicy").is_none_or(Value::is_null) {
        map.insert("matchPolicy".into(), json!("Equivalent"));
    }
    for selector in ["namespaceSelector", "objectSelector"] {
        if map.get(selector).is_none_or(Value::is_null) {
            map.insert(selector.into(), json!({}));
        }
    }
    for rules in ["resourceRules", "excludeResourceRules"] {
        for rule in map
            .get_mut(rules)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(r) = rule.as_object_mut()
                && r.get("scope").is_none_or(Value::is_null)
            {
                r.insert("scope".into(), json!("*"));
            }
        }
    }
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// `ValidateValidatingAdmissionPolicy` (the spec; metadata is checked by the
/// REST layer).
fn validate_policy(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let has_params = spec.get("paramKind").is_some_and(|p| !p.is_null());
    match spec.get("failurePolicy").filter(|v| !v.is_null()) {
        None => errs.push(FieldError::required("spec.failurePolicy", "")),
        Some(p) if !p.as_str().is_some_and(|p| FAILURE_POLICIES.contains(&p)) => errs.push(
            FieldError::not_supported("spec.failurePolicy", p.clone(), &FAILURE_POLICIES),
        ),
        Some(_) => {}
    }
    if let Some(kind) = spec.get("paramKind").filter(|p| !p.is_null()) {
        validate_param_kind(&mut errs, kind);
    }
    match spec.get("matchConstraints").filter(|m| !m.is_null()) {
        None => errs.push(FieldError::required("spec.matchConstraints", "")),
        Some(m) => {
            validate_match_resources(&mut errs, m, "spec.matchConstraints");
            if items(m, "resourceRules").is_empty() {
                errs.push(FieldError::required(
                    "spec.matchConstraints.resourceRules",
                    "",
                ));
            }
        }
    }
    let matching = Scope {
        params: has_params,
        authorizer: true,
        variables: None,
    };
    validate_match_conditions(&mut errs, items(spec, "matchConditions"), matching);
    let names: Vec<String> = items(spec, "variables")
        .iter()
        .map(|v| text(v, "name").to_string())
        .collect();
    for (i, variable) in items(spec, "variables").iter().enumerate() {
        let at = format!("spec.variables[{i}]");
        let name = text(variable, "name");
        if name.trim().is_empty() {
            errs.push(FieldError::required(
                format!("{at}.name"),
                "name is not specified",
            ));
        } else if !is_cel_identifier(name) {
            errs.push(FieldError::invalid(
                format!("{at}.name"),
                name,
                "name is not a valid CEL identifier",
            ));
        }
        let expression = text(variable, "expression");
        if expression.trim().is_empty() {
            errs.push(FieldError::required(
                format!("{at}.expression"),
                "expression is not specified",
            ));
        } else {
            let scope = Scope {
                variables: Some(&names[..i]),
                ..matching
            };
            check_expression(
                &mut errs,
                expression,
                scope,
                Returns::Any,
                &at,
                "expression",
            );
        }
    }
    let variables = (!names.is_empty()).then_some(names.as_slice());
    let validations = items(spec, "validations");
    let annotations = items(spec, "auditAnnotations");
    if validations.is_empty() && annotations.is_empty() {
        let detail = "validations or auditAnnotations must contain at least one item";
        errs.push(FieldError::required("spec.validations", detail));
        errs.push(FieldError::required("spec.auditAnnotations", detail));
    }
    for (i, v) in validations.iter().enumerate() {
        let scope = Scope {
            variables,
            ..matching
        };
        validate_validation(&mut errs, v, scope, &format!("spec.validations[{i}]"));
    }
    if annotations.len() > 20 {
        errs.push(FieldError::invalid(
            "spec.auditAnnotations",
            json!(annotations),
            "must not have more than 20 auditAnnotations",
        ));
    }
    let policy_name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut keys = BTreeSet::new();
    for (i, a) in annotations.iter().enumerate() {
        let at = format!("spec.auditAnnotations[{i}]");
        let key = text(a, "key");
        if policy_name.is_empty() {
            errs.push(FieldError::invalid(
                format!("{at}.key"),
                key,
                "requires metadata.name be non-empty",
            ));
        } else {
            let qualified = format!("{policy_name}/{key}");
            for problem in api::selector::is_qualified_name(&qualified) {
                errs.push(FieldError::invalid(
                    format!("{at}.key"),
                    qualified.as_str(),
                    problem,
                ));
            }
        }
        if !keys.insert(key.to_string()) {
            errs.push(FieldError::duplicate(format!("{at}.key"), key));
        }
        let value = text(a, "valueExpression").trim();
        if value.is_empty() {
            errs.push(FieldError::required(
                format!("{at}.valueExpression"),
                "valueExpression is not specified",
            ));
        } else if value.len() > 5 * 1024 {
            errs.push(FieldError::required(
                format!("{at}.valueExpression"),
                "must not exceed 5120 bytes in length",
            ));
        } else {
            let scope = Scope {
                variables,
                ..matching
            };
            check_expression(
                &mut errs,
                value,
                scope,
                Returns::Any,
                &at,
                "valueExpression",
            );
        }
    }
    errs
}

/// Compiles one expression; a failure is `<at>.<field>: Invalid value: "<expr>": <detail>`.
fn check_expression(
    errs: &mut Vec<FieldError>,
    expression: &str,
    scope: Scope<'_>,
    returns: Returns,
    at: &str,
    field: &str,
) {
    if let Err(detail) = cel::compile(expression, scope, returns) {
        errs.push(FieldError::invalid(
            format!("{at}.{field}"),
            expression,
            detail,
        ));
    }
}

fn validate_validation(errs: &mut Vec<FieldError>, v: &Value, scope: Scope<'_>, at: &str) {
    let expression = text(v, "expression");
    if expression.trim().is_empty() {
        errs.push(FieldError::required(
            format!("{at}.expression"),
            "expression is not specified",
        ));
    } else {
        check_expression(errs, expression, scope, Returns::Bool, at, "expression");
    }
    let message_expression = text(v, "messageExpression");
    if !message_expression.is_empty() && message_expression.trim().is_empty() {
        errs.push(FieldError::invalid(
            format!("{at}.messageExpression"),
            message_expression,
            "must be non-empty if specified",
        ));
    } else if !message_expression.is_empty() {
        let scope = Scope {
            authorizer: false,
            ..scope
        };
        check_expression(
            errs,
            message_expression,
            scope,
            Returns::String,
            at,
            "messageExpression",
        );
    }
    let message = text(v, "message");
    if !message.is_empty() && message.trim().is_empty() {
        errs.push(FieldError::invalid(
            format!("{at}.message"),
            message,
            "message must be non-empty if specified",
        ));
    } else if message.trim().contains(['\n', '\r']) {
        errs.push(FieldError::invalid(
            format!("{at}.message"),
            message,
            "message must not contain line breaks",
        ));
    }
    if let Some(reason) = v.get("reason").filter(|r| !r.is_null())
        && !reason.as_str().is_some_and(|r| REASONS.contains(&r))
    {
        errs.push(FieldError::not_supported(
            format!("{at}.reason"),
            reason.clone(),
            &REASONS,
        ));
    }
}

fn validate_match_conditions(errs: &mut Vec<FieldError>, conditions: &[Value], scope: Scope<'_>) {
    if conditions.len() > 64 {
        errs.push(FieldError {
            kind: api::status::FieldErrorType::TooMany,
            field: "spec.matchConditions".into(),
            value: Some(json!(conditions.len())),
            detail: "must have at most 64 items".into(),
        });
    }
    let mut names = BTreeSet::new();
    for (i, c) in conditions.iter().enumerate() {
        let at = format!("spec.matchConditions[{i}]");
        let expression = text(c, "expression").trim();
        if expression.is_empty() {
            errs.push(FieldError::required(format!("{at}.expression"), ""));
        } else {
            check_expression(errs, expression, scope, Returns::Bool, &at, "expression");
        }
        let name = text(c, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{at}.name"), ""));
        } else {
            for problem in api::selector::is_qualified_name(name) {
                errs.push(FieldError::invalid(format!("{at}.name"), name, problem));
            }
            if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{at}.name"), name));
            }
        }
    }
}

/// `[_a-zA-Z][_a-zA-Z0-9]*` and not a reserved word.
fn is_cel_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !CEL_RESERVED.contains(&name)
}

fn validate_param_kind(errs: &mut Vec<FieldError>, kind: &Value) {
    let api_version = text(kind, "apiVersion");
    let at = "spec.paramKind";
    if api_version.is_empty() {
        errs.push(FieldError::required(format!("{at}.apiVersion"), ""));
    } else {
        let (group, version) = match api_version.matches('/').count() {
            0 => ("", api_version),
            1 => api_version.split_once('/').unwrap_or(("", api_version)),
            _ => {
                errs.push(FieldError::invalid(
                    format!("{at}.apiVersion"),
                    api_version,
                    format!("unexpected GroupVersion string: {api_version}"),
                ));
                ("", "")
            }
        };
        if !group.is_empty() {
            let problems = api::selector::is_dns1123_subdomain(group);
            if !problems.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{at}.apiVersion"),
                    group,
                    problems.join(","),
                ));
            }
        }
        if version.is_empty() && api_version.matches('/').count() <= 1 {
            errs.push(FieldError::invalid(
                format!("{at}.apiVersion"),
                api_version,
                "version must be specified",
            ));
        } else if !version.is_empty() {
            let problems = api::selector::is_dns1035_label(version);
            if !problems.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{at}.apiVersion"),
                    version,
                    problems.join(","),
                ));
            }
        }
    }
    let kind_name = text(kind, "kind");
    if kind_name.is_empty() {
        errs.push(FieldError::required(format!("{at}.kind"), ""));
    } else {
        let problems = api::selector::is_dns1035_label(&kind_name.to_lowercase());
        if !problems.is_empty() {
            errs.push(FieldError::invalid(
                format!("{at}.kind"),
                kind_name,
                format!(
                    "may have mixed case, but should otherwise match: {}",
                    problems.join(",")
                ),
            ));
        }
    }
}

/// `ValidateValidatingAdmissionPolicyBinding` (the spec).
fn validate_binding(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let policy = text(spec, "policyName");
    if policy.is_empty() {
        errs.push(FieldError::required("spec.policyName", ""));
    } else {
        for problem in api::selector::is_dns1123_subdomain(policy) {
            errs.push(FieldError::invalid("spec.policyName", policy, problem));
        }
    }
    if let Some(r) = spec.get("paramRef").filter(|r| !r.is_null()) {
        validate_param_ref(&mut errs, r);
    }
    if let Some(m) = spec.get("matchResources").filter(|m| !m.is_null()) {
        validate_match_resources(&mut errs, m, "spec.matchResources");
    }
    let actions = strings(spec, "validationActions");
    let mut seen = BTreeSet::new();
    for (i, action) in actions.iter().enumerate() {
        let at = format!("spec.validationActions[{i}]");
        if !ACTIONS.contains(&action.as_str()) {
            errs.push(FieldError::not_supported(&at, action.as_str(), &ACTIONS));
        }
        if !seen.insert(action.as_str()) {
            errs.push(FieldError::duplicate(&at, action.as_str()));
        }
    }
    if seen.contains("Deny") && seen.contains("Warn") {
        errs.push(FieldError::invalid(
            "spec.validationActions",
            json!(actions),
            "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
        ));
    }
    if seen.is_empty() {
        errs.push(FieldError::required(
            "spec.validationActions",
            "at least one validation action is required",
        ));
    }
    errs
}

fn validate_param_ref(errs: &mut Vec<FieldError>, r: &Value) {
    let at = "spec.paramRef";
    let name = text(r, "name");
    let selector = r.get("selector").filter(|s| !s.is_null());
    if !name.is_empty() {
        for problem in path_segment_problems(name) {
            errs.push(FieldError::invalid(format!("{at}.name"), name, problem));
        }
        if selector.is_some() {
            errs.push(FieldError::forbidden(
                format!("{at}.name"),
                "name and selector are mutually exclusive",
            ));
        }
    }
    if let Some(s) = selector {
        validate_label_selector(errs, s, &format!("{at}.selector"));
        if !name.is_empty() {
            errs.push(FieldError::forbidden(
                format!("{at}.selector"),
                "name and selector are mutually exclusive",
            ));
        }
    }
    if name.is_empty() && selector.is_none() {
        errs.push(FieldError::required(
            at,
            "one of name or selector must be specified",
        ));
    }
    match r.get("parameterNotFoundAction").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required(
            format!("{at}.parameterNotFoundAction"),
            "",
        )),
        Some(a) if !NOT_FOUND_ACTIONS.contains(&a) => errs.push(FieldError::not_supported(
            format!("{at}.parameterNotFoundAction"),
            a,
            &NOT_FOUND_ACTIONS,
        )),
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(spec: Value) -> Value {
        let mut obj = json!({"metadata": {"name": "demo-policy.example.com"}, "spec": spec});
        ValidatingAdmissionPolicyStrategy.default(&mut obj);
        obj
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    fn deployments() -> Value {
        json!({"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]})
    }

    #[test]
    fn the_documented_example_is_valid_and_defaulted() {
        let obj = policy(json!({
            "matchConstraints": deployments(),
            "validations": [{"expression": "object.spec.replicas <= 5"}],
        }));
        assert_eq!(obj["spec"]["failurePolicy"], "Fail");
        assert_eq!(obj["spec"]["matchConstraints"]["matchPolicy"], "Equivalent");
        assert_eq!(
            obj["spec"]["matchConstraints"]["namespaceSelector"],
            json!({})
        );
        assert_eq!(
            obj["spec"]["matchConstraints"]["resourceRules"][0]["scope"],
            "*"
        );
        assert_eq!(messages(&validate_policy(&obj)), Vec::<String>::new());
    }

    #[test]
    fn a_syntax_error_is_refused_with_the_compile_message() {
        let obj = policy(json!({
            "matchConstraints": deployments(),
            "validations": [{"expression": "object.spec.replicas <="}],
        }));
        let errs = messages(&validate_policy(&obj));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "spec.validations[0].expression: Invalid value: \"object.spec.replicas <=\": compilation failed: ERROR: <input>:1:24: Syntax error:"
            ),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn required_fields_and_bad_values_are_named() {
        let obj = json!({"metadata": {"name": "p"}, "spec": {
            "failurePolicy": "Sometimes",
            "paramKind": {"apiVersion": "v1"},
            "matchConstraints": {"matchPolicy": "Exact", "namespaceSelector": {}, "objectSelector": {},
                "resourceRules": [{"apiGroups": [], "apiVersions": ["v1"], "operations": ["PATCH"],
                                   "resources": ["*", "pods"]}]},
            "variables": [{"name": "1x", "expression": "1"}],
            "validations": [{"expression": "true", "reason": "Teapot", "message": "a\nb"}],
        }});
        let errs = messages(&validate_policy(&obj));
        for want in [
            "spec.failurePolicy: Unsupported value: \"Sometimes\": supported values: \"Fail\", \"Ignore\"",
            "spec.paramKind.kind: Required value",
            "spec.matchConstraints.resourceRules[0].operations[0]: Unsupported value: \"PATCH\": supported values: \"*\", \"CONNECT\", \"CREATE\", \"DELETE\", \"UPDATE\"",
            "spec.matchConstraints.resourceRules[0].apiGroups: Required value",
            "spec.matchConstraints.resourceRules[0].resources: Invalid value: [\"*\",\"pods\"]: if '*' is present, must not specify other resources without subresources",
            "spec.variables[0].name: Invalid value: \"1x\": name is not a valid CEL identifier",
            "spec.validations[0].reason: Unsupported value: \"Teapot\": supported values: \"Forbidden\", \"Invalid\", \"RequestEntityTooLarge\"",
            "spec.validations[0].message: Invalid value: \"a\\nb\": message must not contain line breaks",
        ] {
            assert!(
                errs.iter().any(|e| e == want),
                "missing {want:?} in {errs:#?}"
            );
        }
        let empty = policy(json!({"matchConstraints": {}}));
        let errs = messages(&validate_policy(&empty));
        assert!(errs.contains(&"spec.matchConstraints.resourceRules: Required value".to_string()));
        assert!(errs.contains(
            &"spec.validations: Required value: validations or auditAnnotations must contain at least one item".to_string()
        ));
    }

    #[test]
    fn params_and_variables_are_in_scope_only_when_declared() {
        let obj = policy(json!({
            "matchConstraints": deployments(),
            "validations": [{"expression": "object.spec.replicas <= params.max"}],
        }));
        let errs = messages(&validate_policy(&obj));
        assert!(
            errs[0].contains("undeclared reference to 'params'"),
            "{errs:?}"
        );
        let obj = policy(json!({
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": deployments(),
            "variables": [{"name": "limit", "expression": "int(params.data.max)"}],
            "validations": [{"expression": "object.spec.replicas <= variables.limit",
                             "messageExpression": "'at most ' + string(variables.limit)"}],
        }));
        assert_eq!(messages(&validate_policy(&obj)), Vec::<String>::new());
    }

    #[test]
    fn bindings_need_a_policy_and_consistent_actions() {
        let mut obj = json!({"metadata": {"name": "b"}, "spec": {
            "validationActions": ["Deny", "Warn", "Deny"],
            "paramRef": {"name": "x", "selector": {}},
            "matchResources": {"namespaceSelector": {"matchLabels": {"environment": "test"}}},
        }});
        ValidatingAdmissionPolicyBindingStrategy.default(&mut obj);
        assert_eq!(obj["spec"]["matchResources"]["objectSelector"], json!({}));
        let errs = messages(&validate_binding(&obj));
        for want in [
            "spec.policyName: Required value",
            "spec.validationActions[2]: Duplicate value: \"Deny\"",
            "spec.validationActions: Invalid value: [\"Deny\",\"Warn\",\"Deny\"]: must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
            "spec.paramRef.name: Forbidden: name and selector are mutually exclusive",
            "spec.paramRef.parameterNotFoundAction: Required value",
        ] {
            assert!(
                errs.iter().any(|e| e == want),
                "missing {want:?} in {errs:#?}"
            );
        }
        let ok = json!({"metadata": {"name": "b"}, "spec": {
            "policyName": "demo-policy.example.com", "validationActions": ["Warn", "Audit"]}});
        assert_eq!(messages(&validate_binding(&ok)), Vec::<String>::new());
    }
}
