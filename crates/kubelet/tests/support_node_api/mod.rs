//! For the node API tests: a private containerd with its own CNI bridge, images and
//! directory; pods created through CRI with the labels the agent sets; the cluster
//! PKI of a temp directory; the node API itself; an HTTPS client with the API
//! server's kubelet-client certificate; and a minimal WebSocket client. Everything is
//! removed again, also when a test fails.

#![allow(dead_code)] // each test file uses a different part

pub mod websocket;

use cri::host::processes_mentioning;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cri::containerd::{self, Containerd};
use cri::{Rpc, Runtime, image, v1};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncWriteExt;

/// The binaries and plugins these tests stand on.
const REQUIRED: &[&str] = &[
    containerd::CONTAINERD,
    "/usr/sbin/runc",
    image::CTR,
    image::CATATONIT,
    image::BUSYBOX,
    "/usr/lib/cni/bridge",
    "/usr/lib/cni/host-local",
    "/usr/lib/cni/portmap",
    "/usr/sbin/ip",
];

/// Fails the test loudly when the machine cannot run it (root, containerd, runc, CNI).
pub fn require_preconditions(test: &str) {
    let mut missing = Vec::new();
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    });
    if !root {
        missing.push("root".to_owned());
    }
    for path in REQUIRED {
        if !Path::new(path).exists() {
            missing.push((*path).to_owned());
        }
    }
    assert!(missing.is_empty(), "{test} needs {}", missing.join(", "));
}

/// A pod created through CRI as the agent creates it.
#[derive(Debug, Clone)]
pub struct TestPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub sandbox_id: String,
    pub config: v1::PodSandboxConfig,
}

/// One test's containerd, network, PKI and directory.
pub struct Harness {
    /// Short random hex naming everything of this test.
    pub id: String,
    /// The test's directory, `/tmp/skiff-nodeapi-<id>`.
    pub dir: PathBuf,
    /// The supervised containerd.
    pub containerd: Option<Containerd>,
    /// The cluster PKI of the test (CA, kubelet-client and admin certificates).
    pub pki: apiserver::Pki,
    subnet_octet: u8,
    bridge: String,
    pod_cgroups: Vec<String>,
    _subnet_claim: std::os::unix::net::UnixListener,
    torn_down: bool,
}

impl Harness {
    /// Starts a containerd of the test's own with the pause and busybox images.
    pub async fn start() -> Harness {
        let (subnet_octet, claim) = claim_subnet();
        let id = hex_id();
        let dir = PathBuf::from(format!("/tmp/skiff-nodeapi-{id}"));
        std::fs::create_dir(&dir).expect("create the test directory");
        let pki = apiserver::Pki::load_or_create(&apiserver::PkiConfig {
            dir: dir.join("tls"),
            sans: vec!["127.0.0.1".into()],
        })
        .expect("the test PKI");
        let cni_conf_dir = dir.join("cni/net.d");
        let config = containerd::Config::new(dir.join("containerd"), &cni_conf_dir);
        let mut harness = Harness {
            bridge: format!("sn{id}"),
            id,
            dir,
            subnet_octet,
            containerd: None,
            pki,
            pod_cgroups: Vec::new(),
            _subnet_claim: claim,
            torn_down: false,
        };
        harness.write_cni_config(&cni_conf_dir);
        let containerd = Containerd::start(config).await.expect("containerd starts");
        let images = harness.dir.join("images");
        std::fs::create_dir(&images).expect("images dir");
        image::pause(&images.join("pause.tar")).expect("pause image builds");
        image::busybox(
            &images.join("busybox.tar"),
            image::BUSYBOX_IMAGE,
            image::Compression::Gzip,
        )
        .expect("busybox image builds");
        let socket = containerd.config().socket();
        image::import(&socket, &images.join("pause.tar"))
            .await
            .expect("pause image imports");
        image::import(&socket, &images.join("busybox.tar"))
            .await
            .expect("busybox image imports");
        harness.containerd = Some(containerd);
        harness
    }

    /// The CRI client of the running containerd.
    pub fn runtime(&self) -> &Runtime {
        self.containerd
            .as_ref()
            .expect("containerd is running")
            .runtime()
    }

    /// The agent's configuration for a node API on a free port of 127.0.0.1 with a
    /// serving certificate for 127.0.0.1 signed by the test CA.
    pub fn agent_config(&self) -> kubelet::AgentConfig {
        let (serving_cert, serving_key) = apiserver::sign_serving_cert(
            &self.pki.ca_cert,
            &self.pki.ca_key,
            "skiff-test-node",
            &["127.0.0.1".to_owned()],
        )
        .expect("a node serving certificate");
        kubelet::AgentConfig {
            node_name: format!("node-{}", self.id),
            dir: self.dir.join("agent"),
            runtime_endpoint: Some(self.containerd.as_ref().expect("running").config().socket()),
            node_ip: "127.0.0.1".parse().expect("an IP"),
            cluster_cidr: "10.244.0.0/16".into(),
            service_cidr: "10.43.0.0/16".into(),
            cluster_dns: "10.43.0.10".parse().expect("an IP"),
            cluster_domain: "cluster.local".into(),
            cni_bridge: self.bridge.clone(),
            egress_masquerade: false,
            node_api_port: 0,
            serving_cert,
            serving_key,
            client_ca: self.pki.ca_cert.clone(),
            crash_backoff_base: Duration::from_secs(1),
            crash_backoff_max: Duration::from_secs(10),
            status_interval: Duration::from_secs(10),
            container_logs: kubelet::logs::LogRotation::default(),
            extra_metrics: Default::default(),
            pod_routes: Vec::new(),
        }
    }

    /// Starts the node API; returns its port and the sender that stops it.
    pub async fn start_node_api(&self) -> (u16, tokio::sync::watch::Sender<bool>) {
        let api = kubelet::server::bind(&self.agent_config(), self.runtime().clone())
            .await
            .expect("the node API binds");
        let port = api.port();
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(api.serve(rx));
        (port, tx)
    }

    /// Runs a sandbox for pod `namespace/name` labelled as the agent labels it.
    pub async fn run_pod(&mut self, namespace: &str, name: &str) -> TestPod {
        let uid = uuid::Uuid::new_v4().to_string();
        let cgroup_parent = format!("/kubepods/burstable/pod{uid}");
        self.pod_cgroups.push(cgroup_parent.clone());
        let log_directory = self.dir.join("agent/pods").join(&uid).join("logs");
        let config = v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: name.to_owned(),
                uid: uid.clone(),
                namespace: namespace.to_owned(),
                attempt: 0,
            }),
            hostname: name.to_owned(),
            log_directory: log_directory.to_string_lossy().into_owned(),
            labels: HashMap::from([
                ("io.kubernetes.pod.uid".to_owned(), uid.clone()),
                ("io.kubernetes.pod.name".to_owned(), name.to_owned()),
                (
                    "io.kubernetes.pod.namespace".to_owned(),
                    namespace.to_owned(),
                ),
                ("skiff.io/managed-by".to_owned(), "skiff-agent".to_owned()),
            ]),
            linux: Some(v1::LinuxPodSandboxConfig {
                cgroup_parent,
                security_context: Some(v1::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let response = self
            .runtime()
            .runtime()
            .run_pod_sandbox(v1::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .rpc("RunPodSandbox")
            .expect("the sandbox runs");
        TestPod {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid,
            sandbox_id: response.pod_sandbox_id,
            config,
        }
    }

    /// Creates and starts instance `restart` of busybox container `name` running
    /// `command` in `pod`; returns its ID.
    pub async fn run_container(
        &self,
        pod: &TestPod,
        name: &str,
        restart: u32,
        command: &[&str],
    ) -> String {
        let config = v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: name.to_owned(),
                attempt: restart,
            }),
            image: Some(v1::ImageSpec {
                image: image::BUSYBOX_IMAGE.to_owned(),
                ..Default::default()
            }),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            log_path: format!("{name}/{restart}.log"),
            // As a pod spec's `stdin: true, stdinOnce: true`: an attached client's
            // end of input closes the container's stdin.
            stdin: true,
            stdin_once: true,
            labels: HashMap::from([
                ("io.kubernetes.pod.uid".to_owned(), pod.uid.clone()),
                ("io.kubernetes.pod.name".to_owned(), pod.name.clone()),
                (
                    "io.kubernetes.pod.namespace".to_owned(),
                    pod.namespace.clone(),
                ),
                ("io.kubernetes.container.name".to_owned(), name.to_owned()),
                ("skiff.io/managed-by".to_owned(), "skiff-agent".to_owned()),
            ]),
            annotations: HashMap::from([(
                "io.kubernetes.container.restartCount".to_owned(),
                restart.to_string(),
            )]),
            linux: Some(v1::LinuxContainerConfig {
                security_context: Some(v1::LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut client = self.runtime().runtime();
        let created = client
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: pod.sandbox_id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            })
            .await
            .rpc("CreateContainer")
            .expect("the container is created");
        client
            .start_container(v1::StartContainerRequest {
                container_id: created.container_id.clone(),
            })
            .await
            .rpc("StartContainer")
            .expect("the container starts");
        created.container_id
    }

    /// Waits until the container exited.
    pub async fn wait_exited(&self, container_id: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self
                .runtime()
                .runtime()
                .container_status(v1::ContainerStatusRequest {
                    container_id: container_id.to_owned(),
                    verbose: false,
                })
                .await
                .rpc("ContainerStatus")
                .expect("a status");
            if status.status.map(|s| s.state) == Some(v1::ContainerState::ContainerExited as i32) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "container {container_id} did not exit"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The pod's IP on the test bridge.
    pub async fn pod_ip(&self, pod: &TestPod) -> String {
        let status = self
            .runtime()
            .runtime()
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: pod.sandbox_id.clone(),
                verbose: false,
            })
            .await
            .rpc("PodSandboxStatus")
            .expect("a sandbox status");
        status
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .expect("the pod has an IP")
    }

    /// Removes every pod through CRI, stops containerd and removes the rest, then checks
    /// that nothing of the test is left on the machine.
    pub async fn teardown(mut self) {
        if let Some(containerd) = self.containerd.take() {
            containerd::cleanup(containerd.runtime())
                .await
                .expect("every pod is removed");
            containerd.stop().await;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_mentioning(&self.dir).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.remove_leftovers();
        self.torn_down = true;
        let left = self.leftovers();
        assert!(left.is_empty(), "left behind: {left:#?}");
    }

    /// What of this test is still on the machine.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        if link_exists(&self.bridge) {
            left.push(format!("bridge {}", self.bridge));
        }
        for mount in mounts_under(&self.dir) {
            left.push(format!("mount {}", mount.display()));
        }
        for cgroup in &self.pod_cgroups {
            for hierarchy in ["memory", "cpu", "pids", "systemd", "unified"] {
                let path = Path::new("/sys/fs/cgroup")
                    .join(hierarchy)
                    .join(&cgroup[1..]);
                if path.exists() {
                    left.push(format!("cgroup {}", path.display()));
                }
            }
        }
        for pid in processes_mentioning(&self.dir) {
            left.push(format!("process {pid}"));
        }
        if self.dir.exists() {
            left.push(format!("directory {}", self.dir.display()));
        }
        left
    }

    fn write_cni_config(&self, conf_dir: &Path) {
        std::fs::create_dir_all(conf_dir).expect("CNI conf dir");
        let conflist = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": format!("skiff-nodeapi-{}", self.id),
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": format!("10.244.{}.0/24", self.subnet_octet) }]],
                        "dataDir": self.dir.join("cni/ipam"),
                    },
                },
                { "type": "portmap", "capabilities": { "portMappings": true } },
            ],
        });
        std::fs::write(
            conf_dir.join("10-skiff-test.conflist"),
            serde_json::to_vec_pretty(&conflist).expect("json"),
        )
        .expect("write the CNI config");
    }

    /// Everything that does not need containerd. Safe to run twice.
    fn remove_leftovers(&mut self) {
        for pid in processes_mentioning(&self.dir) {
            kill(pid);
        }
        for cgroup in &self.pod_cgroups {
            kill_cgroup_processes(cgroup);
            if let Err(e) = cri::cgroup::remove(cgroup) {
                eprintln!("cannot remove cgroup {cgroup}: {e}");
            }
        }
        for mount in mounts_under(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&mount).status();
        }
        if link_exists(&self.bridge) {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .status();
        }
        if mounts_under(&self.dir).is_empty() {
            if let Err(e) = std::fs::remove_dir_all(&self.dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                eprintln!("cannot remove {}: {e}", self.dir.display());
            }
        } else {
            eprintln!("{} still has mounts; not removing it", self.dir.display());
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        if let Some(containerd) = self.containerd.take() {
            let socket = containerd.config().socket();
            let cleaned = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(async {
                    let cri = Runtime::connect(&socket, Duration::from_secs(30))
                        .await
                        .map_err(|e| e.to_string())?;
                    containerd::cleanup(&cri).await.map_err(|e| e.to_string())
                })
            })
            .join();
            eprintln!("teardown after a failure: CRI cleanup {cleaned:?}");
            drop(containerd);
        }
        self.remove_leftovers();
        let left = self.leftovers();
        if !left.is_empty() {
            eprintln!("LEFT BEHIND after a failed test: {left:#?}");
        }
    }
}

fn namespaces() -> v1::NamespaceOption {
    v1::NamespaceOption {
        network: v1::NamespaceMode::Pod as i32,
        pid: v1::NamespaceMode::Container as i32,
        ipc: v1::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// Claims a /24 in 10.244.0.0/16 that no concurrent test (an abstract unix socket per
/// subnet, shared with the cri tests' naming) and no route on the machine uses.
fn claim_subnet() -> (u8, std::os::unix::net::UnixListener) {
    use std::os::linux::net::SocketAddrExt;
    for attempt in 0..400u32 {
        let octet = 100 + ((uuid::Uuid::new_v4().as_u128() as u32 + attempt) % 151) as u8;
        let Ok(name) = std::os::unix::net::SocketAddr::from_abstract_name(format!(
            "skiff-cri-test-net-{octet}"
        )) else {
            continue;
        };
        let Ok(claim) = std::os::unix::net::UnixListener::bind_addr(&name) else {
            continue;
        };
        let subnet = format!("10.244.{octet}.0/24");
        let routes = Command::new("ip")
            .args(["-4", "route", "show", "match", &subnet])
            .output()
            .expect("ip route");
        let used = String::from_utf8_lossy(&routes.stdout)
            .lines()
            .any(|line| line.starts_with("10.244."));
        if !used {
            return (octet, claim);
        }
    }
    panic!("no free 10.244.X.0/24 subnet for the test");
}

fn hex_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..6].to_owned()
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn kill_cgroup_processes(cgroup: &str) {
    for pid in cri::cgroup::processes(cgroup) {
        kill(pid);
    }
    // Let the kernel finish them before the cgroups are removed.
    std::thread::sleep(Duration::from_millis(100));
}

fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A TLS connection to the node API on 127.0.0.1:`port`, presenting `client` (a
/// certificate and key PEM) when given and trusting the test CA.
pub async fn connect_tls(
    pki: &apiserver::Pki,
    port: u16,
    client: Option<(&str, &str)>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pki.ca_cert.as_bytes()) {
        roots.add(ca.expect("CA PEM")).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("client certificate PEM"),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key PEM"),
            )
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    let mut tls = connector.connect(name, tcp).await?;
    // TLS 1.3 reports a refused client certificate only on the first read or write.
    tls.flush().await?;
    Ok(tls)
}

/// A GET on the node API as the API server: the status and the whole body.
pub async fn get(pki: &apiserver::Pki, port: u16, path: &str) -> (u16, String) {
    get_as(
        pki,
        port,
        path,
        (&pki.kubelet_client_cert, &pki.kubelet_client_key),
    )
    .await
}

/// A GET on the node API as the API server: the status and the body to read as it
/// streams.
pub async fn get_streaming(
    pki: &apiserver::Pki,
    port: u16,
    path: &str,
) -> (u16, hyper::body::Incoming) {
    get_streaming_as(
        pki,
        port,
        path,
        (&pki.kubelet_client_cert, &pki.kubelet_client_key),
    )
    .await
}

/// A GET on the node API presenting `client` (certificate and key PEM): the status
/// and the whole body.
pub async fn get_as(
    pki: &apiserver::Pki,
    port: u16,
    path: &str,
    client: (&str, &str),
) -> (u16, String) {
    let (status, mut body) = get_streaming_as(pki, port, path, client).await;
    let mut all = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("the body streams").into_data() {
            all.extend_from_slice(&data);
        }
    }
    (status, String::from_utf8_lossy(&all).into_owned())
}

async fn get_streaming_as(
    pki: &apiserver::Pki,
    port: u16,
    path: &str,
    client: (&str, &str),
) -> (u16, hyper::body::Incoming) {
    let tls = connect_tls(pki, port, Some(client))
        .await
        .expect("TLS to the node API");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    let request = http::Request::get(path)
        .header("host", format!("127.0.0.1:{port}"))
        .body(Empty::<Bytes>::new())
        .expect("a request");
    let response = sender.send_request(request).await.expect("a response");
    (response.status().as_u16(), response.into_body())
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    cri::host::mounts_under(dir).unwrap_or_default()
}

fn unmount_all_under(dir: &Path) {
    if let (_, Some(e)) = cri::host::unmount_all_under(dir) {
        eprintln!("{e}");
    }
}
