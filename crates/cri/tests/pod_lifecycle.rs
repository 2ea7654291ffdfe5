//! A pod runs in the agent's own containerd: a sandbox on a bridge network, a busybox
//! container that logs, answers exec and is held to its memory limit, then everything
//! is removed.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cri::{Rpc, image, v1};
use support::Harness;

const MEMORY_LIMIT: i64 = 64 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busybox_pod_logs_answers_exec_and_is_held_to_its_memory_limit() {
    if !support::preconditions_met(
        "a_busybox_pod_logs_answers_exec_and_is_held_to_its_memory_limit",
    ) {
        return;
    }
    let mut harness = Harness::start().await;
    let runtime = harness.runtime().clone();

    let version = runtime.version().await.expect("Version answers");
    assert_eq!(version.runtime_name, "containerd");
    assert_eq!(version.runtime_api_version, "v1");
    let unready = runtime.unready_conditions().await.expect("Status answers");
    assert!(unready.is_empty(), "runtime not ready: {unready:?}");

    // The images we built are what CRI lists.
    let images = runtime.list_images().await.expect("ListImages answers");
    let tags = |id: &str| -> Vec<String> {
        images
            .iter()
            .filter(|i| i.id == id)
            .flat_map(|i| i.repo_tags.clone())
            .collect()
    };
    assert_eq!(tags(&harness.busybox.id), [image::BUSYBOX_IMAGE]);
    assert!(
        images
            .iter()
            .any(|i| i.repo_tags.iter().any(|t| t == image::PAUSE_IMAGE)),
        "{images:?}"
    );

    let (sandbox_id, sandbox) = harness.run_sandbox("web").await;
    let uid = sandbox
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default();

    // The sandbox has an address on the test's bridge network and is found by label.
    let status = runtime
        .runtime()
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox_id.clone(),
            verbose: false,
        })
        .await
        .rpc("PodSandboxStatus")
        .expect("the sandbox has a status")
        .status
        .expect("a status");
    assert_eq!(status.state, v1::PodSandboxState::SandboxReady as i32);
    let ip = status.network.map(|n| n.ip).unwrap_or_default();
    assert!(ip.starts_with(&harness.subnet_prefix()), "pod IP {ip:?}");
    let found = runtime
        .list_sandboxes(HashMap::from([("io.kubernetes.pod.uid".to_owned(), uid)]))
        .await
        .expect("ListPodSandbox answers");
    assert_eq!(
        found.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [sandbox_id.as_str()]
    );

    let container_id = harness
        .run_busybox(
            &sandbox_id,
            &sandbox,
            &["sh", "-c", "echo hello from skiff; exec sleep 3600"],
            MEMORY_LIMIT,
        )
        .await;
    let (state, _) = harness.container_state(&container_id).await;
    assert_eq!(state, v1::ContainerState::ContainerRunning);
    let listed = runtime
        .list_containers(&sandbox_id)
        .await
        .expect("ListContainers answers");
    assert_eq!(listed.len(), 1);

    // Its stdout is in the CRI log file, in the CRI log format.
    let log = Path::new(&sandbox.log_directory).join("busybox/0.log");
    let line = wait_for_log_line(&log, Duration::from_secs(10)).await;
    let fields: Vec<&str> = line.splitn(4, ' ').collect();
    assert_eq!(fields.len(), 4, "{line:?}");
    let logged_at: jiff::Timestamp = fields[0].parse().expect("an RFC 3339 timestamp");
    let age = jiff::Timestamp::now().duration_since(logged_at);
    assert!(age.as_secs() < 60, "logged {age:?} ago: {line:?}");
    assert_eq!(
        &fields[1..],
        ["stdout", "F", "hello from skiff"],
        "{line:?}"
    );

    // Exec returns output and the exit code.
    let (code, stdout, stderr) = harness
        .exec(
            &container_id,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
        )
        .await;
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (3, "out\n", "err\n")
    );

    // The container has its own PID namespace: its command is PID 1 there.
    let (code, stdout, _) = harness
        .exec(&container_id, &["cat", "/proc/1/cmdline"])
        .await;
    assert_eq!(code, 0);
    assert!(stdout.starts_with("sleep"), "PID 1 is {stdout:?}");

    // The memory limit is applied, seen from the host and from inside.
    let cgroup_parent = sandbox
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    let host_limit = Path::new("/sys/fs/cgroup/memory")
        .join(&cgroup_parent[1..])
        .join(&container_id)
        .join("memory.limit_in_bytes");
    let limit = std::fs::read_to_string(&host_limit).expect("the container's memory cgroup");
    assert_eq!(limit.trim(), MEMORY_LIMIT.to_string());
    let (code, inside, _) = harness
        .exec(
            &container_id,
            &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"],
        )
        .await;
    assert_eq!(
        (code, inside.trim()),
        (0, MEMORY_LIMIT.to_string().as_str())
    );

    // Stop and remove it all, the way the kubelet does.
    let mut client = runtime.runtime();
    let started = Instant::now();
    client
        .stop_container(v1::StopContainerRequest {
            container_id: container_id.clone(),
            timeout: 0,
        })
        .await
        .rpc("StopContainer")
        .expect("the container stops");
    let stop_container = started.elapsed();
    let (state, _) = harness.container_state(&container_id).await;
    assert_eq!(state, v1::ContainerState::ContainerExited);
    client
        .remove_container(v1::RemoveContainerRequest {
            container_id: container_id.clone(),
        })
        .await
        .rpc("RemoveContainer")
        .expect("the container is removed");
    let started = Instant::now();
    client
        .stop_pod_sandbox(v1::StopPodSandboxRequest {
            pod_sandbox_id: sandbox_id.clone(),
        })
        .await
        .rpc("StopPodSandbox")
        .expect("the sandbox stops");
    let stop_sandbox = started.elapsed();
    let started = Instant::now();
    client
        .remove_pod_sandbox(v1::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox_id.clone(),
        })
        .await
        .rpc("RemovePodSandbox")
        .expect("the sandbox is removed");
    eprintln!(
        "timing: StopContainer {stop_container:?}, StopPodSandbox {stop_sandbox:?}, RemovePodSandbox {:?}",
        started.elapsed()
    );
    let left = runtime
        .list_sandboxes(HashMap::new())
        .await
        .expect("ListPodSandbox answers");
    assert!(left.is_empty(), "{left:?}");

    // The pod's own cgroup is left to the agent: remove it everywhere.
    let pod_memory_cgroup = Path::new("/sys/fs/cgroup/memory").join(&cgroup_parent[1..]);
    assert!(pod_memory_cgroup.is_dir(), "runc made the pod cgroup");
    cri::cgroup::remove(&cgroup_parent).expect("the pod cgroup is removed");
    assert!(!pod_memory_cgroup.exists());

    harness.teardown().await;
}

/// The first line of the CRI log file, once there is one.
async fn wait_for_log_line(log: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(log)
            && let Some(line) = text.lines().next()
        {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "nothing logged to {} in {timeout:?}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
