//! The eviction API honours PodDisruptionBudgets (their status kept by the disruption
//! controller), so `kubectl drain` evicts what it may and retries what it may not.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, PostParams};
use support::TestServer;

async fn pod_on(client: &kube::Client, name: &str, node: &str, app: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &p)
        .await
        .expect("create pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_respects_the_budget_and_drain_retries() {
    let s = TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "node-1", "4", "8Gi", &[], &[]).await;
    for (i, name) in ["web-a", "web-b", "web-c"].iter().enumerate() {
        pod_on(&client, name, "node-1", "web").await;
        cluster::set_pod_running(&client, "default", name, &format!("10.42.0.{}", i + 10)).await;
    }
    s.apply("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\nspec:\n  minAvailable: 2\n  selector:\n    matchLabels: {app: web}\n");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    cluster::eventually(
        Duration::from_secs(30),
        "PDB status: 1 disruption allowed",
        || {
            let pdbs = pdbs.clone();
            async move {
                let st = pdbs.get("web").await.ok()?.status?;
                (st.disruptions_allowed == 1 && st.current_healthy == 3 && st.desired_healthy == 2)
                    .then_some(())
            }
        },
    )
    .await;
    let out = s.kubectl_ok(&["get", "pdb", "web"]);
    assert!(
        out.contains("web    2               N/A               1"),
        "{out}"
    );

    let evict = |pod: &str| {
        let body = format!(
            r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#
        );
        s.curl_admin(
            &format!("/api/v1/namespaces/default/pods/{pod}/eviction"),
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &body,
            ],
        )
    };
    let (code, body) = evict("web-a");
    assert_eq!(code, 201, "{body}");
    let (code, body) = evict("web-b");
    assert_eq!(code, 429, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("Status");
    assert_eq!(
        status["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(status["details"]["causes"][0]["reason"], "DisruptionBudget");

    // drain (--force: these pods have no controller) cordons, then keeps retrying
    // the pods the budget protects.
    let out = s.kubectl(&[
        "drain",
        "node-1",
        "--force",
        "--timeout=6s",
        "--grace-period=0",
    ]);
    assert!(
        !out.status.success(),
        "drain must not finish while the budget blocks it"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("node/node-1 cordoned"), "{text}");
    assert!(
        text.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{text}"
    );
    let unsched = s.kubectl_ok(&[
        "get",
        "node",
        "node-1",
        "-o",
        "jsonpath={.spec.unschedulable}",
    ]);
    assert_eq!(unsched, "true");
}
