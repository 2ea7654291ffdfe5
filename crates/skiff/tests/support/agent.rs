//! Test harness for the node agent: a real `skiff server` running its own agent, as
//! root, with a data dir, pod bridge, cluster CIDR and service CIDR of the test's own
//! (so tests run side by side), no egress masquerading, a short crash back-off, and a
//! busybox image in `<data-dir>/agent/images/`. Teardown stops the server, runs
//! `skiff killall --data-dir` and checks that nothing is left — also when the test
//! fails.
#![allow(dead_code)]

use cri::host::processes_mentioning;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binaries these tests stand on.
const REQUIRED: &[&str] = &[
    "/usr/bin/containerd",
    "/usr/sbin/runc",
    "/usr/bin/ctr",
    "/usr/bin/catatonit",
    "/bin/busybox",
    "/usr/lib/cni/bridge",
    "/usr/lib/cni/host-local",
    "/usr/lib/cni/portmap",
    "/usr/sbin/ip",
    "/usr/sbin/iptables",
    "/usr/bin/kubectl",
];

/// Fails the test loudly when the machine cannot run it (root, containerd, CNI…).
pub fn require_preconditions() {
    let mut missing: Vec<String> = REQUIRED
        .iter()
        .filter(|p| !Path::new(p).exists())
        .map(|p| (*p).to_owned())
        .collect();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".into());
    }
    assert!(
        missing.is_empty(),
        "the node agent tests need {}",
        missing.join(", ")
    );
}

/// A `skiff server` with its node agent, and everything to remove it again.
pub struct AgentServer {
    /// The data dir, `/tmp/skiff-agent-<id>`.
    pub dir: PathBuf,
    /// The API server's port.
    pub port: u16,
    /// The pod bridge's name (`skt<id>`).
    pub bridge: String,
    /// The cluster (pod) CIDR, `10.<100+k>.0.0/16`.
    pub cluster_cidr: String,
    /// The Service CIDR, `10.<160+k>.0.0/16`.
    pub service_cidr: String,
    child: Option<Child>,
    _claim: UnixListener,
}

impl AgentServer {
    /// Starts a server with its agent and waits until the API answers.
    pub fn start() -> AgentServer {
        require_preconditions();
        let (k, claim) = claim_networks();
        let id = format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff);
        let dir = PathBuf::from(format!("/tmp/skiff-agent-{id}"));
        let images = dir.join("agent").join("images");
        std::fs::create_dir_all(&images).expect("create the images dir");
        cri::image::busybox(
            &images.join("busybox.tar"),
            "busybox",
            cri::image::Compression::None,
        )
        .expect("build the busybox image");
        let mut server = AgentServer {
            dir,
            port: 0,
            bridge: format!("skt{id}"),
            cluster_cidr: format!("10.{}.0.0/16", 100 + k),
            service_cidr: format!("10.{}.0.0/16", 160 + k),
            child: None,
            _claim: claim,
        };
        server.spawn_and_wait();
        server
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Starts the server process (again, on the same data dir) and waits for /readyz.
    pub fn spawn_and_wait(&mut self) {
        for attempt in 0..5 {
            let port = free_port();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("server.log"))
                .expect("log file");
            let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
                .arg("server")
                .arg("--data-dir")
                .arg(&self.dir)
                .args(["--https-listen-port", &port.to_string()])
                .args(["--bind-address", "127.0.0.1"])
                .args(["--node-ip", "127.0.0.1"])
                .args(["--node-name", "skiff-test-node"])
                .args(["--cluster-cidr", &self.cluster_cidr])
                .args(["--service-cidr", &self.service_cidr])
                .args(["--cni-bridge", &self.bridge])
                .arg("--no-egress-masquerade")
                // The host's route_localnet stays as it is; the DNS on a port of its own.
                .arg("--no-localhost-nodeports")
                .args(["--cluster-dns-port", "0", "--cluster-dns-upstream", "none"])
                .args(["--node-api-port", "0"])
                .args(["--crash-backoff-base", "1s"])
                .args(["--node-status-interval", "2s"])
                .env("SKIFF_LOG", "info,kubelet=debug")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start skiff server");
            self.child = Some(child);
            self.port = port;
            if self.wait_ready(Duration::from_secs(30)) {
                return;
            }
            self.terminate();
            eprintln!(
                "server start attempt {attempt} failed; log:\n{}",
                self.log()
            );
        }
        panic!("skiff server did not become ready; log:\n{}", self.log());
    }

    fn wait_ready(&mut self, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(_)) = c.try_wait()
            {
                return false;
            }
            let out = Command::new("curl")
                .args([
                    "-sk",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "1",
                ])
                .arg(format!("https://127.0.0.1:{}/readyz", self.port))
                .output();
            if out.is_ok_and(|o| o.stdout == b"200") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGTERM and wait (the agent stops containerd; pods keep running).
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Restarts the server on the same data dir.
    pub fn restart(&mut self) {
        let code = self.terminate();
        assert_eq!(
            code,
            Some(0),
            "the server stops cleanly; log:\n{}",
            self.log()
        );
        self.spawn_and_wait();
    }

    /// Runs kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    /// Runs kubectl with `stdin` piped in.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write as _;
        let mut child = Command::new("/usr/bin/kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", &self.dir)
            .arg("--cache-dir")
            .arg(self.dir.join("kube-cache"))
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl and asserts success; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies YAML.
    pub fn apply(&self, yaml: &str) {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], Some(yaml));
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a server with its agent; returns it and a client once the node is Ready.
    pub async fn ready() -> (AgentServer, kube::Client) {
        let server = AgentServer::start();
        let client = server.client().await;
        ready_node(&client).await;
        (server, client)
    }

    /// A kube-rs client with the admin certificate.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("read kubeconfig");
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("kube config");
        kube::Client::try_from(cfg).expect("kube client")
    }

    /// What of this test's agent is still on the machine.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            left.push(format!("bridge {}", self.bridge));
        }
        for cidr in [&self.service_cidr, &self.cluster_cidr] {
            let routes = Command::new("ip")
                .args(["-4", "route", "show", "exact", cidr])
                .output()
                .expect("ip route");
            if !routes.stdout.is_empty() {
                left.push(format!("route {cidr}"));
            }
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mountinfo.lines() {
            if let Some(point) = line.split_whitespace().nth(4)
                && Path::new(point).starts_with(&self.dir)
            {
                left.push(format!("mount {point}"));
            }
        }
        for pid in processes_mentioning(&self.dir) {
            left.push(format!("process {pid}"));
        }
        let chains = Command::new("iptables")
            .args(["-w", "-t", "nat", "-S"])
            .output()
            .expect("iptables");
        let prefix = self.cluster_cidr.trim_end_matches(".0.0/16");
        for line in String::from_utf8_lossy(&chains.stdout).lines() {
            if line.contains(&format!("{prefix}.")) {
                left.push(format!("iptables rule {line}"));
            }
        }
        left
    }

    fn teardown(&mut self) -> Vec<String> {
        self.terminate();
        let pod_uids: Vec<String> = std::fs::read_dir(self.dir.join("agent").join("pods"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("killall")
            .arg("--data-dir")
            .arg(&self.dir)
            .output()
            .expect("run skiff killall");
        let mut problems = Vec::new();
        if !out.status.success() {
            problems.push(format!(
                "skiff killall failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        problems.extend(self.leftovers());
        for uid in pod_uids {
            for qos in ["", "burstable/", "besteffort/"] {
                for hierarchy in ["memory", "cpu", "pids", "systemd"] {
                    let path = format!("/sys/fs/cgroup/{hierarchy}/kubepods/{qos}pod{uid}");
                    if Path::new(&path).exists() {
                        problems.push(format!("cgroup {path}"));
                    }
                }
            }
        }
        problems
    }
}

impl Drop for AgentServer {
    fn drop(&mut self) {
        let problems = self.teardown();
        if problems.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else if std::thread::panicking() {
            eprintln!("LEFT BEHIND after a failed test: {problems:#?}");
        } else {
            panic!("left behind: {problems:#?}\nserver log:\n{}", self.log());
        }
    }
}

/// Claims networks for a test that runs its own agents: `k` names the cluster CIDR
/// `10.<100+k>.0.0/16` and the Service CIDR `10.<160+k>.0.0/16`; hold the listener.
pub fn claim_test_networks() -> (u8, UnixListener) {
    claim_networks()
}

/// Claims k in 0..50 for this test's networks: no concurrent test (an abstract unix
/// socket per k) and no route on the machine uses 10.(100+k)/16 or 10.(160+k)/16.
fn claim_networks() -> (u8, UnixListener) {
    for _ in 0..300 {
        let k = rand::random_range(0..50u8);
        let Ok(name) = SocketAddr::from_abstract_name(format!("skiff-agent-test-net-{k}")) else {
            continue;
        };
        let Ok(claim) = UnixListener::bind_addr(&name) else {
            continue;
        };
        let used = [100 + u16::from(k), 160 + u16::from(k)].iter().any(|b| {
            let routes = Command::new("ip")
                .args(["-4", "route", "show", "match", &format!("10.{b}.0.0/16")])
                .output()
                .expect("ip route");
            String::from_utf8_lossy(&routes.stdout)
                .lines()
                .any(|l| l.starts_with(&format!("10.{b}.")))
        });
        if !used {
            return (k, claim);
        }
    }
    panic!("no free pair of networks for the test");
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Polls `check` until it returns Some, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The name of the node a test server's agent registers.
pub const NODE: &str = "skiff-test-node";

/// The agent's Node, once it is Ready.
pub async fn ready_node(client: &kube::Client) -> k8s_openapi::api::core::v1::Node {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    eventually(Duration::from_secs(60), "the node to be Ready", || async {
        let node = nodes.get_opt(NODE).await.ok()??;
        let ready = node
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(node)
    })
    .await
}

/// Pod `name` once `check` accepts it.
pub async fn pod_where(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&k8s_openapi::api::core::v1::Pod) -> bool,
) -> k8s_openapi::api::core::v1::Pod {
    eventually(timeout, what, || async {
        let pod = pods.get_opt(name).await.ok()??;
        check(&pod).then_some(pod)
    })
    .await
}

/// The pod's phase ("" before it has one).
pub fn phase(pod: &k8s_openapi::api::core::v1::Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// The status of the pod's first container.
pub fn container_status(
    pod: &k8s_openapi::api::core::v1::Pod,
) -> k8s_openapi::api::core::v1::ContainerStatus {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|s| s.first().cloned())
        .unwrap_or_default()
}

/// An HTTP/1.0 GET of `/` at `ip:port` from the host; the whole response.
pub async fn http_get(ip: &str, port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = tokio::net::TcpStream::connect((ip, port));
    let mut stream = tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .ok()?
        .ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
        .await
        .ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&response).into_owned())
}
