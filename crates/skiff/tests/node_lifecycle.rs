//! Node lifecycle: a node that stops reporting turns Unknown, gets the unreachable
//! taints, and its pods are evicted once their tolerations run out, while another
//! node is alive; when no node is Ready at all, nothing is evicted.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use support::{Options, TestServer};

async fn pod(client: &kube::Client, name: &str, toleration_seconds: Option<i64>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut tolerations = vec![];
    if let Some(secs) = toleration_seconds {
        tolerations.push(
            json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": secs}),
        );
    }
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": "silent", "tolerations": tolerations,
                 "containers": [{"name": "c", "image": "nginx"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &p)
        .await
        .expect("create pod");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_node_turns_unknown_gets_tainted_and_loses_its_pods() {
    let s = TestServer::start_with(Options {
        args: vec!["--node-monitor-grace-period".into(), "5".into()],
    });
    let client = s.client().await;
    // A live node beside it: with every node down the controller would evict nothing.
    cluster::create_node(&client, "alive", "4", "8Gi", &[], &[]).await;
    let alive = cluster::keep_node_alive(&client, "alive");
    cluster::create_node(&client, "silent", "4", "8Gi", &[], &[]).await;
    pod(&client, "short", Some(2)).await;
    pod(&client, "forever-tolerant", None).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // "forever-tolerant" gets the default 300 s tolerations from the server.
    let nodes: Api<Node> = Api::all(client.clone());
    let node = cluster::eventually(Duration::from_secs(60), "node Ready=Unknown", || async {
        let n = nodes.get("silent").await.ok()?;
        let ready = n
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready")?
            .clone();
        (ready.status == "Unknown").then_some((n, ready))
    })
    .await;
    assert_eq!(node.1.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        node.1.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    cluster::eventually(Duration::from_secs(60), "unreachable taints", || async {
        let n = nodes.get("silent").await.ok()?;
        let taints = n.spec?.taints?;
        let has = |e: &str| {
            taints
                .iter()
                .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == e)
        };
        (has("NoExecute") && has("NoSchedule")).then_some(())
    })
    .await;
    cluster::eventually(
        Duration::from_secs(60),
        "the pod with a 2 s toleration evicted",
        || async {
            pods.get_opt("short")
                .await
                .expect("get")
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(
        pods.get_opt("forever-tolerant")
            .await
            .expect("get")
            .is_some(),
        "300 s toleration not over yet"
    );
    let out = s.kubectl_ok(&["describe", "node", "silent"]);
    assert!(
        out.contains("node.kubernetes.io/unreachable:NoExecute"),
        "{out}"
    );
    let alive_node = nodes.get("alive").await.expect("alive");
    assert!(
        alive_node
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .is_empty(),
        "the live node keeps no lifecycle taint"
    );
    alive.abort();
}

fn has_taint(node: &Node, effect: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == effect)
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_node_down_nothing_is_evicted_until_one_is_back() {
    let s = TestServer::start_with(Options {
        args: vec!["--node-monitor-grace-period".into(), "3".into()],
    });
    let client = s.client().await;
    for name in ["a", "b"] {
        cluster::create_node(&client, name, "4", "8Gi", &[], &[]).await;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    // Both go silent: NoSchedule yes, NoExecute (eviction) no.
    cluster::eventually(
        Duration::from_secs(60),
        "both nodes unschedulable",
        || async {
            let a = nodes.get("a").await.ok()?;
            let b = nodes.get("b").await.ok()?;
            (has_taint(&a, "NoSchedule") && has_taint(&b, "NoSchedule")).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in ["a", "b"] {
        let n = nodes.get(name).await.expect("node");
        assert!(
            !has_taint(&n, "NoExecute"),
            "{name} got NoExecute in disruption mode"
        );
    }
    // One comes back: the other is now really the one in trouble.
    let alive = cluster::keep_node_alive(&client, "a");
    cluster::eventually(Duration::from_secs(60), "b tainted NoExecute", || async {
        let b = nodes.get("b").await.ok()?;
        has_taint(&b, "NoExecute").then_some(())
    })
    .await;
    cluster::eventually(Duration::from_secs(60), "a untainted", || async {
        let a = nodes.get("a").await.ok()?;
        (!has_taint(&a, "NoSchedule") && !has_taint(&a, "NoExecute")).then_some(())
    })
    .await;
    alive.abort();
}
