//! `skiff bench pods`: how fast the node agent starts pods. On one node with the
//! image present: a burst of pods created at once, then pods created one after
//! another, each measured from the create call to `Running` as a watch sees it. The
//! floor, measured in the same run: the same sandbox and container created and
//! started through raw CRI calls on a containerd with the agent's configuration,
//! with no Skiff in the path. Also the agent's RSS idle and with the burst running.
//!
//! Needs root, containerd, runc and the CNI plugins (scripts/setup.sh installs
//! them). Everything it creates is removed again (`skiff killall` on its data dir).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cri::{Rpc as _, v1};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};

use crate::bench::{ms, percentile, rss_mib};

/// Networks of this run: a private /16 for pods and one for services, picked at
/// random so that a bench never collides with tests running beside it.
struct Networks {
    cluster_cidr: String,
    service_cidr: String,
    /// The floor's own bridge subnet, inside the cluster CIDR but away from the
    /// node's first /24.
    floor_subnet: String,
    floor_gateway: String,
    bridge: String,
    floor_bridge: String,
}

impl Networks {
    fn pick() -> Networks {
        let k: u8 = rand::random::<u8>() % 35;
        let id = format!("{:04x}", rand::random::<u16>());
        Networks {
            cluster_cidr: format!("10.{}.0.0/16", 180 + k),
            service_cidr: format!("10.{}.0.0/16", 220 + k),
            floor_subnet: format!("10.{}.200.0/24", 180 + k),
            floor_gateway: format!("10.{}.200.1", 180 + k),
            bridge: format!("skb{id}"),
            floor_bridge: format!("skf{id}"),
        }
    }
}

/// Runs `skiff bench pods`.
pub async fn pods(
    burst: usize,
    sequential: usize,
    floor_runs: usize,
    agent_wrapper: Option<&str>,
) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("skiff bench pods runs real containers: run it as root");
    }
    if !Path::new(cri::containerd::CONTAINERD).exists() {
        bail!("containerd is not installed: run scripts/setup.sh --deps-only first");
    }
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-pods-")
        .tempdir()?;
    let net = Networks::pick();
    let busybox = dir.path().join("busybox.tar");
    cri::image::busybox(&busybox, "busybox", cri::image::Compression::None)?;
    cri::image::pause(&dir.path().join("pause.tar"))?;

    eprintln!("==> floor: {floor_runs} pods through raw CRI calls");
    let floor = floor(dir.path(), &net, floor_runs).await;
    let floor = match floor {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_dir_all(dir.path().join("floor"));
            return Err(e.context("measuring the CRI floor"));
        }
    };

    eprintln!("==> starting skiff server and a node agent");
    let srv = crate::bench::start_server(&[
        "--cluster-cidr",
        &net.cluster_cidr,
        "--service-cidr",
        &net.service_cidr,
    ])
    .await?;
    // The image is present on the node: the agent imports it at start.
    let images = srv.dir().join("agent").join("images");
    std::fs::create_dir_all(&images)?;
    std::fs::copy(&busybox, images.join("busybox.tar"))?;
    let agent = AgentGuard::start(srv.dir(), &net, agent_wrapper)?;
    let client = srv.client.clone();
    let result = measure(&client, &agent, burst, sequential).await;
    drop(agent);
    let m = result?;

    let median = |f: fn(&FloorRun) -> Duration| {
        let mut v: Vec<Duration> = floor.iter().map(f).collect();
        v.sort();
        percentile(&v, 0.5)
    };
    let (sandbox_p50, create_p50, start_p50) = (
        median(|r| r.sandbox),
        median(|r| r.create),
        median(|r| r.start),
    );
    let mut floor_sorted: Vec<Duration> = floor.iter().map(FloorRun::total).collect();
    floor_sorted.sort();
    let floor_p50 = percentile(&floor_sorted, 0.5);
    let (mut b, mut s) = (m.burst.clone(), m.sequential.clone());
    b.sort();
    s.sort();
    println!(
        "### skiff bench pods — {}",
        k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC")
    );
    println!();
    println!("| measurement | result | goal |");
    println!("| --- | --- | --- |");
    println!(
        "| floor: RunPodSandbox + CreateContainer + StartContainer, raw CRI, {} runs | p50 {} ms, p99 {} ms (medians: sandbox {} ms, create {} ms, start {} ms) | baseline |",
        floor.len(),
        ms(floor_p50),
        ms(percentile(&floor_sorted, 0.99)),
        ms(sandbox_p50),
        ms(create_p50),
        ms(start_p50),
    );
    println!(
        "| {} pods created at once → Running | p50 {} ms, p99 {} ms; all in {:.1} s ({:.1} pods/s) | — |",
        b.len(),
        ms(percentile(&b, 0.5)),
        ms(percentile(&b, 0.99)),
        m.burst_wall.as_secs_f64(),
        b.len() as f64 / m.burst_wall.as_secs_f64(),
    );
    println!(
        "| {} pods one after another → Running | p50 {} ms, p99 {} ms | p50 ≤ 1.2× floor, p99 < 1 s |",
        s.len(),
        ms(percentile(&s, 0.5)),
        ms(percentile(&s, 0.99)),
    );
    println!(
        "| one after another: p50 ÷ floor p50 | {:.2}× | ≤ 1.2× |",
        percentile(&s, 0.5).as_secs_f64() / floor_p50.as_secs_f64().max(f64::EPSILON),
    );
    println!(
        "| agent RSS idle / with {} pods running | {:.1} / {:.1} MiB | idle < 30 MB |",
        b.len(),
        m.rss_idle,
        m.rss_burst
    );
    Ok(())
}

struct Measured {
    burst: Vec<Duration>,
    burst_wall: Duration,
    sequential: Vec<Duration>,
    rss_idle: f64,
    rss_burst: f64,
}

/// A pod that starts at once and stops at once on SIGTERM.
fn bench_pod(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench-pods"}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]
        }
    }))?)
}

/// Records when each pod was first seen Running.
fn track_running(client: &kube::Client) -> Arc<Mutex<HashMap<String, Instant>>> {
    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = running.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    tokio::spawn(async move {
        let mut events = watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(p)) = events.next().await {
            if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                let name = p.metadata.name.unwrap_or_default();
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(name)
                    .or_insert_with(Instant::now);
            }
        }
    });
    running
}

async fn wait_running(
    running: &Mutex<HashMap<String, Instant>>,
    names: &[String],
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let n = {
            let r = running.lock().unwrap_or_else(|e| e.into_inner());
            names.iter().filter(|n| r.contains_key(*n)).count()
        };
        if n == names.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {n} of {} pods Running after {within:?}", names.len());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn measure(
    client: &kube::Client,
    agent: &AgentGuard,
    burst: usize,
    sequential: usize,
) -> anyhow::Result<Measured> {
    let slow = agent.slow;
    wait_node_ready(client, slow).await?;
    tokio::time::sleep(Duration::from_secs(3) * slow).await;
    let rss_idle = rss_mib(agent.pid());
    let running = track_running(client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    eprintln!("==> {burst} pods at once");
    let names: Vec<String> = (0..burst).map(|i| format!("burst-{i:04}")).collect();
    let started = Instant::now();
    let mut created = HashMap::new();
    let mut tasks = Vec::new();
    for name in &names {
        let (pods, pod) = (pods.clone(), bench_pod(name)?);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            pods.create(&PostParams::default(), &pod).await.map(|_| t)
        }));
    }
    for (name, t) in names.iter().zip(tasks) {
        created.insert(name.clone(), t.await??);
    }
    wait_running(&running, &names, Duration::from_secs(300) * slow).await?;
    let burst_wall = started.elapsed();
    let rss_burst = rss_mib(agent.pid());
    let burst_lat = latencies(&running, &created);
    delete_all(&pods, &names, slow).await?;

    eprintln!("==> {sequential} pods one after another");
    let mut seq_lat = Vec::new();
    for i in 0..sequential {
        let name = format!("seq-{i:04}");
        let t = Instant::now();
        pods.create(&PostParams::default(), &bench_pod(&name)?)
            .await?;
        wait_running(
            &running,
            std::slice::from_ref(&name),
            Duration::from_secs(60) * slow,
        )
        .await?;
        let at = running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name)
            .copied()
            .unwrap_or_else(Instant::now);
        seq_lat.push(at.saturating_duration_since(t));
        // Removed before the next one starts, as the floor removes its pods: the
        // measurement is pod start, not start beside teardown.
        delete_all(&pods, std::slice::from_ref(&name), slow).await?;
        if i % 50 == 49 {
            eprintln!("    {} pods", i + 1);
        }
    }
    Ok(Measured {
        burst: burst_lat,
        burst_wall,
        sequential: seq_lat,
        rss_idle,
        rss_burst,
    })
}

fn latencies(
    running: &Mutex<HashMap<String, Instant>>,
    created: &HashMap<String, Instant>,
) -> Vec<Duration> {
    let r = running.lock().unwrap_or_else(|e| e.into_inner());
    created
        .iter()
        .filter_map(|(n, c)| r.get(n).map(|at| at.saturating_duration_since(*c)))
        .collect()
}

async fn delete_all(pods: &Api<Pod>, names: &[String], slow: u32) -> anyhow::Result<()> {
    for n in names {
        pods.delete(n, &DeleteParams::default()).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120) * slow;
    while Instant::now() < deadline {
        let left = pods
            .list(&kube::api::ListParams::default().labels("app=bench-pods"))
            .await?
            .items
            .len();
        if left == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the burst's pods were not gone within 2 minutes")
}

async fn wait_node_ready(client: &kube::Client, slow: u32) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60) * slow;
    while Instant::now() < deadline {
        let ready = nodes
            .list(&Default::default())
            .await?
            .items
            .iter()
            .any(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
        if ready {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the bench node did not become Ready within 60 s (see the agent's log above)")
}

/// The bench's node agent: `skiff agent` in its own process (so its RSS is its
/// own), stopped and cleaned up with `skiff killall` on drop.
struct AgentGuard {
    child: Child,
    data_dir: PathBuf,
    /// How many times longer than usual every wait is (10 under a wrapper).
    slow: u32,
}

impl AgentGuard {
    fn start(data_dir: &Path, net: &Networks, wrapper: Option<&str>) -> anyhow::Result<AgentGuard> {
        let mut words = wrapper.unwrap_or_default().split_whitespace();
        let (mut command, slow) = match words.next() {
            Some(program) => {
                eprintln!("==> the agent runs under {program}: its figures are not its own");
                let mut c = Command::new(program);
                c.args(words).arg(std::env::current_exe()?);
                (c, 10)
            }
            None => (Command::new(std::env::current_exe()?), 1),
        };
        let child = command
            .arg("agent")
            .arg("--kubeconfig")
            .arg(data_dir.join("kubeconfig.yaml"))
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--node-name",
                "bench-node",
                "--node-ip",
                "127.0.0.1",
                "--cluster-cidr",
                &net.cluster_cidr,
                "--service-cidr",
                &net.service_cidr,
                "--cni-bridge",
                &net.bridge,
                "--no-egress-masquerade",
                "--node-api-port",
                "0",
            ])
            .env("SKIFF_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting skiff agent")?;
        Ok(AgentGuard {
            child,
            data_dir: data_dir.to_path_buf(),
            slow,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20) * self.slow;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let killall = std::env::current_exe().and_then(|exe| {
            Command::new(exe)
                .arg("killall")
                .arg("--data-dir")
                .arg(&self.data_dir)
                .stdout(Stdio::null())
                .status()
        });
        if !killall.is_ok_and(|s| s.success()) {
            eprintln!(
                "warning: skiff killall --data-dir {} did not leave the machine clean; run it again",
                self.data_dir.display()
            );
        }
    }
}

/// The floor: `runs` pods, one after another, through raw CRI calls on a
/// containerd configured like the agent's; returns each pod's RunPodSandbox +
/// CreateContainer + StartContainer time.
async fn floor(data_dir: &Path, net: &Networks, runs: usize) -> anyhow::Result<Vec<FloorRun>> {
    let dir = data_dir.join("floor");
    let cni = dir.join("net.d");
    std::fs::create_dir_all(&cni)?;
    std::fs::write(
        cni.join("10-floor.conflist"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "cniVersion": "1.0.0", "name": "skiff-floor",
            "plugins": [
                {"type": "bridge", "bridge": net.floor_bridge, "isGateway": true, "ipMasq": false,
                 "hairpinMode": true,
                 "ipam": {"type": "host-local", "dataDir": dir.join("ipam"),
                          "ranges": [[{"subnet": net.floor_subnet, "gateway": net.floor_gateway}]]}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        }))?,
    )?;
    let containerd = cri::containerd::Containerd::start(cri::containerd::Config::new(
        dir.join("containerd"),
        &cni,
    ))
    .await?;
    let socket = containerd.config().socket();
    let result = async {
        for archive in [data_dir.join("pause.tar"), data_dir.join("busybox.tar")] {
            cri::image::import(&socket, &archive).await?;
        }
        let rt = containerd.runtime().clone();
        let mut times = Vec::new();
        for i in 0..runs {
            times.push(floor_pod(&rt, &dir, i).await?);
        }
        anyhow::Ok(times)
    }
    .await;
    let rt = containerd.runtime().clone();
    let _ = cri::containerd::cleanup(&rt).await;
    containerd.stop().await;
    let (_, unmount_error) = cri::host::unmount_all_under(&dir);
    if let Some(e) = unmount_error {
        eprintln!("warning: {e}");
    }
    let _ = Command::new("ip")
        .args(["link", "del", &net.floor_bridge])
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// One floor pod's times.
#[derive(Debug, Clone, Copy)]
struct FloorRun {
    sandbox: Duration,
    create: Duration,
    start: Duration,
}

impl FloorRun {
    fn total(&self) -> Duration {
        self.sandbox + self.create + self.start
    }
}

/// One floor pod: sandbox + busybox container, as the agent would configure them.
async fn floor_pod(rt: &cri::Runtime, dir: &Path, i: usize) -> anyhow::Result<FloorRun> {
    let name = format!("floor-{i}");
    let uid = format!("{:032x}", rand::random::<u128>());
    let namespaces = Some(v1::NamespaceOption {
        network: v1::NamespaceMode::Pod as i32,
        pid: v1::NamespaceMode::Container as i32,
        ipc: v1::NamespaceMode::Pod as i32,
        ..Default::default()
    });
    let sandbox = v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.clone(),
        log_directory: dir.join("pods").join(&uid).to_string_lossy().into_owned(),
        linux: Some(v1::LinuxPodSandboxConfig {
            cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
            security_context: Some(v1::LinuxSandboxSecurityContext {
                namespace_options: namespaces.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let container = v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        image: Some(v1::ImageSpec {
            image: cri::image::BUSYBOX_IMAGE.into(),
            ..Default::default()
        }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "c/0.log".into(),
        linux: Some(v1::LinuxContainerConfig {
            security_context: Some(v1::LinuxContainerSecurityContext {
                namespace_options: namespaces,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut client = rt.runtime();
    let started = Instant::now();
    let sandbox_id = client
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(sandbox.clone()),
            runtime_handler: String::new(),
        })
        .await
        .rpc("RunPodSandbox")?
        .pod_sandbox_id;
    let sandbox_done = started.elapsed();
    let container_id = client
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.clone(),
            config: Some(container),
            sandbox_config: Some(sandbox),
        })
        .await
        .rpc("CreateContainer")?
        .container_id;
    let created = started.elapsed();
    client
        .start_container(v1::StartContainerRequest { container_id })
        .await
        .rpc("StartContainer")?;
    let took = started.elapsed();
    rt.remove_sandbox(&sandbox_id).await?;
    let _ = cri::cgroup::remove(&format!("/kubepods/besteffort/pod{uid}"));
    Ok(FloorRun {
        sandbox: sandbox_done,
        create: created - sandbox_done,
        start: took - created,
    })
}
