//! The scheduler against a real `skiff server`: nodes are Node objects without a
//! node agent; pods are bound by the embedded scheduler.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

async fn create_pod(client: &kube::Client, name: &str, spec: Value) -> Pod {
    create_pod_labeled(client, name, json!({}), spec).await
}

async fn create_pod_labeled(client: &kube::Client, name: &str, labels: Value, spec: Value) -> Pod {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "registry.k8s.io/pause:3.9"}]);
    }
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": spec,
    }))
    .expect("pod JSON");
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

fn container(cpu: &str) -> Value {
    json!([{"name": "c", "image": "registry.k8s.io/pause:3.9", "resources": {"requests": {"cpu": cpu}}}])
}

/// A 1Gi `manual` local PersistentVolume named `local-<node>` on `node`.
fn manual_local_volume(node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: local-{node}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  local: {{path: /mnt/disk}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{node}]}}]
"#
    )
}

async fn node_of(client: &kube::Client, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    cluster::eventually(WAIT, &format!("pod {name} to be bound"), || {
        let pods = pods.clone();
        async move {
            pods.get(name)
                .await
                .ok()
                .and_then(|p| p.spec.and_then(|s| s.node_name))
                .filter(|n| !n.is_empty())
        }
    })
    .await
}

/// Waits for the PodScheduled=False message of a pending pod.
/// Waits until the pod's PodScheduled=False condition (reason Unschedulable) carries
/// exactly `expected`. Earlier messages may differ: a pod can be tried before the
/// scheduler has seen the test's nodes, and it is retried when they arrive.
async fn expect_unschedulable(client: &kube::Client, name: &str, expected: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let last = std::sync::Mutex::new(String::new());
    let seen = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(p) = pods.get(name).await
                && let Some(c) = p.status.and_then(|s| s.conditions).and_then(|cs| {
                    cs.into_iter()
                        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
                })
            {
                assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
                let msg = c.message.unwrap_or_default();
                if msg == expected {
                    return;
                }
                *last.lock().expect("lock") = msg;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        seen.is_ok(),
        "pod {name}: unschedulable message never became\n  {expected}\nlast seen:\n  {}",
        last.lock().expect("lock")
    );
}

async fn event_notes(client: &kube::Client, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test]
async fn six_pods_spread_two_per_node_over_three_equal_nodes() {
    let s = support::TestServer::start();
    let client = s.client().await;
    for n in ["n1", "n2", "n3"] {
        cluster::create_node(&client, n, "4", "8Gi", &[], &[]).await;
    }
    for i in 0..6 {
        create_pod(&client, &format!("web-{i}"), json!({})).await;
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        *per_node
            .entry(node_of(&client, &format!("web-{i}")).await)
            .or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{per_node:?}"
    );
    let out = s.kubectl_ok(&["get", "pods", "-o", "wide"]);
    assert!(
        out.contains("n1") && out.contains("n2") && out.contains("n3"),
        "{out}"
    );
    let node = node_of(&client, "web-0").await;
    let scheduled = event_notes(&client, "Scheduled").await;
    assert!(
        scheduled.contains(&format!("Successfully assigned default/web-0 to {node}")),
        "{scheduled:?}"
    );
}

#[tokio::test]
async fn node_selector_and_required_node_affinity_choose_the_matching_node() {
    let s = support::TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "plain", "4", "8Gi", &[], &[]).await;
    cluster::create_node(&client, "ssd", "4", "8Gi", &[("disk", "ssd")], &[]).await;
    cluster::create_node(&client, "big", "4", "8Gi", &[("cores", "64")], &[]).await;
    create_pod(
        &client,
        "selector",
        json!({"nodeSelector": {"disk": "ssd"}}),
    )
    .await;
    create_pod(
        &client,
        "affinity",
        json!({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["32"]}]}
        ]}}}}),
    )
    .await;
    create_pod(
        &client,
        "by-name",
        json!({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["plain"]}]}
        ]}}}}),
    )
    .await;
    create_pod(
        &client,
        "nowhere",
        json!({"nodeSelector": {"disk": "nvme"}}),
    )
    .await;
    assert_eq!(node_of(&client, "selector").await, "ssd");
    assert_eq!(node_of(&client, "affinity").await, "big");
    assert_eq!(node_of(&client, "by-name").await, "plain");
    expect_unschedulable(
        &client,
        "nowhere",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
    )
    .await;
}

#[tokio::test]
async fn pod_anti_affinity_keeps_replicas_on_different_hosts() {
    let s = support::TestServer::start();
    let client = s.client().await;
    for n in ["h1", "h2"] {
        cluster::create_node(&client, n, "4", "8Gi", &[], &[]).await;
    }
    let spec = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}
    ]}}});
    create_pod_labeled(&client, "db-0", json!({"app": "db"}), spec.clone()).await;
    let first = node_of(&client, "db-0").await;
    create_pod_labeled(&client, "db-1", json!({"app": "db"}), spec.clone()).await;
    let second = node_of(&client, "db-1").await;
    assert_ne!(first, second);
    create_pod_labeled(&client, "db-2", json!({"app": "db"}), spec).await;
    expect_unschedulable(
        &client,
        "db-2",
        "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.",
    )
    .await;
    cluster::create_node(&client, "h3", "4", "8Gi", &[], &[]).await;
    assert_eq!(node_of(&client, "db-2").await, "h3");
}

#[tokio::test]
async fn topology_spread_keeps_zones_within_max_skew_one() {
    let s = support::TestServer::start();
    let client = s.client().await;
    let zone = "topology.kubernetes.io/zone";
    cluster::create_node(&client, "a1", "4", "8Gi", &[(zone, "a")], &[]).await;
    cluster::create_node(&client, "a2", "4", "8Gi", &[(zone, "a")], &[]).await;
    cluster::create_node(&client, "b1", "4", "8Gi", &[(zone, "b")], &[]).await;
    let spec = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": zone,
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "spread"}}}]});
    let mut zones: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..4 {
        let name = format!("s-{i}");
        create_pod_labeled(&client, &name, json!({"app": "spread"}), spec.clone()).await;
        let node = node_of(&client, &name).await;
        *zones.entry(node[..1].to_string()).or_default() += 1;
    }
    assert_eq!(zones.get("a"), Some(&2), "{zones:?}");
    assert_eq!(zones.get("b"), Some(&2), "{zones:?}");
}

#[tokio::test]
async fn tainted_nodes_take_only_pods_that_tolerate_the_taint() {
    let s = support::TestServer::start();
    let client = s.client().await;
    cluster::create_node(
        &client,
        "gpu",
        "4",
        "8Gi",
        &[],
        &["dedicated=gpu:NoSchedule"],
    )
    .await;
    create_pod(&client, "plain", json!({})).await;
    create_pod(
        &client,
        "tolerant",
        json!({"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
        ]}),
    )
    .await;
    assert_eq!(node_of(&client, "tolerant").await, "gpu");
    expect_unschedulable(
        &client,
        "plain",
        "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}. \
         preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_pod_stays_pending_with_the_reason_until_a_big_node_joins() {
    let s = support::TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "small", "2", "4Gi", &[], &[]).await;
    cluster::create_node(
        &client,
        "control",
        "8",
        "16Gi",
        &[],
        &["node-role.kubernetes.io/control-plane:NoSchedule"],
    )
    .await;
    create_pod(&client, "huge", json!({"containers": container("6")})).await;
    let expected = "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint \
                    {node-role.kubernetes.io/control-plane: }. preemption: 0/2 nodes are available: \
                    1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.";
    expect_unschedulable(&client, "huge", expected).await;
    let notes = event_notes(&client, "FailedScheduling").await;
    assert!(notes.iter().any(|n| n == expected), "{notes:?}");
    let described = cluster::eventually(
        WAIT,
        "kubectl describe to show FailedScheduling",
        || async {
            let out = s.kubectl_ok(&["describe", "pod", "huge"]);
            out.contains("FailedScheduling").then_some(out)
        },
    )
    .await;
    assert!(described.contains("Insufficient cpu"), "{described}");
    assert!(described.contains("default-scheduler"), "{described}");
    let out = s.kubectl_ok(&["get", "pod", "huge"]);
    assert!(out.contains("Pending"), "{out}");
    cluster::create_node(&client, "large", "16", "32Gi", &[], &[]).await;
    assert_eq!(node_of(&client, "huge").await, "large");
}

#[tokio::test]
async fn a_second_pod_asking_for_a_taken_host_port_stays_pending() {
    let s = support::TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "only", "4", "8Gi", &[], &[]).await;
    let spec = json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9",
        "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]}]});
    create_pod(&client, "first", spec.clone()).await;
    assert_eq!(node_of(&client, "first").await, "only");
    create_pod(&client, "second", spec).await;
    expect_unschedulable(
        &client,
        "second",
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. \
         preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
    )
    .await;
}

#[tokio::test]
async fn a_high_priority_pod_preempts_a_low_priority_pod() {
    let s = support::TestServer::start();
    let client = s.client().await;
    s.apply(
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: low\nvalue: 10\n---\n\
         apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: high\nvalue: 1000\n",
    );
    cluster::create_node(&client, "n1", "2", "4Gi", &[], &[]).await;
    create_pod(
        &client,
        "victim",
        json!({"priorityClassName": "low", "containers": container("1500m")}),
    )
    .await;
    assert_eq!(node_of(&client, "victim").await, "n1");
    let victim_uid = Api::<Pod>::namespaced(client.clone(), "default")
        .get("victim")
        .await
        .expect("victim")
        .metadata
        .uid;
    let boss = create_pod(
        &client,
        "boss",
        json!({"priorityClassName": "high", "containers": container("1")}),
    )
    .await;
    assert_eq!(node_of(&client, "boss").await, "n1");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let gone = pods.get_opt("victim").await.expect("get victim");
    assert!(
        gone.is_none_or(|p| p.metadata.uid != victim_uid),
        "the victim was deleted"
    );
    let uid = boss.metadata.uid.expect("uid");
    let preempted = cluster::eventually(WAIT, "a Preempted event", || {
        let client = client.clone();
        async move {
            let notes = event_notes(&client, "Preempted").await;
            (!notes.is_empty()).then_some(notes)
        }
    })
    .await;
    assert_eq!(
        preempted,
        vec![format!("Preempted by pod {uid} on node n1")]
    );
}

#[tokio::test]
async fn a_gated_pod_waits_until_its_scheduling_gates_are_removed() {
    let s = support::TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "n1", "4", "8Gi", &[], &[]).await;
    create_pod(
        &client,
        "gated",
        json!({"schedulingGates": [{"name": "example.com/quota"}]}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let message = cluster::eventually(WAIT, "the SchedulingGated condition", || {
        let pods = pods.clone();
        async move {
            let p = pods.get("gated").await.ok()?;
            p.status?.conditions?.into_iter().find_map(|c| {
                (c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("SchedulingGated"))
                .then(|| c.message.unwrap_or_default())
            })
        }
    })
    .await;
    assert_eq!(
        message,
        "Scheduling is blocked due to non-empty scheduling gates"
    );
    let out = s.kubectl_ok(&["get", "pod", "gated"]);
    assert!(out.contains("SchedulingGated"), "{out}");
    assert!(
        pods.get("gated")
            .await
            .expect("pod")
            .spec
            .and_then(|s| s.node_name)
            .is_none(),
        "a gated pod is not bound"
    );
    // Gates can only be removed, never added.
    let add = s.kubectl(&[
        "patch",
        "pod",
        "gated",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/schedulingGates/-","value":{"name":"example.com/more"}}]"#,
    ]);
    assert!(!add.status.success());
    let err = String::from_utf8_lossy(&add.stderr);
    assert!(
        err.contains("only deletion is allowed, but found new scheduling gate 'example.com/more'"),
        "{err}"
    );
    s.kubectl_ok(&[
        "patch",
        "pod",
        "gated",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/schedulingGates"}]"#,
    ]);
    assert_eq!(node_of(&client, "gated").await, "n1");
}

#[tokio::test]
async fn volumes_decide_the_node_pods_with_claims_go_to() {
    let s = support::TestServer::start();
    let client = s.client().await;
    for n in ["n1", "n2"] {
        cluster::create_node(&client, n, "4", "8Gi", &[], &[]).await;
    }
    s.apply(
        r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: manual}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: dynamic}
provisioner: example.com/dynamic
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: immediate}
provisioner: example.com/immediate
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: static, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  resources: {requests: {storage: 500Mi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: static-too, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  resources: {requests: {storage: 500Mi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: provisioned, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: dynamic
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: unbound-now, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: immediate
  resources: {requests: {storage: 1Gi}}
"#,
    );
    // The classes and claims reach the scheduler's cache.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_claim = |claim: &str| json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]});
    create_pod(&client, "on-local", with_claim("static")).await;
    create_pod(&client, "on-local-too", with_claim("static-too")).await;
    create_pod(&client, "anywhere", with_claim("provisioned")).await;
    create_pod(&client, "waits", with_claim("unbound-now")).await;
    create_pod(&client, "no-claim", with_claim("missing")).await;
    let no_volume = "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";
    for pod in ["on-local", "on-local-too"] {
        expect_unschedulable(&client, pod, no_volume).await;
    }
    // One local volume that both claims fit: its arrival retries both pods at once,
    // back to back. Exactly one gets it; the other cannot take it while the first
    // bind is in flight, nor overwrite its claimRef afterwards.
    s.apply(&manual_local_volume("n2"));

    // The static local volume exists only on n2: the pod goes there once the volume
    // is pre-bound to its claim and the volume controller has bound the claim.
    let pv: k8s_openapi::api::core::v1::PersistentVolume =
        cluster::eventually(WAIT, "local-n2 to be pre-bound", || {
            let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(client.clone());
            async move {
                pvs.get("local-n2")
                    .await
                    .ok()
                    .filter(|pv| pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_some()))
            }
        })
        .await;
    let winner = pv
        .spec
        .and_then(|s| s.claim_ref)
        .and_then(|r| r.name)
        .expect("claimRef name");
    let (bound, left) = if winner == "static" {
        ("on-local", "on-local-too")
    } else {
        ("on-local-too", "on-local")
    };
    assert_eq!(node_of(&client, bound).await, "n2");
    tokio::time::sleep(Duration::from_millis(500)).await;
    expect_unschedulable(&client, left, no_volume).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let left_pod = pods.get(left).await.expect("pod");
    assert_eq!(
        left_pod.spec.and_then(|s| s.node_name),
        None,
        "{left} bound too"
    );
    // A second volume, on n1, lets the other pod go there at once.
    s.apply(&manual_local_volume("n1"));
    assert_eq!(node_of(&client, left).await, "n1");
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), "default");
    let claim = claims.get(&winner).await.expect("winning claim");
    assert_eq!(
        claim.spec.and_then(|s| s.volume_name).as_deref(),
        Some("local-n2")
    );

    // The dynamically provisioned claim names a node for its provisioner; the pod
    // is not bound before the claim is.
    let node: String = cluster::eventually(WAIT, "the claim's selected node", || {
        let claims = claims.clone();
        async move {
            claims.get("provisioned").await.ok().and_then(|c| {
                c.metadata
                    .annotations
                    .and_then(|a| a.get("volume.kubernetes.io/selected-node").cloned())
            })
        }
    })
    .await;
    let pvc = claims.get("provisioned").await.expect("pvc");
    let annotations = pvc.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("volume.kubernetes.io/storage-provisioner")
            .map(String::as_str),
        Some("example.com/dynamic")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = pods.get("anywhere").await.expect("pod");
    assert_eq!(
        waiting.spec.and_then(|s| s.node_name),
        None,
        "bound before its claim"
    );
    // The test plays the provisioner: a volume on that node, made for the claim.
    s.apply(&format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: made-for-provisioned}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: dynamic
  local: {{path: /mnt/made}}
  claimRef: {{namespace: default, name: provisioned, uid: {uid}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{node}]}}]
"#,
        uid = pvc.metadata.uid.as_deref().unwrap_or_default(),
    ));
    assert_eq!(node_of(&client, "anywhere").await, node);

    expect_unschedulable(
        &client,
        "waits",
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
    )
    .await;
    expect_unschedulable(
        &client,
        "no-claim",
        "0/2 nodes are available: persistentvolumeclaim \"missing\" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
    )
    .await;
}
