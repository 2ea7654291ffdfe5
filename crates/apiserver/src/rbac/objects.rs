//! The RBAC objects as the evaluator needs them, decoded from stored JSON: roles
//! with their rules, cluster roles with their aggregation selectors, and bindings
//! with their role reference and subjects.

use std::collections::BTreeMap;
use std::fmt;

use api::selector::LabelSelector;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rule::{PolicyRule, nullable};
use crate::authn::Identity;

/// The API group of the RBAC kinds.
pub(crate) const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Which object a binding grants (`roleRef`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleRef {
    #[serde(default)]
    pub api_group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// Who a binding grants to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Subject {
    #[serde(default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

impl Subject {
    /// Whether this subject names `who`, in a binding of `namespace` ("" for a
    /// ClusterRoleBinding) — Kubernetes' `appliesToUser`.
    pub(crate) fn applies_to(&self, who: &Identity, namespace: &str) -> bool {
        match self.kind.as_str() {
            "User" => who.user == self.name,
            "Group" => who.groups.contains(&self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    namespace
                } else {
                    &self.namespace
                };
                !ns.is_empty()
                    && who
                        .user
                        .strip_prefix("system:serviceaccount:")
                        .and_then(|rest| rest.split_once(':'))
                        .is_some_and(|(n, name)| n == ns && name == self.name)
            }
            _ => false,
        }
    }

    /// How the subject is named in `allowed by` reasons.
    fn describe(&self, binding_namespace: &str) -> String {
        match self.kind.as_str() {
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    binding_namespace
                } else {
                    &self.namespace
                };
                format!("{} {:?}", self.kind, format!("{}/{ns}", self.name))
            }
            _ => format!("{} {:?}", self.kind, self.name),
        }
    }
}

/// A RoleBinding (with its namespace) or a ClusterRoleBinding (namespace "").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    pub name: String,
    pub namespace: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingBody {
    #[serde(default)]
    role_ref: RoleRef,
    #[serde(default, deserialize_with = "nullable")]
    subjects: Vec<Subject>,
}

impl Binding {
    /// Decodes a stored binding.
    pub(crate) fn decode(obj: &Value) -> Option<Self> {
        let body: BindingBody = serde_json::from_value(obj.clone()).ok()?;
        Some(Self {
            name: crate::object::name(obj)?.to_string(),
            namespace: crate::object::namespace(obj)
                .unwrap_or_default()
                .to_string(),
            role_ref: body.role_ref,
            subjects: body.subjects,
        })
    }

    /// The first subject naming `who`, if any.
    pub(crate) fn subject_for(&self, who: &Identity) -> Option<&Subject> {
        self.subjects
            .iter()
            .find(|s| s.applies_to(who, &self.namespace))
    }
}

/// Where a rule came from, as Kubernetes words it in `RBAC: allowed by ...`.
pub(crate) struct Source<'a> {
    pub binding: &'a Binding,
    pub subject: &'a Subject,
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.binding;
        if b.namespace.is_empty() {
            write!(
                f,
                "ClusterRoleBinding {:?} of {} {:?} to {}",
                b.name,
                b.role_ref.kind,
                b.role_ref.name,
                self.subject.describe("")
            )
        } else {
            write!(
                f,
                "RoleBinding {:?} of {} {:?} to {}",
                format!("{}/{}", b.name, b.namespace),
                b.role_ref.kind,
                b.role_ref.name,
                self.subject.describe(&b.namespace)
            )
        }
    }
}

/// A Role or ClusterRole: its rules and, for an aggregated ClusterRole, the
/// selectors of the roles it gathers.
#[derive(Debug, Clone)]
pub(crate) struct RoleObject {
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<PolicyRule>,
    /// `aggregationRule.clusterRoleSelectors`; `None` without an aggregation rule.
    pub aggregation: Option<Vec<LabelSelector>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleBody {
    #[serde(default, deserialize_with = "nullable")]
    rules: Vec<PolicyRule>,
    #[serde(default)]
    aggregation_rule: Option<AggregationRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AggregationRule {
    #[serde(default, deserialize_with = "nullable")]
    cluster_role_selectors: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
}

impl RoleObject {
    /// Decodes a stored Role or ClusterRole. Selectors that do not parse select
    /// nothing, as the aggregation controller skips them.
    pub(crate) fn decode(obj: &Value) -> Option<Self> {
        let body: RoleBody = serde_json::from_value(obj.clone()).ok()?;
        let aggregation = body.aggregation_rule.map(|a| {
            a.cluster_role_selectors
                .iter()
                .map(|s| {
                    LabelSelector::from_label_selector(s)
                        .unwrap_or_else(|_| LabelSelector::nothing())
                })
                .collect()
        });
        Some(Self {
            labels: crate::object::labels(obj),
            rules: body.rules,
            aggregation,
        })
    }

    /// Whether this is an aggregated ClusterRole with at least one selector.
    pub(crate) fn is_aggregated(&self) -> bool {
        self.aggregation.as_ref().is_some_and(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(user: &str, groups: &[&str]) -> Identity {
        Identity {
            user: user.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: Default::default(),
        }
    }

    #[test]
    fn service_account_subjects_default_to_the_binding_namespace() {
        let sa = Subject {
            kind: "ServiceAccount".into(),
            name: "app".into(),
            ..Default::default()
        };
        let who = id(
            "system:serviceaccount:team:app",
            &["system:serviceaccounts"],
        );
        assert!(sa.applies_to(&who, "team"));
        assert!(!sa.applies_to(&who, "other"));
        assert!(
            !sa.applies_to(&who, ""),
            "a cluster binding must name the namespace"
        );
        let group = Subject {
            kind: "Group".into(),
            name: "system:serviceaccounts:team".into(),
            ..Default::default()
        };
        let who = id(
            "system:serviceaccount:team:app",
            &["system:serviceaccounts:team"],
        );
        assert!(group.applies_to(&who, ""));
        let user = Subject {
            kind: "User".into(),
            name: "system:serviceaccount:team:app".into(),
            ..Default::default()
        };
        assert!(user.applies_to(&who, ""));
    }

    #[test]
    fn sources_are_described_as_kubernetes_describes_them() {
        let b = Binding::decode(&json!({
            "metadata": {"name": "read", "namespace": "team"},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "app"}],
        }))
        .expect("decodes");
        let s = Source {
            binding: &b,
            subject: &b.subjects[0],
        };
        assert_eq!(
            s.to_string(),
            "RoleBinding \"read/team\" of ClusterRole \"view\" to ServiceAccount \"app/team\""
        );
    }

    #[test]
    fn roles_with_null_rules_and_aggregation_decode() {
        let r = RoleObject::decode(&json!({
            "metadata": {"name": "view", "labels": {"a": "b"}},
            "rules": null,
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "true"}}]},
        }))
        .expect("decodes");
        assert!(r.rules.is_empty());
        assert!(r.is_aggregated());
        let selectors = r.aggregation.expect("aggregated");
        let labels: BTreeMap<String, String> = [("x".to_string(), "true".to_string())].into();
        assert!(selectors[0].matches(&labels));
    }
}
