//! Two `skiff controller-manager` processes against one server (`--disable
//! controllers`): the one holding the `kube-controller-manager` Lease reconciles,
//! and the other takes over within the lease duration when the leader is killed.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use support::{Options, TestServer};

/// A standalone controller manager, killed on drop.
struct Manager(Child);

impl Manager {
    fn start(s: &TestServer) -> Manager {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s.data_dir().join("controller-managers.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("controller-manager")
            .arg("--kubeconfig")
            .arg(s.kubeconfig())
            .env("SKIFF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff controller-manager");
        Manager(child)
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn pods_of(client: &kube::Client, app: &str) -> usize {
    Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count()
        })
        .unwrap_or(0)
}

async fn holder(client: &kube::Client) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get("kube-controller-manager")
        .await
        .ok()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_holder_reconciles_and_a_standby_takes_over_when_it_dies() {
    let s = TestServer::start_with(Options {
        args: vec!["--disable".into(), "controllers".into()],
    });
    let client = s.client().await;
    let mut first = Some(Manager::start(&s));
    let leader = cluster::eventually(Duration::from_secs(30), "a leader holds the lease", || {
        holder(&client)
    })
    .await;
    let _second = Manager::start(&s);
    s.apply("apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: a\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: a}\n  template:\n    metadata:\n      labels: {app: a}\n    spec:\n      containers:\n      - {name: c, image: busybox}\n");
    cluster::eventually(
        Duration::from_secs(60),
        "the leader creates the ReplicaSet's pods",
        || async { (pods_of(&client, "a").await == 2).then_some(()) },
    )
    .await;
    assert_eq!(
        holder(&client).await.as_deref(),
        Some(leader.as_str()),
        "leadership stays put while the leader lives"
    );

    // Kill the leader (no graceful release): the standby takes over after expiry.
    drop(first.take());
    let next = cluster::eventually(
        Duration::from_secs(60),
        "the standby takes the lease",
        || async { holder(&client).await.filter(|h| *h != leader) },
    )
    .await;
    assert_ne!(next, leader);
    s.apply("apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: b\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: b}\n  template:\n    metadata:\n      labels: {app: b}\n    spec:\n      containers:\n      - {name: c, image: busybox}\n");
    cluster::eventually(
        Duration::from_secs(60),
        "the new leader reconciles",
        || async { (pods_of(&client, "b").await == 1).then_some(()) },
    )
    .await;
}
