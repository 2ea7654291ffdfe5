//! Which requests a policy's `matchConstraints` or a binding's `matchResources`
//! select (k8s.io/apiserver `admission/plugin/policy/matching` and the webhook
//! predicates it uses): namespace and object label selectors, then
//! `excludeResourceRules`, then `resourceRules` (operations, API groups and
//! versions, resources with subresources and wildcards, scope, resource names).
//! `matchPolicy: Equivalent` matches like `Exact`: Skiff serves each resource
//! at one version, so there are no equivalent resources to try.

use std::collections::BTreeMap;

use api::selector::LabelSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

/// One write as the matchers see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    /// `CREATE`, `UPDATE` or `DELETE`.
    pub operation: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    /// The resource plural.
    pub resource: &'a str,
    pub subresource: &'a str,
    /// The namespace of a namespaced object (for a Namespace: its own name
    /// except on create, as Kubernetes' request info has it).
    pub namespace: &'a str,
    pub name: &'a str,
    pub object: Option<&'a Value>,
    pub old: Option<&'a Value>,
}

impl Request<'_> {
    fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.resource == "namespaces"
    }
}

/// `Cluster`, `Namespaced` or `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    All,
    Cluster,
    Namespaced,
}

/// A `NamedRuleWithOperations`.
#[derive(Debug, Clone)]
struct Rule {
    operations: Vec<String>,
    groups: Vec<String>,
    versions: Vec<String>,
    resources: Vec<String>,
    scope: Scope,
    names: Vec<String>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    fn parse(v: &Value) -> Self {
        Rule {
            operations: strings(v, "operations"),
            groups: strings(v, "apiGroups"),
            versions: strings(v, "apiVersions"),
            resources: strings(v, "resources"),
            scope: match v.get("scope").and_then(Value::as_str) {
                Some("Cluster") => Scope::Cluster,
                Some("Namespaced") => Scope::Namespaced,
                _ => Scope::All,
            },
            names: strings(v, "resourceNames"),
        }
    }

    /// The rule without its resource names (`rules.Matcher`).
    fn matches_kind(&self, r: &Request<'_>) -> bool {
        let any = |list: &[String], want: &str| list.iter().any(|x| x == "*" || x == want);
        any(&self.operations, r.operation)
            && any(&self.groups, r.group)
            && any(&self.versions, r.version)
            && self.matches_resource(r)
            && self.matches_scope(r)
    }

    fn matches_resource(&self, r: &Request<'_>) -> bool {
        // Kubernetes' rule matcher: `res/sub` with `*` on either side; a pattern
        // without `/` names no subresource, and `x/*` also covers `x` itself.
        self.resources.iter().any(|pattern| {
            let (res, sub) = pattern.split_once('/').unwrap_or((pattern, ""));
            (res == "*" || res == r.resource) && (sub == "*" || sub == r.subresource)
        })
    }

    fn matches_scope(&self, r: &Request<'_>) -> bool {
        match self.scope {
            Scope::All => true,
            Scope::Namespaced => !r.is_namespace() && !r.namespace.is_empty(),
            Scope::Cluster => r.is_namespace() || r.namespace.is_empty(),
        }
    }

    fn matches(&self, r: &Request<'_>) -> bool {
        self.matches_kind(r) && (self.names.is_empty() || self.names.iter().any(|n| n == r.name))
    }
}

/// A `MatchResources`, parsed once per object version.
#[derive(Debug, Clone)]
pub(crate) struct MatchResources {
    namespace_selector: LabelSelector,
    object_selector: LabelSelector,
    resource_rules: Vec<Rule>,
    exclude_rules: Vec<Rule>,
    /// Matches no request (a policy without usable constraints).
    never: bool,
}

fn selector(m: &Value, key: &str) -> Result<LabelSelector, String> {
    match m.get(key).filter(|s| !s.is_null()) {
        None => Ok(LabelSelector::everything()),
        Some(s) => {
            let parsed: metav1::LabelSelector =
                serde_json::from_value(s.clone()).map_err(|e| format!("{key}: {e}"))?;
            LabelSelector::from_label_selector(&parsed).map_err(|e| e.to_string())
        }
    }
}

fn labels(obj: Option<&Value>) -> Option<BTreeMap<String, String>> {
    let labels = obj?.pointer("/metadata/labels")?.as_object()?;
    Some(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
    )
}

impl MatchResources {
    /// Parses a `matchConstraints`/`matchResources` object; the error is a
    /// selector that does not parse.
    pub(crate) fn parse(m: &Value) -> Result<Self, String> {
        let rules = |key: &str| {
            m.get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Rule::parse).collect())
                .unwrap_or_default()
        };
        Ok(MatchResources {
            namespace_selector: selector(m, "namespaceSelector")?,
            object_selector: selector(m, "objectSelector")?,
            resource_rules: rules("resourceRules"),
            exclude_rules: rules("excludeResourceRules"),
            never: false,
        })
    }

    /// Like [`MatchResources::parse`], but a selector that does not parse
    /// selects everything and is returned as the error beside the constraints,
    /// so that it is reported on the requests the rules match.
    pub(crate) fn parse_lenient(m: &Value) -> (Self, Option<String>) {
        match Self::parse(m) {
            Ok(parsed) => (parsed, None),
            Err(e) => {
                let mut rules_only = m.clone();
                if let Some(o) = rules_only.as_object_mut() {
                    o.remove("namespaceSelector");
                    o.remove("objectSelector");
                }
                let parsed = Self::parse(&rules_only).unwrap_or_else(|_| Self::nothing());
                (parsed, Some(e))
            }
        }
    }

    /// Constraints that select no request.
    pub(crate) fn nothing() -> Self {
        MatchResources {
            namespace_selector: LabelSelector::everything(),
            object_selector: LabelSelector::everything(),
            resource_rules: Vec::new(),
            exclude_rules: Vec::new(),
            never: true,
        }
    }

    /// Whether the request is selected (`Matcher.Matches`). `namespace_labels`
    /// gives the labels of a namespace by name (`None`: no such namespace). An
    /// error (a missing namespace) counts only when the rules match.
    pub(crate) fn matches(
        &self,
        r: &Request<'_>,
        namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> Result<bool, String> {
        if self.never {
            return Ok(false);
        }
        let namespace = self.matches_namespace(r, namespace_labels);
        if namespace == Ok(false) {
            return Ok(false);
        }
        if !self.matches_object(r) {
            return Ok(false);
        }
        if self.exclude_rules.iter().any(|rule| rule.matches(r)) {
            return Ok(false);
        }
        if !self.resource_rules.is_empty()
            && !self.resource_rules.iter().any(|rule| rule.matches(r))
        {
            return Ok(false);
        }
        namespace
    }

    /// Whether a request with this operation on this resource could be selected
    /// whatever its objects, names and namespace.
    pub(crate) fn may_match(
        &self,
        operation: &str,
        group: &str,
        version: &str,
        resource: &str,
        subresource: &str,
    ) -> bool {
        if self.never {
            return false;
        }
        let r = Request {
            operation,
            group,
            version,
            resource,
            subresource,
            namespace: "",
            name: "",
            object: None,
            old: None,
        };
        self.resource_rules.is_empty()
            || self.resource_rules.iter().any(|rule| {
                rule.operations.iter().any(|o| o == "*" || o == operation)
                    && rule.groups.iter().any(|g| g == "*" || g == group)
                    && rule.versions.iter().any(|v| v == "*" || v == version)
                    && rule.matches_resource(&r)
            })
    }

    /// `namespace.Matcher.MatchNamespaceSelector`.
    fn matches_namespace(
        &self,
        r: &Request<'_>,
        namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> Result<bool, String> {
        if r.namespace.is_empty() && !r.is_namespace() {
            // Cluster-scoped objects other than namespaces are never exempted.
            return Ok(true);
        }
        if self.namespace_selector.is_empty() {
            return Ok(true);
        }
        let labels = if r.is_namespace()
            && r.subresource.is_empty()
            && (r.operation == "CREATE" || r.operation == "UPDATE")
        {
            labels(r.object).unwrap_or_default()
        } else {
            let name = if r.namespace.is_empty() {
                r.name
            } else {
                r.namespace
            };
            namespace_labels(name).ok_or_else(|| format!("namespaces {name:?} not found"))?
        };
        Ok(self.namespace_selector.matches(&labels))
    }

    /// `object.Matcher.MatchObjectSelector`: the new or the old object's labels.
    fn matches_object(&self, r: &Request<'_>) -> bool {
        if self.object_selector.is_empty() {
            return true;
        }
        [r.object, r.old].into_iter().any(|o| {
            o.filter(|o| !o.is_null()).is_some_and(|o| {
                self.object_selector
                    .matches(&labels(Some(o)).unwrap_or_default())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request<'a>(
        operation: &'a str,
        resource: &'a str,
        namespace: &'a str,
        object: Option<&'a Value>,
    ) -> Request<'a> {
        Request {
            operation,
            group: "apps",
            version: "v1",
            resource,
            subresource: "",
            namespace,
            name: "web",
            object,
            old: None,
        }
    }

    fn no_namespaces(_: &str) -> Option<BTreeMap<String, String>> {
        None
    }

    fn deployments(extra: Value) -> MatchResources {
        let mut m = json!({"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"], "resources": ["deployments"], "scope": "*"}]});
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(extra.clone());
        }
        MatchResources::parse(&m).expect("parses")
    }

    #[test]
    fn rules_match_operation_group_version_and_resource() {
        let m = deployments(json!({}));
        let obj = json!({});
        assert_eq!(
            m.matches(
                &request("CREATE", "deployments", "ns", Some(&obj)),
                &no_namespaces
            ),
            Ok(true)
        );
        assert_eq!(
            m.matches(
                &request("DELETE", "deployments", "ns", None),
                &no_namespaces
            ),
            Ok(false)
        );
        assert_eq!(
            m.matches(
                &request("CREATE", "replicasets", "ns", Some(&obj)),
                &no_namespaces
            ),
            Ok(false)
        );
        let mut scale = request("UPDATE", "deployments", "ns", Some(&obj));
        scale.subresource = "scale";
        assert_eq!(
            m.matches(&scale, &no_namespaces),
            Ok(false),
            "subresources need x/y rules"
        );
        let sub = MatchResources::parse(
            &json!({"resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"],
            "operations": ["*"], "resources": ["*/scale"]}]}),
        )
        .expect("parses");
        assert_eq!(sub.matches(&scale, &no_namespaces), Ok(true));
        assert!(sub.may_match("DELETE", "apps", "v1", "deployments", "scale"));
        assert!(!m.may_match("DELETE", "apps", "v1", "deployments", ""));
        // As Kubernetes' rule matcher: `*/*` and `deployments/*` cover the resource
        // itself as well as its subresources.
        for pattern in ["*/*", "deployments/*"] {
            let all = MatchResources::parse(&json!({"resourceRules": [{"apiGroups": ["*"],
                "apiVersions": ["*"], "operations": ["*"], "resources": [pattern]}]}))
            .expect("parses");
            assert_eq!(
                all.matches(
                    &request("CREATE", "deployments", "ns", Some(&obj)),
                    &no_namespaces
                ),
                Ok(true),
                "{pattern}"
            );
            assert_eq!(all.matches(&scale, &no_namespaces), Ok(true), "{pattern}");
        }
    }

    #[test]
    fn exclusions_scope_and_names_narrow_the_rules() {
        let m = MatchResources::parse(&json!({
            "resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"],
                               "resources": ["*"], "scope": "Namespaced"}],
            "excludeResourceRules": [{"apiGroups": ["apps"], "apiVersions": ["*"], "operations": ["*"],
                                      "resources": ["deployments"], "resourceNames": ["web"]}],
        }))
        .expect("parses");
        let obj = json!({});
        assert_eq!(
            m.matches(
                &request("CREATE", "deployments", "ns", Some(&obj)),
                &no_namespaces
            ),
            Ok(false)
        );
        let mut other = request("CREATE", "deployments", "ns", Some(&obj));
        other.name = "api";
        assert_eq!(m.matches(&other, &no_namespaces), Ok(true));
        assert_eq!(
            m.matches(
                &request("CREATE", "clusterthings", "", Some(&obj)),
                &no_namespaces
            ),
            Ok(false)
        );
    }

    #[test]
    fn namespace_selectors_read_the_namespace_labels() {
        let m = deployments(json!({"namespaceSelector": {"matchLabels": {"environment": "test"}}}));
        let lookup = |ns: &str| -> Option<BTreeMap<String, String>> {
            match ns {
                "test-ns" => Some(BTreeMap::from([(
                    "environment".to_string(),
                    "test".to_string(),
                )])),
                "prod" => Some(BTreeMap::new()),
                _ => None,
            }
        };
        let obj = json!({});
        assert_eq!(
            m.matches(
                &request("CREATE", "deployments", "test-ns", Some(&obj)),
                &lookup
            ),
            Ok(true)
        );
        assert_eq!(
            m.matches(
                &request("CREATE", "deployments", "prod", Some(&obj)),
                &lookup
            ),
            Ok(false)
        );
        assert_eq!(
            m.matches(
                &request("CREATE", "deployments", "gone", Some(&obj)),
                &lookup
            ),
            Err("namespaces \"gone\" not found".into())
        );
        // A namespace being created is matched on its own labels.
        let ns = json!({"metadata": {"name": "new", "labels": {"environment": "test"}}});
        let all = MatchResources::parse(&json!({"namespaceSelector": {"matchLabels": {"environment": "test"}},
            "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["namespaces"]}]}))
        .expect("parses");
        let create_ns = Request {
            group: "",
            resource: "namespaces",
            namespace: "",
            name: "new",
            ..request("CREATE", "namespaces", "", Some(&ns))
        };
        assert_eq!(all.matches(&create_ns, &no_namespaces), Ok(true));
    }

    #[test]
    fn object_selectors_match_the_new_or_the_old_object() {
        let m = deployments(
            json!({"objectSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}}),
        );
        let web = json!({"metadata": {"labels": {"tier": "web"}}});
        let db = json!({"metadata": {"labels": {"tier": "db"}}});
        assert_eq!(
            m.matches(
                &request("CREATE", "deployments", "ns", Some(&web)),
                &no_namespaces
            ),
            Ok(true)
        );
        assert_eq!(
            m.matches(
                &request("CREATE", "deployments", "ns", Some(&db)),
                &no_namespaces
            ),
            Ok(false)
        );
        let mut relabel = request("UPDATE", "deployments", "ns", Some(&db));
        relabel.old = Some(&web);
        assert_eq!(m.matches(&relabel, &no_namespaces), Ok(true));
    }
}
