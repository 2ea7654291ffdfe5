//! Two `skiff scheduler` processes against one server: only the Lease holder
//! binds, and the other takes over when the leader dies.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

/// A standalone scheduler process, killed on drop.
struct Scheduler(Child);

impl Scheduler {
    fn start(s: &support::TestServer) -> Scheduler {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s.data_dir().join("schedulers.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("scheduler")
            .arg("--kubeconfig")
            .arg(s.kubeconfig())
            .env("SKIFF_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff scheduler");
        Scheduler(child)
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn create_pod(client: &kube::Client, name: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]},
    }))
    .expect("pod");
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

async fn bound(client: &kube::Client, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    cluster::eventually(
        Duration::from_secs(60),
        &format!("{name} to be bound"),
        || {
            let pods = pods.clone();
            async move {
                pods.get(name)
                    .await
                    .ok()?
                    .spec?
                    .node_name
                    .filter(|n| !n.is_empty())
            }
        },
    )
    .await
}

async fn holder(client: &kube::Client) -> String {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    cluster::eventually(
        Duration::from_secs(60),
        "a kube-scheduler lease holder",
        || {
            let leases = leases.clone();
            async move {
                leases
                    .get_opt("kube-scheduler")
                    .await
                    .ok()??
                    .spec?
                    .holder_identity
                    .filter(|h| !h.is_empty())
            }
        },
    )
    .await
}

async fn scheduled_by(client: &kube::Client, pod: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("Scheduled")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod)
        })
        .filter_map(|e| e.reporting_instance)
        .collect()
}

#[tokio::test]
async fn only_the_lease_holder_binds_and_the_other_scheduler_takes_over_when_it_dies() {
    let s = support::TestServer::start_with(support::Options {
        args: vec!["--disable".into(), "scheduler".into()],
    });
    let client = s.client().await;
    cluster::create_node(&client, "n1", "4", "8Gi", &[], &[]).await;
    let mut a = Scheduler::start(&s);
    let mut b = Scheduler::start(&s);
    let (pid_a, pid_b) = (a.0.id(), b.0.id());
    let leader = holder(&client).await;
    create_pod(&client, "first").await;
    assert_eq!(bound(&client, "first").await, "n1");
    let reporters = cluster::eventually(Duration::from_secs(30), "a Scheduled event", || {
        let client = client.clone();
        async move {
            let r = scheduled_by(&client, "first").await;
            (!r.is_empty()).then_some(r)
        }
    })
    .await;
    assert_eq!(
        reporters,
        vec![leader.clone()],
        "only the leader reports bindings"
    );

    let (dead, survivor_pid) = if leader.ends_with(&format!("_{pid_a}")) {
        (&mut a, pid_b)
    } else {
        assert!(
            leader.ends_with(&format!("_{pid_b}")),
            "holder {leader} is one of ours"
        );
        (&mut b, pid_a)
    };
    let _ = dead.0.kill();
    let _ = dead.0.wait();
    create_pod(&client, "second").await;
    assert_eq!(bound(&client, "second").await, "n1");
    let new_leader = holder(&client).await;
    assert!(
        new_leader.ends_with(&format!("_{survivor_pid}")),
        "{new_leader}"
    );
}
