//! NodeRestriction (Kubernetes' `plugin/pkg/admission/noderestriction`): a node
//! agent, authenticated as `system:node:<name>` in `system:nodes`, may only write its
//! own Node (without touching its taints or steering labels), its own Lease in
//! `kube-node-lease`, the status of pods bound to it, delete and evict those pods,
//! create mirror pods bound to itself, update a claim's capacity and conditions, and
//! ask for service account tokens bound to its own pods.
//!
//! [`admit`] is a pure decision over the request; the caller fetches the pod that an
//! eviction or a token request names.

use serde_json::Value;

use crate::authn::Identity;

/// The group every node identity is in.
const NODES_GROUP: &str = "system:nodes";
/// The namespace of node heartbeat Leases.
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What a write does (`admissionregistration/v1.OperationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// `CREATE`.
    Create,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
}

impl Operation {
    /// The name in rules and AdmissionReviews.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }

    /// The kind of the request's options (`CreateOptions`, ...).
    pub(crate) fn options_kind(self) -> &'static str {
        match self {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
        }
    }
}

/// The parts of a write NodeRestriction looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub operation: Operation,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    /// The object's name (on create: the new object's).
    pub name: &'a str,
    /// The new object (create, update), or the request body (eviction, token).
    pub object: Option<&'a Value>,
    /// The stored object (update, delete).
    pub old: Option<&'a Value>,
    /// The pod an eviction or a token request is about, as stored.
    pub pod: Option<&'a Value>,
    /// The node's own Node object (to check mirror pods' owner UID).
    pub node: Option<&'a Value>,
}

/// The node name of a node identity (`system:node:<name>` in `system:nodes`).
pub(crate) fn node_name(who: &Identity) -> Option<&str> {
    let name = who.user.strip_prefix("system:node:")?;
    (!name.is_empty() && who.groups.iter().any(|g| g == NODES_GROUP)).then_some(name)
}

/// Whether NodeRestriction has anything to say about this resource.
pub(crate) fn watches(group: &str, resource: &str) -> bool {
    matches!(
        (group, resource),
        ("", "pods")
            | ("", "nodes")
            | ("", "persistentvolumeclaims")
            | ("", "serviceaccounts")
            | ("coordination.k8s.io", "leases")
    )
}

fn text<'v>(v: Option<&'v Value>, pointer: &str) -> &'v str {
    v.and_then(|v| v.pointer(pointer))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn bound_to(pod: Option<&Value>) -> &str {
    text(pod, "/spec/nodeName")
}

/// Decides a node's write: `Err(why)` is the reason after `<resource> "<name>" is
/// forbidden: `.
pub(crate) fn admit(node: &str, r: &Request<'_>) -> Result<(), String> {
    match (r.group, r.resource, r.subresource) {
        ("", "pods", "") => admit_pod(node, r),
        ("", "pods", "status") => admit_pod_status(node, r),
        ("", "pods", "eviction") => match r.operation {
            Operation::Create if bound_to(r.pod) == node => Ok(()),
            Operation::Create => Err(format!(
                "node {node} can only evict pods with spec.nodeName set to itself"
            )),
            op => Err(format!("unexpected operation {op:?}")),
        },
        ("", "pods", _) => Ok(()),
        ("", "nodes", _) => admit_node(node, r),
        ("", "persistentvolumeclaims", "status") => admit_claim_status(node, r),
        ("", "serviceaccounts", "token") if r.operation == Operation::Create => {
            admit_token(node, r)
        }
        ("coordination.k8s.io", "leases", _) => {
            if r.namespace != NODE_LEASE_NAMESPACE {
                return Err(format!(
                    "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
                ));
            }
            if r.name != node {
                return Err(
                    "can only access node lease with the same name as the requesting node".into(),
                );
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn admit_pod(node: &str, r: &Request<'_>) -> Result<(), String> {
    match r.operation {
        Operation::Create => admit_mirror_pod(node, r.object, r.node),
        Operation::Delete => {
            if bound_to(r.old) == node {
                Ok(())
            } else {
                Err(format!(
                    "node {node:?} can only delete pods with spec.nodeName set to itself"
                ))
            }
        }
        Operation::Update => Err(format!(
            "unexpected operation \"UPDATE\", node {node:?} can only create and delete mirror pods"
        )),
    }
}

/// Lists a pod spec refers to other objects through.
fn references(pod: &Value, what: &str) -> bool {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten();
    let volumes = spec
        .get("volumes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    match what {
        "secrets" => {
            let pulls = spec
                .get("imagePullSecrets")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            let env = containers.clone().any(|c| {
                let from_env = c.get("env").and_then(Value::as_array).is_some_and(|e| {
                    e.iter()
                        .any(|e| e.pointer("/valueFrom/secretKeyRef").is_some())
                });
                let from_env_from = c
                    .get("envFrom")
                    .and_then(Value::as_array)
                    .is_some_and(|e| e.iter().any(|e| e.get("secretRef").is_some()));
                from_env || from_env_from
            });
            let vols = volumes.iter().any(|v| {
                v.get("secret").is_some()
                    || v.pointer("/projected/sources")
                        .and_then(Value::as_array)
                        .is_some_and(|s| s.iter().any(|s| s.get("secret").is_some()))
            });
            pulls || env || vols
        }
        "configmaps" => {
            let env = containers.clone().any(|c| {
                c.get("env").and_then(Value::as_array).is_some_and(|e| {
                    e.iter()
                        .any(|e| e.pointer("/valueFrom/configMapKeyRef").is_some())
                }) || c
                    .get("envFrom")
                    .and_then(Value::as_array)
                    .is_some_and(|e| e.iter().any(|e| e.get("configMapRef").is_some()))
            });
            let vols = volumes.iter().any(|v| {
                v.get("configMap").is_some()
                    || v.pointer("/projected/sources")
                        .and_then(Value::as_array)
                        .is_some_and(|s| s.iter().any(|s| s.get("configMap").is_some()))
            });
            env || vols
        }
        _ => volumes
            .iter()
            .any(|v| v.get("persistentVolumeClaim").is_some()),
    }
}

fn admit_mirror_pod(
    node: &str,
    pod: Option<&Value>,
    node_obj: Option<&Value>,
) -> Result<(), String> {
    let Some(pod) = pod else {
        return Err("unexpected type <nil>".into());
    };
    let mirror = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    if !mirror {
        return Err(format!(
            "pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
        ));
    }
    if bound_to(Some(pod)) != node {
        return Err(format!(
            "node {node:?} can only create pods with spec.nodeName set to itself"
        ));
    }
    let owners = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    match owners {
        [] => {
            return Err(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            ));
        }
        [owner] => {
            if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
                return Err(format!(
                    "node {node:?} can only create pods with an owner reference set to itself"
                ));
            }
            if owner["controller"] != true {
                return Err(format!(
                    "node {node:?} can only create pods with a controller owner reference set to itself"
                ));
            }
            if owner["blockOwnerDeletion"] == true {
                return Err(format!(
                    "node {node:?} must not set blockOwnerDeletion on an owner reference"
                ));
            }
            let uid = text(node_obj, "/metadata/uid");
            let owner_uid = owner["uid"].as_str().unwrap_or_default();
            if owner_uid != uid {
                return Err(format!(
                    "node {node} UID mismatch: expected {uid} got {owner_uid}"
                ));
            }
        }
        _ => {
            return Err(format!(
                "node {node:?} can only create pods with a single owner reference set to itself"
            ));
        }
    }
    if !text(Some(pod), "/spec/serviceAccountName").is_empty() {
        return Err(format!(
            "node {node:?} can not create pods that reference a service account"
        ));
    }
    for what in ["secrets", "configmaps", "persistentvolumeclaims"] {
        if references(pod, what) {
            return Err(format!(
                "node {node:?} can not create pods that reference {what}"
            ));
        }
    }
    Ok(())
}

fn admit_pod_status(node: &str, r: &Request<'_>) -> Result<(), String> {
    if r.operation != Operation::Update {
        return Err(format!("unexpected operation {:?}", r.operation));
    }
    if bound_to(r.old) != node {
        return Err(format!(
            "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
        ));
    }
    let labels = |v: Option<&Value>| {
        v.and_then(|v| v.pointer("/metadata/labels"))
            .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
            .cloned()
    };
    if labels(r.old) != labels(r.object) {
        return Err(format!(
            "node {node:?} cannot update labels through pod status"
        ));
    }
    Ok(())
}

/// Label keys a kubelet may set on its own Node (kubelet's `IsKubeletLabel`).
fn is_kubelet_label(key: &str) -> bool {
    const LABELS: &[&str] = &[
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "node.kubernetes.io/instance-type",
    ];
    if LABELS.contains(&key) {
        return true;
    }
    let prefix = key.split_once('/').map(|(p, _)| p).unwrap_or_default();
    ["kubelet.kubernetes.io", "node.kubernetes.io"]
        .iter()
        .any(|ns| prefix == *ns || prefix.ends_with(&format!(".{ns}")))
}

/// Labels a node may not add, change or remove on itself: `node-restriction.kubernetes.io/`
/// ones, and `kubernetes.io`/`k8s.io` ones that are not kubelet labels.
fn forbidden_labels(new: Option<&Value>, old: Option<&Value>) -> Vec<String> {
    let labels = |v: Option<&Value>| {
        v.and_then(|v| v.pointer("/metadata/labels"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (a, b) = (labels(new), labels(old));
    let mut modified: Vec<&String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k)
        .chain(b.keys().filter(|k| !a.contains_key(*k)))
        .collect();
    modified.sort();
    modified.dedup();
    modified
        .into_iter()
        .filter(|key| {
            let ns = key.split_once('/').map(|(p, _)| p).unwrap_or_default();
            let restriction = ns == "node-restriction.kubernetes.io"
                || ns.ends_with(".node-restriction.kubernetes.io");
            let kubernetes = ns == "kubernetes.io"
                || ns.ends_with(".kubernetes.io")
                || ns == "k8s.io"
                || ns.ends_with(".k8s.io");
            restriction || (kubernetes && !is_kubelet_label(key))
        })
        .cloned()
        .collect()
}

fn admit_node(node: &str, r: &Request<'_>) -> Result<(), String> {
    if r.name != node {
        return Err(format!(
            "node {node:?} is not allowed to modify node {:?}",
            r.name
        ));
    }
    match r.operation {
        Operation::Create => {
            if r.object
                .and_then(|o| o.pointer("/spec/configSource"))
                .is_some_and(|c| !c.is_null())
            {
                return Err(format!(
                    "node {node:?} is not allowed to create pods with a non-nil configSource"
                ));
            }
            let forbidden = forbidden_labels(r.object, None);
            if !forbidden.is_empty() {
                return Err(format!(
                    "node {node:?} is not allowed to set the following labels: {}",
                    forbidden.join(", ")
                ));
            }
        }
        Operation::Update => {
            let taints = |v: Option<&Value>| {
                v.and_then(|v| v.pointer("/spec/taints"))
                    .filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
                    .cloned()
            };
            if taints(r.object) != taints(r.old) {
                return Err(format!("node {node:?} is not allowed to modify taints"));
            }
            let forbidden = forbidden_labels(r.object, r.old);
            if !forbidden.is_empty() {
                return Err(format!(
                    "is not allowed to modify labels: {}",
                    forbidden.join(", ")
                ));
            }
        }
        Operation::Delete => {}
    }
    Ok(())
}

fn admit_claim_status(node: &str, r: &Request<'_>) -> Result<(), String> {
    if r.operation != Operation::Update {
        return Err(format!("unexpected operation {:?}", r.operation));
    }
    let strip = |v: Option<&Value>| {
        let mut v = v.cloned().unwrap_or(Value::Null);
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        if let Some(s) = v.get_mut("status").and_then(Value::as_object_mut) {
            for f in [
                "capacity",
                "conditions",
                "allocatedResources",
                "allocatedResourceStatuses",
            ] {
                s.remove(f);
            }
        }
        v
    };
    if strip(r.object) != strip(r.old) {
        return Err(format!(
            "node {node:?} is not allowed to update fields other than status.capacity and status.conditions"
        ));
    }
    Ok(())
}

fn admit_token(node: &str, r: &Request<'_>) -> Result<(), String> {
    let bound = r
        .object
        .and_then(|o| o.pointer("/spec/boundObjectRef"))
        .unwrap_or(&Value::Null);
    let is_pod = bound["apiVersion"] == "v1"
        && bound["kind"] == "Pod"
        && bound["name"].as_str().is_some_and(|n| !n.is_empty());
    if !is_pod {
        return Err("node requested token not bound to a pod".into());
    }
    let uid = bound["uid"].as_str().unwrap_or_default();
    if uid.is_empty() {
        return Err("node requested token with a pod binding without a uid".into());
    }
    if text(r.pod, "/metadata/uid") != uid {
        return Err(format!(
            "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
        ));
    }
    if bound_to(r.pod) != node {
        return Err("node requested token bound to a pod scheduled on a different node".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn req<'a>(
        resource: &'a str,
        subresource: &'a str,
        op: Operation,
        name: &'a str,
    ) -> Request<'a> {
        Request {
            operation: op,
            group: "",
            resource,
            subresource,
            namespace: "default",
            name,
            object: None,
            old: None,
            pod: None,
            node: None,
        }
    }

    #[test]
    fn only_node_identities_are_restricted() {
        let node = Identity {
            user: "system:node:n1".into(),
            uid: String::new(),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
            extra: Default::default(),
        };
        assert_eq!(node_name(&node), Some("n1"));
        let pretender = Identity {
            groups: vec!["system:authenticated".into()],
            ..node
        };
        assert_eq!(node_name(&pretender), None);
    }

    #[test]
    fn a_node_writes_only_its_own_node_without_taints_or_steering_labels() {
        let old = json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
                          "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}});
        let mut r = req("nodes", "status", Operation::Update, "n2");
        r.old = Some(&old);
        r.object = Some(&old);
        assert_eq!(
            admit("n1", &r).unwrap_err(),
            "node \"n1\" is not allowed to modify node \"n2\""
        );
        r.name = "n1";
        assert!(admit("n1", &r).is_ok());

        let untainted = json!({"metadata": old["metadata"], "spec": {}});
        r.object = Some(&untainted);
        assert_eq!(
            admit("n1", &r).unwrap_err(),
            "node \"n1\" is not allowed to modify taints"
        );

        let relabelled = json!({"metadata": {"name": "n1", "labels": {
            "kubernetes.io/hostname": "n1", "node-role.kubernetes.io/control-plane": "",
            "topology.kubernetes.io/zone": "a", "example.com/team": "x",
            "node-restriction.kubernetes.io/secure": "true"}}, "spec": old["spec"]});
        r.object = Some(&relabelled);
        assert_eq!(
            admit("n1", &r).unwrap_err(),
            "is not allowed to modify labels: node-restriction.kubernetes.io/secure, node-role.kubernetes.io/control-plane"
        );
    }

    #[test]
    fn pod_status_deletion_and_eviction_only_for_pods_bound_to_the_node() {
        let mine =
            json!({"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"nodeName": "n1"}});
        let theirs = json!({"metadata": {"name": "q"}, "spec": {"nodeName": "n2"}});
        let mut r = req("pods", "status", Operation::Update, "p");
        r.old = Some(&mine);
        r.object = Some(&mine);
        assert!(admit("n1", &r).is_ok());
        let relabelled =
            json!({"metadata": {"name": "p", "labels": {"a": "c"}}, "spec": {"nodeName": "n1"}});
        r.object = Some(&relabelled);
        assert_eq!(
            admit("n1", &r).unwrap_err(),
            "node \"n1\" cannot update labels through pod status"
        );
        r.old = Some(&theirs);
        r.object = Some(&theirs);
        assert_eq!(
            admit("n1", &r).unwrap_err(),
            "node \"n1\" can only update pod status for pods with spec.nodeName set to itself"
        );

        let mut d = req("pods", "", Operation::Delete, "q");
        d.old = Some(&theirs);
        assert!(admit("n1", &d).is_err());
        d.old = Some(&mine);
        assert!(admit("n1", &d).is_ok());

        let mut e = req("pods", "eviction", Operation::Create, "q");
        e.pod = Some(&theirs);
        assert_eq!(
            admit("n1", &e).unwrap_err(),
            "node n1 can only evict pods with spec.nodeName set to itself"
        );
    }

    #[test]
    fn a_node_creates_only_mirror_pods_of_its_own_that_reference_nothing() {
        let node = json!({"metadata": {"name": "n1", "uid": "u1"}});
        let plain = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        let mut r = req("pods", "", Operation::Create, "p");
        r.node = Some(&node);
        r.object = Some(&plain);
        assert_eq!(
            admit("n1", &r).unwrap_err(),
            "pod does not have \"kubernetes.io/config.mirror\" annotation, node \"n1\" can only create mirror pods"
        );
        let owner = json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u1", "controller": true}]);
        let mirror = json!({"metadata": {"name": "p", "annotations": {"kubernetes.io/config.mirror": "h"},
                                         "ownerReferences": owner},
                            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}});
        r.object = Some(&mirror);
        assert!(admit("n1", &r).is_ok());
        let with_secret = json!({"metadata": mirror["metadata"],
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}]}});
        r.object = Some(&with_secret);
        assert_eq!(
            admit("n1", &r).unwrap_err(),
            "node \"n1\" can not create pods that reference secrets"
        );
    }

    #[test]
    fn tokens_only_for_pods_on_the_node_and_leases_only_its_own() {
        let pod = json!({"metadata": {"name": "p", "uid": "pu"}, "spec": {"nodeName": "n2"}});
        let body = json!({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "pu"}}});
        let mut r = req("serviceaccounts", "token", Operation::Create, "default");
        r.object = Some(&body);
        r.pod = Some(&pod);
        assert_eq!(
            admit("n1", &r).unwrap_err(),
            "node requested token bound to a pod scheduled on a different node"
        );
        assert!(admit("n2", &r).is_ok());
        let unbound = json!({"spec": {}});
        r.object = Some(&unbound);
        assert_eq!(
            admit("n2", &r).unwrap_err(),
            "node requested token not bound to a pod"
        );

        let mut l = req("leases", "", Operation::Update, "n1");
        l.group = "coordination.k8s.io";
        assert!(admit("n1", &l).is_err(), "not in kube-node-lease");
        l.namespace = "kube-node-lease";
        assert!(admit("n1", &l).is_ok());
        l.name = "n2";
        assert_eq!(
            admit("n1", &l).unwrap_err(),
            "can only access node lease with the same name as the requesting node"
        );
    }
}
