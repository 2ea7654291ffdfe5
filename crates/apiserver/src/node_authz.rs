//! The Node authorizer (`--authorization-mode=Node`, Kubernetes'
//! `plugin/pkg/auth/authorizer/node`): what a node agent, authenticated as
//! `system:node:<name>` in `system:nodes`, may do.
//!
//! - Secrets, ConfigMaps, PersistentVolumeClaims, PersistentVolumes and
//!   VolumeAttachments: read only when the [`graph`] relates them to the node (a pod
//!   bound to it uses them, or a volume bound to a claim such a pod uses); a
//!   claim's status may be written on the same terms.
//! - ServiceAccounts: a token may be asked for an account a pod on the node runs
//!   as (NodeRestriction admission checks the pod the token is bound to); Skiff's
//!   agent also reads that account, for its imagePullSecrets.
//! - Leases in `kube-node-lease`, and CSINodes: only the node's own.
//! - Everything else: the static rules of the `system:node` role ([`node_rules`]),
//!   so Node and pod writes are left to NodeRestriction admission, as in Kubernetes.
//!
//! Refusals are "no opinion" with Kubernetes' reasons, so that RBAC (next in the
//! chain) may still grant what a binding gives `system:nodes` (the service proxy
//! and the local-path provisioner run with the node's identity).

use std::sync::Arc;

use crate::authn::Identity;
use crate::authz::{Attributes, Authorizer, Decision, UserRules};
use crate::rbac::PolicyRule;

mod feed;
mod graph;
mod refs;

pub(crate) use feed::NodeGraph;
use graph::Kind;

/// The user name prefix of node identities.
const NODE_USER_PREFIX: &str = "system:node:";
/// The group every node identity is in.
const NODES_GROUP: &str = "system:nodes";
/// Where node heartbeat Leases live.
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

const CORE: &str = "";
const STORAGE: &str = "storage.k8s.io";

/// Kubernetes' `NodeRules()` (v1.33, without dynamic resource allocation, which
/// Skiff does not serve): (verbs, API group, resources).
const NODE_RULES: &[(&[&str], &str, &[&str])] = &[
    // Checking API access (non-mutating creates).
    (&["create"], "authentication.k8s.io", &["tokenreviews"]),
    (
        &["create"],
        "authorization.k8s.io",
        &["localsubjectaccessreviews", "subjectaccessreviews"],
    ),
    // Service environment variables.
    (&["get", "list", "watch"], CORE, &["services"]),
    // Registering the Node and reporting its status (NodeRestriction limits both
    // to the node's own).
    (&["create", "get", "list", "watch"], CORE, &["nodes"]),
    (&["patch", "update"], CORE, &["nodes/status"]),
    (&["patch", "update"], CORE, &["nodes"]),
    (&["create", "patch", "update"], CORE, &["events"]),
    (&["get", "list", "watch"], CORE, &["pods"]),
    // Mirror pods, pod status and evictions (NodeRestriction: pods bound to the node).
    (&["create", "delete"], CORE, &["pods"]),
    (&["patch", "update"], CORE, &["pods/status"]),
    (&["create"], CORE, &["pods/eviction"]),
    // Narrowed by the graph above.
    (&["get", "list", "watch"], CORE, &["configmaps", "secrets"]),
    (
        &["get"],
        CORE,
        &["persistentvolumeclaims", "persistentvolumes"],
    ),
    (&["get"], CORE, &["endpoints"]),
    (
        &["create", "get", "list", "watch"],
        "certificates.k8s.io",
        &["certificatesigningrequests"],
    ),
    (
        &["create", "delete", "get", "patch", "update"],
        "coordination.k8s.io",
        &["leases"],
    ),
    (&["get"], STORAGE, &["volumeattachments"]),
    (&["create"], CORE, &["serviceaccounts/token"]),
    (
        &["get", "patch", "update"],
        CORE,
        &["persistentvolumeclaims/status"],
    ),
    (&["get", "list", "watch"], STORAGE, &["csidrivers"]),
    (
        &["create", "delete", "get", "patch", "update"],
        STORAGE,
        &["csinodes"],
    ),
    (
        &["get", "list", "watch"],
        "node.k8s.io",
        &["runtimeclasses"],
    ),
];

/// The rules every node holds (Kubernetes' `NodeRules()`): evaluated here, and the
/// rules of the `system:node` ClusterRole, which nothing binds by default.
pub(crate) fn node_rules() -> Vec<PolicyRule> {
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    NODE_RULES
        .iter()
        .map(|(verbs, group, resources)| PolicyRule {
            verbs: strings(verbs),
            api_groups: vec![group.to_string()],
            resources: strings(resources),
            ..Default::default()
        })
        .collect()
}

/// The node a user is, if it is one (Kubernetes' `NodeIdentity`): `Some("")` for a
/// member of `system:nodes` whose name says no node.
fn node_identity(who: &Identity) -> Option<&str> {
    let name = who.user.strip_prefix(NODE_USER_PREFIX)?;
    who.groups.iter().any(|g| g == NODES_GROUP).then_some(name)
}

fn no_opinion(reason: impl Into<String>) -> Decision {
    Decision::NoOpinion(reason.into())
}

/// Decides on requests of node identities; see the module docs.
#[derive(Clone)]
pub(crate) struct NodeAuthorizer {
    graph: Arc<NodeGraph>,
    rules: Arc<[PolicyRule]>,
}

impl NodeAuthorizer {
    /// An authorizer deciding from `graph`.
    pub(crate) fn new(graph: Arc<NodeGraph>) -> Self {
        Self {
            graph,
            rules: node_rules().into(),
        }
    }

    /// Allowed when a path leads from the named object to the node.
    fn related(&self, node: &str, kind: Kind, attrs: &Attributes<'_>) -> Decision {
        if attrs.name.is_empty() {
            return no_opinion("No Object name found");
        }
        let found = self
            .graph
            .read(|g| g.has_path(node, kind, &attrs.namespace, &attrs.name));
        if found {
            Decision::Allow(String::new())
        } else {
            tracing::debug!(node, ?kind, namespace = %attrs.namespace, name = %attrs.name, "no relationship between the node and the object");
            no_opinion(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }
    }

    /// get, list and watch of one namespaced object (`authorizeReadNamespacedObject`).
    fn read_namespaced(&self, node: &str, kind: Kind, attrs: &Attributes<'_>) -> Decision {
        if !matches!(&*attrs.verb, "get" | "list" | "watch") {
            return no_opinion("can only read resources of this type");
        }
        if !attrs.subresource.is_empty() {
            return no_opinion("cannot read subresource");
        }
        if attrs.namespace.is_empty() {
            return no_opinion("can only read namespaced object of this type");
        }
        self.related(node, kind, attrs)
    }

    /// get of one object (`authorizeGet`).
    fn get(&self, node: &str, kind: Kind, attrs: &Attributes<'_>) -> Decision {
        if attrs.verb != "get" {
            return no_opinion("can only get individual resources of this type");
        }
        if !attrs.subresource.is_empty() {
            return no_opinion("cannot get subresource");
        }
        self.related(node, kind, attrs)
    }

    /// update and patch of a status (`authorizeStatusUpdate`).
    fn status_update(&self, node: &str, kind: Kind, attrs: &Attributes<'_>) -> Decision {
        if !matches!(&*attrs.verb, "update" | "patch") {
            return no_opinion("can only get/update/patch this type");
        }
        self.related(node, kind, attrs)
    }

    /// Tokens for the accounts of the node's pods (`authorizeCreateToken`); Skiff's
    /// agent also reads such an account, for its imagePullSecrets.
    fn service_account(&self, node: &str, attrs: &Attributes<'_>) -> Decision {
        if attrs.verb == "get" && attrs.subresource.is_empty() {
            return self.related(node, Kind::ServiceAccount, attrs);
        }
        if attrs.verb != "create" || attrs.name.is_empty() {
            return no_opinion("can only create tokens for individual service accounts");
        }
        if attrs.subresource != "token" {
            return no_opinion("can only create token subresource of serviceaccount");
        }
        self.related(node, Kind::ServiceAccount, attrs)
    }

    /// The node's own Lease in `kube-node-lease` (`authorizeLease`); the name of a
    /// new one is NodeRestriction's to check.
    fn lease(node: &str, attrs: &Attributes<'_>) -> Decision {
        if !matches!(
            &*attrs.verb,
            "get" | "create" | "update" | "patch" | "delete"
        ) {
            return no_opinion("can only get, create, update, patch, or delete a node lease");
        }
        if attrs.namespace != NODE_LEASE_NAMESPACE {
            return no_opinion(format!(
                "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
            ));
        }
        if attrs.verb != "create" && attrs.name != node {
            return no_opinion(
                "can only access node lease with the same name as the requesting node",
            );
        }
        Decision::Allow(String::new())
    }

    /// The node's own CSINode (`authorizeCSINode`).
    fn csi_node(node: &str, attrs: &Attributes<'_>) -> Decision {
        if !matches!(
            &*attrs.verb,
            "get" | "create" | "update" | "patch" | "delete"
        ) {
            return no_opinion("can only get, create, update, patch, or delete a CSINode");
        }
        if !attrs.subresource.is_empty() {
            return no_opinion("cannot authorize CSINode subresources");
        }
        if attrs.verb != "create" && attrs.name != node {
            return no_opinion("can only access CSINode with the same name as the requesting node");
        }
        Decision::Allow(String::new())
    }
}

impl Authorizer for NodeAuthorizer {
    fn decide(&self, attrs: &Attributes<'_>) -> Decision {
        let Some(node) = node_identity(attrs.who) else {
            return no_opinion("");
        };
        if node.is_empty() {
            return no_opinion(format!("unknown node for user {:?}", attrs.who.user));
        }
        if attrs.resource_request {
            let decided = match (&*attrs.api_group, &*attrs.resource) {
                (CORE, "secrets") => Some(self.read_namespaced(node, Kind::Secret, attrs)),
                (CORE, "configmaps") => Some(self.read_namespaced(node, Kind::ConfigMap, attrs)),
                (CORE, "persistentvolumeclaims") if attrs.subresource == "status" => {
                    Some(self.status_update(node, Kind::Claim, attrs))
                }
                (CORE, "persistentvolumeclaims") => Some(self.get(node, Kind::Claim, attrs)),
                (CORE, "persistentvolumes") => Some(self.get(node, Kind::Volume, attrs)),
                (STORAGE, "volumeattachments") => {
                    Some(self.get(node, Kind::VolumeAttachment, attrs))
                }
                (CORE, "serviceaccounts") => Some(self.service_account(node, attrs)),
                ("coordination.k8s.io", "leases") => Some(Self::lease(node, attrs)),
                (STORAGE, "csinodes") => Some(Self::csi_node(node, attrs)),
                _ => None,
            };
            if let Some(decision) = decided {
                return decision;
            }
        }
        if self.rules.iter().any(|r| r.allows(attrs)) {
            Decision::Allow(String::new())
        } else {
            no_opinion("")
        }
    }

    fn rules_for(&self, who: &Identity, _namespace: &str) -> Option<UserRules> {
        if node_identity(who).is_none() {
            return Some(UserRules::default());
        }
        // What a node may read depends on the objects asked for: not listable.
        Some(UserRules {
            incomplete: true,
            errors: vec!["node authorizer does not support user rule resolution".into()],
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests;
