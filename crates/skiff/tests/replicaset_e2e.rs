//! ReplicaSets and ReplicationControllers against a real `skiff server`: pods are
//! created from the template, replaced when deleted, removed on scale-down, orphans
//! adopted, and the status counts what kubectl shows.

#[path = "support/server.rs"]
mod support;

#[path = "support/cluster.rs"]
mod cluster;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use support::TestServer;

const RS: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: web
        image: nginx:1.27
"#;

const WAIT: Duration = Duration::from_secs(60);

/// Active pods (not being deleted) with `selector`.
async fn active_pods(client: &kube::Client, selector: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&ListParams::default().labels(selector))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn wait_for_pods(client: &kube::Client, selector: &str, n: usize) -> Vec<Pod> {
    cluster::eventually(WAIT, &format!("{n} pods with {selector}"), || async {
        let pods = active_pods(client, selector).await;
        (pods.len() == n).then_some(pods)
    })
    .await
}

#[tokio::test]
async fn a_replicaset_of_three_creates_three_owned_pods_and_reports_them_ready() {
    let s = TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "node-1", "8", "16Gi", &[], &[]).await;
    s.apply(RS);
    let pods = wait_for_pods(&client, "app=web", 3).await;
    for p in &pods {
        let name = p.metadata.name.clone().expect("name");
        assert!(name.starts_with("web-"), "pod name {name}");
        let owner = &p.metadata.owner_references.as_ref().expect("owner refs")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("ReplicaSet", "web")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        cluster::set_pod_running(&client, "default", &name, "10.42.0.10").await;
    }
    cluster::eventually(WAIT, "3/3 ready in kubectl get rs", || async {
        let out = s.kubectl_ok(&["get", "rs", "web", "--no-headers"]);
        let cols: Vec<&str> = out.split_whitespace().collect();
        (cols.get(1..4) == Some(&["3", "3", "3"][..])).then_some(())
    })
    .await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs = rss.get("web").await.expect("get rs");
    let st = rs.status.expect("status");
    assert_eq!(st.available_replicas, Some(3));
    assert_eq!(st.fully_labeled_replicas, Some(3));
    assert_eq!(st.observed_generation, rs.metadata.generation);
    // One event per pod.
    cluster::eventually(WAIT, "three SuccessfulCreate events", || async {
        let events = s.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=SuccessfulCreate",
        ]);
        (events.matches("Created pod: web-").count() == 3).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_deleted_pod_is_replaced_and_scaling_down_deletes_pods() {
    let s = TestServer::start();
    let client = s.client().await;
    s.apply(RS);
    let pods = wait_for_pods(&client, "app=web", 3).await;
    let victim = pods[0].metadata.name.clone().expect("name");
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.delete(&victim, &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    let pods = cluster::eventually(WAIT, "a replacement pod", || async {
        let pods = active_pods(&client, "app=web").await;
        (pods.len() == 3
            && pods
                .iter()
                .all(|p| p.metadata.name.as_deref() != Some(victim.as_str())))
        .then_some(pods)
    })
    .await;
    assert_eq!(pods.len(), 3);
    s.kubectl_ok(&["scale", "rs", "web", "--replicas=1"]);
    wait_for_pods(&client, "app=web", 1).await;
    cluster::eventually(WAIT, "status.replicas 1", || async {
        let out = s.kubectl_ok(&["get", "rs", "web", "-o", "jsonpath={.status.replicas}"]);
        (out == "1").then_some(())
    })
    .await;
    let events = s.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=SuccessfulDelete",
    ]);
    assert!(events.contains("Deleted pod: web-"), "events: {events}");
}

#[tokio::test]
async fn an_orphan_pod_with_matching_labels_is_adopted_and_counted() {
    let s = TestServer::start();
    let client = s.client().await;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let orphan: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "stray", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    }))
    .expect("pod");
    api.create(&PostParams::default(), &orphan)
        .await
        .expect("create orphan");
    s.apply(RS);
    let pods = wait_for_pods(&client, "app=web", 3).await;
    assert!(
        pods.iter()
            .any(|p| p.metadata.name.as_deref() == Some("stray"))
    );
    let stray = cluster::eventually(WAIT, "the orphan to be adopted", || async {
        let p = api.get("stray").await.ok()?;
        let refs = p.metadata.owner_references.clone()?;
        (refs.first()?.name == "web").then_some(p)
    })
    .await;
    assert_eq!(
        stray.metadata.owner_references.expect("refs")[0].controller,
        Some(true)
    );
    // Relabelled, the pod is released and replaced.
    s.kubectl_ok(&["label", "pod", "stray", "app=other", "--overwrite"]);
    cluster::eventually(WAIT, "the relabelled pod to be released", || async {
        let p = api.get("stray").await.ok()?;
        p.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
            .then_some(())
    })
    .await;
    wait_for_pods(&client, "app=web", 3).await;
}

#[tokio::test]
async fn a_replication_controller_keeps_its_replicas() {
    let s = TestServer::start();
    let client = s.client().await;
    s.apply(
        r#"
apiVersion: v1
kind: ReplicationController
metadata:
  name: legacy
spec:
  replicas: 2
  selector: {app: legacy}
  template:
    metadata:
      labels: {app: legacy}
    spec:
      containers:
      - name: c
        image: nginx:1.27
"#,
    );
    let pods = wait_for_pods(&client, "app=legacy", 2).await;
    let owner = &pods[0].metadata.owner_references.as_ref().expect("refs")[0];
    assert_eq!(owner.kind, "ReplicationController");
    for p in &pods {
        cluster::set_pod_running(
            &client,
            "default",
            p.metadata.name.as_deref().expect("name"),
            "10.42.0.11",
        )
        .await;
    }
    cluster::eventually(WAIT, "rc readyReplicas 2", || async {
        let out = s.kubectl_ok(&[
            "get",
            "rc",
            "legacy",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]);
        (out == "2").then_some(())
    })
    .await;
    s.kubectl_ok(&["scale", "rc", "legacy", "--replicas=3"]);
    wait_for_pods(&client, "app=legacy", 3).await;
}
