//! The flow-control configuration: FlowSchemas (who and what, in precedence order)
//! and PriorityLevelConfigurations (how many seats, how to queue), parsed from the
//! `flowcontrol.apiserver.k8s.io/v1` objects; and the defaults Kubernetes installs.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::queueset::Limit;
use crate::authn::Identity;
use crate::request::RequestInfo;

/// How requests matching a schema are split into flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Distinguisher {
    None,
    ByUser,
    ByNamespace,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    User(String),
    Group(String),
    ServiceAccount { namespace: String, name: String },
}

#[derive(Debug, Clone, Default)]
struct ResourceRule {
    verbs: Vec<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    cluster_scope: bool,
    namespaces: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct NonResourceRule {
    verbs: Vec<String>,
    urls: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Rule {
    subjects: Vec<Subject>,
    resource_rules: Vec<ResourceRule>,
    non_resource_rules: Vec<NonResourceRule>,
}

/// One parsed FlowSchema.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    pub name: String,
    pub uid: String,
    pub precedence: i64,
    pub level: String,
    pub distinguisher: Distinguisher,
    rules: Vec<Rule>,
}

/// One parsed PriorityLevelConfiguration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Level {
    pub name: String,
    pub uid: String,
    /// None: exempt (never queued).
    pub limited: Option<Limited>,
}

/// A limited level's share of the server's seats and its queuing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limited {
    pub shares: u32,
    pub limit: Limit,
}

/// All schemas (in matching order) and levels.
#[derive(Debug, Clone, Default)]
pub(crate) struct Config {
    pub schemas: Vec<Schema>,
    pub levels: HashMap<String, Level>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn wild(list: &[String], value: &str) -> bool {
    list.iter().any(|x| x == "*" || x == value)
}

impl Schema {
    /// Parses a FlowSchema object; None when it names no priority level.
    pub(crate) fn parse(obj: &Value) -> Option<Self> {
        let spec = obj.get("spec")?;
        let level = text(spec, "/priorityLevelConfiguration/name");
        if level.is_empty() {
            return None;
        }
        let distinguisher = match text(spec, "/distinguisherMethod/type") {
            "ByUser" => Distinguisher::ByUser,
            "ByNamespace" => Distinguisher::ByNamespace,
            _ => Distinguisher::None,
        };
        let rules = spec
            .get("rules")
            .and_then(Value::as_array)
            .map(|rules| rules.iter().map(parse_rule).collect())
            .unwrap_or_default();
        Some(Self {
            name: text(obj, "/metadata/name").to_string(),
            uid: text(obj, "/metadata/uid").to_string(),
            precedence: spec
                .get("matchingPrecedence")
                .and_then(Value::as_i64)
                .unwrap_or(1000),
            level: level.to_string(),
            distinguisher,
            rules,
        })
    }

    /// Whether a request by `who` described by `info` falls under this schema.
    pub(crate) fn matches(&self, who: &Identity, info: &RequestInfo) -> bool {
        self.rules.iter().any(|r| r.matches(who, info))
    }

    /// The flow a request belongs to within this schema.
    pub(crate) fn flow_key(&self, who: &Identity, info: &RequestInfo) -> String {
        match self.distinguisher {
            Distinguisher::None => String::new(),
            Distinguisher::ByUser => who.user.clone(),
            Distinguisher::ByNamespace => info.namespace.clone().unwrap_or_default(),
        }
    }
}

fn parse_rule(rule: &Value) -> Rule {
    let subjects = rule
        .get("subjects")
        .and_then(Value::as_array)
        .map(|subjects| {
            subjects
                .iter()
                .filter_map(|s| match text(s, "/kind") {
                    "User" => Some(Subject::User(text(s, "/user/name").to_string())),
                    "Group" => Some(Subject::Group(text(s, "/group/name").to_string())),
                    "ServiceAccount" => Some(Subject::ServiceAccount {
                        namespace: text(s, "/serviceAccount/namespace").to_string(),
                        name: text(s, "/serviceAccount/name").to_string(),
                    }),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let resource_rules = rule
        .get("resourceRules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .map(|r| ResourceRule {
                    verbs: strings(r.get("verbs")),
                    api_groups: strings(r.get("apiGroups")),
                    resources: strings(r.get("resources")),
                    cluster_scope: r
                        .get("clusterScope")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    namespaces: strings(r.get("namespaces")),
                })
                .collect()
        })
        .unwrap_or_default();
    let non_resource_rules = rule
        .get("nonResourceRules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .map(|r| NonResourceRule {
                    verbs: strings(r.get("verbs")),
                    urls: strings(r.get("nonResourceURLs")),
                })
                .collect()
        })
        .unwrap_or_default();
    Rule {
        subjects,
        resource_rules,
        non_resource_rules,
    }
}

impl Rule {
    fn matches(&self, who: &Identity, info: &RequestInfo) -> bool {
        let subject = self.subjects.iter().any(|s| match s {
            Subject::User(name) => name == "*" || *name == who.user,
            Subject::Group(name) => name == "*" || who.groups.iter().any(|g| g == name),
            Subject::ServiceAccount { namespace, name } => {
                let prefix = format!("system:serviceaccount:{namespace}:");
                who.user
                    .strip_prefix(&prefix)
                    .is_some_and(|n| name == "*" || n == name)
            }
        });
        if !subject {
            return false;
        }
        if info.is_resource {
            self.resource_rules.iter().any(|r| r.matches(info))
        } else {
            self.non_resource_rules.iter().any(|r| r.matches(info))
        }
    }
}

impl ResourceRule {
    fn matches(&self, info: &RequestInfo) -> bool {
        if !wild(&self.verbs, &info.verb) || !wild(&self.api_groups, &info.group) {
            return false;
        }
        let resource = if info.subresource.is_empty() {
            info.resource.clone()
        } else {
            format!("{}/{}", info.resource, info.subresource)
        };
        if !wild(&self.resources, &resource) {
            return false;
        }
        match info.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => wild(&self.namespaces, ns),
            _ => self.cluster_scope,
        }
    }
}

impl NonResourceRule {
    fn matches(&self, info: &RequestInfo) -> bool {
        if !wild(&self.verbs, &info.verb) {
            return false;
        }
        self.urls.iter().any(|u| {
            u == "*"
                || *u == info.path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| info.path.starts_with(prefix))
        })
    }
}

impl Level {
    /// Parses a PriorityLevelConfiguration object.
    pub(crate) fn parse(obj: &Value) -> Option<Self> {
        let spec = obj.get("spec")?;
        let name = text(obj, "/metadata/name").to_string();
        let uid = text(obj, "/metadata/uid").to_string();
        let limited = match text(spec, "/type") {
            "Exempt" => None,
            "Limited" => {
                let l = spec.get("limited").cloned().unwrap_or_else(|| json!({}));
                let shares = l
                    .get("nominalConcurrencyShares")
                    .and_then(Value::as_u64)
                    .unwrap_or(30) as u32;
                let limit = match text(&l, "/limitResponse/type") {
                    "Queue" => {
                        let q = l
                            .pointer("/limitResponse/queuing")
                            .cloned()
                            .unwrap_or_else(|| json!({}));
                        let num = |k: &str, d: u64| {
                            q.get(k).and_then(Value::as_u64).unwrap_or(d).max(1) as usize
                        };
                        Limit::Queue {
                            queues: num("queues", 64),
                            hand_size: num("handSize", 8),
                            queue_length_limit: num("queueLengthLimit", 50),
                        }
                    }
                    _ => Limit::Reject,
                };
                Some(Limited { shares, limit })
            }
            _ => return None,
        };
        Some(Self { name, uid, limited })
    }
}

impl Config {
    /// Builds the configuration from the stored objects (unparseable ones are left
    /// out, as kube-apiserver ignores them).
    pub(crate) fn build<'a>(
        flow_schemas: impl Iterator<Item = &'a Value>,
        levels: impl Iterator<Item = &'a Value>,
    ) -> Self {
        let mut schemas: Vec<Schema> = flow_schemas.filter_map(Schema::parse).collect();
        schemas.sort_by(|a, b| (a.precedence, &a.name).cmp(&(b.precedence, &b.name)));
        let levels = levels
            .filter_map(Level::parse)
            .map(|l| (l.name.clone(), l))
            .collect();
        Self { schemas, levels }
    }

    /// The first schema matching the request whose level exists, as kube-apiserver
    /// classifies (a schema naming a missing level is skipped).
    pub(crate) fn classify(&self, who: &Identity, info: &RequestInfo) -> Option<(&Schema, &Level)> {
        self.schemas.iter().find_map(|s| {
            if !s.matches(who, info) {
                return None;
            }
            self.levels.get(&s.level).map(|l| (s, l))
        })
    }

    /// Each limited level's nominal seats: its share of `server_limit`, rounded up
    /// (kube-apiserver's NominalCL).
    pub(crate) fn nominal_limits(&self, server_limit: u32) -> HashMap<String, u32> {
        let total: u64 = self
            .levels
            .values()
            .filter_map(|l| l.limited.as_ref())
            .map(|l| l.shares as u64)
            .sum();
        self.levels
            .values()
            .filter_map(|l| {
                let limited = l.limited.as_ref()?;
                let seats = if total == 0 {
                    1
                } else {
                    (server_limit as u64 * limited.shares as u64).div_ceil(total)
                };
                Some((l.name.clone(), seats.max(1) as u32))
            })
            .collect()
    }
}

/// The annotation that lets the server keep its default objects' specs current.
pub(crate) const AUTO_UPDATE: &str = "apf.kubernetes.io/autoupdate-spec";

fn level_object(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name, "annotations": {AUTO_UPDATE: "true"}},
        "spec": spec,
    })
}

fn queuing(shares: u32, lendable: u32, queues: u32, hand: u32) -> Value {
    json!({"type": "Limited", "limited": {
        "nominalConcurrencyShares": shares,
        "lendablePercent": lendable,
        "limitResponse": {"type": "Queue", "queuing": {"queues": queues, "handSize": hand, "queueLengthLimit": 50}},
    }})
}

/// Kubernetes' mandatory and suggested PriorityLevelConfigurations.
pub(crate) fn default_levels() -> Vec<Value> {
    vec![
        level_object(
            "exempt",
            json!({"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}),
        ),
        level_object(
            "catch-all",
            json!({"type": "Limited", "limited": {"nominalConcurrencyShares": 5, "lendablePercent": 0, "limitResponse": {"type": "Reject"}}}),
        ),
        level_object("system", queuing(30, 33, 64, 6)),
        level_object("node-high", queuing(40, 25, 64, 6)),
        level_object("leader-election", queuing(10, 0, 16, 4)),
        level_object("workload-high", queuing(40, 50, 128, 6)),
        level_object("workload-low", queuing(100, 90, 128, 6)),
        level_object("global-default", queuing(20, 50, 128, 6)),
    ]
}

fn user(name: &str) -> Value {
    json!({"kind": "User", "user": {"name": name}})
}

fn group(name: &str) -> Value {
    json!({"kind": "Group", "group": {"name": name}})
}

fn service_account(namespace: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "serviceAccount": {"namespace": namespace, "name": name}})
}

fn everything() -> (Value, Value) {
    (
        json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": true, "namespaces": ["*"]}]),
        json!([{"verbs": ["*"], "nonResourceURLs": ["*"]}]),
    )
}

fn schema_object(
    name: &str,
    precedence: u32,
    level: &str,
    distinguisher: Option<&str>,
    rules: Value,
) -> Value {
    let mut spec = json!({
        "priorityLevelConfiguration": {"name": level},
        "matchingPrecedence": precedence,
        "rules": rules,
    });
    if let Some(d) = distinguisher {
        spec["distinguisherMethod"] = json!({"type": d});
    }
    json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name, "annotations": {AUTO_UPDATE: "true"}},
        "spec": spec,
    })
}

/// Kubernetes' mandatory and suggested FlowSchemas.
pub(crate) fn default_schemas() -> Vec<Value> {
    let (all_resources, all_urls) = everything();
    let all = |subjects: Value| json!([{"subjects": subjects, "resourceRules": all_resources, "nonResourceRules": all_urls}]);
    let leases = json!([{"verbs": ["get", "create", "update"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "namespaces": ["*"]}]);
    let scheduler = crate::pki::SCHEDULER_USER;
    let controller_manager = crate::pki::CONTROLLER_MANAGER_USER;
    vec![
        schema_object(
            "exempt",
            1,
            "exempt",
            None,
            all(json!([group("system:masters")])),
        ),
        schema_object(
            "probes",
            2,
            "exempt",
            None,
            json!([{
                "subjects": [group("system:unauthenticated"), group("system:authenticated")],
                "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}],
            }]),
        ),
        schema_object(
            "system-leader-election",
            100,
            "leader-election",
            Some("ByUser"),
            json!([{"subjects": [user(controller_manager), user(scheduler)], "resourceRules": leases}]),
        ),
        schema_object(
            "endpoint-controller",
            150,
            "workload-high",
            Some("ByUser"),
            json!([{
                "subjects": [user(controller_manager), service_account("kube-system", "endpoint-controller")],
                "resourceRules": [{"verbs": ["get", "create", "update"], "apiGroups": [""], "resources": ["endpoints"], "namespaces": ["*"]}],
            }]),
        ),
        schema_object(
            "workload-leader-election",
            200,
            "leader-election",
            Some("ByUser"),
            json!([{"subjects": [service_account("kube-system", "*")], "resourceRules": leases}]),
        ),
        schema_object(
            "system-node-high",
            400,
            "node-high",
            Some("ByUser"),
            json!([{
                "subjects": [group("system:nodes")],
                "resourceRules": [
                    {"verbs": ["*"], "apiGroups": [""], "resources": ["nodes", "nodes/status"], "clusterScope": true},
                    {"verbs": ["*"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "namespaces": ["*"]},
                ],
            }]),
        ),
        schema_object(
            "system-nodes",
            500,
            "system",
            Some("ByUser"),
            all(json!([group("system:nodes")])),
        ),
        schema_object(
            "kube-controller-manager",
            800,
            "workload-high",
            Some("ByNamespace"),
            all(json!([user(controller_manager)])),
        ),
        schema_object(
            "kube-scheduler",
            800,
            "workload-high",
            Some("ByNamespace"),
            all(json!([user(scheduler)])),
        ),
        schema_object(
            "kube-system-service-accounts",
            900,
            "workload-high",
            Some("ByNamespace"),
            all(json!([service_account("kube-system", "*")])),
        ),
        schema_object(
            "service-accounts",
            9000,
            "workload-low",
            Some("ByUser"),
            all(json!([group("system:serviceaccounts")])),
        ),
        schema_object(
            "global-default",
            9900,
            "global-default",
            Some("ByUser"),
            all(json!([
                group("system:unauthenticated"),
                group("system:authenticated")
            ])),
        ),
        schema_object(
            "catch-all",
            10000,
            "catch-all",
            Some("ByUser"),
            all(json!([
                group("system:unauthenticated"),
                group("system:authenticated")
            ])),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Config {
        let schemas = default_schemas();
        let levels = default_levels();
        Config::build(schemas.iter(), levels.iter())
    }

    fn who(user: &str, groups: &[&str]) -> Identity {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        groups.push("system:authenticated".into());
        Identity {
            user: user.into(),
            uid: String::new(),
            groups,
            extra: Default::default(),
        }
    }

    fn req(method: http::Method, path: &str) -> RequestInfo {
        crate::request::parse(&method, path, None).expect("parses")
    }

    fn class(c: &Config, who: &Identity, info: &RequestInfo) -> (String, String) {
        let (s, l) = c.classify(who, info).expect("classified");
        (s.name.clone(), l.name.clone())
    }

    #[test]
    fn requests_land_in_kubernetes_default_schemas() {
        let c = defaults();
        let pods = req(http::Method::GET, "/api/v1/namespaces/default/pods");
        assert_eq!(
            class(&c, &who("admin", &["system:masters"]), &pods),
            ("exempt".into(), "exempt".into())
        );
        assert_eq!(
            class(&c, &who("jane", &[]), &pods),
            ("global-default".into(), "global-default".into())
        );
        assert_eq!(
            class(
                &c,
                &who(
                    "system:serviceaccount:apps:web",
                    &["system:serviceaccounts"]
                ),
                &pods
            ),
            ("service-accounts".into(), "workload-low".into())
        );
        let node = req(http::Method::PUT, "/api/v1/nodes/n1/status");
        assert_eq!(
            class(&c, &who("system:node:n1", &["system:nodes"]), &node),
            ("system-node-high".into(), "node-high".into())
        );
        assert_eq!(
            class(&c, &who("system:node:n1", &["system:nodes"]), &pods),
            ("system-nodes".into(), "system".into())
        );
        let lease = req(
            http::Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler",
        );
        assert_eq!(
            class(&c, &who(crate::pki::SCHEDULER_USER, &[]), &lease),
            ("system-leader-election".into(), "leader-election".into())
        );
        let health = req(http::Method::GET, "/readyz");
        assert_eq!(
            class(&c, &who("jane", &[]), &health),
            ("probes".into(), "exempt".into())
        );
    }

    #[test]
    fn schemas_naming_a_missing_level_are_skipped_and_distinguishers_split_flows() {
        let mut schemas = default_schemas();
        schemas.push(schema_object(
            "jane-first",
            10,
            "no-such-level",
            Some("ByUser"),
            json!([{"subjects": [user("jane")], "resourceRules": everything().0}]),
        ));
        let levels = default_levels();
        let c = Config::build(schemas.iter(), levels.iter());
        let pods = req(http::Method::GET, "/api/v1/namespaces/default/pods");
        let (s, _) = c.classify(&who("jane", &[]), &pods).expect("classified");
        assert_eq!(s.name, "global-default");
        assert_eq!(s.flow_key(&who("jane", &[]), &pods), "jane");
        let cm = c
            .schemas
            .iter()
            .find(|s| s.name == "kube-controller-manager")
            .expect("schema");
        assert_eq!(cm.flow_key(&who("x", &[]), &pods), "default");
    }

    #[test]
    fn nominal_limits_share_the_server_limit_like_kubernetes() {
        let c = defaults();
        let limits = c.nominal_limits(600);
        // Shares 5+30+40+10+40+100+20 = 245: ceil(600*20/245) = 49.
        assert_eq!(limits["global-default"], 49);
        assert_eq!(limits["workload-low"], 245);
        assert_eq!(limits["catch-all"], 13);
        assert!(!limits.contains_key("exempt"));
    }
}
