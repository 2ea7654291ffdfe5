//! Node IPAM: every node gets its own pod CIDR from the cluster CIDR; a deleted
//! node's block is given out again.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams};
use support::TestServer;

async fn pod_cidr(client: &kube::Client, name: &str) -> String {
    let nodes: Api<Node> = Api::all(client.clone());
    cluster::eventually(
        Duration::from_secs(60),
        &format!("podCIDR of {name}"),
        || async {
            let n = nodes.get(name).await.ok()?;
            let spec = n.spec?;
            let cidr = spec.pod_cidr?;
            assert_eq!(spec.pod_cidrs.unwrap_or_default(), vec![cidr.clone()]);
            Some(cidr)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_get_distinct_pod_cidrs_and_a_deleted_nodes_cidr_is_reused() {
    let s = TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "a", "4", "8Gi", &[], &[]).await;
    let a = pod_cidr(&client, "a").await;
    cluster::create_node(&client, "b", "4", "8Gi", &[], &[]).await;
    let b = pod_cidr(&client, "b").await;
    assert_ne!(a, b);
    for c in [&a, &b] {
        assert!(c.starts_with("10.42.") && c.ends_with(".0/24"), "{c}");
    }
    // A pod CIDR, once set, cannot be changed.
    let err = s.kubectl_err(&[
        "patch",
        "node",
        "b",
        "--type=merge",
        "-p",
        r#"{"spec":{"podCIDR":"10.99.0.0/24","podCIDRs":["10.99.0.0/24"]}}"#,
    ]);
    assert!(
        err.contains(
            "spec.podCIDR: Forbidden: node updates may not change podCIDR except from \"\" to valid"
        ),
        "{err}"
    );
    assert_eq!(pod_cidr(&client, "b").await, b);
    let out = s.kubectl_ok(&["get", "node", "a", "-o", "jsonpath={.spec.podCIDR}"]);
    assert_eq!(out, a);
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete node");
    cluster::eventually(Duration::from_secs(30), "node a gone", || async {
        nodes
            .get_opt("a")
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
    cluster::create_node(&client, "c", "4", "8Gi", &[], &[]).await;
    assert_eq!(pod_cidr(&client, "c").await, a);
}
