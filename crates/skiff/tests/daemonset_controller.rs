//! End-to-end: the DaemonSet controller against a real server with Node objects and
//! no node agent. Placement is checked through each pod's required node affinity
//! (`matchFields metadata.name`), which does not depend on the scheduler binding.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams};

const WAIT: Duration = Duration::from_secs(60);

const AGENT: &str = r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: default
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: busybox
"#;

/// The node each live daemon pod is pinned to.
async fn pinned_nodes(client: &kube::Client) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut out: Vec<String> = pods
        .list(&ListParams::default().labels("app=agent"))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let term = p
                .spec?
                .affinity?
                .node_affinity?
                .required_during_scheduling_ignored_during_execution?
                .node_selector_terms
                .into_iter()
                .next()?;
            let f = term.match_fields?.into_iter().next()?;
            (f.key == "metadata.name" && f.operator == "In")
                .then(|| f.values?.into_iter().next())?
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn daemonset_runs_one_pod_per_node_and_skips_a_node_with_an_untolerated_taint() {
    let s = support::TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "n1", "4", "8Gi", &[], &[]).await;
    cluster::create_node(&client, "n2", "4", "8Gi", &[], &[]).await;
    cluster::create_node(&client, "db", "4", "8Gi", &[], &["dedicated=db:NoSchedule"]).await;
    s.apply(AGENT);
    cluster::eventually(WAIT, "a pod on n1 and on n2", || async {
        (pinned_nodes(&client).await == ["n1", "n2"]).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = pods
        .list(&ListParams::default().labels("app=agent"))
        .await
        .expect("list")
        .items
        .remove(0);
    let tolerations: BTreeSet<String> = pod
        .spec
        .expect("spec")
        .tolerations
        .expect("tolerations")
        .into_iter()
        .filter_map(|t| t.key)
        .collect();
    for k in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(tolerations.contains(k), "{k} in {tolerations:?}");
    }
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    cluster::eventually(WAIT, "status counts", || async {
        let st = sets.get("agent").await.ok()?.status?;
        (st.desired_number_scheduled == 2
            && st.current_number_scheduled == 2
            && st.updated_number_scheduled == Some(2)
            && st.number_misscheduled == 0)
            .then_some(())
    })
    .await;
    let out = s.kubectl_ok(&["get", "daemonset", "agent"]);
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("2")),
        "{out}"
    );
    // Tolerating the taint brings a pod to the third node.
    s.apply(&AGENT.replace(
        "      containers:",
        "      tolerations:\n      - {key: dedicated, operator: Equal, value: db, effect: NoSchedule}\n      containers:",
    ));
    cluster::eventually(WAIT, "a pod on every node", || async {
        (pinned_nodes(&client).await == ["db", "n1", "n2"]).then_some(())
    })
    .await;
}

#[tokio::test]
async fn daemonset_follows_nodes_as_they_join_and_leave() {
    let s = support::TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "n1", "4", "8Gi", &[], &[]).await;
    s.apply(AGENT);
    cluster::eventually(WAIT, "a pod on n1", || async {
        (pinned_nodes(&client).await == ["n1"]).then_some(())
    })
    .await;
    cluster::create_node(&client, "n2", "4", "8Gi", &[], &[]).await;
    cluster::eventually(WAIT, "a pod on the new node", || async {
        (pinned_nodes(&client).await == ["n1", "n2"]).then_some(())
    })
    .await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .delete("n2", &DeleteParams::default())
        .await
        .expect("delete node");
    cluster::eventually(WAIT, "the pod of the deleted node gone", || async {
        (pinned_nodes(&client).await == ["n1"]).then_some(())
    })
    .await;
}
