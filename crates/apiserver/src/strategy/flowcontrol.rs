//! FlowSchemas and PriorityLevelConfigurations (`flowcontrol.apiserver.k8s.io/v1`):
//! Kubernetes' defaults and validation, with its field paths and messages.

use api::status::FieldError;
use serde_json::{Value, json};

use super::Strategy;
use crate::object::default_field;

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "proxy",
    "update",
    "watch",
];

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn wildcard_alone(errs: &mut Vec<FieldError>, path: &str, list: &[&str], what: &str) {
    if list.len() > 1 && list.contains(&"*") {
        errs.push(FieldError::invalid(
            path,
            json!(list),
            format!("if '*' is present, must not specify other {what}"),
        ));
    }
}

fn verbs(errs: &mut Vec<FieldError>, path: &str, rule: &Value) {
    let v = strings(rule.get("verbs"));
    let field = format!("{path}.verbs");
    if v.is_empty() {
        errs.push(FieldError::required(
            field,
            "verbs must contain at least one value",
        ));
    } else if v.contains(&"*") {
        wildcard_alone(errs, &field, &v, "verbs");
    } else if v.iter().any(|x| !VERBS.contains(x)) {
        errs.push(FieldError::not_supported(field, json!(v), VERBS));
    }
}

fn validate_url(errs: &mut Vec<FieldError>, path: String, url: &str) {
    let why = if url.is_empty() {
        Some("must not be empty")
    } else if url == "/" {
        None
    } else if !url.starts_with('/') {
        Some("must start with slash")
    } else if url.contains(' ') {
        Some("must not contain white-space")
    } else if url.contains("//") {
        Some("must not contain double slash")
    } else if url.matches('*').count() > 1 || (url.contains('*') && !url.ends_with("/*")) {
        Some("wildcard can only do suffix matching")
    } else {
        None
    };
    if let Some(why) = why {
        errs.push(FieldError::invalid(path, url, why));
    }
}

fn validate_subject(errs: &mut Vec<FieldError>, path: &str, s: &Value) {
    let kind = s.get("kind").and_then(Value::as_str).unwrap_or_default();
    let others: &[(&str, &str)] = match kind {
        "User" => &[("serviceAccount", "ServiceAccount"), ("group", "Group")],
        "Group" => &[("serviceAccount", "ServiceAccount"), ("user", "User")],
        "ServiceAccount" => &[("user", "User"), ("group", "Group")],
        _ => {
            errs.push(FieldError::not_supported(
                format!("{path}.kind"),
                kind,
                &["Group", "ServiceAccount", "User"],
            ));
            return;
        }
    };
    let own = match kind {
        "User" => "user",
        "Group" => "group",
        _ => "serviceAccount",
    };
    match s.get(own).filter(|v| !v.is_null()) {
        None => errs.push(FieldError::required(
            format!("{path}.{own}"),
            format!("{own} is required when subject kind is '{kind}'"),
        )),
        Some(v) => {
            if v.get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .is_empty()
            {
                errs.push(FieldError::required(format!("{path}.{own}.name"), ""));
            }
            if kind == "ServiceAccount"
                && v.get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .is_empty()
            {
                errs.push(FieldError::required(
                    format!("{path}.{own}.namespace"),
                    "must specify namespace for service account",
                ));
            }
        }
    }
    for (field, their_kind) in others {
        if s.get(*field).is_some_and(|v| !v.is_null()) {
            errs.push(FieldError::forbidden(
                format!("{path}.{field}"),
                format!("{field} is forbidden when subject kind is not '{their_kind}'"),
            ));
        }
    }
}

fn validate_rule(errs: &mut Vec<FieldError>, path: &str, rule: &Value) {
    let subjects = rule.get("subjects").and_then(Value::as_array);
    match subjects {
        Some(list) if !list.is_empty() => {
            for (i, s) in list.iter().enumerate() {
                validate_subject(errs, &format!("{path}.subjects[{i}]"), s);
            }
        }
        _ => errs.push(FieldError::required(
            format!("{path}.subjects"),
            "subjects must contain at least one value",
        )),
    }
    let resource_rules = rule
        .get("resourceRules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let non_resource_rules = rule
        .get("nonResourceRules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if resource_rules.is_empty() && non_resource_rules.is_empty() {
        errs.push(FieldError::required(
            path,
            "at least one of resourceRules and nonResourceRules has to be non-empty",
        ));
    }
    for (i, r) in resource_rules.iter().enumerate() {
        let p = format!("{path}.resourceRules[{i}]");
        verbs(errs, &p, r);
        let groups = strings(r.get("apiGroups"));
        if groups.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        wildcard_alone(errs, &format!("{p}.apiGroups"), &groups, "api groups");
        let resources = strings(r.get("resources"));
        if resources.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
        wildcard_alone(errs, &format!("{p}.resources"), &resources, "resources");
        let namespaces = strings(r.get("namespaces"));
        let cluster = r
            .get("clusterScope")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if namespaces.is_empty() && !cluster {
            errs.push(FieldError::required(
                format!("{p}.namespaces"),
                "resource rules that are not cluster scoped must supply at least one namespace",
            ));
        }
        wildcard_alone(errs, &format!("{p}.namespaces"), &namespaces, "namespaces");
    }
    for (i, r) in non_resource_rules.iter().enumerate() {
        let p = format!("{path}.nonResourceRules[{i}]");
        verbs(errs, &p, r);
        let urls = strings(r.get("nonResourceURLs"));
        if urls.is_empty() {
            errs.push(FieldError::required(
                format!("{p}.nonResourceURLs"),
                "nonResourceURLs must contain at least one value",
            ));
        } else if urls.contains(&"*") {
            wildcard_alone(
                errs,
                &format!("{p}.nonResourceURLs"),
                &urls,
                "non-resource URLs",
            );
        } else {
            for (j, u) in urls.iter().enumerate() {
                validate_url(errs, format!("{p}.nonResourceURLs[{j}]"), u);
            }
        }
    }
}

/// FlowSchemas.
pub(crate) struct FlowSchemaStrategy;

impl Strategy for FlowSchemaStrategy {
    fn default(&self, obj: &mut Value) {
        default_field(obj, "spec", "matchingPrecedence", json!(1000));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = crate::object::name(obj).unwrap_or_default();
        let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
        let precedence = spec
            .get("matchingPrecedence")
            .and_then(Value::as_i64)
            .unwrap_or(1000);
        if precedence <= 0 {
            errs.push(FieldError::invalid(
                "spec.matchingPrecedence",
                precedence,
                "must be a positive value",
            ));
        } else if precedence > 10_000 {
            errs.push(FieldError::invalid(
                "spec.matchingPrecedence",
                precedence,
                "must not be greater than 10000",
            ));
        } else if precedence == 1 && name != "exempt" {
            errs.push(FieldError::invalid(
                "spec.matchingPrecedence",
                precedence,
                "only the schema named 'exempt' may have matchingPrecedence 1",
            ));
        }
        if let Some(d) = spec.get("distinguisherMethod").filter(|d| !d.is_null()) {
            let t = d.get("type").and_then(Value::as_str).unwrap_or_default();
            if !matches!(t, "ByUser" | "ByNamespace") {
                errs.push(FieldError::not_supported(
                    "spec.distinguisherMethod.type",
                    t,
                    &["ByNamespace", "ByUser"],
                ));
            }
        }
        let level = spec
            .pointer("/priorityLevelConfiguration/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if level.is_empty() {
            errs.push(FieldError::required(
                "spec.priorityLevelConfiguration.name",
                "must reference a priority level",
            ));
        }
        if let Some(rules) = spec.get("rules").and_then(Value::as_array) {
            for (i, r) in rules.iter().enumerate() {
                validate_rule(&mut errs, &format!("spec.rules[{i}]"), r);
            }
        }
        errs
    }
}

/// PriorityLevelConfigurations.
pub(crate) struct PriorityLevelStrategy;

impl Strategy for PriorityLevelStrategy {
    fn default(&self, obj: &mut Value) {
        let limited = obj
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .is_some_and(|t| t == "Limited");
        if limited {
            default_field(obj, "spec.limited", "nominalConcurrencyShares", json!(30));
            default_field(obj, "spec.limited", "lendablePercent", json!(0));
            let queue = obj
                .pointer("/spec/limited/limitResponse/type")
                .and_then(Value::as_str)
                .is_some_and(|t| t == "Queue");
            if queue {
                let q = "spec.limited.limitResponse.queuing";
                default_field(obj, q, "queues", json!(64));
                default_field(obj, q, "handSize", json!(8));
                default_field(obj, q, "queueLengthLimit", json!(50));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let name = crate::object::name(obj).unwrap_or_default();
        let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
        let t = spec.get("type").and_then(Value::as_str).unwrap_or_default();
        if (name == "exempt") != (t == "Exempt") {
            errs.push(FieldError::invalid(
                "spec.type",
                t,
                "type must be 'Exempt' if and only if name is 'exempt'",
            ));
        }
        let limited = spec.get("limited").filter(|l| !l.is_null());
        match t {
            "Exempt" => {
                if limited.is_some() {
                    errs.push(FieldError::forbidden(
                        "spec.limited",
                        "must be nil if the type is not Limited",
                    ));
                }
            }
            "Limited" => match limited {
                None => errs.push(FieldError::required(
                    "spec.limited",
                    "must not be empty when type is Limited",
                )),
                Some(l) => validate_limited(&mut errs, l),
            },
            other => errs.push(FieldError::not_supported(
                "spec.type",
                other,
                &["Exempt", "Limited"],
            )),
        }
        errs
    }
}

fn validate_limited(errs: &mut Vec<FieldError>, l: &Value) {
    if let Some(n) = l.get("nominalConcurrencyShares").and_then(Value::as_i64)
        && n < 0
    {
        errs.push(FieldError::invalid(
            "spec.limited.nominalConcurrencyShares",
            n,
            "must be a non-negative integer",
        ));
    }
    if let Some(p) = l.get("lendablePercent").and_then(Value::as_i64)
        && !(0..=100).contains(&p)
    {
        errs.push(FieldError::invalid(
            "spec.limited.lendablePercent",
            p,
            "must be between 0 and 100, inclusive",
        ));
    }
    let response = l.get("limitResponse").cloned().unwrap_or_else(|| json!({}));
    let queuing = response.get("queuing").filter(|q| !q.is_null());
    let path = "spec.limited.limitResponse";
    match response
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "Reject" => {
            if queuing.is_some() {
                errs.push(FieldError::forbidden(
                    format!("{path}.queuing"),
                    "must be nil if limited.limitResponse.type is not Limited",
                ));
            }
        }
        "Queue" => match queuing {
            None => errs.push(FieldError::required(
                format!("{path}.queuing"),
                "must not be empty if limited.limitResponse.type is Limited",
            )),
            Some(q) => {
                let num = |k: &str| q.get(k).and_then(Value::as_i64).unwrap_or(0);
                let (queues, hand, length) =
                    (num("queues"), num("handSize"), num("queueLengthLimit"));
                let qp = format!("{path}.queuing");
                if length <= 0 {
                    errs.push(FieldError::invalid(
                        format!("{qp}.queueLengthLimit"),
                        length,
                        "must be positive",
                    ));
                }
                if queues <= 0 {
                    errs.push(FieldError::invalid(
                        format!("{qp}.queues"),
                        queues,
                        "must be positive",
                    ));
                } else if queues > 10_000_000 {
                    errs.push(FieldError::invalid(
                        format!("{qp}.queues"),
                        queues,
                        "must not be greater than 10000000",
                    ));
                }
                if hand <= 0 {
                    errs.push(FieldError::invalid(
                        format!("{qp}.handSize"),
                        hand,
                        "must be positive",
                    ));
                } else if hand > queues {
                    errs.push(FieldError::invalid(
                        format!("{qp}.handSize"),
                        hand,
                        format!("should not be greater than queues ({queues})"),
                    ));
                }
            }
        },
        other => errs.push(FieldError::not_supported(
            format!("{path}.type"),
            other,
            &["Queue", "Reject"],
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn kubernetes_defaults_are_valid() {
        for s in crate::flowcontrol::default_schemas() {
            assert_eq!(
                messages(&FlowSchemaStrategy.validate(&s)),
                Vec::<String>::new(),
                "{s}"
            );
        }
        for l in crate::flowcontrol::default_levels() {
            assert_eq!(
                messages(&PriorityLevelStrategy.validate(&l)),
                Vec::<String>::new(),
                "{l}"
            );
        }
    }

    #[test]
    fn common_mistakes_are_reported_as_kubernetes_reports_them() {
        let fs = json!({"metadata": {"name": "x"}, "spec": {
            "matchingPrecedence": 1,
            "distinguisherMethod": {"type": "ByGroup"},
            "priorityLevelConfiguration": {"name": ""},
            "rules": [{"subjects": [], "resourceRules": [{"verbs": ["get", "*"], "apiGroups": [""], "resources": ["pods"]}]}],
        }});
        let m = messages(&FlowSchemaStrategy.validate(&fs));
        assert!(m.contains(&"spec.matchingPrecedence: Invalid value: 1: only the schema named 'exempt' may have matchingPrecedence 1".to_string()), "{m:?}");
        assert!(m.contains(&"spec.distinguisherMethod.type: Unsupported value: \"ByGroup\": supported values: \"ByNamespace\", \"ByUser\"".to_string()), "{m:?}");
        assert!(m.contains(&"spec.priorityLevelConfiguration.name: Required value: must reference a priority level".to_string()), "{m:?}");
        assert!(
            m.contains(
                &"spec.rules[0].subjects: Required value: subjects must contain at least one value"
                    .to_string()
            ),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|x| x.starts_with("spec.rules[0].resourceRules[0].verbs: Invalid value")),
            "{m:?}"
        );
        assert!(m.contains(&"spec.rules[0].resourceRules[0].namespaces: Required value: resource rules that are not cluster scoped must supply at least one namespace".to_string()), "{m:?}");

        let pl = json!({"metadata": {"name": "x"}, "spec": {"type": "Limited", "limited": {
            "limitResponse": {"type": "Queue", "queuing": {"queues": 2, "handSize": 8, "queueLengthLimit": 0}}}}});
        let m = messages(&PriorityLevelStrategy.validate(&pl));
        assert!(m.contains(&"spec.limited.limitResponse.queuing.handSize: Invalid value: 8: should not be greater than queues (2)".to_string()), "{m:?}");
        assert!(m.contains(&"spec.limited.limitResponse.queuing.queueLengthLimit: Invalid value: 0: must be positive".to_string()), "{m:?}");
        let exempt = json!({"metadata": {"name": "mine"}, "spec": {"type": "Exempt"}});
        let m = messages(&PriorityLevelStrategy.validate(&exempt));
        assert_eq!(
            m,
            [
                "spec.type: Invalid value: \"Exempt\": type must be 'Exempt' if and only if name is 'exempt'"
            ]
        );
    }

    #[test]
    fn limited_levels_get_kubernetes_defaults() {
        let mut pl = json!({"metadata": {"name": "x"}, "spec": {"type": "Limited", "limited": {
            "limitResponse": {"type": "Queue", "queuing": {}}}}});
        PriorityLevelStrategy.default(&mut pl);
        assert_eq!(pl["spec"]["limited"]["nominalConcurrencyShares"], 30);
        assert_eq!(
            pl["spec"]["limited"]["limitResponse"]["queuing"],
            json!({"queues": 64, "handSize": 8, "queueLengthLimit": 50})
        );
    }
}
