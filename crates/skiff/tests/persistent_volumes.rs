//! Persistent volumes as a k3s user knows them: the default `local-path` StorageClass,
//! claims that name no class get it, the persistentvolume-binder binds claims to
//! volumes (static ones, ones pre-bound by a user, ones a provisioner made) and
//! releases volumes whose claims are gone; the node agent's local-path provisioner
//! creates a directory and a volume on the node the scheduler picked, and removes
//! both once the claim is deleted.
//!
//! The first tests run a server without a node agent and play the scheduler's and
//! the provisioner's parts by hand. The last two run real agents (as root, with
//! containerd): a StatefulSet's volumeClaimTemplates on one node, and on two.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/joined_agent.rs"]
mod joined_agent;
#[path = "support/multinode.rs"]
mod multinode;
#[path = "support/server.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn phase_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The claim once `check` accepts it.
async fn claim_where(
    client: &kube::Client,
    ns: &str,
    name: &str,
    what: &str,
    within: Duration,
    check: impl Fn(&PersistentVolumeClaim) -> bool,
) -> PersistentVolumeClaim {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    cluster::eventually(within, &format!("claim {ns}/{name}: {what}"), || async {
        let c = api.get_opt(name).await.ok()??;
        check(&c).then_some(c)
    })
    .await
}

/// The volume once `check` accepts it.
async fn volume_where(
    client: &kube::Client,
    name: &str,
    what: &str,
    within: Duration,
    check: impl Fn(&PersistentVolume) -> bool,
) -> PersistentVolume {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    cluster::eventually(within, &format!("volume {name}: {what}"), || async {
        let v = api.get_opt(name).await.ok()??;
        check(&v).then_some(v)
    })
    .await
}

/// Waits until `name` (of the given kind, in `ns`) has an event with `reason`;
/// returns its note and reporting controller.
async fn event_about(
    client: &kube::Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> (String, String) {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    cluster::eventually(WAIT, &format!("a {reason} event about {name}"), || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find_map(|e| {
            let about = e.regarding.as_ref()?.name.as_deref() == Some(name);
            (about && e.reason.as_deref() == Some(reason)).then(|| {
                (
                    e.note.unwrap_or_default(),
                    e.reporting_controller.unwrap_or_default(),
                )
            })
        })
    })
    .await
}

#[tokio::test]
async fn claims_without_a_class_get_the_default_local_path_class_and_wait_for_a_consumer() {
    let s = support::TestServer::start();
    let client = s.client().await;
    let out = s.kubectl_ok(&["get", "storageclass"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("local-path"))
        .unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols[..5],
        [
            "local-path",
            "(default)",
            "rancher.io/local-path",
            "Delete",
            "WaitForFirstConsumer"
        ],
        "{out}"
    );

    s.apply(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: defaulted, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: no-class, namespace: default}
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
"#,
    );
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let defaulted = claims.get("defaulted").await.expect("claim");
    let class =
        |c: &PersistentVolumeClaim| c.spec.as_ref().and_then(|s| s.storage_class_name.clone());
    assert_eq!(class(&defaulted).as_deref(), Some("local-path"));
    let explicit = claims.get("no-class").await.expect("claim");
    assert_eq!(
        class(&explicit).as_deref(),
        Some(""),
        "an explicit \"\" means no class"
    );

    let (note, from) = event_about(&client, "default", "defaulted", "WaitForFirstConsumer").await;
    assert_eq!(
        note,
        "waiting for first consumer to be created before binding"
    );
    assert_eq!(from, "persistentvolume-controller");
    let (note, _) = event_about(&client, "default", "no-class", "FailedBinding").await;
    assert_eq!(
        note,
        "no persistent volumes available for this claim and no storage class is set"
    );
    let described = s.kubectl_ok(&["describe", "pvc", "defaulted"]);
    assert!(
        described
            .lines()
            .any(|l| l.starts_with("StorageClass:") && l.trim_end().ends_with(" local-path")),
        "{described}"
    );
    assert!(
        described.contains("waiting for first consumer to be created before binding"),
        "{described}"
    );
    for c in [&defaulted, &explicit] {
        assert_eq!(
            phase_of_claim(&claims.get(&c.name_any()).await.expect("claim")),
            "Pending"
        );
    }
}

#[tokio::test]
async fn a_claim_gets_its_provisioner_once_a_node_is_selected_and_binds_the_volume_it_makes() {
    let s = support::TestServer::start();
    let client = s.client().await;
    s.apply(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
"#,
    );
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    // The scheduler's part: the pod's node goes on the claim.
    let patch = json!({"metadata": {"annotations": {"volume.kubernetes.io/selected-node": "n1"}}});
    claims
        .patch("data", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
    let claim = claim_where(
        &client,
        "default",
        "data",
        "its provisioner named",
        WAIT,
        |c| {
            annotation(&c.metadata, "volume.kubernetes.io/storage-provisioner")
                == Some("rancher.io/local-path")
        },
    )
    .await;
    assert_eq!(
        annotation(
            &claim.metadata,
            "volume.beta.kubernetes.io/storage-provisioner"
        ),
        Some("rancher.io/local-path")
    );
    let (note, _) = event_about(&client, "default", "data", "ExternalProvisioning").await;
    assert!(note.contains("'rancher.io/local-path'"), "{note}");

    // The provisioner's part: a volume pre-bound to the claim by claimRef.
    let uid = claim.uid().expect("uid");
    let pv_name = format!("pvc-{uid}");
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}},
        "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                 "persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": "/nonexistent/skiff-test-volume"},
                 "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "default",
                              "name": "data", "uid": uid}},
    }))
    .expect("pv");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    volumes
        .create(&Default::default(), &pv)
        .await
        .expect("create pv");
    let bound = claim_where(&client, "default", "data", "Bound", WAIT, |c| {
        phase_of_claim(c) == "Bound"
    })
    .await;
    assert_eq!(
        bound.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some(pv_name.as_str())
    );
    assert_eq!(
        annotation(&bound.metadata, "pv.kubernetes.io/bind-completed"),
        Some("yes")
    );
    assert_eq!(
        annotation(&bound.metadata, "pv.kubernetes.io/bound-by-controller"),
        Some("yes")
    );
    let pv = volume_where(&client, &pv_name, "Bound", WAIT, |v| {
        phase_of_volume(v) == "Bound"
    })
    .await;
    assert_eq!(
        annotation(&pv.metadata, "pv.kubernetes.io/bound-by-controller"),
        None,
        "the provisioner bound it, not the controller"
    );

    // The claim goes: the volume is Released for its provisioner to delete; the
    // binder does not delete it (nor mark it Failed).
    claims
        .delete("data", &Default::default())
        .await
        .expect("delete claim");
    volume_where(&client, &pv_name, "Released", WAIT, |v| {
        phase_of_volume(v) == "Released"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = volumes
        .get(&pv_name)
        .await
        .expect("the volume is left to its provisioner");
    assert_eq!(phase_of_volume(&still), "Released");
}

#[tokio::test]
async fn static_volumes_bind_the_smallest_fit_pre_bound_and_named_volumes_first() {
    let s = support::TestServer::start();
    let client = s.client().await;
    let pv = |name: &str, size: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  capacity: {{storage: {size}}}\n  accessModes: [ReadWriteOnce]\n  hostPath: {{path: /nonexistent/{name}}}\n{extra}---\n"
        )
    };
    let mut yaml = String::new();
    yaml += &pv("pv-big", "5Gi", "");
    yaml += &pv("pv-small", "1Gi", "");
    yaml += &pv(
        "pv-reserved",
        "8Gi",
        "  claimRef: {namespace: default, name: wanted}\n",
    );
    yaml += &pv("pv-named", "9Gi", "");
    s.apply(&yaml);
    // Volumes start Pending and become Available.
    for n in ["pv-big", "pv-small", "pv-named"] {
        volume_where(&client, n, "Available", WAIT, |v| {
            phase_of_volume(v) == "Available"
        })
        .await;
    }
    let applied = Instant::now();
    s.apply(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 500Mi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: wanted, namespace: default}
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: by-name, namespace: default}
spec:
  storageClassName: ""
  volumeName: pv-named
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: too-big, namespace: default}
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 100Gi}}
"#,
    );
    for (claim, volume) in [
        ("data", "pv-small"),
        ("wanted", "pv-reserved"),
        ("by-name", "pv-named"),
    ] {
        let c = claim_where(&client, "default", claim, "Bound", WAIT, |c| {
            phase_of_claim(c) == "Bound"
        })
        .await;
        assert_eq!(
            c.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
            Some(volume),
            "{claim}"
        );
        assert_eq!(
            annotation(&c.metadata, "pv.kubernetes.io/bind-completed"),
            Some("yes")
        );
        let v = volume_where(&client, volume, "Bound", WAIT, |v| {
            phase_of_volume(v) == "Bound"
        })
        .await;
        let r = v
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.clone())
            .expect("claimRef");
        assert_eq!(
            (r.name.as_deref(), r.uid.as_deref()),
            (Some(claim), c.uid().as_deref())
        );
    }
    eprintln!(
        "timing: three claims Bound {:?} after they were applied",
        applied.elapsed()
    );
    let data = claim_where(&client, "default", "data", "Bound", WAIT, |_| true).await;
    let st = data.status.clone().expect("status");
    assert_eq!(
        st.capacity
            .and_then(|c| c.get("storage").cloned())
            .map(|q| q.0),
        Some("1Gi".into())
    );
    assert_eq!(st.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    assert_eq!(
        annotation(&data.metadata, "pv.kubernetes.io/bound-by-controller"),
        Some("yes")
    );
    let small = volume_where(&client, "pv-small", "Bound", WAIT, |_| true).await;
    assert_eq!(
        annotation(&small.metadata, "pv.kubernetes.io/bound-by-controller"),
        Some("yes")
    );
    let reserved = volume_where(&client, "pv-reserved", "Bound", WAIT, |_| true).await;
    assert_eq!(
        annotation(&reserved.metadata, "pv.kubernetes.io/bound-by-controller"),
        None,
        "the user pre-bound it"
    );
    let big = volume_where(&client, "pv-big", "still Available", WAIT, |_| true).await;
    assert_eq!(phase_of_volume(&big), "Available");
    let (note, _) = event_about(&client, "default", "too-big", "FailedBinding").await;
    assert_eq!(
        note,
        "no persistent volumes available for this claim and no storage class is set"
    );

    let out = s.kubectl_ok(&["get", "pvc", "data"]);
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..5],
        ["data", "Bound", "pv-small", "1Gi", "RWO"],
        "{out}"
    );
    let out = s.kubectl_ok(&["get", "pv", "pv-small"]);
    assert!(
        out.contains("Bound") && out.contains("default/data"),
        "{out}"
    );
}

#[tokio::test]
async fn deleting_a_bound_claim_releases_its_volume_which_retain_keeps() {
    let s = support::TestServer::start();
    let client = s.client().await;
    s.apply(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {name: kept}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: manual
  hostPath: {path: /nonexistent/kept}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: doomed}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: other
  hostPath: {path: /nonexistent/doomed}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: a, namespace: default}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: b, namespace: default}
spec:
  storageClassName: other
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#,
    );
    for c in ["a", "b"] {
        claim_where(&client, "default", c, "Bound", WAIT, |c| {
            phase_of_claim(c) == "Bound"
        })
        .await;
    }
    s.kubectl_ok(&["delete", "pvc", "a", "b"]);
    let kept = volume_where(&client, "kept", "Released", WAIT, |v| {
        phase_of_volume(v) == "Released"
    })
    .await;
    let r = kept
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.clone())
        .expect("the claimRef stays");
    assert_eq!(r.name.as_deref(), Some("a"));
    // Skiff, like a cluster without in-tree plugins, cannot delete a static hostPath
    // volume: the volume fails, saying so.
    let doomed = volume_where(&client, "doomed", "Failed", WAIT, |v| {
        phase_of_volume(v) == "Failed"
    })
    .await;
    let message = doomed.status.and_then(|s| s.message).unwrap_or_default();
    assert!(
        message.contains("no deletable volume plugin matched"),
        "{message}"
    );
    let (note, _) = event_about(&client, "default", "doomed", "VolumeFailedDelete").await;
    assert_eq!(note, message);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kept = volume_where(&client, "kept", "still there", WAIT, |_| true).await;
    assert_eq!(
        phase_of_volume(&kept),
        "Released",
        "Retain keeps it Released"
    );
    let out = s.kubectl_ok(&["get", "pv", "kept"]);
    assert!(out.contains("Released"), "{out}");
}

/// A StatefulSet whose pods write into their claim's volume once and then sleep.
fn web_statefulset(replicas: u32, extra_pod_spec: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web, namespace: default}}
spec:
  serviceName: web
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
{extra_pod_spec}      containers:
      - name: c
        image: busybox
        command: [sh, -c, 'test -f /data/id || echo "$(hostname) $(cat /proc/sys/kernel/random/uuid)" > /data/id; trap "exit 0" TERM; sleep 100000 & wait']
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Mi}}}}
"#
    )
}

/// Waits for pod `name` Running; on timeout says what the pod and its claim show
/// (the scheduler's VolumeBinding must name a node on the claim first).
async fn running(client: &kube::Client, name: &str, claim: &str, within: Duration) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    loop {
        if let Ok(Some(p)) = pods.get_opt(name).await
            && agent::phase(&p) == "Running"
            && p.metadata.deletion_timestamp.is_none()
        {
            return p;
        }
        if start.elapsed() > within {
            let pod = pods.get_opt(name).await.ok().flatten();
            let claim = claims.get_opt(claim).await.ok().flatten();
            panic!(
                "pod {name} not Running after {within:?}.\npod status: {:#?}\nclaim annotations: {:#?}\nclaim status: {:#?}",
                pod.and_then(|p| p.status),
                claim.as_ref().and_then(|c| c.metadata.annotations.clone()),
                claim.and_then(|c| c.status),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The claim's volume once Bound, checked as the local-path provisioner makes it:
/// pinned to `node`, a hostPath directory under `agent_dir/storage` that exists.
async fn provisioned_volume(
    client: &kube::Client,
    claim: &str,
    node: &str,
    agent_dir: &Path,
) -> (String, PathBuf) {
    let c = claim_where(client, "default", claim, "Bound", WAIT, |c| {
        phase_of_claim(c) == "Bound"
    })
    .await;
    assert_eq!(
        c.spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref()),
        Some("local-path")
    );
    assert_eq!(
        annotation(&c.metadata, "volume.kubernetes.io/selected-node"),
        Some(node)
    );
    let pv_name = c
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .expect("volumeName");
    assert_eq!(pv_name, format!("pvc-{}", c.uid().expect("uid")));
    let pv: PersistentVolume = Api::all(client.clone()).get(&pv_name).await.expect("pv");
    assert_eq!(
        annotation(&pv.metadata, "pv.kubernetes.io/provisioned-by"),
        Some("rancher.io/local-path")
    );
    let spec = pv.spec.clone().expect("spec");
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(
        spec.capacity
            .and_then(|c| c.get("storage").cloned())
            .map(|q| q.0),
        Some("1Mi".into())
    );
    let affinity = serde_json::to_value(&spec.node_affinity).expect("json");
    assert_eq!(
        affinity["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
        json!({"key": "kubernetes.io/hostname", "operator": "In", "values": [node]})
    );
    let dir = PathBuf::from(spec.host_path.expect("hostPath").path);
    assert_eq!(dir.parent(), Some(agent_dir.join("storage").as_path()));
    assert_eq!(
        dir.file_name().and_then(|n| n.to_str()),
        Some(format!("{pv_name}_default_{claim}").as_str())
    );
    assert!(dir.is_dir(), "{} exists", dir.display());
    let (note, from) = event_about(client, "default", claim, "ProvisioningSucceeded").await;
    assert_eq!(note, format!("Successfully provisioned volume {pv_name}"));
    assert_eq!(from, "rancher.io/local-path");
    (pv_name, dir)
}

/// Deletes the StatefulSet, waits for its pods to go, deletes its claims, and
/// waits for their volumes and directories to go.
async fn delete_everything(
    client: &kube::Client,
    kubectl: impl Fn(&[&str]),
    volumes: &[(String, PathBuf)],
) {
    kubectl(&["delete", "statefulset", "web", "--wait=false"]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    cluster::eventually(
        Duration::from_secs(60),
        "the StatefulSet's pods gone",
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            list.items.is_empty().then_some(())
        },
    )
    .await;
    kubectl(&[
        "delete",
        "pvc",
        "data-web-0",
        "data-web-1",
        "--wait=false",
        "--ignore-not-found",
    ]);
    let api: Api<PersistentVolume> = Api::all(client.clone());
    for (pv, dir) in volumes {
        cluster::eventually(
            WAIT,
            &format!("volume {pv} and {} gone", dir.display()),
            || async {
                let gone = api.get_opt(pv).await.ok()?.is_none();
                (gone && !dir.exists()).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulsets_claims_get_local_volumes_that_keep_data_across_pod_restarts() {
    let server = agent::AgentServer::start();
    let client = server.client().await;
    agent::ready_node(&client).await;
    let agent_dir = server.dir.join("agent");
    let started = Instant::now();
    server.apply(&web_statefulset(2, ""));
    let mut volumes = Vec::new();
    for i in 0..2 {
        let pod = format!("web-{i}");
        let claim = format!("data-web-{i}");
        running(&client, &pod, &claim, Duration::from_secs(120)).await;
        eprintln!(
            "timing: {pod} Running {:?} after the StatefulSet was applied",
            started.elapsed()
        );
        volumes.push(provisioned_volume(&client, &claim, agent::NODE, &agent_dir).await);
    }

    // The pod wrote into the directory the provisioner made.
    let exec_id = |pod: &str| {
        let out = server.kubectl_ok(&["exec", pod, "--", "cat", "/data/id"]);
        out.trim().to_string()
    };
    let id0 = exec_id("web-0");
    assert!(id0.starts_with("web-0 "), "{id0}");
    let on_host = std::fs::read_to_string(volumes[0].1.join("id")).expect("the file on the host");
    assert_eq!(on_host.trim(), id0);
    assert_ne!(exec_id("web-1"), id0, "each pod has its own volume");

    // A new web-0 finds what the old one wrote.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let old_uid = pods.get("web-0").await.expect("pod").uid();
    server.kubectl_ok(&["delete", "pod", "web-0", "--wait=false"]);
    let restarted = Instant::now();
    agent::pod_where(
        &pods,
        "web-0",
        "a new web-0 Running",
        Duration::from_secs(90),
        |p| p.uid() != old_uid && agent::phase(p) == "Running",
    )
    .await;
    eprintln!(
        "timing: web-0 Running again {:?} after its deletion",
        restarted.elapsed()
    );
    assert_eq!(exec_id("web-0"), id0);

    // A claim deleted under its running pod stays, Terminating (its
    // kubernetes.io/pvc-protection finalizer), and so do its Bound volume and data.
    server.kubectl_ok(&["delete", "pvc", "data-web-1", "--wait=false"]);
    let (pv1, dir1) = &volumes[1];
    tokio::time::sleep(Duration::from_secs(3)).await;
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default")
        .get("data-web-1")
        .await
        .expect("the claim in use is kept");
    assert!(claim.metadata.deletion_timestamp.is_some());
    let volume = Api::<PersistentVolume>::all(client.clone())
        .get(pv1)
        .await
        .expect("its volume");
    assert_eq!(phase_of_volume(&volume), "Bound");
    assert!(dir1.join("id").exists(), "the data stays with the pod");
    assert_eq!(exec_id("web-1").split(' ').next(), Some("web-1"));

    let deleting = Instant::now();
    delete_everything(&client, |args| drop(server.kubectl_ok(args)), &volumes).await;
    eprintln!(
        "timing: volumes and directories gone {:?} after deleting the set",
        deleting.elapsed()
    );
    let left: Vec<_> = std::fs::read_dir(agent_dir.join("storage"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the storage directory is empty: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_two_nodes_each_pod_keeps_its_volume_on_its_own_node() {
    agent::require_preconditions();
    assert!(
        Path::new("/usr/bin/nsenter").exists(),
        "the multi-node test needs nsenter"
    );
    let id = format!("{:05x}", rand::random::<u32>() & 0x000f_ffff);
    // Dropped last: the namespaces go once the agents in them are cleaned up.
    let net = multinode::TestNet::create(&id);
    let server = multinode::Server::start(&net.host_ip());
    let (agents, names) = multinode::join_two_agents(&net, &server, &id, "skp", &[]).await;
    let client = server.client().await;
    // One pod per node.
    let spread = "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - labelSelector: {matchLabels: {app: web}}\n            topologyKey: kubernetes.io/hostname\n";
    server.apply(&web_statefulset(2, spread));
    let kubectl = |args: &[&str]| {
        let out = server.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut volumes = Vec::new();
    let mut homes = Vec::new();
    for i in 0..2 {
        let pod = running(
            &client,
            &format!("web-{i}"),
            &format!("data-web-{i}"),
            Duration::from_secs(180),
        )
        .await;
        let node = pod.spec.and_then(|s| s.node_name).expect("scheduled");
        let home = names.iter().position(|n| *n == node).expect("one of ours");
        let agent_dir = agents[home].dir.join("agent");
        volumes
            .push(provisioned_volume(&client, &format!("data-web-{i}"), &node, &agent_dir).await);
        homes.push(node);
    }
    assert_ne!(homes[0], homes[1], "anti-affinity spreads the pods");

    // web-0 comes back on the node its volume is on, and finds its data.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let old_uid = pods.get("web-0").await.expect("pod").uid();
    let written = std::fs::read_to_string(volumes[0].1.join("id")).expect("written on node");
    kubectl(&["delete", "pod", "web-0", "--wait=false"]);
    let again = agent::pod_where(
        &pods,
        "web-0",
        "a new web-0 Running",
        Duration::from_secs(120),
        |p| p.uid() != old_uid && agent::phase(p) == "Running",
    )
    .await;
    assert_eq!(again.spec.and_then(|s| s.node_name), Some(homes[0].clone()));
    let out = server.kubectl(&["exec", "web-0", "--", "cat", "/data/id"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), written.trim());

    delete_everything(&client, kubectl, &volumes).await;
    // Teardown order: agents (killall in their namespaces), server, then the network.
    drop(agents);
    drop(server);
    drop(net);
}
