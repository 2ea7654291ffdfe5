//! Pod-to-pod across two nodes on one machine: two network namespaces of the test's
//! own on a test bridge, `skiff server` on the host listening on the bridge, and one
//! `skiff agent --server --token` in each namespace. Each agent programs a host-gw
//! route to the other node's pod CIDR through its InternalIP, so a pod on node A
//! fetches a page from a pod on node B over HTTP (through `kubectl exec`, which also
//! goes through node A's API across namespaces); when node B goes away, node A's
//! route to it does too. Everything is removed afterwards, also on failure. Needs
//! root, containerd, runc, CNI plugins and nsenter.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/joined_agent.rs"]
mod joined_agent;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use joined_agent::{JoinedAgent, eventually, node_ready};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;

fn ip(args: &[&str]) -> Output {
    Command::new("/usr/sbin/ip")
        .args(args)
        .output()
        .expect("run ip")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test's network: a bridge on the host with `198.18.<n>.1/24`, and two network
/// namespaces, each attached by a veth pair (`eth0` inside, `198.18.<n>.2` and `.3`).
struct TestNet {
    bridge: String,
    namespaces: Vec<String>,
    veths: Vec<String>,
    subnet: u8,
    _claim: UnixListener,
}

impl TestNet {
    fn create(id: &str) -> TestNet {
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

    fn host_ip(&self) -> String {
        format!("198.18.{}.1", self.subnet)
    }

    fn node_ip(&self, i: usize) -> String {
        format!("198.18.{}.{}", self.subnet, 2 + i)
    }

    /// `ip route show <cidr>` inside namespace `i`.
    fn routes(&self, i: usize, cidr: &str) -> String {
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
struct Server {
    dir: tempfile::TempDir,
    url: String,
    child: Option<Child>,
}

impl Server {
    fn start(bind: &str) -> Server {
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
                    .env("SKIFF_LOG", "info")
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("token"))
            .expect("token")
            .trim()
            .to_owned()
    }

    fn kubectl(&self, args: &[&str]) -> Output {
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

    fn apply(&self, yaml: &str) {
        let path = self.dir.path().join("manifest.yaml");
        std::fs::write(&path, yaml).expect("manifest");
        let out = self.kubectl(&["apply", "-f", path.to_str().expect("utf8")]);
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.dir.path().join("kubeconfig.yaml"))
            .expect("kubeconfig");
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("kube config");
        kube::Client::try_from(cfg).expect("client")
    }

    fn stop(&mut self) {
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

async fn running_pod_ip(pods: &Api<Pod>, name: &str) -> String {
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

fn pod_cidr(node: &Node) -> String {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.clone())
        .expect("the node has a pod CIDR")
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_on_two_nodes_reach_each_other_through_host_gw_routes() {
    agent::require_preconditions();
    assert!(
        std::path::Path::new("/usr/bin/nsenter").exists(),
        "the multi-node test needs nsenter"
    );
    let id = format!("{:05x}", rand::random::<u32>() & 0x000f_ffff);
    // Dropped last: the namespaces go once the agents in them are cleaned up.
    let net = TestNet::create(&id);
    let server = Server::start(&net.host_ip());
    let token = server.token();
    let names = [format!("sk-{id}-a"), format!("sk-{id}-b")];
    let mut agents: Vec<JoinedAgent> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let flags: Vec<String> = [
            "--server",
            &server.url,
            "--token",
            &token,
            "--node-name",
            name,
            "--node-ip",
            &net.node_ip(i),
            "--cni-bridge",
            &format!("skp{id}{}", ["a", "b"][i]),
            "--no-egress-masquerade",
            "--node-status-interval",
            "2s",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let mut agent = JoinedAgent::new(Some(&net.namespaces[i]), &flags);
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
                node_ready(&client, name).await.then_some(())
            },
        )
        .await;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let node_b = nodes.get(&names[1]).await.expect("node b");
    let cidr_b = pod_cidr(&node_b);
    let cidr_a = pod_cidr(&nodes.get(&names[0]).await.expect("node a"));

    // Each namespace routes the other node's pods through its InternalIP.
    eventually(
        Duration::from_secs(30),
        "host-gw routes in both namespaces",
        || async {
            let a = net.routes(0, &cidr_b);
            let b = net.routes(1, &cidr_a);
            (a.contains(&format!("via {}", net.node_ip(1)))
                && b.contains(&format!("via {}", net.node_ip(0))))
            .then_some(())
        },
    )
    .await;
    let state = std::fs::read_to_string(agents[0].dir.join("agent/network.json")).expect("state");
    assert!(state.contains(&cidr_b), "node A records its route: {state}");

    server.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  nodeName: {b}
  containers:
  - name: httpd
    image: busybox
    command: [sh, -c, 'mkdir -p /www && echo hello from node b > /www/index.html && exec httpd -f -p 8080 -h /www']
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: {a}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sleep, '3600']
"#,
        a = names[0],
        b = names[1],
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let web_ip = running_pod_ip(&pods, "web").await;
    running_pod_ip(&pods, "client").await;
    assert!(
        kubelet_cidr_contains(&cidr_b, &web_ip),
        "{web_ip} in {cidr_b}"
    );

    // Pod A -> pod B over HTTP, asked through node A's API.
    let url = format!("http://{web_ip}:8080/");
    let page = eventually(
        Duration::from_secs(30),
        "pod A to fetch pod B's page",
        || async {
            let out =
                server.kubectl(&["exec", "client", "--", "timeout", "5", "wget", "-qO-", &url]);
            if out.status.success() {
                Some(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                eprintln!("wget: {}", String::from_utf8_lossy(&out.stderr));
                None
            }
        },
    )
    .await;
    assert_eq!(page.trim(), "hello from node b");

    // Node B goes away: node A's route to it goes too.
    let out = server.kubectl(&["delete", "node", &names[1], "--wait=false"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        Duration::from_secs(30),
        "node A's route to node B removed",
        || async { net.routes(0, &cidr_b).trim().is_empty().then_some(()) },
    )
    .await;
    let state = std::fs::read_to_string(agents[0].dir.join("agent/network.json")).expect("state");
    assert!(
        !state.contains(&cidr_b),
        "the record goes with the route: {state}"
    );

    // Teardown order: agents (killall in their namespaces), server, then the network.
    drop(agents);
    drop(server);
    drop(net);
}

/// Whether `ip` is inside the IPv4 `cidr`.
fn kubelet_cidr_contains(cidr: &str, ip: &str) -> bool {
    let (base, len) = cidr.split_once('/').expect("cidr");
    let base: std::net::Ipv4Addr = base.parse().expect("base");
    let ip: std::net::Ipv4Addr = ip.parse().expect("ip");
    let len: u32 = len.parse().expect("len");
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(base) & mask == u32::from(ip) & mask
}
