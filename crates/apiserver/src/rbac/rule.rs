//! Policy rules: whether a rule allows a request (Kubernetes' `RuleAllows` and the
//! `rbacv1helpers` matchers), whether one set of rules covers another (the
//! escalation check's `Covers`, `BreakdownRule`, `CompactRules`), and the compact
//! form rules are printed in.

use serde::{Deserialize, Deserializer, Serialize};

use crate::authz::Attributes;

/// `*`: every verb, group, resource or URL.
const ALL: &str = "*";

/// One rule of a Role or ClusterRole (`rbac.authorization.k8s.io/v1` PolicyRule).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PolicyRule {
    #[serde(default, deserialize_with = "nullable")]
    pub verbs: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub api_groups: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resources: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resource_names: Vec<String>,
    #[serde(
        rename = "nonResourceURLs",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

/// A list that may be `null` in the JSON (Go's nil slices).
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|i| has(set, i))
}

impl PolicyRule {
    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == ALL || v == verb)
    }

    fn group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == ALL || g == group)
    }

    /// `combined` is `resource` or `resource/subresource`; `*` matches everything and
    /// `*/sub` any resource's `sub`.
    fn resource_matches(&self, combined: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            r == ALL
                || r == combined
                || (!subresource.is_empty()
                    && r.len() == subresource.len() + 2
                    && r.starts_with("*/")
                    && r.ends_with(subresource))
        })
    }

    fn name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || has(&self.resource_names, name)
    }

    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| {
            u == ALL || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
        })
    }

    /// Whether this rule allows the request (Kubernetes' `RuleAllows`).
    pub(crate) fn allows(&self, attrs: &Attributes<'_>) -> bool {
        if !self.verb_matches(&attrs.verb) {
            return false;
        }
        if !attrs.resource_request {
            return self.url_matches(&attrs.path);
        }
        let combined = if attrs.subresource.is_empty() {
            attrs.resource.to_string()
        } else {
            format!("{}/{}", attrs.resource, attrs.subresource)
        };
        self.group_matches(&attrs.api_group)
            && self.resource_matches(&combined, &attrs.subresource)
            && self.name_matches(&attrs.name)
    }

    /// Every (group, resource, verb, name) and (URL, verb) tuple this rule grants, one
    /// rule each (Kubernetes' `BreakdownRule`).
    pub(crate) fn breakdown(&self) -> Vec<PolicyRule> {
        let one = |s: &String| vec![s.clone()];
        let mut out = Vec::new();
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    let base = PolicyRule {
                        verbs: one(verb),
                        api_groups: one(group),
                        resources: one(resource),
                        ..Default::default()
                    };
                    if self.resource_names.is_empty() {
                        out.push(base);
                    } else {
                        for name in &self.resource_names {
                            out.push(PolicyRule {
                                resource_names: one(name),
                                ..base.clone()
                            });
                        }
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                out.push(PolicyRule {
                    verbs: one(verb),
                    non_resource_urls: one(url),
                    ..Default::default()
                });
            }
        }
        out
    }

    /// Whether this rule grants everything `sub` (one broken-down tuple) does
    /// (Kubernetes' `ruleCovers`).
    fn covers(&self, sub: &PolicyRule) -> bool {
        let verbs = has(&self.verbs, ALL) || has_all(&self.verbs, &sub.verbs);
        let groups = has(&self.api_groups, ALL) || has_all(&self.api_groups, &sub.api_groups);
        let resources = has(&self.resources, ALL)
            || sub.resources.iter().all(|r| {
                has(&self.resources, r)
                    || r.split_once('/')
                        .is_some_and(|(_, s)| has(&self.resources, &format!("*/{s}")))
            });
        let urls = sub.non_resource_urls.iter().all(|path| {
            self.non_resource_urls.iter().any(|owner| {
                owner == path
                    || (owner.ends_with('*') && path.starts_with(owner.trim_end_matches('*')))
            })
        });
        let names = if sub.resource_names.is_empty() {
            self.resource_names.is_empty()
        } else {
            self.resource_names.is_empty() || has_all(&self.resource_names, &sub.resource_names)
        };
        verbs && groups && resources && urls && names
    }

    /// Kubernetes' `CompactString`: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
    pub(crate) fn compact_string(&self) -> String {
        let quoted = |items: &[String]| {
            let inner: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
            format!("[{}]", inner.join(" "))
        };
        let mut parts = Vec::new();
        for (label, items) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !items.is_empty() {
                parts.push(format!("{label}:{}", quoted(items)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// Whether `owner` covers every rule in `wanted`; the tuples it does not cover
/// otherwise (Kubernetes' `Covers`).
pub(crate) fn covers(owner: &[PolicyRule], wanted: &[PolicyRule]) -> Result<(), Vec<PolicyRule>> {
    let missing: Vec<PolicyRule> = wanted
        .iter()
        .flat_map(PolicyRule::breakdown)
        .filter(|sub| !owner.iter().any(|o| o.covers(sub)))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// Merges the verbs of rules about one group and resource (and at most one name),
/// for readable messages (Kubernetes' `CompactRules`).
pub(crate) fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    for rule in rules {
        let is_simple = rule.resource_names.len() <= 1
            && rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1;
        if !is_simple {
            out.push(rule);
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == rule.api_groups
                && s.resources == rule.resources
                && s.resource_names == rule.resource_names
        }) {
            Some(existing) => existing.verbs.extend(rule.verbs),
            None => simple.push(rule),
        }
    }
    out.extend(simple);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::Identity;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        PolicyRule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            ..Default::default()
        }
    }

    fn who() -> Identity {
        Identity {
            user: "u".into(),
            uid: String::new(),
            groups: vec![],
            extra: Default::default(),
        }
    }

    fn req<'a>(
        who: &'a Identity,
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        sub: &'a str,
        name: &'a str,
    ) -> Attributes<'a> {
        let mut a = Attributes::resource(who, verb, group, resource, "ns", name);
        a.subresource = sub.into();
        a
    }

    #[test]
    fn verbs_groups_and_resources_match_exactly_or_by_star() {
        let w = who();
        let r = rule(&["get", "list"], &[""], &["pods"]);
        assert!(r.allows(&req(&w, "get", "", "pods", "", "p")));
        assert!(!r.allows(&req(&w, "delete", "", "pods", "", "p")));
        assert!(!r.allows(&req(&w, "get", "apps", "pods", "", "p")));
        assert!(!r.allows(&req(&w, "get", "", "pods", "log", "p")));
        let all = rule(&["*"], &["*"], &["*"]);
        assert!(all.allows(&req(
            &w,
            "escalate",
            "rbac.authorization.k8s.io",
            "roles",
            "",
            ""
        )));
        assert!(all.allows(&req(&w, "get", "", "pods", "exec", "p")));
    }

    #[test]
    fn subresources_match_by_name_or_star_slash_subresource() {
        let w = who();
        let r = rule(&["get"], &["*"], &["pods/log", "*/scale"]);
        assert!(r.allows(&req(&w, "get", "", "pods", "log", "p")));
        assert!(!r.allows(&req(&w, "get", "", "pods", "", "p")));
        assert!(r.allows(&req(&w, "get", "apps", "deployments", "scale", "d")));
        assert!(!r.allows(&req(&w, "get", "apps", "deployments", "status", "d")));
        // `*/scale` is not `*/scalez`.
        assert!(!r.allows(&req(&w, "get", "apps", "deployments", "xscale", "d")));
    }

    #[test]
    fn resource_names_restrict_to_named_objects() {
        let w = who();
        let mut r = rule(&["get", "update"], &["coordination.k8s.io"], &["leases"]);
        r.resource_names = vec!["kube-scheduler".into()];
        assert!(r.allows(&req(
            &w,
            "get",
            "coordination.k8s.io",
            "leases",
            "",
            "kube-scheduler"
        )));
        assert!(!r.allows(&req(
            &w,
            "get",
            "coordination.k8s.io",
            "leases",
            "",
            "other"
        )));
        assert!(!r.allows(&req(&w, "get", "coordination.k8s.io", "leases", "", "")));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_trailing_star() {
        let w = who();
        let r = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/healthz".into(), "/apis/*".into()],
            ..Default::default()
        };
        let path = |p: &'static str| {
            let mut a = Attributes::resource(&w, "get", "", "", "", "");
            a.resource_request = false;
            a.path = p.into();
            a
        };
        assert!(r.allows(&path("/healthz")));
        assert!(!r.allows(&path("/healthz/etcd")));
        assert!(r.allows(&path("/apis/apps/v1")));
        assert!(!r.allows(&path("/apis")));
        // A resource rule never matches a path.
        assert!(!rule(&["*"], &["*"], &["*"]).allows(&path("/healthz")));
    }

    #[test]
    fn rules_with_nulls_decode() {
        let r: PolicyRule = serde_json::from_value(
            serde_json::json!({"verbs": ["get"], "apiGroups": null, "nonResourceURLs": ["/x"]}),
        )
        .expect("decodes");
        assert_eq!(r.non_resource_urls, vec!["/x"]);
        assert!(r.api_groups.is_empty());
    }

    #[test]
    fn covers_names_every_missing_tuple() {
        let owner = vec![rule(&["get", "list"], &[""], &["pods", "configmaps"])];
        assert!(covers(&owner, &[rule(&["get"], &[""], &["pods"])]).is_ok());
        let missing = covers(
            &owner,
            &[rule(&["get", "delete"], &[""], &["pods", "secrets"])],
        )
        .expect_err("not covered");
        let text: Vec<String> = compact(missing)
            .iter()
            .map(PolicyRule::compact_string)
            .collect();
        assert_eq!(
            text,
            vec![
                "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}",
                "{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}",
            ]
        );
    }

    #[test]
    fn star_subresource_and_named_rules_cover_as_kubernetes_does() {
        let owner = vec![rule(&["get"], &["*"], &["*/scale"])];
        assert!(covers(&owner, &[rule(&["get"], &["apps"], &["deployments/scale"])]).is_ok());
        assert!(covers(&owner, &[rule(&["get"], &["apps"], &["deployments"])]).is_err());
        let mut named = rule(&["get"], &[""], &["secrets"]);
        named.resource_names = vec!["a".into()];
        // A named grant does not cover an unnamed one, but an unnamed one covers it.
        assert!(covers(&[named.clone()], &[rule(&["get"], &[""], &["secrets"])]).is_err());
        assert!(covers(&[rule(&["get"], &[""], &["secrets"])], &[named]).is_ok());
    }
}
