//! Several nodes on one machine: a test bridge on the host with two network
//! namespaces of the test's own attached to it ([`TestNet`]), and `skiff server
//! --disable-agent` on the host listening on the bridge ([`Server`]), so that one
//! `skiff agent` can run in each namespace. Everything is removed on drop, also when
//! the test fails.
#![allow(dead_code)]

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;

use super::joined_agent::eventually;

pub fn ip(args: &[&str]) -> Output {
    Command::new("/usr/sbin/ip")
        .args(args)
        .output()
        .expect("run ip")
}

pub fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test's network: a bridge on the host with `198.18.<n>.1/24`, and two network
/// namespaces, each attached by a veth pair (`eth0` inside, `198.18.<n>.2` and `.3`).
pub struct TestNet {
    pub bridge: String,
    pub namespaces: Vec<String>,
    veths: Vec<String>,
    subnet: u8,
    _claim: UnixListener,
}

impl TestNet {
    pub fn create(id: &str) -> TestNet {
        let (subnet, claim) = claim_subnet();
        let mut net = TestNet {
            bridge: format!("skn{id}"),
            namespaces: Vec::new(),
            veths: Vec::new(),
            subnet,
            _claim: claim,
        };
        ip_ok(&["link", "add", &net.bridge, "type", "bridge"]);
        ip_ok(&[
            "addr",
            "add",
            &format!("{}/24", net.host_ip()),
            "dev",
            &net.bridge,
        ]);
        ip_ok(&["link", "set", &net.bridge, "up"]);
        for (i, side) in ["a", "b"].iter().enumerate() {
            let ns = format!("sk-{id}-{side}");
            ip_ok(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            let veth = format!("skv{id}{side}");
            ip_ok(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            net.veths.push(veth.clone());
            ip_ok(&["link", "set", &veth, "master", &net.bridge, "up"]);
            let addr = format!("{}/24", net.node_ip(i));
            ip_ok(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
            ip_ok(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    pub fn host_ip(&self) -> String {
        format!("198.18.{}.1", self.subnet)
    }

    pub fn node_ip(&self, i: usize) -> String {
        format!("198.18.{}.{}", self.subnet, 2 + i)
    }

    /// `ip route show <cidr>` inside namespace `i`.
    pub fn routes(&self, i: usize, cidr: &str) -> String {
        let out = ip(&["-n", &self.namespaces[i], "-4", "route", "show", cidr]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        for veth in &self.veths {
            let _ = ip(&["link", "del", veth]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        let mut left = Vec::new();
        for name in self.veths.iter().chain([&self.bridge]) {
            if ip(&["link", "show", "dev", name]).status.success() {
                left.push(format!("link {name}"));
            }
        }
        for ns in &self.namespaces {
            if PathBuf::from("/run/netns").join(ns).exists() {
                left.push(format!("netns {ns}"));
            }
        }
        if !left.is_empty() {
            if std::thread::panicking() {
                eprintln!("LEFT BEHIND after a failed test: {left:?}");
            } else {
                panic!("left behind: {left:?}");
            }
        }
    }
}

/// A /24 of 198.18.0.0/15 no concurrent test (an abstract socket per subnet) and no
/// route of this machine uses.
fn claim_subnet() -> (u8, UnixListener) {
    for _ in 0..300 {
        let n = rand::random_range(1..=254u8);
        let Ok(name) = SocketAddr::from_abstract_name(format!("skiff-multinode-net-{n}")) else {
            continue;
        };
        let Ok(claim) = UnixListener::bind_addr(&name) else {
            continue;
        };
        let prefix = format!("198.18.{n}.");
        let routes = ip(&["-4", "route", "show", "table", "all"]);
        let used = String::from_utf8_lossy(&routes.stdout)
            .lines()
            .any(|l| l.contains(&prefix));
        if !used {
            return (n, claim);
        }
    }
    panic!("no free test subnet");
}

/// `skiff server --disable-agent` on the host, listening on the test bridge.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub url: String,
    child: Option<Child>,
}

impl Server {
    pub fn start(bind: &str) -> Server {
        Server::start_with(bind, &[])
    }

    /// Flags every test server gets: no DNS forwarding upstream.
    pub const DNS_FLAGS: [&'static str; 2] = ["--cluster-dns-upstream", "none"];

    /// Starts the server with more flags.
    pub fn start_with(bind: &str, extra: &[&str]) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("skiff-multinode-")
            .tempdir()
            .expect("temp dir");
        let mut server = Server {
            dir,
            url: String::new(),
            child: None,
        };
        for _ in 0..5 {
            let port = std::net::TcpListener::bind((bind, 0))
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(server.dir.path().join("server.log"))
                .expect("log file");
            server.child = Some(
                Command::new(env!("CARGO_BIN_EXE_skiff"))
                    .arg("server")
                    .arg("--data-dir")
                    .arg(server.dir.path())
                    .args(["--bind-address", bind])
                    .args(["--https-listen-port", &port.to_string()])
                    .arg("--disable-agent")
                    // Tests never forward DNS queries off the machine.
                    .args(Server::DNS_FLAGS)
                    .args(extra)
                    .env(
                        "SKIFF_LOG",
                        std::env::var("SKIFF_TEST_SERVER_LOG").unwrap_or_else(|_| "info".into()),
                    )
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start skiff server"),
            );
            server.url = format!("https://{bind}:{port}");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Some(c) = server.child.as_mut()
                    && let Ok(Some(_)) = c.try_wait()
                {
                    break;
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
                    .arg(format!("{}/readyz", server.url))
                    .output();
                if out.is_ok_and(|o| o.stdout == b"200") {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            server.stop();
        }
        panic!("skiff server did not become ready:\n{}", server.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("token"))
            .expect("token")
            .trim()
            .to_owned()
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("/usr/bin/kubectl")
            .env("KUBECONFIG", self.dir.path().join("kubeconfig.yaml"))
            .env("HOME", self.dir.path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    pub fn apply(&self, yaml: &str) {
        let path = self.dir.path().join("manifest.yaml");
        std::fs::write(&path, yaml).expect("manifest");
        let out = self.kubectl(&["apply", "-f", path.to_str().expect("utf8")]);
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.dir.path().join("kubeconfig.yaml"))
            .expect("kubeconfig");
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("kube config");
        kube::Client::try_from(cfg).expect("client")
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub async fn running_pod_ip(pods: &Api<Pod>, name: &str) -> String {
    eventually(
        Duration::from_secs(90),
        &format!("pod {name} Running"),
        || async {
            let pod = pods.get_opt(name).await.ok()??;
            let status = pod.status?;
            (status.phase.as_deref() == Some("Running"))
                .then_some(status.pod_ip)
                .flatten()
        },
    )
    .await
}

pub fn pod_cidr(node: &Node) -> String {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.clone())
        .expect("the node has a pod CIDR")
}

/// Starts one `skiff agent` per namespace of `net`, joined to `server` (node names
/// `sk-<id>-a` and `sk-<id>-b`, bridges `<bridge_prefix><id>a`/`b`, no egress), with
/// `extra` flags, and waits until both nodes are Ready. Returns the agents (drop them
/// before the server and the network) and the node names.
pub async fn join_two_agents(
    net: &TestNet,
    server: &Server,
    id: &str,
    bridge_prefix: &str,
    extra: &[&str],
) -> (Vec<super::joined_agent::JoinedAgent>, [String; 2]) {
    let token = server.token();
    let names = [format!("sk-{id}-a"), format!("sk-{id}-b")];
    let mut agents = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let bridge = format!("{bridge_prefix}{id}{}", ["a", "b"][i]);
        let node_ip = net.node_ip(i);
        let mut flags: Vec<String> = [
            "--server",
            &server.url,
            "--token",
            &token,
            "--node-name",
            name,
            "--node-ip",
            &node_ip,
            "--cni-bridge",
            &bridge,
            "--no-egress-masquerade",
            "--node-status-interval",
            "2s",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        flags.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut agent = super::joined_agent::JoinedAgent::new(Some(&net.namespaces[i]), &flags);
        agent.start();
        agents.push(agent);
    }
    let client = server.client().await;
    for (i, name) in names.iter().enumerate() {
        eventually(
            Duration::from_secs(120),
            &format!("node {name} Ready"),
            || async {
                assert!(
                    agents[i].running(),
                    "agent {name} exited:\n{}",
                    agents[i].log()
                );
                super::joined_agent::node_ready(&client, name)
                    .await
                    .then_some(())
            },
        )
        .await;
    }
    (agents, names)
}
