//! Deleting a namespace deletes everything in it, then the namespace; the namespace
//! shows Terminating with Kubernetes' deletion conditions meanwhile.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::TestServer;

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_namespace_removes_its_objects_and_then_the_namespace() {
    let s = TestServer::start();
    s.kubectl_ok(&["create", "namespace", "doomed"]);
    s.kubectl_ok(&[
        "-n",
        "doomed",
        "create",
        "configmap",
        "settings",
        "--from-literal=a=b",
    ]);
    s.kubectl_ok(&[
        "-n",
        "doomed",
        "create",
        "secret",
        "generic",
        "token",
        "--from-literal=t=x",
    ]);
    s.kubectl_ok(&[
        "-n",
        "doomed",
        "create",
        "service",
        "clusterip",
        "web",
        "--tcp=80:8080",
    ]);
    s.kubectl_ok(&["delete", "namespace", "doomed", "--timeout=60s"]);
    let out = s.kubectl(&["get", "namespace", "doomed"]);
    assert!(!out.status.success(), "namespace still there");
    let client = s.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "doomed");
    assert!(cms.get_opt("settings").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_waits_for_content_held_by_a_finalizer() {
    let s = TestServer::start();
    let client = s.client().await;
    s.kubectl_ok(&["create", "namespace", "held"]);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {
        "name": "held", "finalizers": ["example.com/hold"]}}))
    .expect("cm");
    cms.create(&Default::default(), &cm).await.expect("create");
    s.kubectl_ok(&["delete", "namespace", "held", "--wait=false"]);
    let nss: Api<Namespace> = Api::all(client.clone());
    cluster::eventually(
        Duration::from_secs(60),
        "NamespaceFinalizersRemaining",
        || async {
            let ns = nss.get("held").await.ok()?;
            let conds = ns.status?.conditions?;
            conds
                .iter()
                .any(|c| c.type_ == "NamespaceFinalizersRemaining" && c.status == "True")
                .then_some(())
        },
    )
    .await;
    let phase = s.kubectl_ok(&["get", "namespace", "held", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Terminating");
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    cluster::eventually(
        Duration::from_secs(60),
        "namespace held to be gone",
        || async {
            nss.get_opt("held")
                .await
                .expect("get")
                .is_none()
                .then_some(())
        },
    )
    .await;
}
