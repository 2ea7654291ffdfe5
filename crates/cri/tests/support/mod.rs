//! A private containerd with its own CNI network, images and directory for one test,
//! and everything needed to leave the machine as it was, also when the test fails.

#![allow(dead_code)] // each test file uses a different part

use cri::host::processes_mentioning;
use std::collections::HashMap;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cri::containerd::{self, Containerd};
use cri::{Rpc, Runtime, image, v1};

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

/// Whether this machine can run the tests. Outside CI a missing precondition skips the
/// test with a message; in CI (`CI` set) it fails it.
pub fn preconditions_met(test: &str) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_owned());
    }
    for path in REQUIRED {
        if !Path::new(path).exists() {
            missing.push((*path).to_owned());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test} needs {}", missing.join(", "));
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    false
}

/// One test's containerd, network and directory.
pub struct Harness {
    /// Short random hex naming everything of this test.
    pub id: String,
    /// The test's directory, `/tmp/skiff-cri-<id>`.
    pub dir: PathBuf,
    /// The third octet of the test's pod subnet `10.244.<octet>.0/24`.
    pub subnet_octet: u8,
    /// The supervised containerd; tests may take it to stop or replace it.
    pub containerd: Option<Containerd>,
    /// containerd's settings, to start it again.
    pub config: containerd::Config,
    /// The busybox image that was imported.
    pub busybox: image::Built,
    bridge: String,
    pod_cgroups: Vec<String>,
    /// Holds the subnet for this process until dropped (an abstract unix socket).
    _subnet_claim: UnixListener,
    torn_down: bool,
}

impl Harness {
    /// Starts a containerd of the test's own with the pause and busybox images imported
    /// and a bridge network on a subnet no concurrent test uses.
    pub async fn start() -> Harness {
        let (subnet_octet, claim) = claim_subnet();
        let id = hex_id();
        let dir = PathBuf::from(format!("/tmp/skiff-cri-{id}"));
        std::fs::create_dir(&dir).expect("create the test directory");
        let cni_conf_dir = dir.join("cni/net.d");
        let config = containerd::Config::new(dir.join("containerd"), &cni_conf_dir);
        let mut harness = Harness {
            bridge: format!("sk{id}"),
            id,
            dir,
            subnet_octet,
            containerd: None,
            config,
            busybox: image::Built {
                name: String::new(),
                id: String::new(),
                manifest_digest: String::new(),
            },
            pod_cgroups: Vec::new(),
            _subnet_claim: claim,
            torn_down: false,
        };
        harness.write_cni_config(&cni_conf_dir);

        let started = Instant::now();
        let containerd = Containerd::start(harness.config.clone())
            .await
            .expect("containerd starts");
        eprintln!(
            "timing: containerd start to CRI ready {:?}",
            started.elapsed()
        );

        let images = harness.dir.join("images");
        std::fs::create_dir(&images).expect("images dir");
        let started = Instant::now();
        let pause = image::pause(&images.join("pause.tar")).expect("pause image builds");
        harness.busybox = image::busybox(
            &images.join("busybox.tar"),
            image::BUSYBOX_IMAGE,
            image::Compression::Gzip,
        )
        .expect("busybox image builds");
        let built = started.elapsed();
        let started = Instant::now();
        let socket = harness.config.socket();
        image::import(&socket, &images.join("pause.tar"))
            .await
            .expect("pause image imports");
        image::import(&socket, &images.join("busybox.tar"))
            .await
            .expect("busybox image imports");
        eprintln!(
            "timing: build pause+busybox archives {built:?}, import both {:?}",
            started.elapsed()
        );
        assert_eq!(pause.name, image::PAUSE_IMAGE);
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

    /// The pod subnet's prefix, `10.244.<octet>.`.
    pub fn subnet_prefix(&self) -> String {
        format!("10.244.{}.", self.subnet_octet)
    }

    /// A sandbox config as the kubelet would write it for pod `name`, with a per-pod
    /// cgroup parent that teardown removes.
    pub fn sandbox_config(&mut self, name: &str) -> v1::PodSandboxConfig {
        let uid = uuid::Uuid::new_v4().to_string();
        let cgroup_parent = format!("/kubepods/burstable/pod{uid}");
        self.pod_cgroups.push(cgroup_parent.clone());
        let log_directory = self.dir.join("pods").join(format!("default_{name}_{uid}"));
        v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: name.to_owned(),
                uid: uid.clone(),
                namespace: "default".to_owned(),
                attempt: 0,
            }),
            hostname: name.to_owned(),
            log_directory: log_directory.to_string_lossy().into_owned(),
            labels: HashMap::from([
                ("io.kubernetes.pod.uid".to_owned(), uid),
                ("io.kubernetes.pod.name".to_owned(), name.to_owned()),
                ("skiff.test".to_owned(), self.id.clone()),
            ]),
            linux: Some(v1::LinuxPodSandboxConfig {
                cgroup_parent,
                security_context: Some(v1::LinuxSandboxSecurityContext {
                    namespace_options: Some(v1::NamespaceOption {
                        network: v1::NamespaceMode::Pod as i32,
                        pid: v1::NamespaceMode::Container as i32,
                        ipc: v1::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Runs a sandbox for pod `name`; returns its ID and config, and prints the time.
    pub async fn run_sandbox(&mut self, name: &str) -> (String, v1::PodSandboxConfig) {
        let config = self.sandbox_config(name);
        let started = Instant::now();
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
        eprintln!("timing: RunPodSandbox {:?}", started.elapsed());
        (response.pod_sandbox_id, config)
    }

    /// Creates and starts a busybox container running `command` in the sandbox, with
    /// its own PID namespace and `memory_limit` bytes of memory; prints the times.
    pub async fn run_busybox(
        &self,
        sandbox_id: &str,
        sandbox: &v1::PodSandboxConfig,
        command: &[&str],
        memory_limit: i64,
    ) -> String {
        let config = v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: "busybox".to_owned(),
                attempt: 0,
            }),
            image: Some(v1::ImageSpec {
                image: image::BUSYBOX_IMAGE.to_owned(),
                ..Default::default()
            }),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            log_path: "busybox/0.log".to_owned(),
            labels: HashMap::from([(
                "io.kubernetes.container.name".to_owned(),
                "busybox".to_owned(),
            )]),
            linux: Some(v1::LinuxContainerConfig {
                resources: Some(v1::LinuxContainerResources {
                    memory_limit_in_bytes: memory_limit,
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    cpu_shares: 512,
                    ..Default::default()
                }),
                security_context: Some(v1::LinuxContainerSecurityContext {
                    namespace_options: Some(v1::NamespaceOption {
                        network: v1::NamespaceMode::Pod as i32,
                        pid: v1::NamespaceMode::Container as i32,
                        ipc: v1::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let mut client = self.runtime().runtime();
        let started = Instant::now();
        let created = client
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_owned(),
                config: Some(config),
                sandbox_config: Some(sandbox.clone()),
            })
            .await
            .rpc("CreateContainer")
            .expect("the container is created");
        let create = started.elapsed();
        let started = Instant::now();
        client
            .start_container(v1::StartContainerRequest {
                container_id: created.container_id.clone(),
            })
            .await
            .rpc("StartContainer")
            .expect("the container starts");
        eprintln!(
            "timing: CreateContainer {create:?}, StartContainer {:?}",
            started.elapsed()
        );
        created.container_id
    }

    /// The container's state and, from containerd's verbose info, its process ID.
    pub async fn container_state(&self, container_id: &str) -> (v1::ContainerState, Option<u32>) {
        let status = self
            .runtime()
            .runtime()
            .container_status(v1::ContainerStatusRequest {
                container_id: container_id.to_owned(),
                verbose: true,
            })
            .await
            .rpc("ContainerStatus")
            .expect("the container has a status");
        let state = status
            .status
            .and_then(|s| v1::ContainerState::try_from(s.state).ok())
            .expect("a known state");
        let pid = status
            .info
            .get("info")
            .and_then(|info| serde_json::from_str::<serde_json::Value>(info).ok())
            .and_then(|info| info["pid"].as_u64())
            .and_then(|pid| u32::try_from(pid).ok());
        (state, pid)
    }

    /// Runs `cmd` in the container and returns (exit code, stdout, stderr).
    pub async fn exec(&self, container_id: &str, cmd: &[&str]) -> (i32, String, String) {
        let response = self
            .runtime()
            .runtime()
            .exec_sync(v1::ExecSyncRequest {
                container_id: container_id.to_owned(),
                cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
                timeout: 10,
            })
            .await
            .rpc("ExecSync")
            .expect("exec runs");
        (
            response.exit_code,
            String::from_utf8_lossy(&response.stdout).into_owned(),
            String::from_utf8_lossy(&response.stderr).into_owned(),
        )
    }

    /// Removes every pod through CRI, stops containerd and removes the rest, then checks
    /// that nothing of the test is left on the machine.
    pub async fn teardown(mut self) {
        if let Some(containerd) = self.containerd.take() {
            let started = Instant::now();
            let removed = containerd::cleanup(containerd.runtime())
                .await
                .expect("every pod is removed");
            eprintln!(
                "timing: cleanup of {removed} sandbox(es) {:?}",
                started.elapsed()
            );
            containerd.stop().await;
        }
        // With the pods removed through CRI, their shims exit by themselves.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_mentioning(&self.dir).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // CRI cleanup and stopping containerd leave only what CNI and we own.
        let not_cleaned: Vec<String> = self
            .leftovers()
            .into_iter()
            .filter(|what| !what.starts_with("bridge ") && !what.starts_with("directory "))
            .collect();
        self.remove_leftovers();
        self.torn_down = true;
        let mut left = self.leftovers();
        left.extend(
            not_cleaned
                .into_iter()
                .map(|what| format!("{what} (not removed by cleanup)")),
        );
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
            "name": format!("skiff-test-{}", self.id),
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

    /// Everything that does not need containerd: processes, cgroups, mounts, the bridge
    /// and the directory. Safe to run twice.
    fn remove_leftovers(&mut self) {
        // Shims (and anything else started for this test) name the test's directory.
        for pid in processes_mentioning(&self.dir) {
            kill(pid);
        }
        for cgroup in &self.pod_cgroups {
            kill_cgroup_processes(cgroup);
            if let Err(e) = cri::cgroup::remove(cgroup) {
                eprintln!("cannot remove cgroup {cgroup}: {e}");
            }
        }
        unmount_all_under(&self.dir);
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
        // The test failed: remove its pods through CRI from a runtime of our own (the
        // test's may be unwinding), then stop containerd and remove the rest.
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

/// Claims a /24 in 10.244.0.0/16 that no concurrent test (an abstract unix socket per
/// subnet, released when the process ends) and no route on the machine uses.
fn claim_subnet() -> (u8, UnixListener) {
    for _ in 0..200 {
        let octet = rand::random_range(100..=250u8);
        let Ok(name) = SocketAddr::from_abstract_name(format!("skiff-cri-test-net-{octet}")) else {
            continue;
        };
        let Ok(claim) = UnixListener::bind_addr(&name) else {
            continue; // another test has it
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
    format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff)
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// SIGKILLs every process in the cgroup (memory hierarchy) and below.
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

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    cri::host::mounts_under(dir).unwrap_or_default()
}

fn unmount_all_under(dir: &Path) {
    if let (_, Some(e)) = cri::host::unmount_all_under(dir) {
        eprintln!("{e}");
    }
}
