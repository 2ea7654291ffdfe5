//! Which webhooks a request goes to (Kubernetes' `predicates/rules`,
//! `predicates/namespace`, `predicates/object` and `ShouldCallHook`): a rule
//! matching the operation, group, version, resource/subresource and scope (with
//! `matchPolicy: Equivalent`, any version of the same group and resource), then
//! the namespace selector against the namespace's labels (cluster-scoped objects
//! other than namespaces always match) and the object selector against the new or
//! the old object's labels.

use std::collections::BTreeMap;

use api::selector::LabelSelector;
use serde_json::Value;

use super::hook::{Hook, MatchPolicy, Rule, Scope};
use crate::admission::node_restriction::Operation;

/// What the request is, as the matchers see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attributes<'a> {
    pub operation: Operation,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    /// The namespace as Kubernetes' admission sees it: for a namespace itself,
    /// its own name.
    pub namespace: &'a str,
    pub name: &'a str,
    /// The object after the request (none on delete).
    pub object: Option<&'a Value>,
    /// The object before the request (update, delete).
    pub old: Option<&'a Value>,
}

impl Attributes<'_> {
    /// Whether the request is about a Namespace object.
    pub(crate) fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.resource == "namespaces"
    }
}

/// Writes to the admission configuration kinds never go to webhooks, so that a
/// broken webhook cannot lock its own configuration in place.
pub(crate) fn is_exempt(group: &str, resource: &str) -> bool {
    group == "admissionregistration.k8s.io"
        && matches!(
            resource,
            "validatingwebhookconfigurations"
                | "mutatingwebhookconfigurations"
                | "validatingadmissionpolicies"
                | "validatingadmissionpolicybindings"
                | "mutatingadmissionpolicies"
                | "mutatingadmissionpolicybindings"
        )
}

fn exact_or_wildcard(items: &[String], requested: &str) -> bool {
    items.iter().any(|i| i == "*" || i == requested)
}

impl Rule {
    /// Whether the rule matches; `any_version` ignores `apiVersions`
    /// (an equivalent resource of another version).
    pub(crate) fn matches(&self, a: &Attributes<'_>, any_version: bool) -> bool {
        let scope = match self.scope {
            Scope::All => true,
            Scope::Namespaced => !a.is_namespace() && !a.namespace.is_empty(),
            Scope::Cluster => a.is_namespace() || a.namespace.is_empty(),
        };
        let operation = self
            .operations
            .iter()
            .any(|o| o == "*" || o == a.operation.as_str());
        let resource = self.resources.iter().any(|r| {
            let (res, sub) = r.split_once('/').unwrap_or((r, ""));
            (res == "*" || res == a.resource) && (sub == "*" || sub == a.subresource)
        });
        scope
            && operation
            && exact_or_wildcard(&self.api_groups, a.group)
            && (any_version || exact_or_wildcard(&self.api_versions, a.version))
            && resource
    }
}

/// Whether one of the hook's rules matches the request.
pub(crate) fn rules_match(hook: &Hook, a: &Attributes<'_>) -> bool {
    hook.rules.iter().any(|r| r.matches(a, false))
        || (hook.match_policy == MatchPolicy::Equivalent
            && hook.rules.iter().any(|r| r.matches(a, true)))
}

/// Why a selector could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SelectorError {
    /// The stored selector does not parse.
    Unparsable(String),
}

/// Whether the object selector selects the new or the old object.
pub(crate) fn object_selected(hook: &Hook, a: &Attributes<'_>) -> Result<bool, SelectorError> {
    let selector = hook
        .object_selector
        .as_ref()
        .map_err(|e| SelectorError::Unparsable(e.clone()))?;
    if selector.is_empty() {
        return Ok(true);
    }
    let selects =
        |o: Option<&Value>| o.is_some_and(|o| selector.matches(&crate::object::labels(o)));
    Ok(selects(a.object) || selects(a.old))
}

/// Where a namespace selector's labels come from.
pub(crate) enum NamespaceLabels {
    /// No lookup needed: the selector matches whatever the labels.
    NotNeeded(bool),
    /// The labels of the object written (a namespace created or updated).
    Object(BTreeMap<String, String>),
    /// The labels of this namespace, to be looked up.
    Lookup(String),
}

/// What the namespace selector needs to decide (`MatchNamespaceSelector`).
pub(crate) fn namespace_labels(
    hook: &Hook,
    a: &Attributes<'_>,
) -> Result<NamespaceLabels, SelectorError> {
    if a.namespace.is_empty() && !(a.group.is_empty() && a.resource == "namespaces") {
        // Cluster-scoped objects other than namespaces are never exempted.
        return Ok(NamespaceLabels::NotNeeded(true));
    }
    let selector = hook
        .namespace_selector
        .as_ref()
        .map_err(|e| SelectorError::Unparsable(e.clone()))?;
    if selector.is_empty() {
        return Ok(NamespaceLabels::NotNeeded(true));
    }
    if a.is_namespace()
        && a.subresource.is_empty()
        && matches!(a.operation, Operation::Create | Operation::Update)
    {
        return Ok(NamespaceLabels::Object(
            a.object.map(crate::object::labels).unwrap_or_default(),
        ));
    }
    Ok(NamespaceLabels::Lookup(a.namespace.to_string()))
}

/// Whether the hook's namespace selector selects `labels`.
pub(crate) fn namespace_selected(hook: &Hook, labels: &BTreeMap<String, String>) -> bool {
    hook.namespace_selector
        .as_ref()
        .is_ok_and(|s: &LabelSelector| s.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::webhook::hook;
    use serde_json::json;

    fn hook_with(webhook: Value) -> std::sync::Arc<Hook> {
        let mut w = json!({
            "name": "h.example.com",
            "clientConfig": {"url": "https://127.0.0.1:1/"},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        });
        if let (Some(m), Some(extra)) = (w.as_object_mut(), webhook.as_object()) {
            m.extend(extra.clone());
        }
        hook::parse("c", &json!({"webhooks": [w]})).remove(0)
    }

    fn rules(rules: Value) -> std::sync::Arc<Hook> {
        hook_with(json!({"rules": rules}))
    }

    fn attrs<'a>(operation: Operation, resource: &'a str, namespace: &'a str) -> Attributes<'a> {
        Attributes {
            operation,
            group: "",
            version: "v1",
            resource,
            subresource: "",
            namespace,
            name: "x",
            object: None,
            old: None,
        }
    }

    #[test]
    fn rules_match_operation_group_version_and_resource() {
        let h = rules(
            json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": [""],
                               "apiVersions": ["v1"], "resources": ["configmaps"]}]),
        );
        assert!(rules_match(
            &h,
            &attrs(Operation::Create, "configmaps", "ns")
        ));
        assert!(rules_match(
            &h,
            &attrs(Operation::Update, "configmaps", "ns")
        ));
        assert!(!rules_match(
            &h,
            &attrs(Operation::Delete, "configmaps", "ns")
        ));
        assert!(!rules_match(&h, &attrs(Operation::Create, "secrets", "ns")));
        let mut apps = attrs(Operation::Create, "configmaps", "ns");
        apps.group = "apps";
        assert!(!rules_match(&h, &apps));
    }

    #[test]
    fn wildcards_and_subresources_match_as_in_kubernetes() {
        let h = rules(json!([{"operations": ["*"], "apiGroups": ["*"],
                               "apiVersions": ["*"], "resources": ["*"]}]));
        assert!(rules_match(&h, &attrs(Operation::Delete, "pods", "ns")));
        let mut status = attrs(Operation::Update, "pods", "ns");
        status.subresource = "status";
        // `*` is every resource but no subresource.
        assert!(!rules_match(&h, &status));
        let h = rules(json!([{"operations": ["UPDATE"], "apiGroups": [""],
                               "apiVersions": ["v1"], "resources": ["pods/status"]}]));
        assert!(rules_match(&h, &status));
        assert!(!rules_match(&h, &attrs(Operation::Update, "pods", "ns")));
        let h = rules(json!([{"operations": ["UPDATE"], "apiGroups": [""],
                               "apiVersions": ["v1"], "resources": ["*/*"]}]));
        assert!(rules_match(&h, &status));
        assert!(rules_match(&h, &attrs(Operation::Update, "pods", "ns")));
    }

    #[test]
    fn scope_separates_namespaced_and_cluster_objects() {
        let namespaced = rules(json!([{"operations": ["*"], "apiGroups": ["*"],
            "apiVersions": ["*"], "resources": ["*"], "scope": "Namespaced"}]));
        let cluster = rules(json!([{"operations": ["*"], "apiGroups": ["*"],
            "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"}]));
        let cm = attrs(Operation::Create, "configmaps", "ns");
        let node = attrs(Operation::Create, "nodes", "");
        // A namespace's namespace is its own name, yet it is cluster-scoped.
        let namespace = attrs(Operation::Update, "namespaces", "team-a");
        assert!(rules_match(&namespaced, &cm));
        assert!(!rules_match(&namespaced, &node));
        assert!(!rules_match(&namespaced, &namespace));
        assert!(!rules_match(&cluster, &cm));
        assert!(rules_match(&cluster, &node));
        assert!(rules_match(&cluster, &namespace));
    }

    #[test]
    fn equivalent_match_policy_accepts_another_version_exact_does_not() {
        let rule = json!([{"operations": ["CREATE"], "apiGroups": ["apps"],
            "apiVersions": ["v1beta1"], "resources": ["deployments"]}]);
        let mut a = attrs(Operation::Create, "deployments", "ns");
        a.group = "apps";
        assert!(rules_match(
            &hook_with(json!({"rules": rule, "matchPolicy": "Equivalent"})),
            &a
        ));
        assert!(!rules_match(
            &hook_with(json!({"rules": rule, "matchPolicy": "Exact"})),
            &a
        ));
    }

    #[test]
    fn object_selector_matches_the_new_or_the_old_object() {
        let h = hook_with(json!({"objectSelector": {"matchLabels": {"team": "a"}}}));
        let labelled = json!({"metadata": {"labels": {"team": "a"}}});
        let plain = json!({"metadata": {}});
        let mut a = attrs(Operation::Update, "configmaps", "ns");
        a.object = Some(&plain);
        assert_eq!(object_selected(&h, &a), Ok(false));
        a.old = Some(&labelled);
        assert_eq!(object_selected(&h, &a), Ok(true));
        let mut deleted = attrs(Operation::Delete, "configmaps", "ns");
        deleted.old = Some(&labelled);
        assert_eq!(object_selected(&h, &deleted), Ok(true));
        let everything = hook_with(json!({"objectSelector": {}}));
        assert_eq!(
            object_selected(&everything, &attrs(Operation::Delete, "x", "ns")),
            Ok(true)
        );
    }

    #[test]
    fn namespace_selector_needs_labels_only_for_namespaced_requests() {
        let h = hook_with(json!({"namespaceSelector": {"matchExpressions": [
            {"key": "skip-webhooks", "operator": "DoesNotExist"}]}}));
        assert!(matches!(
            namespace_labels(&h, &attrs(Operation::Create, "nodes", "")),
            Ok(NamespaceLabels::NotNeeded(true))
        ));
        match namespace_labels(&h, &attrs(Operation::Create, "configmaps", "team-a")) {
            Ok(NamespaceLabels::Lookup(ns)) => assert_eq!(ns, "team-a"),
            _ => panic!("a namespaced object needs its namespace's labels"),
        }
        let ns = json!({"metadata": {"name": "team-b", "labels": {"skip-webhooks": "yes"}}});
        let mut create_ns = attrs(Operation::Create, "namespaces", "team-b");
        create_ns.object = Some(&ns);
        match namespace_labels(&h, &create_ns) {
            Ok(NamespaceLabels::Object(labels)) => assert!(!namespace_selected(&h, &labels)),
            _ => panic!("a namespace written is judged by its own labels"),
        }
        assert!(namespace_selected(&h, &BTreeMap::new()));
        let everything = hook_with(json!({"namespaceSelector": {}}));
        assert!(matches!(
            namespace_labels(&everything, &attrs(Operation::Create, "configmaps", "x")),
            Ok(NamespaceLabels::NotNeeded(true))
        ));
    }

    #[test]
    fn the_admission_configuration_kinds_are_exempt() {
        assert!(is_exempt(
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations"
        ));
        assert!(is_exempt(
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations"
        ));
        assert!(!is_exempt("", "configmaps"));
    }
}
