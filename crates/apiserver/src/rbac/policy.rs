//! The default roles and bindings, as Kubernetes' `bootstrappolicy` has them
//! (v1.33), plus what Skiff's own components need because they run differently:
//!
//! - the controller manager runs every controller as one identity
//!   (`system:kube-controller-manager`, like kube-controller-manager without
//!   `--use-service-account-credentials`), so the `system:controller:*` roles of the
//!   controllers it runs are folded into one ClusterRole,
//!   `system:skiff:controller-manager`, bound to that user;
//! - the scheduler also reads PriorityClasses (`system:skiff:kube-scheduler`);
//! - the cluster DNS runs in the server as `system:kube-dns`: it reads Services,
//!   EndpointSlices and Namespaces (`system:skiff:kube-dns`, CoreDNS's rules) and
//!   publishes `kube-system/kube-dns` (a Role of the same name in `kube-system`);
//! - nodes are authorized by the Node authorizer (`crate::node_authz`), which
//!   evaluates the `system:node` rules itself: as in Kubernetes since 1.8, the
//!   `system:node` binding exists with no subjects;
//! - the service proxy and the local-path provisioner run inside every agent with
//!   the node's identity, so `system:nodes` is bound to `system:node-proxier` and
//!   `system:persistent-volume-provisioner`.
//!
//! Every object carries `kubernetes.io/bootstrapping: rbac-defaults` and
//! `rbac.authorization.kubernetes.io/autoupdate: "true"`.

use serde_json::{Value, json};

use super::objects::{RBAC_GROUP, Subject};
use super::rule::PolicyRule;
use crate::pki::{CLUSTER_DNS_USER, CONTROLLER_MANAGER_USER, SCHEDULER_USER};

mod rules;

/// Annotation that lets the server reconcile a default object at each start.
pub(crate) const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const BOOTSTRAPPING: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");
const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const EVENT_WRITE: &[&str] = &["create", "patch", "update"];

const CORE: &str = "";
const APPS: &str = "apps";
const AUTHENTICATION: &str = "authentication.k8s.io";
const AUTHORIZATION: &str = "authorization.k8s.io";
const AUTOSCALING: &str = "autoscaling";
const BATCH: &str = "batch";
const CERTIFICATES: &str = "certificates.k8s.io";
const COORDINATION: &str = "coordination.k8s.io";
const DISCOVERY: &str = "discovery.k8s.io";
const EVENTS: &str = "events.k8s.io";
const EXTENSIONS: &str = "extensions";
const NETWORKING: &str = "networking.k8s.io";
const POLICY: &str = "policy";
const STORAGE: &str = "storage.k8s.io";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A rule under construction.
struct R(PolicyRule);

fn rule(verbs: &[&str]) -> R {
    R(PolicyRule {
        verbs: strings(verbs),
        ..Default::default()
    })
}

impl R {
    fn groups(mut self, groups: &[&str]) -> Self {
        self.0.api_groups = strings(groups);
        self
    }
    fn resources(mut self, resources: &[&str]) -> Self {
        self.0.resources = strings(resources);
        self
    }
    fn names(mut self, names: &[&str]) -> Self {
        self.0.resource_names = strings(names);
        self
    }
    fn urls(mut self, urls: &[&str]) -> Self {
        self.0.non_resource_urls = strings(urls);
        self
    }
}

fn events_rule() -> R {
    rule(EVENT_WRITE)
        .groups(&[CORE, EVENTS])
        .resources(&["events"])
}

/// A default ClusterRole, or a Role when it has a namespace.
pub(crate) struct DefaultRole {
    pub name: &'static str,
    pub namespace: Option<&'static str>,
    labels: Vec<(&'static str, &'static str)>,
    pub rules: Vec<PolicyRule>,
    /// The label key whose `"true"` value selects the roles this one aggregates.
    pub aggregate: Option<&'static str>,
}

fn role(name: &'static str, rules: Vec<R>) -> DefaultRole {
    DefaultRole {
        name,
        namespace: None,
        labels: Vec::new(),
        rules: rules.into_iter().map(|r| r.0).collect(),
        aggregate: None,
    }
}

impl DefaultRole {
    fn label(mut self, key: &'static str) -> Self {
        self.labels.push((key, "true"));
        self
    }

    fn aggregating(mut self, key: &'static str) -> Self {
        self.aggregate = Some(key);
        self
    }

    fn in_namespace(mut self, namespace: &'static str) -> Self {
        self.namespace = Some(namespace);
        self
    }

    /// `Role` or `ClusterRole`.
    pub(crate) fn kind(&self) -> &'static str {
        if self.namespace.is_some() {
            "Role"
        } else {
            "ClusterRole"
        }
    }

    /// The object as created at first start.
    pub(crate) fn to_object(&self) -> Value {
        let mut labels = serde_json::Map::new();
        labels.insert(BOOTSTRAPPING.0.into(), BOOTSTRAPPING.1.into());
        for (k, v) in &self.labels {
            labels.insert((*k).into(), (*v).into());
        }
        let mut obj = json!({
            "apiVersion": format!("{RBAC_GROUP}/v1"),
            "kind": self.kind(),
            "metadata": {"name": self.name, "labels": labels, "annotations": {AUTOUPDATE: "true"}},
            "rules": self.rules,
        });
        if let Some(ns) = self.namespace {
            obj["metadata"]["namespace"] = ns.into();
        }
        if let Some(key) = self.aggregate {
            obj["aggregationRule"] =
                json!({"clusterRoleSelectors": [{"matchLabels": {key: "true"}}]});
            obj["rules"] = json!([]);
        }
        obj
    }
}

/// A default ClusterRoleBinding, or a RoleBinding (to a Role of its namespace)
/// when it has a namespace.
pub(crate) struct DefaultBinding {
    pub name: &'static str,
    pub namespace: Option<&'static str>,
    pub role: &'static str,
    pub subjects: Vec<Subject>,
}

fn bind(name: &'static str, role: &'static str, subjects: Vec<Subject>) -> DefaultBinding {
    DefaultBinding {
        name,
        namespace: None,
        role,
        subjects,
    }
}

fn group(name: &str) -> Subject {
    Subject {
        kind: "Group".into(),
        api_group: RBAC_GROUP.into(),
        name: name.into(),
        namespace: String::new(),
    }
}

fn user(name: &str) -> Subject {
    Subject {
        kind: "User".into(),
        api_group: RBAC_GROUP.into(),
        name: name.into(),
        namespace: String::new(),
    }
}

fn service_account(namespace: &str, name: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        api_group: String::new(),
        name: name.into(),
        namespace: namespace.into(),
    }
}

impl DefaultBinding {
    fn in_namespace(mut self, namespace: &'static str) -> Self {
        self.namespace = Some(namespace);
        self
    }

    /// The kind of role it refers to: `Role` in its namespace, else `ClusterRole`.
    pub(crate) fn role_kind(&self) -> &'static str {
        if self.namespace.is_some() {
            "Role"
        } else {
            "ClusterRole"
        }
    }

    /// The object as created at first start.
    pub(crate) fn to_object(&self) -> Value {
        let kind = if self.namespace.is_some() {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        };
        let mut obj = json!({
            "apiVersion": format!("{RBAC_GROUP}/v1"),
            "kind": kind,
            "metadata": {"name": self.name, "labels": {BOOTSTRAPPING.0: BOOTSTRAPPING.1},
                         "annotations": {AUTOUPDATE: "true"}},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": self.role_kind(), "name": self.role},
            "subjects": self.subjects,
        });
        if let Some(ns) = self.namespace {
            obj["metadata"]["namespace"] = ns.into();
        }
        obj
    }
}

/// The group every node agent is in.
const NODES_GROUP: &str = "system:nodes";

/// The default ClusterRoles, and Roles of `kube-system`.
pub(crate) fn default_roles() -> Vec<DefaultRole> {
    vec![
        role(
            "cluster-admin",
            vec![
                rule(&["*"]).groups(&["*"]).resources(&["*"]),
                rule(&["*"]).urls(&["*"]),
            ],
        ),
        role(
            "system:discovery",
            vec![rule(&["get"]).urls(&[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ])],
        ),
        role(
            "system:monitoring",
            vec![rule(&["get"]).urls(&[
                "/healthz",
                "/healthz/*",
                "/livez",
                "/livez/*",
                "/metrics",
                "/metrics/slis",
                "/readyz",
                "/readyz/*",
            ])],
        ),
        role(
            "system:basic-user",
            vec![
                rule(&["create"])
                    .groups(&[AUTHORIZATION])
                    .resources(&["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                rule(&["create"])
                    .groups(&[AUTHENTICATION])
                    .resources(&["selfsubjectreviews"]),
            ],
        ),
        role(
            "system:public-info-viewer",
            vec![rule(&["get"]).urls(&["/healthz", "/livez", "/readyz", "/version", "/version/"])],
        ),
        role("admin", vec![]).aggregating(AGGREGATE_TO_ADMIN),
        role("edit", vec![])
            .label(AGGREGATE_TO_ADMIN)
            .aggregating(AGGREGATE_TO_EDIT),
        role("view", vec![])
            .label(AGGREGATE_TO_EDIT)
            .aggregating(AGGREGATE_TO_VIEW),
        role(
            "system:aggregate-to-admin",
            vec![
                rule(&["create"])
                    .groups(&[AUTHORIZATION])
                    .resources(&["localsubjectaccessreviews"]),
                rule(READ_WRITE)
                    .groups(&[RBAC_GROUP])
                    .resources(&["rolebindings", "roles"]),
            ],
        )
        .label(AGGREGATE_TO_ADMIN),
        role("system:aggregate-to-edit", rules::aggregate_to_edit()).label(AGGREGATE_TO_EDIT),
        role("system:aggregate-to-view", rules::aggregate_to_view()).label(AGGREGATE_TO_VIEW),
        role(
            "system:auth-delegator",
            vec![
                rule(&["create"])
                    .groups(&[AUTHENTICATION])
                    .resources(&["tokenreviews"]),
                rule(&["create"])
                    .groups(&[AUTHORIZATION])
                    .resources(&["subjectaccessreviews"]),
            ],
        ),
        // Node client bootstrapping (what an approver checks the requester for).
        role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![
                rule(&["create"])
                    .groups(&[CERTIFICATES])
                    .resources(&["certificatesigningrequests/nodeclient"]),
            ],
        ),
        role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![
                rule(&["create"])
                    .groups(&[CERTIFICATES])
                    .resources(&["certificatesigningrequests/selfnodeclient"]),
            ],
        ),
        // Approving requests for each well-known signer.
        role(
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            vec![
                rule(&["approve"])
                    .groups(&[CERTIFICATES])
                    .resources(&["signers"])
                    .names(&["kubernetes.io/kube-apiserver-client"]),
            ],
        ),
        role(
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            vec![
                rule(&["approve"])
                    .groups(&[CERTIFICATES])
                    .resources(&["signers"])
                    .names(&["kubernetes.io/kube-apiserver-client-kubelet"]),
            ],
        ),
        role(
            "system:certificates.k8s.io:kubelet-serving-approver",
            vec![
                rule(&["approve"])
                    .groups(&[CERTIFICATES])
                    .resources(&["signers"])
                    .names(&["kubernetes.io/kubelet-serving"]),
            ],
        ),
        role(
            "system:certificates.k8s.io:legacy-unknown-approver",
            vec![
                rule(&["approve"])
                    .groups(&[CERTIFICATES])
                    .resources(&["signers"])
                    .names(&["kubernetes.io/legacy-unknown"]),
            ],
        ),
        role(
            "system:kube-controller-manager",
            rules::kube_controller_manager(),
        ),
        role(
            "system:kube-dns",
            vec![
                rule(&["list", "watch"])
                    .groups(&[CORE])
                    .resources(&["endpoints", "services"]),
            ],
        ),
        role("system:kube-scheduler", rules::kube_scheduler()),
        role(
            "system:volume-scheduler",
            vec![
                rule(&["get", "list", "patch", "update", "watch"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumes"]),
                rule(READ).groups(&[STORAGE]).resources(&["storageclasses"]),
                rule(&["get", "list", "patch", "update", "watch"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims"]),
            ],
        ),
        role(
            "system:node",
            crate::node_authz::node_rules().into_iter().map(R).collect(),
        ),
        role(
            "system:node-proxier",
            vec![
                rule(&["list", "watch"])
                    .groups(&[CORE])
                    .resources(&["endpoints", "services"]),
                rule(READ).groups(&[CORE]).resources(&["nodes"]),
                events_rule(),
                rule(&["list", "watch"])
                    .groups(&[DISCOVERY])
                    .resources(&["endpointslices"]),
            ],
        ),
        role(
            "system:persistent-volume-provisioner",
            vec![
                rule(&["create", "delete", "get", "list", "watch"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumes"]),
                rule(&["get", "list", "update", "watch"])
                    .groups(&[CORE])
                    .resources(&["persistentvolumeclaims"]),
                rule(READ).groups(&[STORAGE]).resources(&["storageclasses"]),
                rule(&["watch"]).groups(&[CORE]).resources(&["events"]),
                events_rule(),
            ],
        ),
        role(
            "system:kubelet-api-admin",
            vec![
                rule(READ).groups(&[CORE]).resources(&["nodes"]),
                rule(&["proxy"]).groups(&[CORE]).resources(&["nodes"]),
                rule(&["*"]).groups(&[CORE]).resources(&[
                    "nodes/log",
                    "nodes/metrics",
                    "nodes/proxy",
                    "nodes/stats",
                ]),
            ],
        ),
        role(
            "system:service-account-issuer-discovery",
            vec![rule(&["get"]).urls(&["/.well-known/openid-configuration", "/openid/v1/jwks"])],
        ),
        role(
            "system:skiff:controller-manager",
            rules::skiff_controller_manager(),
        ),
        role(
            "system:skiff:kube-dns",
            vec![
                // What the cluster DNS answers from (CoreDNS's rules).
                rule(&["list", "watch"]).groups(&[CORE]).resources(&[
                    "endpoints",
                    "namespaces",
                    "services",
                ]),
                rule(&["list", "watch"])
                    .groups(&[DISCOVERY])
                    .resources(&["endpointslices"]),
            ],
        ),
        // Publishing kube-system/kube-dns: its Service, Endpoints and EndpointSlice.
        role(
            "system:skiff:kube-dns",
            vec![
                rule(&["create"])
                    .groups(&[CORE])
                    .resources(&["services", "endpoints"]),
                rule(&["create"])
                    .groups(&[DISCOVERY])
                    .resources(&["endpointslices"]),
                rule(&["get", "patch", "update"])
                    .groups(&[CORE])
                    .resources(&["services", "endpoints"])
                    .names(&["kube-dns"]),
                rule(&["get", "patch", "update"])
                    .groups(&[DISCOVERY])
                    .resources(&["endpointslices"])
                    .names(&["kube-dns"]),
            ],
        )
        .in_namespace("kube-system"),
        role(
            "system:skiff:kube-scheduler",
            vec![
                // Pod priorities from their PriorityClass, for ordering and preemption.
                rule(READ)
                    .groups(&["scheduling.k8s.io"])
                    .resources(&["priorityclasses"]),
            ],
        ),
    ]
}

/// The default ClusterRoleBindings, and RoleBindings of `kube-system`.
pub(crate) fn default_bindings() -> Vec<DefaultBinding> {
    vec![
        bind(
            "cluster-admin",
            "cluster-admin",
            vec![group("system:masters")],
        ),
        bind(
            "system:monitoring",
            "system:monitoring",
            vec![group("system:monitoring")],
        ),
        bind(
            "system:discovery",
            "system:discovery",
            vec![group("system:authenticated")],
        ),
        bind(
            "system:basic-user",
            "system:basic-user",
            vec![group("system:authenticated")],
        ),
        bind(
            "system:public-info-viewer",
            "system:public-info-viewer",
            vec![
                group("system:authenticated"),
                group("system:unauthenticated"),
            ],
        ),
        bind(
            "system:node-proxier",
            "system:node-proxier",
            vec![user("system:kube-proxy"), group(NODES_GROUP)],
        ),
        bind(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            vec![user(CONTROLLER_MANAGER_USER)],
        ),
        bind(
            "system:kube-dns",
            "system:kube-dns",
            vec![service_account("kube-system", "kube-dns")],
        ),
        bind(
            "system:kube-scheduler",
            "system:kube-scheduler",
            vec![user(SCHEDULER_USER)],
        ),
        bind(
            "system:volume-scheduler",
            "system:volume-scheduler",
            vec![user(SCHEDULER_USER)],
        ),
        bind(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            vec![group("system:serviceaccounts")],
        ),
        // Nodes are the Node authorizer's; an administrator may still add subjects.
        bind("system:node", "system:node", vec![]),
        bind(
            "system:skiff:controller-manager",
            "system:skiff:controller-manager",
            vec![user(CONTROLLER_MANAGER_USER)],
        ),
        bind(
            "system:skiff:kube-scheduler",
            "system:skiff:kube-scheduler",
            vec![user(SCHEDULER_USER)],
        ),
        bind(
            "system:skiff:kube-dns",
            "system:skiff:kube-dns",
            vec![user(CLUSTER_DNS_USER)],
        ),
        bind(
            "system:skiff:kube-dns",
            "system:skiff:kube-dns",
            vec![user(CLUSTER_DNS_USER)],
        )
        .in_namespace("kube-system"),
        bind(
            "system:skiff:local-path-provisioner",
            "system:persistent-volume-provisioner",
            vec![group(NODES_GROUP)],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binding_names_a_default_role_of_its_scope() {
        let roles: Vec<(&str, Option<&str>)> = default_roles()
            .iter()
            .map(|r| (r.name, r.namespace))
            .collect();
        for b in default_bindings() {
            assert!(
                roles.contains(&(b.role, b.namespace)),
                "{} binds unknown {}",
                b.name,
                b.role
            );
        }
    }

    #[test]
    fn nodes_get_the_system_node_rules_from_the_node_authorizer_not_from_a_binding() {
        let roles = default_roles();
        let node = roles
            .iter()
            .find(|r| r.name == "system:node")
            .expect("system:node");
        assert_eq!(node.rules, crate::node_authz::node_rules());
        let bindings = default_bindings();
        let binding = bindings
            .iter()
            .find(|b| b.name == "system:node")
            .expect("the system:node binding");
        assert!(binding.subjects.is_empty());
        // What the agent's service proxy and provisioner need stays bound.
        let to_nodes: Vec<&str> = bindings
            .iter()
            .filter(|b| b.subjects.iter().any(|s| s.name == NODES_GROUP))
            .map(|b| b.role)
            .collect();
        assert_eq!(
            to_nodes,
            [
                "system:node-proxier",
                "system:persistent-volume-provisioner"
            ]
        );
    }

    #[test]
    fn admin_edit_and_view_are_aggregated_and_marked_for_autoupdate() {
        let roles = default_roles();
        let view = roles.iter().find(|r| r.name == "view").expect("view");
        let obj = view.to_object();
        assert_eq!(
            obj["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"][AGGREGATE_TO_VIEW],
            "true"
        );
        assert_eq!(obj["metadata"]["labels"][AGGREGATE_TO_EDIT], "true");
        assert_eq!(obj["metadata"]["annotations"][AUTOUPDATE], "true");
        assert_eq!(
            obj["metadata"]["labels"]["kubernetes.io/bootstrapping"],
            "rbac-defaults"
        );
    }
}
