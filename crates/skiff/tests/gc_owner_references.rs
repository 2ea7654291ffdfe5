//! Garbage collection through ownerReferences: ConfigMaps owned by a ConfigMap go
//! with their owner (background), before it (foreground), or stay without the
//! reference (orphan); a dependent with a second live owner stays.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::TestServer;

const WAIT: Duration = Duration::from_secs(60);

async fn owner(api: &Api<ConfigMap>, name: &str) -> ConfigMap {
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).expect("cm");
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create owner")
}

async fn dependent(api: &Api<ConfigMap>, name: &str, owners: &[&ConfigMap]) -> ConfigMap {
    let refs: Vec<_> = owners
        .iter()
        .map(|o| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name,
                        "uid": o.metadata.uid, "blockOwnerDeletion": true})
        })
        .collect();
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": refs}}))
            .expect("cm");
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create dependent")
}

async fn gone(api: &Api<ConfigMap>, name: &str) {
    cluster::eventually(WAIT, &format!("configmap {name} to be deleted"), || async {
        api.get_opt(name)
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_owner_deletes_its_dependents_in_the_background() {
    let s = TestServer::start();
    let client = s.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let o = owner(&api, "owner").await;
    dependent(&api, "dep-a", &[&o]).await;
    dependent(&api, "dep-b", &[&o]).await;
    s.kubectl_ok(&["delete", "configmap", "owner"]);
    gone(&api, "dep-a").await;
    gone(&api, "dep-b").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dependent_with_another_live_owner_stays_without_the_gone_reference() {
    let s = TestServer::start();
    let client = s.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let a = owner(&api, "owner-a").await;
    let b = owner(&api, "owner-b").await;
    dependent(&api, "shared", &[&a, &b]).await;
    s.kubectl_ok(&["delete", "configmap", "owner-a"]);
    cluster::eventually(WAIT, "the reference to owner-a to be removed", || async {
        let d = api.get("shared").await.expect("dependent stays");
        let refs = d.metadata.owner_references.unwrap_or_default();
        (refs.len() == 1 && refs[0].name == "owner-b").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_delete_cascade_foreground_returns_after_dependents_are_gone() {
    let s = TestServer::start();
    let client = s.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let o = owner(&api, "owner").await;
    dependent(&api, "dep", &[&o]).await;
    // kubectl waits for the owner to be gone, which the collector allows only once
    // the blocking dependent is gone.
    s.kubectl_ok(&[
        "delete",
        "configmap",
        "owner",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    assert!(
        api.get_opt("dep").await.expect("get").is_none(),
        "dependent gone before its owner"
    );
    assert!(api.get_opt("owner").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_delete_cascade_orphan_leaves_dependents_without_the_reference() {
    let s = TestServer::start();
    let client = s.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let o = owner(&api, "owner").await;
    dependent(&api, "dep", &[&o]).await;
    s.kubectl_ok(&[
        "delete",
        "configmap",
        "owner",
        "--cascade=orphan",
        "--timeout=60s",
    ]);
    gone(&api, "owner").await;
    let d = api.get("dep").await.expect("dependent stays");
    assert!(d.metadata.owner_references.unwrap_or_default().is_empty());
}
