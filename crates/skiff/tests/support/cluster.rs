//! Helpers for control-plane tests without a node agent: Node objects with capacity,
//! labels and taints; pod status set through `pods/status` like a node agent would;
//! polling until a condition holds.
#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// Creates a Ready node with `cpu` (e.g. "4") and `memory` (e.g. "8Gi"), labels and
/// taints (`key=value:Effect`).
pub async fn create_node(
    client: &kube::Client,
    name: &str,
    cpu: &str,
    memory: &str,
    labels: &[(&str, &str)],
    taints: &[&str],
) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut all_labels = serde_json::Map::new();
    all_labels.insert("kubernetes.io/hostname".into(), name.into());
    all_labels.insert("kubernetes.io/os".into(), "linux".into());
    all_labels.insert("kubernetes.io/arch".into(), "amd64".into());
    for (k, v) in labels {
        all_labels.insert((*k).into(), (*v).into());
    }
    let taints: Vec<serde_json::Value> = taints
        .iter()
        .map(|t| {
            let (kv, effect) = t.split_once(':').expect("taint as key=value:Effect");
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            json!({"key": k, "value": v, "effect": effect})
        })
        .collect();
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {"taints": taints},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "100Gi"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test node",
                            "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
            "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}, {"type": "Hostname", "address": name}],
        }
    }))
    .expect("node JSON");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node")
}

fn now() -> String {
    let t = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(t.as_second())
        .expect("ts")
        .to_string()
}

/// Marks a pod Running and Ready (all containers ready) through `pods/status`.
pub async fn set_pod_running(client: &kube::Client, ns: &str, name: &str, ip: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = pods.get(name).await.expect("get pod");
    let statuses: Vec<serde_json::Value> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| json!({
            "name": c.name, "image": c.image, "imageID": "", "ready": true, "restartCount": 0, "started": true,
            "state": {"running": {"startedAt": now()}},
        })).collect())
        .unwrap_or_default();
    let status = json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.0.2.10", "startTime": now(),
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now()},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now()},
            {"type": "Ready", "status": "True", "lastTransitionTime": now()},
        ],
        "containerStatuses": statuses,
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch pod status");
}

/// Marks a pod Succeeded or Failed (containers terminated with `exit_code`).
pub async fn set_pod_finished(client: &kube::Client, ns: &str, name: &str, exit_code: i32) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = pods.get(name).await.expect("get pod");
    let phase = if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let statuses: Vec<serde_json::Value> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| json!({
            "name": c.name, "image": c.image, "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "reason": if exit_code == 0 { "Completed" } else { "Error" },
                                     "startedAt": now(), "finishedAt": now()}},
        })).collect())
        .unwrap_or_default();
    let status = json!({"status": {"phase": phase, "containerStatuses": statuses}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch pod status");
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Plays a live node agent for `name`: renews its Lease in kube-node-lease and its
/// Ready heartbeat (Ready=True) every second until the task is aborted.
pub fn keep_node_alive(client: &kube::Client, name: &str) -> tokio::task::JoinHandle<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    let client = client.clone();
    let name = name.to_owned();
    tokio::spawn(async move {
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        let nodes: Api<Node> = Api::all(client);
        loop {
            let micro = k8s_openapi::jiff::Timestamp::now().to_string();
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro},
            });
            if leases.get_opt(&name).await.ok().flatten().is_none() {
                let _ = leases
                    .create(
                        &PostParams::default(),
                        &serde_json::from_value(lease).expect("lease"),
                    )
                    .await;
            } else {
                let _ = leases
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&lease))
                    .await;
            }
            let status = json!({"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test node",
                 "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}});
            let _ = nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&status))
                .await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}
