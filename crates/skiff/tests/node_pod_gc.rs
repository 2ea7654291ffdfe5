//! Pod garbage collection: pods bound to a node that does not exist are deleted
//! (after the node has been missing for the 40 s quarantine).

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::TestServer;

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_bound_to_a_node_that_does_not_exist_is_deleted() {
    let s = TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "real", "4", "8Gi", &[], &[]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, node) in [("orphan", "ghost"), ("kept", "real")] {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]}
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &p)
            .await
            .expect("create pod");
    }
    cluster::eventually(
        Duration::from_secs(120),
        "the orphaned pod to be deleted",
        || async {
            pods.get_opt("orphan")
                .await
                .expect("get")
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(pods.get_opt("kept").await.expect("get").is_some());
}
