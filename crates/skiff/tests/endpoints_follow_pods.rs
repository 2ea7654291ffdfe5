//! Endpoints and EndpointSlices follow the pods a Service selects: ready pods as
//! addresses, others as not-ready, named target ports resolved from container ports.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::TestServer;

const WAIT: Duration = Duration::from_secs(60);

async fn pod(client: &kube::Client, name: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx",
            "ports": [{"name": "http", "containerPort": 8080}]}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &p)
        .await
        .expect("create pod");
}

async fn set_running_not_ready(client: &kube::Client, name: &str, ip: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "False"}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status");
}

fn ips(list: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>) -> Vec<String> {
    list.iter().flatten().map(|a| a.ip.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_and_slices_list_ready_and_not_ready_pods_on_the_named_port() {
    let s = TestServer::start();
    let client = s.client().await;
    cluster::create_node(&client, "n1", "4", "8Gi", &[], &[]).await;
    s.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n",
    );
    pod(&client, "ready").await;
    pod(&client, "starting").await;
    pod(&client, "no-ip").await;
    cluster::set_pod_running(&client, "default", "ready", "10.42.0.5").await;
    set_running_not_ready(&client, "starting", "10.42.0.6").await;

    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = cluster::eventually(
        WAIT,
        "endpoints with a ready and a not-ready address",
        || async {
            let ep = eps.get_opt("web").await.expect("get")?;
            let subsets = ep.subsets.clone()?;
            (subsets.len() == 1
                && ips(&subsets[0].addresses) == ["10.42.0.5"]
                && ips(&subsets[0].not_ready_addresses) == ["10.42.0.6"])
            .then_some(ep)
        },
    )
    .await;
    let subset = &ep.subsets.as_ref().expect("subsets")[0];
    let port = &subset.ports.as_ref().expect("ports")[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
    let addr = &subset.addresses.as_ref().expect("addresses")[0];
    assert_eq!(addr.node_name.as_deref(), Some("n1"));
    assert_eq!(
        addr.target_ref.as_ref().and_then(|r| r.name.as_deref()),
        Some("ready")
    );

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels("kubernetes.io/service-name=web");
    let slice = cluster::eventually(WAIT, "an endpointslice with both pods", || async {
        let list = slices.list(&lp).await.expect("list");
        let s = list.items.into_iter().next()?;
        (s.endpoints.len() == 2).then_some(s)
    })
    .await;
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert!(
        slice
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .starts_with("web-")
    );
    assert_eq!(slice.ports.as_ref().expect("ports")[0].port, Some(8080));
    let ready: Vec<(String, Option<bool>)> = slice
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addresses[0].clone(),
                e.conditions.as_ref().and_then(|c| c.ready),
            )
        })
        .collect();
    assert_eq!(
        ready,
        vec![
            ("10.42.0.5".to_string(), Some(true)),
            ("10.42.0.6".to_string(), Some(false))
        ]
    );
    let out = s.kubectl_ok(&["get", "endpoints", "web"]);
    assert!(out.contains("10.42.0.5:8080"), "{out}");

    // A deleted pod leaves both.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete(
        "ready",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .expect("delete pod");
    cluster::eventually(
        WAIT,
        "the deleted pod to leave endpoints and slices",
        || async {
            let ep = eps.get("web").await.expect("get");
            let ready: Vec<String> = ep
                .subsets
                .iter()
                .flatten()
                .flat_map(|s| ips(&s.addresses))
                .collect();
            let list = slices.list(&lp).await.expect("list");
            let n: usize = list.items.iter().map(|s| s.endpoints.len()).sum();
            (ready.is_empty() && n == 1).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn services_without_selector_keep_their_hand_written_endpoints() {
    let s = TestServer::start();
    s.apply(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: external\n  namespace: default\nspec:\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: Endpoints\nmetadata:\n  name: external\n  namespace: default\nsubsets:\n- addresses:\n  - ip: 192.0.2.1\n  ports:\n  - port: 80\n",
    );
    // Give the controllers time to (wrongly) act; then the hand-written object stays.
    std::thread::sleep(Duration::from_secs(3));
    let out = s.kubectl_ok(&[
        "get",
        "endpoints",
        "external",
        "-o",
        "jsonpath={.subsets[0].addresses[0].ip}",
    ]);
    assert_eq!(out, "192.0.2.1");
}
