//! An immutable view of every Role, ClusterRole and binding, with aggregated
//! ClusterRoles resolved, and the rule walk over it (Kubernetes'
//! `DefaultRuleResolver.VisitRulesFor` and `RBACAuthorizer.Authorize`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use super::objects::{Binding, RoleObject, Source};
use super::rule::PolicyRule;
use crate::authn::Identity;
use crate::authz::{Attributes, Decision};

/// The stored RBAC objects, keyed as in the store (`namespace/name` or `name`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Objects {
    pub roles: BTreeMap<(String, String), RoleObject>,
    pub cluster_roles: BTreeMap<String, RoleObject>,
    pub role_bindings: BTreeMap<(String, String), Binding>,
    pub cluster_role_bindings: BTreeMap<String, Binding>,
}

/// One evaluation view; cheap to share (`Arc`).
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    roles: HashMap<(String, String), Arc<Vec<PolicyRule>>>,
    /// Effective rules: an aggregated ClusterRole's are those of the roles it selects.
    cluster_roles: HashMap<String, Arc<Vec<PolicyRule>>>,
    cluster_role_bindings: Vec<Binding>,
    role_bindings: HashMap<String, Vec<Binding>>,
    /// Aggregated ClusterRoles whose stored rules differ from their effective ones.
    stale_aggregations: Vec<(String, Vec<PolicyRule>)>,
}

/// What the rule walk met.
pub(crate) enum Visit<'a> {
    /// A rule granted through `Source`.
    Rule(&'a PolicyRule, Source<'a>),
    /// A binding whose role could not be resolved.
    Error(String),
}

/// The rules of every ClusterRole selected by `selectors`, in name order, without
/// duplicates — the clusterrole-aggregation controller's union — resolving selected
/// aggregated roles in turn (`visiting` breaks cycles).
fn aggregate(
    name: &str,
    objects: &Objects,
    memo: &mut HashMap<String, Vec<PolicyRule>>,
    visiting: &mut HashSet<String>,
) -> Vec<PolicyRule> {
    if let Some(done) = memo.get(name) {
        return done.clone();
    }
    let Some(role) = objects.cluster_roles.get(name) else {
        return Vec::new();
    };
    if !role.is_aggregated() || !visiting.insert(name.to_string()) {
        return role.rules.clone();
    }
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in role.aggregation.iter().flatten() {
        for (other, candidate) in &objects.cluster_roles {
            if other == name || !selector.matches(&candidate.labels) {
                continue;
            }
            for rule in aggregate(other, objects, memo, visiting) {
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
    }
    visiting.remove(name);
    memo.insert(name.to_string(), rules.clone());
    rules
}

impl Snapshot {
    /// Builds the view of `objects`.
    pub(crate) fn build(objects: &Objects) -> Self {
        let mut memo = HashMap::new();
        let mut cluster_roles = HashMap::new();
        let mut stale_aggregations = Vec::new();
        for (name, role) in &objects.cluster_roles {
            let rules = if role.is_aggregated() {
                let rules = aggregate(name, objects, &mut memo, &mut HashSet::new());
                if rules != role.rules {
                    stale_aggregations.push((name.clone(), rules.clone()));
                }
                rules
            } else {
                role.rules.clone()
            };
            cluster_roles.insert(name.clone(), Arc::new(rules));
        }
        let roles = objects
            .roles
            .iter()
            .map(|(k, r)| (k.clone(), Arc::new(r.rules.clone())))
            .collect();
        let mut role_bindings: HashMap<String, Vec<Binding>> = HashMap::new();
        for ((ns, _), b) in &objects.role_bindings {
            role_bindings.entry(ns.clone()).or_default().push(b.clone());
        }
        Self {
            roles,
            cluster_roles,
            cluster_role_bindings: objects.cluster_role_bindings.values().cloned().collect(),
            role_bindings,
            stale_aggregations,
        }
    }

    /// Aggregated ClusterRoles whose stored rules lag behind the roles they select,
    /// with the rules they should hold.
    pub(crate) fn stale_aggregations(&self) -> &[(String, Vec<PolicyRule>)] {
        &self.stale_aggregations
    }

    /// The effective rules of a ClusterRole.
    pub(crate) fn cluster_role_rules(&self, name: &str) -> Option<&[PolicyRule]> {
        self.cluster_roles.get(name).map(|r| r.as_slice())
    }

    /// The rules a role reference grants in `namespace` (Kubernetes'
    /// `GetRoleReferenceRules`), or the error Kubernetes reports.
    pub(crate) fn role_ref_rules(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
    ) -> Result<&[PolicyRule], String> {
        match kind {
            "Role" => self
                .roles
                .get(&(namespace.to_string(), name.to_string()))
                .map(|r| r.as_slice())
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io {name:?} not found")),
            "ClusterRole" => self
                .cluster_role_rules(name)
                .ok_or_else(|| format!("clusterrole.rbac.authorization.k8s.io {name:?} not found")),
            other => Err(format!("unsupported role reference kind: {other:?}")),
        }
    }

    /// Walks the rules granted to `who` in `namespace`: cluster role bindings first,
    /// then the role bindings of the namespace. `visit` stops the walk with `Break`.
    pub(crate) fn visit_rules_for<'a>(
        &'a self,
        who: &Identity,
        namespace: &str,
        visit: &mut dyn FnMut(Visit<'a>) -> ControlFlow<()>,
    ) {
        let bindings = self.cluster_role_bindings.iter().chain(
            (!namespace.is_empty())
                .then(|| self.role_bindings.get(namespace))
                .flatten()
                .into_iter()
                .flatten(),
        );
        for binding in bindings {
            let Some(subject) = binding.subject_for(who) else {
                continue;
            };
            let rules = match self.role_ref_rules(
                &binding.role_ref.kind,
                &binding.role_ref.name,
                &binding.namespace,
            ) {
                Ok(r) => r,
                Err(e) => {
                    if visit(Visit::Error(e)).is_break() {
                        return;
                    }
                    continue;
                }
            };
            for rule in rules {
                if visit(Visit::Rule(rule, Source { binding, subject })).is_break() {
                    return;
                }
            }
        }
    }

    /// Every rule `who` holds in `namespace`, and the resolution errors met.
    pub(crate) fn rules_for(
        &self,
        who: &Identity,
        namespace: &str,
    ) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit_rules_for(who, namespace, &mut |v| {
            match v {
                Visit::Rule(r, _) => rules.push(r.clone()),
                Visit::Error(e) => errors.push(e),
            }
            ControlFlow::Continue(())
        });
        (rules, errors)
    }

    /// Kubernetes' `RBACAuthorizer.Authorize`: allowed by the first rule that
    /// matches, otherwise no opinion (with the resolution errors as the reason).
    pub(crate) fn decide(&self, attrs: &Attributes<'_>) -> Decision {
        let mut allowed = None;
        let mut errors = Vec::new();
        self.visit_rules_for(attrs.who, &attrs.namespace, &mut |v| match v {
            Visit::Rule(rule, source) if rule.allows(attrs) => {
                allowed = Some(format!("RBAC: allowed by {source}"));
                ControlFlow::Break(())
            }
            Visit::Rule(..) => ControlFlow::Continue(()),
            Visit::Error(e) => {
                errors.push(e);
                ControlFlow::Continue(())
            }
        });
        match allowed {
            Some(reason) => Decision::Allow(reason),
            None if errors.is_empty() => Decision::NoOpinion(String::new()),
            None if errors.len() == 1 => Decision::NoOpinion(format!("RBAC: {}", errors[0])),
            None => Decision::NoOpinion(format!("RBAC: [{}]", errors.join(", "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn objects(items: &[serde_json::Value]) -> Objects {
        let mut o = Objects::default();
        for item in items {
            let ns = item["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = item["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            match item["kind"].as_str().unwrap_or_default() {
                "Role" => {
                    o.roles
                        .insert((ns, name), RoleObject::decode(item).expect("role"));
                }
                "ClusterRole" => {
                    o.cluster_roles
                        .insert(name, RoleObject::decode(item).expect("cluster role"));
                }
                "RoleBinding" => {
                    o.role_bindings
                        .insert((ns, name), Binding::decode(item).expect("binding"));
                }
                _ => {
                    o.cluster_role_bindings
                        .insert(name, Binding::decode(item).expect("binding"));
                }
            }
        }
        o
    }

    fn user(name: &str, groups: &[&str]) -> Identity {
        Identity {
            user: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: Default::default(),
        }
    }

    fn decide(s: &Snapshot, who: &Identity, verb: &str, resource: &str, ns: &str) -> Decision {
        s.decide(&Attributes::resource(who, verb, "", resource, ns, ""))
    }

    fn read_pods() -> serde_json::Value {
        json!({"kind": "ClusterRole", "metadata": {"name": "pod-reader", "labels": {"agg": "view"}},
               "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]})
    }

    #[test]
    fn a_role_binding_grants_only_in_its_namespace() {
        let s = Snapshot::build(&objects(&[
            read_pods(),
            json!({"kind": "RoleBinding", "metadata": {"name": "b", "namespace": "team"},
                   "roleRef": {"kind": "ClusterRole", "name": "pod-reader"},
                   "subjects": [{"kind": "User", "name": "bob"}]}),
        ]));
        let bob = user("bob", &[]);
        assert_eq!(
            decide(&s, &bob, "list", "pods", "team"),
            Decision::Allow(
                "RBAC: allowed by RoleBinding \"b/team\" of ClusterRole \"pod-reader\" to User \"bob\"".into()
            )
        );
        assert!(!decide(&s, &bob, "list", "pods", "other").allowed());
        assert!(!decide(&s, &bob, "list", "pods", "").allowed());
        assert!(!decide(&s, &bob, "delete", "pods", "team").allowed());
        assert!(!decide(&s, &user("alice", &[]), "list", "pods", "team").allowed());
    }

    #[test]
    fn cluster_role_bindings_grant_everywhere_to_groups() {
        let s = Snapshot::build(&objects(&[
            read_pods(),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "all-sa"},
                   "roleRef": {"kind": "ClusterRole", "name": "pod-reader"},
                   "subjects": [{"kind": "Group", "name": "system:serviceaccounts:team"}]}),
        ]));
        let sa = user(
            "system:serviceaccount:team:app",
            &["system:serviceaccounts", "system:serviceaccounts:team"],
        );
        assert!(decide(&s, &sa, "get", "pods", "anywhere").allowed());
        assert!(decide(&s, &sa, "list", "pods", "").allowed());
        let other = user(
            "system:serviceaccount:x:app",
            &["system:serviceaccounts", "system:serviceaccounts:x"],
        );
        assert!(!decide(&s, &other, "get", "pods", "anywhere").allowed());
    }

    #[test]
    fn a_missing_role_is_the_reason_of_a_refusal() {
        let s = Snapshot::build(&objects(&[json!({
            "kind": "RoleBinding", "metadata": {"name": "b", "namespace": "team"},
            "roleRef": {"kind": "Role", "name": "gone"},
            "subjects": [{"kind": "User", "name": "bob"}]})]));
        assert_eq!(
            decide(&s, &user("bob", &[]), "get", "pods", "team"),
            Decision::NoOpinion("RBAC: role.rbac.authorization.k8s.io \"gone\" not found".into())
        );
    }

    #[test]
    fn aggregated_roles_gather_the_rules_of_the_roles_they_select_transitively() {
        let s = Snapshot::build(&objects(&[
            read_pods(),
            json!({"kind": "ClusterRole", "metadata": {"name": "view", "labels": {"agg": "edit"}},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "view"}}]}}),
            json!({"kind": "ClusterRole", "metadata": {"name": "edit-extra", "labels": {"agg": "edit"}},
                   "rules": [{"verbs": ["create"], "apiGroups": [""], "resources": ["pods"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "edit"},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "edit"}}]},
                   "rules": [{"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]}),
        ]));
        let edit = s.cluster_role_rules("edit").expect("edit");
        assert_eq!(edit.len(), 2, "{edit:?}");
        assert!(edit.iter().any(|r| r.verbs == ["create"]));
        assert!(edit.iter().any(|r| r.verbs == ["get", "list"]));
        assert!(
            !edit.iter().any(|r| r.verbs == ["delete"]),
            "stored rules are replaced"
        );
        let stale: Vec<&str> = s
            .stale_aggregations()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(stale, vec!["edit", "view"]);
    }

    #[test]
    fn aggregation_cycles_end() {
        let s = Snapshot::build(&objects(&[
            json!({"kind": "ClusterRole", "metadata": {"name": "a", "labels": {"x": "1"}},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"y": "1"}}]}}),
            json!({"kind": "ClusterRole", "metadata": {"name": "b", "labels": {"y": "1"}},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "1"}}]}}),
        ]));
        assert!(s.cluster_role_rules("a").is_some());
    }
}
