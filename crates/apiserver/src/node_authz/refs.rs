//! What a pod or a PersistentVolume refers to, read from the stored JSON: the
//! objects a node may read because of it (Kubernetes' `VisitPodSecretNames`,
//! `VisitPodConfigmapNames`, ephemeral claim names and `VisitPVSecretNames`).

use std::collections::BTreeSet;

use serde_json::Value;

/// Marks a mirror pod (one a node made from its static manifests): it grants nothing.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The containers of every kind a pod has; each may name secrets and configmaps.
const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// The objects a pod bound to a node gives that node access to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PodRefs {
    /// `spec.nodeName`.
    pub node: String,
    /// `spec.serviceAccountName`, when set (and the pod is not a mirror pod).
    pub service_account: Option<String>,
    /// Secrets in the pod's namespace.
    pub secrets: BTreeSet<String>,
    /// ConfigMaps in the pod's namespace.
    pub config_maps: BTreeSet<String>,
    /// PersistentVolumeClaims in the pod's namespace (named and ephemeral).
    pub claims: BTreeSet<String>,
}

/// The references of a PersistentVolume that matter to a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PvRefs {
    /// The claim it is bound to (`spec.claimRef`), as (namespace, name).
    pub claim: Option<(String, String)>,
    /// Secrets a node needs to mount it, as (namespace, name).
    pub secrets: BTreeSet<(String, String)>,
}

fn text<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn items<'v>(v: &'v Value, pointer: &str) -> impl Iterator<Item = &'v Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// What `pod` (named `name`) refers to, or `None` when it is not bound to a node.
pub(crate) fn pod_refs(name: &str, pod: &Value) -> Option<PodRefs> {
    let node = text(pod, "/spec/nodeName")?;
    let mut refs = PodRefs {
        node: node.to_string(),
        ..Default::default()
    };
    // A node must never gain access to anything through a pod it created itself.
    let mirror = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION));
    if mirror {
        return Some(refs);
    }
    refs.service_account = text(pod, "/spec/serviceAccountName").map(String::from);
    let mut secret = |n: Option<&str>| {
        if let Some(n) = n {
            refs.secrets.insert(n.to_string());
        }
    };
    for s in items(pod, "/spec/imagePullSecrets") {
        secret(text(s, "/name"));
    }
    for list in CONTAINER_LISTS {
        for c in items(pod, &format!("/spec/{list}")) {
            for e in items(c, "/envFrom") {
                secret(text(e, "/secretRef/name"));
            }
            for e in items(c, "/env") {
                secret(text(e, "/valueFrom/secretKeyRef/name"));
            }
        }
    }
    for v in items(pod, "/spec/volumes") {
        secret(text(v, "/secret/secretName"));
        secret(text(v, "/azureFile/secretName"));
        for plugin in [
            "cephfs",
            "cinder",
            "flexVolume",
            "rbd",
            "scaleIO",
            "iscsi",
            "storageos",
        ] {
            secret(text(v, &format!("/{plugin}/secretRef/name")));
        }
        secret(text(v, "/csi/nodePublishSecretRef/name"));
        for source in items(v, "/projected/sources") {
            secret(text(source, "/secret/name"));
        }
    }
    let mut config_map = |n: Option<&str>| {
        if let Some(n) = n {
            refs.config_maps.insert(n.to_string());
        }
    };
    for list in CONTAINER_LISTS {
        for c in items(pod, &format!("/spec/{list}")) {
            for e in items(c, "/envFrom") {
                config_map(text(e, "/configMapRef/name"));
            }
            for e in items(c, "/env") {
                config_map(text(e, "/valueFrom/configMapKeyRef/name"));
            }
        }
    }
    for v in items(pod, "/spec/volumes") {
        config_map(text(v, "/configMap/name"));
        for source in items(v, "/projected/sources") {
            config_map(text(source, "/configMap/name"));
        }
    }
    for v in items(pod, "/spec/volumes") {
        if let Some(claim) = text(v, "/persistentVolumeClaim/claimName") {
            refs.claims.insert(claim.to_string());
        } else if v.get("ephemeral").is_some_and(|e| !e.is_null())
            && let Some(volume) = text(v, "/name")
        {
            // The ephemeral volume controller names the claim `<pod>-<volume>`.
            refs.claims.insert(format!("{name}-{volume}"));
        }
    }
    Some(refs)
}

/// What a PersistentVolume refers to. Its secrets are in the namespace each
/// reference names, else in the bound claim's namespace; only the secrets a node
/// uses (not the CSI controller's) count.
pub(crate) fn pv_refs(pv: &Value) -> PvRefs {
    let claim = text(pv, "/spec/claimRef/name").map(|name| {
        let ns = text(pv, "/spec/claimRef/namespace").unwrap_or_default();
        (ns.to_string(), name.to_string())
    });
    let claim_ns = claim
        .as_ref()
        .map(|(ns, _)| ns.as_str())
        .unwrap_or_default();
    let mut secrets = BTreeSet::new();
    let mut secret_ref = |r: Option<&Value>, default_ns: &str| {
        let Some(r) = r else { return };
        if let Some(name) = text(r, "/name") {
            let ns = text(r, "/namespace").unwrap_or(default_ns);
            secrets.insert((ns.to_string(), name.to_string()));
        }
    };
    for plugin in [
        "cephfs",
        "cinder",
        "flexVolume",
        "rbd",
        "scaleIO",
        "iscsi",
        "storageos",
    ] {
        secret_ref(pv.pointer(&format!("/spec/{plugin}/secretRef")), claim_ns);
    }
    for field in [
        "nodePublishSecretRef",
        "nodeStageSecretRef",
        "nodeExpandSecretRef",
    ] {
        secret_ref(pv.pointer(&format!("/spec/csi/{field}")), claim_ns);
    }
    if let Some(name) = text(pv, "/spec/azureFile/secretName") {
        let ns = text(pv, "/spec/azureFile/secretNamespace").unwrap_or(claim_ns);
        secrets.insert((ns.to_string(), name.to_string()));
    }
    PvRefs { claim, secrets }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_pod_refers_to_the_secrets_configmaps_claims_and_account_it_uses() {
        let pod = json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {
                "nodeName": "n1",
                "serviceAccountName": "runner",
                "imagePullSecrets": [{"name": "pull"}],
                "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
                "containers": [{
                    "name": "c",
                    "env": [
                        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "key-secret", "key": "k"}}},
                        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "key-cm", "key": "k"}}},
                        {"name": "C", "value": "plain"},
                    ],
                    "envFrom": [{"configMapRef": {"name": "env-cm"}}],
                }],
                "ephemeralContainers": [{"name": "debug", "envFrom": [{"secretRef": {"name": "debug-env"}}]}],
                "volumes": [
                    {"name": "s", "secret": {"secretName": "vol-secret"}},
                    {"name": "m", "configMap": {"name": "vol-cm"}},
                    {"name": "p", "projected": {"sources": [
                        {"secret": {"name": "proj-secret"}},
                        {"configMap": {"name": "kube-root-ca.crt"}},
                        {"serviceAccountToken": {"path": "token"}},
                    ]}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-claim"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                    {"name": "csi", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-secret"}}},
                    {"name": "e", "emptyDir": {}},
                ],
            },
        });
        let refs = pod_refs("web", &pod).expect("bound");
        assert_eq!(refs.node, "n1");
        assert_eq!(refs.service_account.as_deref(), Some("runner"));
        assert_eq!(
            refs.secrets,
            set(&[
                "pull",
                "init-env",
                "key-secret",
                "debug-env",
                "vol-secret",
                "proj-secret",
                "csi-secret"
            ])
        );
        assert_eq!(
            refs.config_maps,
            set(&["key-cm", "env-cm", "vol-cm", "kube-root-ca.crt"])
        );
        assert_eq!(refs.claims, set(&["data-claim", "web-scratch"]));
    }

    #[test]
    fn an_unbound_pod_refers_to_nothing_and_a_mirror_pod_only_to_its_node() {
        let unbound = json!({"spec": {"volumes": [{"name": "s", "secret": {"secretName": "x"}}]}});
        assert_eq!(pod_refs("p", &unbound), None);
        let mirror = json!({
            "metadata": {"annotations": {MIRROR_ANNOTATION: "abc"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa",
                     "volumes": [{"name": "s", "secret": {"secretName": "x"}}]},
        });
        assert_eq!(
            pod_refs("p", &mirror),
            Some(PodRefs {
                node: "n1".into(),
                ..Default::default()
            })
        );
    }

    #[test]
    fn a_volume_refers_to_its_claim_and_the_secrets_the_node_mounts_it_with() {
        let pv = json!({
            "metadata": {"name": "pv1"},
            "spec": {
                "claimRef": {"namespace": "ns", "name": "data"},
                "csi": {
                    "driver": "d",
                    "volumeHandle": "h",
                    "nodePublishSecretRef": {"name": "publish", "namespace": "secrets"},
                    "nodeStageSecretRef": {"name": "stage"},
                    "controllerPublishSecretRef": {"name": "controller", "namespace": "secrets"},
                },
            },
        });
        let refs = pv_refs(&pv);
        assert_eq!(refs.claim, Some(("ns".into(), "data".into())));
        let want: BTreeSet<(String, String)> = [("secrets", "publish"), ("ns", "stage")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(refs.secrets, want);
        assert_eq!(
            pv_refs(&json!({"spec": {"hostPath": {"path": "/x"}}})),
            PvRefs::default()
        );
    }
}
