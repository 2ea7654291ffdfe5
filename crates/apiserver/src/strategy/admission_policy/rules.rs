//! Kubernetes' validation of what a policy or binding matches: `MatchResources`
//! (match policy, label selectors, resource rules with operations, groups,
//! versions, resources and scope) and resource names. Rules and selectors are
//! checked as for webhook configurations ([`crate::strategy::admission_rules`]).

use std::collections::BTreeSet;

use api::status::FieldError;
use serde_json::Value;

use super::{items, strings};
use crate::strategy::admission_rules::{validate_label_selector, validate_rule};

const MATCH_POLICIES: [&str; 2] = ["Equivalent", "Exact"];

/// `validateMatchResources`.
pub(super) fn validate_match_resources(errs: &mut Vec<FieldError>, m: &Value, at: &str) {
    match m.get("matchPolicy").filter(|v| !v.is_null()) {
        None => errs.push(FieldError::required(format!("{at}.matchPolicy"), "")),
        Some(p) if !p.as_str().is_some_and(|p| MATCH_POLICIES.contains(&p)) => errs.push(
            FieldError::not_supported(format!("{at}.matchPolicy"), p.clone(), &MATCH_POLICIES),
        ),
        Some(_) => {}
    }
    for selector in ["namespaceSelector", "objectSelector"] {
        match m.get(selector).filter(|v| !v.is_null()) {
            None => errs.push(FieldError::required(format!("{at}.{selector}"), "")),
            Some(s) => validate_label_selector(errs, s, &format!("{at}.{selector}")),
        }
    }
    for rules in ["resourceRules", "excludeResourceRules"] {
        for (i, rule) in items(m, rules).iter().enumerate() {
            validate_named_rule(errs, rule, &format!("{at}.{rules}[{i}]"));
        }
    }
}

/// `validateNamedRuleWithOperations`: resource names, then the rule.
fn validate_named_rule(errs: &mut Vec<FieldError>, rule: &Value, at: &str) {
    let mut seen = BTreeSet::new();
    for (i, name) in strings(rule, "resourceNames").iter().enumerate() {
        for problem in path_segment_problems(name) {
            errs.push(FieldError::invalid(
                format!("{at}.resourceNames[{i}]"),
                name.as_str(),
                problem,
            ));
        }
        if !seen.insert(name.clone()) {
            errs.push(FieldError::duplicate(
                format!("{at}.resourceNames[{i}]"),
                name.as_str(),
            ));
        }
    }
    validate_rule(errs, rule, at);
}

/// `path.ValidatePathSegmentName`.
pub(super) fn path_segment_problems(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(**bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}
