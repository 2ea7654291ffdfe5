//! `skiff bench scheduler` and `skiff bench rollout`: the scheduler and controllers
//! through the real API (the shape of Kubernetes' scheduler_perf SchedulingBasic
//! 5000Nodes_50000Pods), measured from pod creation to binding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

use crate::bench::{ms, percentile, rss_mib, run_concurrent};

async fn start_server() -> anyhow::Result<crate::bench::BenchServer> {
    crate::bench::start_server(&[
        // A /24 from node IPAM for each of the bench's nodes.
        "--cluster-cidr",
        "10.0.0.0/8",
        // No agent renews the bench nodes' Leases: a long grace period keeps node
        // lifecycle from marking them unreachable mid-run.
        "--node-monitor-grace-period",
        "3600",
    ])
    .await
}

fn node(i: usize) -> anyhow::Result<Node> {
    Ok(scheduler::perf::bench_node(i)?)
}

fn pending_pod(i: usize) -> anyhow::Result<Pod> {
    Ok(scheduler::perf::bench_pod(i)?)
}

async fn create_nodes(
    client: &kube::Client,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let nodes: Api<Node> = Api::all(client.clone());
    let (wall, _) = run_concurrent(n, concurrency, move |i| {
        let nodes = nodes.clone();
        async move {
            nodes.create(&PostParams::default(), &node(i)?).await?;
            Ok(())
        }
    })
    .await?;
    Ok(wall)
}

/// Watches pods and records when each got its node.
fn track_bindings(client: &kube::Client) -> Arc<Mutex<HashMap<String, Instant>>> {
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let b = bound.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    tokio::spawn(async move {
        let mut s = watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(p)) = s.next().await {
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                let name = p.metadata.name.unwrap_or_default();
                b.lock()
                    .expect("lock")
                    .entry(name)
                    .or_insert_with(Instant::now);
            }
        }
    });
    bound
}

/// The scheduling cycle alone, in this process (no API, no binding): decisions/s.
fn decisions_per_second(nodes: usize, pods: usize) -> anyhow::Result<f64> {
    let r = scheduler::perf::decisions_per_second(nodes, pods)?;
    if r.placed < pods {
        bail!(
            "the scheduling cycle placed only {} of {pods} pods",
            r.placed
        );
    }
    Ok(r.decisions_per_second)
}

/// `skiff bench scheduler`.
pub async fn scheduler(nodes: usize, pods: usize, concurrency: usize) -> anyhow::Result<()> {
    eprintln!("==> scheduling cycle alone: {pods} pods over {nodes} nodes");
    let cycle = tokio::task::spawn_blocking(move || decisions_per_second(nodes, pods)).await??;
    eprintln!("==> starting skiff server");
    let srv = start_server().await?;
    eprintln!("==> creating {nodes} nodes");
    let node_wall = create_nodes(&srv.client, nodes, concurrency).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bound = track_bindings(&srv.client);
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    eprintln!("==> creating {pods} pending pods with {concurrency} clients");
    let api: Api<Pod> = Api::namespaced(srv.client.clone(), "default");
    let c = created.clone();
    let start = Instant::now();
    let (create_wall, _) = run_concurrent(pods, concurrency, move |i| {
        let api = api.clone();
        let c = c.clone();
        async move {
            let t = Instant::now();
            api.create(&PostParams::default(), &pending_pod(i)?).await?;
            c.lock().expect("lock").insert(format!("p-{i:06}"), t);
            Ok(())
        }
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = bound.lock().expect("lock").len();
        if n >= pods {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {n} of {pods} pods bound after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_bound = start.elapsed();
    let created = created.lock().expect("lock").clone();
    let bound = bound.lock().expect("lock").clone();
    let mut lat: Vec<Duration> = created
        .iter()
        .filter_map(|(n, c)| bound.get(n).map(|b| b.saturating_duration_since(*c)))
        .collect();
    lat.sort();
    println!(
        "### skiff bench scheduler — {}",
        k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC")
    );
    println!();
    println!("| measurement | result |");
    println!("| --- | --- |");
    println!(
        "| nodes created | {nodes} in {:.1} s |",
        node_wall.as_secs_f64()
    );
    println!(
        "| pods created (API) | {pods} in {:.1} s ({:.0}/s) |",
        create_wall.as_secs_f64(),
        pods as f64 / create_wall.as_secs_f64()
    );
    println!(
        "| pods created → all bound | {:.1} s: **{:.0} pods/s end to end** (goal ≥ 5,000) |",
        all_bound.as_secs_f64(),
        pods as f64 / all_bound.as_secs_f64()
    );
    println!(
        "| creation → bound latency p50 / p99 | {} / {} ms |",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );
    println!("| server RSS after | {:.0} MiB |", rss_mib(srv.pid));
    println!(
        "| scheduling cycle alone (in process, no API) | **{cycle:.0} decisions/s** (goal ≥ 50,000) |"
    );
    Ok(())
}

/// `skiff bench rollout`.
pub async fn rollout(replicas: usize) -> anyhow::Result<()> {
    eprintln!("==> starting skiff server");
    let srv = start_server().await?;
    let nodes = replicas.div_ceil(100).max(3);
    create_nodes(&srv.client, nodes, 16).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bound = track_bindings(&srv.client);
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}},
                 "template": {"metadata": {"labels": {"app": "bench"}},
                              "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                                        "resources": {"requests": {"cpu": "10m"}}}]}}}
    }))?;
    let start = Instant::now();
    Api::<Deployment>::namespaced(srv.client.clone(), "default")
        .create(&PostParams::default(), &d)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = bound.lock().expect("lock").len();
        if n >= replicas {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {n} of {replicas} pods created and bound after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "| {replicas}-replica Deployment: created → all pods bound | {:.2} s on {nodes} nodes |",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
