//! Deployments against a real `skiff server`: ReplicaSets named by the pod-template
//! hash, rolling updates within maxSurge/maxUnavailable, Recreate, proportional
//! scaling mid-rollout, revisions for `kubectl rollout history/undo`, and the status
//! `kubectl get deploy` and `kubectl rollout status` read.
//!
//! There is no node agent: a small stand-in marks pods Running/Ready (only those
//! whose image it is told to start) and finishes the deletion of terminating pods.

#[path = "support/server.rs"]
mod support;

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use support::TestServer;

const WAIT: Duration = Duration::from_secs(60);

fn deployment(replicas: i32, image: &str, strategy: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  revisionHistoryLimit: 10
  selector:
    matchLabels: {{app: web}}
  strategy: {strategy}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: {image}
"#
    )
}

const ROLLING_1_0: &str = "{type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}";

fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Stands in for node agents: pods with an image in `start` become Running and
/// Ready; terminating pods are deleted for good. Stops when dropped.
struct FakeKubelet(Arc<AtomicBool>);

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn fake_kubelet(client: &kube::Client, start: &[&str]) -> FakeKubelet {
    let stop = Arc::new(AtomicBool::new(false));
    let (client, stop2) = (client.clone(), stop.clone());
    let start: Vec<String> = start.iter().map(|s| s.to_string()).collect();
    tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client, "default");
        while !stop2.load(Ordering::SeqCst) {
            for p in api
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
            {
                let name = p.metadata.name.clone().unwrap_or_default();
                if p.metadata.deletion_timestamp.is_some() {
                    let _ = api
                        .delete(&name, &DeleteParams::default().grace_period(0))
                        .await;
                } else if !is_ready(&p) && start.contains(&image(&p)) {
                    mark_running(&api, &name).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    FakeKubelet(stop)
}

/// Like `cluster::set_pod_running`, but a pod that vanished meanwhile is no error.
async fn mark_running(api: &Api<Pod>, name: &str) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let now = k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .expect("ts")
        .to_string();
    let status = json!({"status": {
        "phase": "Running", "podIP": "10.42.0.20", "hostIP": "192.0.2.10", "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
        ],
    }});
    let _ = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await;
}

async fn pods(client: &kube::Client) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods")
        .items
}

async fn replica_sets(client: &kube::Client) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .expect("list rs")
        .items
}

fn rs_image(rs: &ReplicaSet) -> String {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn annotation(rs: &ReplicaSet, key: &str) -> String {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key).cloned())
        .unwrap_or_default()
}

async fn rollout_status(s: &TestServer) -> String {
    s.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=60s"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_of_three_rolls_out_one_hashed_replicaset_and_three_ready_pods() {
    let s = TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "node-1", "8", "16Gi", &[], &[]).await;
    s.apply(&deployment(3, "nginx:1.27", ROLLING_1_0));
    let rs = cluster::eventually(WAIT, "one ReplicaSet", || async {
        replica_sets(&client).await.into_iter().next()
    })
    .await;
    let name = rs.metadata.name.clone().expect("name");
    let hash = rs
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .cloned()
        .expect("hash label");
    assert_eq!(name, format!("web-{hash}"));
    assert!(
        hash.chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "hash {hash}"
    );
    assert_eq!(annotation(&rs, "deployment.kubernetes.io/revision"), "1");
    assert_eq!(
        annotation(&rs, "deployment.kubernetes.io/desired-replicas"),
        "3"
    );
    assert_eq!(
        annotation(&rs, "deployment.kubernetes.io/max-replicas"),
        "4"
    );
    let owner = &rs.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Deployment", "web", Some(true))
    );

    let ps = cluster::eventually(WAIT, "three pods", || async {
        let ps = pods(&client).await;
        (ps.len() == 3).then_some(ps)
    })
    .await;
    for p in &ps {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("pod-template-hash"), Some(&hash));
        assert!(
            p.metadata
                .name
                .as_deref()
                .expect("name")
                .starts_with(&format!("{name}-"))
        );
        cluster::set_pod_running(
            &client,
            "default",
            p.metadata.name.as_deref().expect("name"),
            "10.42.0.5",
        )
        .await;
    }
    let out = rollout_status(&s).await;
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    let get = s.kubectl_ok(&["get", "deploy", "web", "--no-headers"]);
    let cols: Vec<&str> = get.split_whitespace().collect();
    assert_eq!(&cols[1..4], &["3/3", "3", "3"], "{get}");

    let d: Deployment = Api::namespaced(client.clone(), "default")
        .get("web")
        .await
        .expect("get deploy");
    let st = d.status.expect("status");
    assert_eq!(st.observed_generation, d.metadata.generation);
    let cond = |t: &str| {
        st.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t)
            .cloned()
            .expect("condition")
    };
    assert_eq!(
        cond("Available").reason.as_deref(),
        Some("MinimumReplicasAvailable")
    );
    assert_eq!(
        cond("Available").message.as_deref(),
        Some("Deployment has minimum availability.")
    );
    assert_eq!(
        cond("Progressing").reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        cond("Progressing").message,
        Some(format!(
            "ReplicaSet \"{name}\" has successfully progressed."
        ))
    );
    assert_eq!(
        d.metadata
            .annotations
            .unwrap_or_default()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let events = s.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=ScalingReplicaSet",
    ]);
    assert!(
        events.contains(&format!("Scaled up replica set {name} from 0 to 3")),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_with_max_surge_one_keeps_three_available_and_at_most_four_replicas() {
    let s = TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "node-1", "8", "16Gi", &[], &[]).await;
    let _kubelet = fake_kubelet(&client, &["nginx:1.27", "nginx:1.28"]);
    s.apply(&deployment(3, "nginx:1.27", ROLLING_1_0));
    rollout_status(&s).await;
    s.kubectl_ok(&["set", "image", "deploy/web", "web=nginx:1.28"]);
    let steps = std::sync::Mutex::new(Vec::new());
    cluster::eventually(WAIT, "all three pods on the new image", || async {
        let rss = replica_sets(&client).await;
        let total: i32 = rss.iter().map(rs_replicas).sum();
        assert!(
            total <= 4,
            "ReplicaSets ask for {total} pods: {:?}",
            rss.iter()
                .map(|r| (rs_image(r), rs_replicas(r)))
                .collect::<Vec<_>>()
        );
        let active: Vec<Pod> = pods(&client)
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let ready = active.iter().filter(|p| is_ready(p)).count();
        assert!(ready >= 3, "only {ready} ready pods during the rollout");
        let mut sizes: Vec<(String, i32)> =
            rss.iter().map(|r| (rs_image(r), rs_replicas(r))).collect();
        sizes.sort();
        let mut steps = steps.lock().expect("steps");
        if steps.last() != Some(&sizes) {
            steps.push(sizes);
        }
        let done = active.len() == 3
            && active
                .iter()
                .all(|p| image(p) == "nginx:1.28" && is_ready(p));
        done.then_some(())
    })
    .await;
    let out = rollout_status(&s).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    // Step by step: the new ReplicaSet grew one at a time while the old one shrank.
    let steps = steps.into_inner().expect("steps");
    assert!(steps.len() >= 3, "expected several steps, saw {steps:?}");
    let rss = replica_sets(&client).await;
    let new = rss
        .iter()
        .find(|r| rs_image(r) == "nginx:1.28")
        .expect("new rs");
    let old = rss
        .iter()
        .find(|r| rs_image(r) == "nginx:1.27")
        .expect("old rs");
    assert_eq!((rs_replicas(new), rs_replicas(old)), (3, 0));
    assert_eq!(annotation(new, "deployment.kubernetes.io/revision"), "2");
    let events = s.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=ScalingReplicaSet",
    ]);
    let old_name = old.metadata.name.clone().expect("name");
    assert!(
        events.contains(&format!("Scaled down replica set {old_name} from 3 to 2")),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_history_lists_revisions_and_undo_returns_to_the_previous_image() {
    let s = TestServer::start();
    let client = s.client().await;
    let _kubelet = fake_kubelet(&client, &["nginx:1.27", "nginx:1.28"]);
    s.apply(&deployment(2, "nginx:1.27", ROLLING_1_0));
    rollout_status(&s).await;
    s.kubectl_ok(&[
        "annotate",
        "deploy/web",
        "kubernetes.io/change-cause=move to 1.28",
    ]);
    s.kubectl_ok(&["set", "image", "deploy/web", "web=nginx:1.28"]);
    rollout_status(&s).await;
    let history = s.kubectl_ok(&["rollout", "history", "deploy/web"]);
    assert!(history.contains("REVISION"), "{history}");
    assert!(history.lines().any(|l| l.starts_with('1')), "{history}");
    assert!(
        history
            .lines()
            .any(|l| l.starts_with('2') && l.contains("move to 1.28")),
        "{history}"
    );
    let rev1 = s.kubectl_ok(&["rollout", "history", "deploy/web", "--revision=1"]);
    assert!(rev1.contains("nginx:1.27"), "{rev1}");

    let out = s.kubectl_ok(&["rollout", "undo", "deploy/web"]);
    assert!(out.contains("rolled back"), "{out}");
    rollout_status(&s).await;
    cluster::eventually(WAIT, "pods back on nginx:1.27", || async {
        let active: Vec<Pod> = pods(&client)
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        (active.len() == 2 && active.iter().all(|p| image(p) == "nginx:1.27")).then_some(())
    })
    .await;
    let rss = replica_sets(&client).await;
    assert_eq!(rss.len(), 2, "undo reuses the first ReplicaSet");
    let back = rss
        .iter()
        .find(|r| rs_image(r) == "nginx:1.27")
        .expect("rs");
    assert_eq!(annotation(back, "deployment.kubernetes.io/revision"), "3");
    assert_eq!(
        annotation(back, "deployment.kubernetes.io/revision-history"),
        "1"
    );
    let history = s.kubectl_ok(&["rollout", "history", "deploy/web"]);
    let revs: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revs, ["2", "3"], "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreate_deployment_stops_all_old_pods_before_starting_new_ones() {
    let s = TestServer::start();
    let client = s.client().await;
    let _kubelet = fake_kubelet(&client, &["nginx:1.27", "nginx:1.28"]);
    s.apply(&deployment(3, "nginx:1.27", "{type: Recreate}"));
    rollout_status(&s).await;
    s.kubectl_ok(&["set", "image", "deploy/web", "web=nginx:1.28"]);
    cluster::eventually(WAIT, "three pods on the new image", || async {
        let all = pods(&client).await;
        let old = all.iter().filter(|p| image(p) == "nginx:1.27").count();
        let new = all.iter().filter(|p| image(p) == "nginx:1.28").count();
        assert!(old == 0 || new == 0, "{old} old and {new} new pods at once");
        (new == 3 && all.iter().all(is_ready)).then_some(())
    })
    .await;
    let out = rollout_status(&s).await;
    assert!(out.contains("successfully rolled out"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_in_the_middle_of_a_stuck_rollout_adds_replicas_proportionally() {
    let s = TestServer::start();
    let client = s.client().await;
    // nginx:broken never becomes ready.
    let _kubelet = fake_kubelet(&client, &["nginx:1.27"]);
    s.apply(&deployment(
        10,
        "nginx:1.27",
        "{type: RollingUpdate, rollingUpdate: {maxSurge: 3, maxUnavailable: 2}}",
    ));
    rollout_status(&s).await;
    s.kubectl_ok(&["set", "image", "deploy/web", "web=nginx:broken"]);
    let sizes = || async {
        let rss = replica_sets(&client).await;
        let get = |img: &str| rss.iter().find(|r| rs_image(r) == img).map(rs_replicas);
        Some((get("nginx:1.27")?, get("nginx:broken")?))
    };
    cluster::eventually(WAIT, "the rollout to stall at 8 old + 5 new", || async {
        (sizes().await == Some((8, 5))).then_some(())
    })
    .await;
    s.kubectl_ok(&["scale", "deploy/web", "--replicas=15"]);
    cluster::eventually(WAIT, "5 more replicas shared as 11 old + 7 new", || async {
        (sizes().await == Some((11, 7))).then_some(())
    })
    .await;
    let d: Deployment = Api::namespaced(client.clone(), "default")
        .get("web")
        .await
        .expect("deploy");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_resizes_the_deployment_and_its_replicaset() {
    let s = TestServer::start();
    let client = s.client().await;
    let _kubelet = fake_kubelet(&client, &["nginx:1.27"]);
    s.apply(&deployment(2, "nginx:1.27", ROLLING_1_0));
    rollout_status(&s).await;
    s.kubectl_ok(&["scale", "deploy/web", "--replicas=5"]);
    rollout_status(&s).await;
    let get = s.kubectl_ok(&["get", "deploy", "web", "--no-headers"]);
    assert!(get.split_whitespace().nth(1) == Some("5/5"), "{get}");
    s.kubectl_ok(&["scale", "deploy/web", "--replicas=1"]);
    cluster::eventually(WAIT, "one pod left", || async {
        let active = pods(&client)
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        let rss = replica_sets(&client).await;
        (active == 1 && rss.len() == 1 && rs_replicas(&rss[0]) == 1).then_some(())
    })
    .await;
    let rss = replica_sets(&client).await;
    assert_eq!(
        annotation(&rss[0], "deployment.kubernetes.io/desired-replicas"),
        "1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_history_limit_deletes_the_oldest_idle_replicasets() {
    let s = TestServer::start();
    let client = s.client().await;
    let images = ["nginx:1.25", "nginx:1.26", "nginx:1.27", "nginx:1.28"];
    let _kubelet = fake_kubelet(&client, &images);
    s.apply(
        &deployment(1, images[0], ROLLING_1_0)
            .replace("revisionHistoryLimit: 10", "revisionHistoryLimit: 1"),
    );
    rollout_status(&s).await;
    for img in &images[1..] {
        s.kubectl_ok(&["set", "image", "deploy/web", &format!("web={img}")]);
        rollout_status(&s).await;
    }
    let rss = cluster::eventually(WAIT, "two ReplicaSets left", || async {
        let rss = replica_sets(&client).await;
        (rss.len() == 2).then_some(rss)
    })
    .await;
    let mut kept: Vec<String> = rss.iter().map(rs_image).collect();
    kept.sort();
    assert_eq!(kept, ["nginx:1.27", "nginx:1.28"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_deployment_does_not_roll_out_until_resumed() {
    let s = TestServer::start();
    let client = s.client().await;
    let _kubelet = fake_kubelet(&client, &["nginx:1.27", "nginx:1.28"]);
    s.apply(&deployment(2, "nginx:1.27", ROLLING_1_0));
    rollout_status(&s).await;
    s.kubectl_ok(&["rollout", "pause", "deploy/web"]);
    s.kubectl_ok(&["set", "image", "deploy/web", "web=nginx:1.28"]);
    cluster::eventually(WAIT, "Progressing=Unknown DeploymentPaused", || async {
        let out = s.kubectl_ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ]);
        (out == "DeploymentPaused").then_some(())
    })
    .await;
    assert_eq!(
        replica_sets(&client).await.len(),
        1,
        "no new ReplicaSet while paused"
    );
    s.kubectl_ok(&["rollout", "resume", "deploy/web"]);
    rollout_status(&s).await;
    let rss = replica_sets(&client).await;
    assert!(
        rss.iter()
            .any(|r| rs_image(r) == "nginx:1.28" && rs_replicas(r) == 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_rolls_out_new_pods() {
    let s = TestServer::start();
    let client = s.client().await;
    let _kubelet = fake_kubelet(&client, &["nginx:1.27"]);
    s.apply(&deployment(2, "nginx:1.27", ROLLING_1_0));
    rollout_status(&s).await;
    let before: Vec<String> = pods(&client)
        .await
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    s.kubectl_ok(&["rollout", "restart", "deploy/web"]);
    rollout_status(&s).await;
    cluster::eventually(WAIT, "two new pods", || async {
        let active: Vec<Pod> = pods(&client)
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        (active.len() == 2
            && active
                .iter()
                .all(|p| !before.contains(p.metadata.name.as_ref().expect("name"))))
        .then_some(())
    })
    .await;
    assert_eq!(replica_sets(&client).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_without_progress_exceeds_its_deadline_and_rollout_status_fails() {
    let s = TestServer::start();
    let client = s.client().await;
    // No pod ever becomes ready.
    let _kubelet = fake_kubelet(&client, &[]);
    s.apply(
        &deployment(2, "nginx:broken", ROLLING_1_0)
            .replace("  revisionHistoryLimit: 10", "  progressDeadlineSeconds: 2"),
    );
    cluster::eventually(
        WAIT,
        "Progressing=False ProgressDeadlineExceeded",
        || async {
            let d: Deployment = Api::namespaced(client.clone(), "default")
                .get("web")
                .await
                .ok()?;
            let c = d
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "Progressing")?;
            (c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
                .then_some(c)
        },
    )
    .await;
    let err = s.kubectl_err(&["rollout", "status", "deploy/web", "--timeout=30s"]);
    assert!(
        err.contains("deployment \"web\" exceeded its progress deadline"),
        "{err}"
    );
    let get = s.kubectl_ok(&["get", "deploy", "web", "--no-headers"]);
    assert_eq!(get.split_whitespace().nth(1), Some("0/2"), "{get}");
}
