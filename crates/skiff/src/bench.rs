//! `skiff bench api`: the API server's throughput, latency, fan-out, memory and
//! start-up time, against the raw store (SQLite and a local etcd) measured in the same
//! run as the baseline. Prints a Markdown section for BENCHMARKS.md.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};

/// Flags of `skiff bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure: `api`, `scheduler`, `rollout`, `pods`, `proxy` (service
    /// rules sync and ClusterIP throughput; root), `dns` (cluster DNS queries/s) or
    /// `apf` (one user's flood of lists vs another user's get).
    pub what: String,
    /// Objects to create.
    #[arg(long, default_value_t = 20_000)]
    pub objects: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Concurrent watchers for the fan-out measurement.
    #[arg(long, default_value_t = 1_000)]
    pub watchers: usize,
    /// Nodes for `skiff bench scheduler`.
    #[arg(long, default_value_t = 5_000)]
    pub nodes: usize,
    /// Pending pods for `skiff bench scheduler`.
    #[arg(long, default_value_t = 50_000)]
    pub pods: usize,
    /// Deployment replicas for `skiff bench rollout`.
    #[arg(long, default_value_t = 1_000)]
    pub replicas: usize,
    /// Pods created at once by `skiff bench pods`.
    #[arg(long, default_value_t = 100)]
    pub burst: usize,
    /// Pods created one after another by `skiff bench pods`.
    #[arg(long, default_value_t = 300)]
    pub sequential: usize,
    /// Raw CRI pods for the floor of `skiff bench pods`.
    #[arg(long, default_value_t = 20)]
    pub floor_runs: usize,
    /// Timed runs per measurement for `skiff bench proxy` and `skiff bench dns`.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Concurrent list requests of the flooding user in `skiff bench apf` (it lists
    /// min(--objects, 1000) ConfigMaps each time).
    #[arg(long, default_value_t = 2_000)]
    pub flood: usize,
    /// Run `skiff bench pods`'s node agent under this command (split at spaces),
    /// with every wait ten times as long: `scripts/agent-code-order.sh` runs it
    /// under callgrind to learn which functions the agent runs. Its figures are
    /// then not the agent's own.
    #[arg(long)]
    pub agent_wrapper: Option<String>,
    /// Skip the etcd baseline (when /usr/bin/etcd is not installed).
    #[arg(long)]
    pub no_etcd: bool,
}

/// Runs a benchmark.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what.as_str() {
        "api" => api(args).await,
        "scheduler" => {
            crate::bench_scheduler::scheduler(args.nodes, args.pods, args.concurrency).await
        }
        "rollout" => crate::bench_scheduler::rollout(args.replicas).await,
        "pods" => {
            crate::bench_pods::pods(
                args.burst,
                args.sequential,
                args.floor_runs,
                args.agent_wrapper.as_deref(),
            )
            .await
        }
        "proxy" => crate::bench_proxy::proxy(args.runs).await,
        "dns" => crate::bench_dns::dns(args.runs).await,
        "apf" => crate::bench_apf::apf(args.objects.min(1_000), args.flood).await,
        other => {
            bail!(
                "skiff bench {other}: unknown benchmark; known: api, scheduler, rollout, pods, proxy, dns, apf"
            )
        }
    }
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

pub(crate) fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_ready(port: u16, within: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let ok = tokio::process::Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "1",
            ])
            .arg(format!("https://127.0.0.1:{port}/readyz"))
            .output()
            .await
            .map(|o| o.stdout == b"200")
            .unwrap_or(false);
        if ok {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            bail!("server on port {port} not ready after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn client_for(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await?;
    Ok(kube::Client::try_from(cfg)?)
}

/// A ConfigMap with one entry of a typical size.
pub(crate) fn cm(name: String) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name);
    c.data = Some(
        [(
            "key".to_string(),
            "some value of a typical size for a config entry".to_string(),
        )]
        .into(),
    );
    c
}

/// Runs `total` async operations with `concurrency` workers; returns wall time and latencies.
pub(crate) async fn run_concurrent<F, Fut>(
    total: usize,
    concurrency: usize,
    op: F,
) -> anyhow::Result<(Duration, Vec<Duration>)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let op = op.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                op(i).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = start.elapsed();
    all.sort();
    Ok((wall, all))
}

async fn raw_sqlite_puts(dir: &Path, total: usize, concurrency: usize) -> anyhow::Result<f64> {
    let s = Arc::new(store::SqliteStore::open(store::SqliteConfig::new(dir.join("raw.db"))).await?);
    let st = s.clone();
    let (wall, _) = run_concurrent(total, concurrency, move |i| {
        let s = st.clone();
        async move {
            use store::Store as _;
            s.create(
                &format!("/bench/{i:08}"),
                bytes::Bytes::from(vec![b'x'; 300]),
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    Ok(total as f64 / wall.as_secs_f64())
}

async fn start_etcd(dir: &Path) -> anyhow::Result<(ChildGuard, String)> {
    let (cp, pp) = (free_port()?, free_port()?);
    let client = format!("http://127.0.0.1:{cp}");
    let peer = format!("http://127.0.0.1:{pp}");
    let child = Command::new("/usr/bin/etcd")
        .arg("--name")
        .arg("bench")
        .arg("--data-dir")
        .arg(dir.join("etcd"))
        .arg("--listen-client-urls")
        .arg(&client)
        .arg("--advertise-client-urls")
        .arg(&client)
        .arg("--listen-peer-urls")
        .arg(&peer)
        .arg("--initial-advertise-peer-urls")
        .arg(&peer)
        .arg("--initial-cluster")
        .arg(format!("bench={peer}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting /usr/bin/etcd (install etcd-server or pass --no-etcd)")?;
    let guard = ChildGuard(child);
    let start = Instant::now();
    loop {
        let cfg = store::EtcdConfig {
            endpoints: vec![client.clone()],
            ..store::EtcdConfig::default()
        };
        if store::EtcdStore::connect(cfg).await.is_ok() {
            return Ok((guard, client));
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("etcd did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn raw_etcd_puts(endpoint: &str, total: usize, concurrency: usize) -> anyhow::Result<f64> {
    let cfg = store::EtcdConfig {
        endpoints: vec![endpoint.to_string()],
        ..store::EtcdConfig::default()
    };
    let s = Arc::new(store::EtcdStore::connect(cfg).await?);
    let (wall, _) = run_concurrent(total, concurrency, move |i| {
        let s = s.clone();
        async move {
            use store::Store as _;
            s.create(
                &format!("/bench/{i:08}"),
                bytes::Bytes::from(vec![b'x'; 300]),
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    Ok(total as f64 / wall.as_secs_f64())
}

fn data_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new().prefix("skiff-bench-").tempdir()?)
}

/// A `skiff server` started for a benchmark in its own temp data dir; stopped on drop.
pub(crate) struct BenchServer {
    dir: tempfile::TempDir,
    _child: ChildGuard,
    /// The server's process id (for RSS readings).
    pub pid: u32,
    /// An admin client.
    pub client: kube::Client,
    /// Time from spawning the process to /readyz answering 200.
    pub ready: Duration,
}

impl BenchServer {
    /// The server's data dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Starts `skiff server` (no node agent) with `extra` flags and waits for /readyz.
pub(crate) async fn start_server(extra: &[&str]) -> anyhow::Result<BenchServer> {
    let dir = data_dir()?;
    let port = free_port()?;
    let started = Instant::now();
    let child = Command::new(std::env::current_exe()?)
        .args([
            "server",
            "--disable-agent",
            // The cluster DNS and the service load balancer are not what is measured.
            "--disable",
            "dns,proxy",
            "--https-listen-port",
            &port.to_string(),
            "--bind-address",
            "127.0.0.1",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(dir.path())
        .env("SKIFF_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    let guard = ChildGuard(child);
    wait_ready(port, Duration::from_secs(20)).await?;
    let ready = started.elapsed();
    let client = client_for(&dir.path().join("kubeconfig.yaml")).await?;
    Ok(BenchServer {
        dir,
        _child: guard,
        pid,
        client,
        ready,
    })
}

async fn api(args: BenchArgs) -> anyhow::Result<()> {
    eprintln!("==> starting skiff server");
    let srv = start_server(&[]).await?;
    let (pid, ready) = (srv.pid, srv.ready);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_mib(pid);

    let client = srv.client.clone();
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for ns in ["bench", "bench-watch"] {
        let mut n = Namespace::default();
        n.metadata.name = Some(ns.into());
        ns_api.create(&PostParams::default(), &n).await?;
    }

    eprintln!(
        "==> (a) creating {} ConfigMaps with {} clients",
        args.objects, args.concurrency
    );
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
    let a = api.clone();
    let (wall, lat) = run_concurrent(args.objects, args.concurrency, move |i| {
        let a = a.clone();
        async move {
            a.create(&PostParams::default(), &cm(format!("cm-{i:06}")))
                .await?;
            Ok(())
        }
    })
    .await?;
    let creates_per_s = args.objects as f64 / wall.as_secs_f64();
    let rss_full = rss_mib(pid);

    eprintln!("==> (b) listing {} objects", args.objects);
    let mut list_times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let l = api.list(&ListParams::default()).await?;
        list_times.push(t.elapsed());
        if l.items.len() != args.objects {
            bail!(
                "list returned {} items, want {}",
                l.items.len(),
                args.objects
            );
        }
    }
    list_times.sort();

    eprintln!("==> (c) {} watchers, fan-out latency", args.watchers);
    let wapi: Api<ConfigMap> = Api::namespaced(client.clone(), "bench-watch");
    let rv = wapi
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let events = 20usize;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut watch_tasks = Vec::new();
    for _ in 0..args.watchers {
        let w = wapi.clone();
        let tx = tx.clone();
        let rv = rv.clone();
        watch_tasks.push(tokio::spawn(async move {
            let Ok(stream) = w.watch(&WatchParams::default().timeout(120), &rv).await else {
                return;
            };
            let mut stream = stream.boxed();
            let mut seen = 0;
            while let Some(Ok(ev)) = stream.next().await {
                if let WatchEvent::Added(o) = ev {
                    let _ = tx.send((o.metadata.name.unwrap_or_default(), Instant::now()));
                    seen += 1;
                    if seen == events {
                        return;
                    }
                }
            }
        }));
    }
    drop(tx);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut sent = std::collections::HashMap::new();
    for i in 0..events {
        let name = format!("w-{i}");
        sent.insert(name.clone(), Instant::now());
        wapi.create(&PostParams::default(), &cm(name)).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut fan = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fan.len() < events * args.watchers && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some((name, at))) => {
                if let Some(s) = sent.get(&name) {
                    fan.push(at.saturating_duration_since(*s));
                }
            }
            _ => break,
        }
    }
    for t in watch_tasks {
        t.abort();
    }
    fan.sort();
    let delivered = fan.len();

    eprintln!(
        "==> (d) raw store puts ({} with {} writers)",
        args.objects, args.concurrency
    );
    let raw_dir = data_dir()?;
    let sqlite_puts = raw_sqlite_puts(raw_dir.path(), args.objects, args.concurrency).await?;
    let etcd_puts = if args.no_etcd {
        None
    } else {
        let (_etcd, endpoint) = start_etcd(raw_dir.path()).await?;
        Some(raw_etcd_puts(&endpoint, args.objects, args.concurrency).await?)
    };

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "### skiff bench api — {}",
        k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC")
    );
    println!();
    println!(
        "Machine: {} cores, {cpu}; {} objects, {} clients, {} watchers.",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        args.objects,
        args.concurrency,
        args.watchers
    );
    println!();
    println!("| measurement | result |");
    println!("| --- | --- |");
    println!(
        "| (a) API creates (HTTPS, SQLite) | {creates_per_s:.0}/s; p50 {} ms, p99 {} ms |",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );
    println!(
        "| (b) list of {} ConfigMaps | median {} ms (of 5) |",
        args.objects,
        ms(percentile(&list_times, 0.5))
    );
    println!(
        "| (c) watch fan-out to {} watchers | {delivered}/{} events delivered; p50 {} ms, p99 {} ms |",
        args.watchers,
        events * args.watchers,
        ms(percentile(&fan, 0.5)),
        ms(percentile(&fan, 0.99))
    );
    println!("| (d) raw SQLite store creates | {sqlite_puts:.0}/s |");
    match etcd_puts {
        Some(e) => {
            println!("| (d) raw etcd creates (local etcd 3.4, fsync on) | {e:.0}/s |");
            println!(
                "| API creates / raw etcd creates | {:.2}x (goal ≥ 1.0) |",
                creates_per_s / e
            );
        }
        None => println!("| (d) raw etcd creates | not measured (--no-etcd) |"),
    }
    println!(
        "| RSS idle / with {} objects | {rss_idle:.1} MiB / {rss_full:.1} MiB (goal idle < 50 MB) |",
        args.objects
    );
    println!(
        "| process start to /readyz | {} ms (goal < 300 ms; includes curl polling) |",
        ms(ready)
    );
    Ok(())
}
