//! Every namespace gets a `default` ServiceAccount, recreated when deleted.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams};
use support::TestServer;

#[tokio::test(flavor = "multi_thread")]
async fn a_new_namespace_gets_a_default_service_account_that_comes_back_when_deleted() {
    let s = TestServer::start();
    s.kubectl_ok(&["create", "namespace", "team-a"]);
    let client = s.client().await;
    let sas: Api<ServiceAccount> = Api::namespaced(client, "team-a");
    let first = cluster::eventually(
        Duration::from_secs(60),
        "default serviceaccount",
        || async { sas.get_opt("default").await.expect("get") },
    )
    .await;
    let out = s.kubectl_ok(&["-n", "team-a", "get", "serviceaccounts"]);
    assert!(out.contains("default"), "{out}");
    sas.delete("default", &DeleteParams::default())
        .await
        .expect("delete");
    cluster::eventually(
        Duration::from_secs(60),
        "default serviceaccount recreated",
        || async {
            let sa = sas.get_opt("default").await.expect("get")?;
            (sa.metadata.uid != first.metadata.uid).then_some(())
        },
    )
    .await;
}
