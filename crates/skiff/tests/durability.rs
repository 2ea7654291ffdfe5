//! Acknowledged writes are never lost: 1,000 ConfigMaps are created by concurrent
//! clients, the server is SIGKILLed at a random point, and after a restart every
//! acknowledged object is there and the revision has not gone backwards.

#[path = "support/server.rs"]
mod support;

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use rand::Rng;
use support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_sigkill() {
    let mut s = TestServer::start();
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let kill_after = rand::rng().random_range(100..900);
    let total = 1000;
    let workers = 16;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let api = api.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(workers) {
                let mut c = ConfigMap::default();
                c.metadata.name = Some(format!("d-{i:04}"));
                c.data = Some([("i".to_string(), i.to_string())].into());
                match api.create(&PostParams::default(), &c).await {
                    Ok(created) => {
                        let rv: i64 = created
                            .metadata
                            .resource_version
                            .as_deref()
                            .unwrap_or("0")
                            .parse()
                            .unwrap_or(0);
                        acked.lock().expect("lock").push((format!("d-{i:04}"), rv));
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    loop {
        let n = acked.lock().expect("lock").len();
        if n >= kill_after {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    s.kill();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= kill_after,
        "{} acknowledged before the kill",
        acked.len()
    );
    let max_rv = acked.iter().map(|(_, rv)| *rv).max().unwrap_or(0);

    s.spawn_and_wait();
    let api: Api<ConfigMap> = Api::namespaced(s.client().await, "default");
    let list = api
        .list(&ListParams::default())
        .await
        .expect("list after restart");
    let present: std::collections::HashSet<String> = list
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    let missing: Vec<&String> = acked
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !present.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged creates lost after SIGKILL (killed after {kill_after}): {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let rv_after: i64 = list
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or("0")
        .parse()
        .expect("numeric rv");
    assert!(
        rv_after >= max_rv,
        "revision went backwards: {rv_after} < {max_rv}"
    );
    // New writes continue above every acknowledged revision.
    let mut c = ConfigMap::default();
    c.metadata.name = Some("after".into());
    let created = api
        .create(&PostParams::default(), &c)
        .await
        .expect("create after restart");
    let rv: i64 = created
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or("0")
        .parse()
        .expect("rv");
    assert!(rv > max_rv);
}
