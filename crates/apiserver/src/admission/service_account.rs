//! The ServiceAccount admission plugin on pod creation (Kubernetes'
//! `plugin/pkg/admission/serviceaccount`): the pod runs as a service account that
//! exists (`default` unless named), gets that account's imagePullSecrets when it has
//! none, and — unless the pod or the account opts out with
//! `automountServiceAccountToken: false` — a `kube-api-access-<suffix>` projected
//! volume (a bound token, the cluster CA from `kube-root-ca.crt`, the namespace)
//! mounted read-only at [`MOUNT_PATH`] in every container.

use serde_json::{Value, json};

/// Where in-cluster clients look for the token, CA and namespace.
pub(crate) const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Lifetime asked for the projected token (Kubernetes' 1 h + 7 s, which lets the API
/// server recognise tokens of this volume).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// A mirror pod (from a node's static manifests) is left alone.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Whether the plugin applies: mirror pods are not touched.
pub(crate) fn applies(pod: &Value) -> bool {
    pod.pointer(&format!(
        "/metadata/annotations/{}",
        MIRROR_ANNOTATION.replace('/', "~1")
    ))
    .is_none()
}

/// The service account a pod names (`default` when it names none).
pub(crate) fn account_name(pod: &Value) -> String {
    pod.pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// Applies the plugin to `pod` given its service account; `suffix` names the volume.
pub(crate) fn admit(pod: &mut Value, account: &Value, suffix: &str) {
    let name = account_name(pod);
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert("serviceAccountName".into(), json!(name));
    // Kubernetes still sets the deprecated alias.
    spec.insert("serviceAccount".into(), json!(name));

    let no_pull_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty());
    if no_pull_secrets
        && let Some(secrets) = account.get("imagePullSecrets").and_then(Value::as_array)
        && !secrets.is_empty()
    {
        let copied: Vec<Value> = secrets
            .iter()
            .filter_map(|s| s.get("name").cloned())
            .map(|n| json!({"name": n}))
            .collect();
        spec.insert("imagePullSecrets".into(), Value::Array(copied));
    }

    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            account
                .get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true);
    if !automount {
        return;
    }
    // A pod that mounts something there itself keeps it, and gets no volume when no
    // container would mount ours.
    let lists = ["initContainers", "containers", "ephemeralContainers"];
    let needs_mount = |c: &Value| {
        !c.get("volumeMounts")
            .and_then(Value::as_array)
            .is_some_and(|ms| ms.iter().any(|m| m["mountPath"] == MOUNT_PATH))
    };
    let any_needs = lists.iter().any(|l| {
        spec.get(*l)
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(needs_mount))
    });
    if !any_needs {
        return;
    }
    let volume_name = format!("kube-api-access-{suffix}");
    for list in lists {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut().filter(|c| needs_mount(c)) {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if let Some(mounts) = mounts.as_array_mut() {
                mounts.push(json!({
                    "name": volume_name,
                    "readOnly": true,
                    "mountPath": MOUNT_PATH,
                }));
            }
        }
    }
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(volumes) = volumes.as_array_mut() {
        volumes.push(json!({
            "name": volume_name,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            },
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    #[test]
    fn every_container_mounts_one_projected_volume_with_token_ca_and_namespace() {
        let mut p = pod(json!({
            "initContainers": [{"name": "i", "image": "x"}],
            "containers": [{"name": "a", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                           {"name": "b", "image": "x"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }));
        admit(&mut p, &json!({}), "abcde");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        let vols = p["spec"]["volumes"].as_array().expect("volumes");
        assert_eq!(vols.len(), 2);
        let v = &vols[1];
        assert_eq!(v["name"], "kube-api-access-abcde");
        let sources = &v["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        for c in [
            &p["spec"]["initContainers"][0],
            &p["spec"]["containers"][0],
            &p["spec"]["containers"][1],
        ] {
            let mounts = c["volumeMounts"].as_array().expect("mounts");
            let m = mounts.last().expect("a mount");
            assert_eq!(m["mountPath"], MOUNT_PATH);
            assert_eq!(m["readOnly"], true);
            assert_eq!(m["name"], "kube-api-access-abcde");
        }
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"][0]["name"],
            "data"
        );
    }

    #[test]
    fn the_pod_or_else_its_account_may_opt_out_of_the_token() {
        let mut off = pod(json!({"containers": [{"name": "a"}]}));
        admit(
            &mut off,
            &json!({"automountServiceAccountToken": false}),
            "x",
        );
        assert!(off["spec"].get("volumes").is_none());

        let mut on =
            pod(json!({"automountServiceAccountToken": true, "containers": [{"name": "a"}]}));
        admit(
            &mut on,
            &json!({"automountServiceAccountToken": false}),
            "x",
        );
        assert_eq!(on["spec"]["volumes"].as_array().map(Vec::len), Some(1));

        let mut pod_off =
            pod(json!({"automountServiceAccountToken": false, "containers": [{"name": "a"}]}));
        admit(&mut pod_off, &json!({}), "x");
        assert!(pod_off["spec"].get("volumes").is_none());
    }

    #[test]
    fn a_container_mounting_its_own_volume_there_keeps_it() {
        let mut p = pod(json!({"containers": [
            {"name": "a", "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]}],
            "volumes": [{"name": "mine", "secret": {"secretName": "s"}}]}));
        admit(&mut p, &json!({}), "x");
        assert_eq!(p["spec"]["volumes"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn pull_secrets_come_from_the_account_only_when_the_pod_has_none() {
        let account = json!({"imagePullSecrets": [{"name": "regcred"}]});
        let mut p = pod(json!({"serviceAccountName": "builder", "containers": [{"name": "a"}]}));
        admit(&mut p, &account, "x");
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "regcred"}]));
        assert_eq!(p["spec"]["serviceAccount"], "builder");

        let mut own =
            pod(json!({"imagePullSecrets": [{"name": "mine"}], "containers": [{"name": "a"}]}));
        admit(&mut own, &account, "x");
        assert_eq!(own["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
    }

    #[test]
    fn mirror_pods_are_left_alone() {
        let p = json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}});
        assert!(!applies(&p));
        assert!(applies(&pod(json!({}))));
    }
}
