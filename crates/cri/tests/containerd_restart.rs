//! Containers outlive containerd: when it is killed the supervisor starts it again and
//! the pod is still there; and so it is when the agent stops containerd, or dies and
//! leaves it running, and a new agent starts it again.

mod support;

use std::time::{Duration, Instant};

use cri::containerd::Containerd;
use cri::v1;
use support::Harness;

const MEMORY_LIMIT: i64 = 32 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_containerd_is_restarted_and_the_container_keeps_running() {
    if !support::preconditions_met(
        "a_killed_containerd_is_restarted_and_the_container_keeps_running",
    ) {
        return;
    }
    let mut harness = Harness::start().await;
    let (sandbox_id, sandbox) = harness.run_sandbox("survivor").await;
    let container_id = harness
        .run_busybox(&sandbox_id, &sandbox, &["sleep", "3600"], MEMORY_LIMIT)
        .await;
    let (_, pid) = harness.container_state(&container_id).await;
    let pid = pid.expect("the container's pid");

    let containerd = harness.containerd.as_ref().expect("containerd");
    let old = containerd.pid().expect("containerd runs");
    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill containerd");

    // The supervisor starts a new one, and the same client handle gets answers again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while containerd.restarts() < 1 {
        assert!(Instant::now() < deadline, "containerd was not restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restarted = killed.elapsed();
    let new = containerd.pid().expect("containerd runs again");
    assert_ne!(new, old);
    let version = loop {
        match harness.runtime().version().await {
            Ok(version) => break version,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the client did not reconnect: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    eprintln!(
        "timing: containerd killed to restarted and ready {restarted:?}, client answered after {:?}",
        killed.elapsed()
    );
    assert_eq!(version.runtime_name, "containerd");

    // The container never stopped.
    let (state, pid_now) = harness.container_state(&container_id).await;
    assert_eq!(state, v1::ContainerState::ContainerRunning);
    assert_eq!(pid_now, Some(pid));
    assert!(process_alive(pid));
    let (code, stdout, _) = harness.exec(&container_id, &["echo", "still here"]).await;
    assert_eq!((code, stdout.as_str()), (0, "still here\n"));

    harness.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_keeps_running_when_the_agent_stops_or_dies_and_comes_back() {
    if !support::preconditions_met(
        "the_container_keeps_running_when_the_agent_stops_or_dies_and_comes_back",
    ) {
        return;
    }
    let mut harness = Harness::start().await;
    let (sandbox_id, sandbox) = harness.run_sandbox("adopted").await;
    let container_id = harness
        .run_busybox(&sandbox_id, &sandbox, &["sleep", "3600"], MEMORY_LIMIT)
        .await;
    let (_, pid) = harness.container_state(&container_id).await;
    let pid = pid.expect("the container's pid");

    // The agent shuts down: its containerd goes, the container stays.
    let containerd = harness.containerd.take().expect("containerd");
    let old = containerd.pid().expect("containerd runs");
    let stopping = Instant::now();
    containerd.stop().await;
    eprintln!("timing: containerd stop (SIGTERM) {:?}", stopping.elapsed());
    assert!(!process_alive(old), "containerd {old} still runs");
    assert!(process_alive(pid), "the container died with containerd");

    // An agent starts containerd and dies without stopping it: its supervisor is gone,
    // its containerd is left running.
    let config = harness.config.clone();
    let orphan = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let containerd = runtime
            .block_on(Containerd::start(config))
            .expect("containerd starts");
        let pid = containerd.pid();
        std::mem::forget(containerd); // no Drop: nothing is stopped, as when killed
        drop(runtime); // the supervisor task goes with the runtime
        pid
    })
    .join()
    .expect("the dying agent")
    .expect("its containerd's pid");
    assert!(process_alive(orphan));

    // The next agent replaces that containerd and finds the pod.
    let started = Instant::now();
    let containerd = Containerd::start(harness.config.clone())
        .await
        .expect("containerd starts again");
    eprintln!(
        "timing: containerd start over a leftover one to CRI ready {:?}",
        started.elapsed()
    );
    assert!(
        !process_alive(orphan),
        "the leftover containerd {orphan} still runs"
    );
    assert_ne!(containerd.pid(), Some(orphan));
    harness.containerd = Some(containerd);
    let uid = sandbox
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default();
    let found = harness
        .runtime()
        .list_sandboxes([("io.kubernetes.pod.uid".to_owned(), uid)].into())
        .await
        .expect("ListPodSandbox answers");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, sandbox_id);
    assert_eq!(found[0].state, v1::PodSandboxState::SandboxReady as i32);
    let (state, pid_now) = harness.container_state(&container_id).await;
    assert_eq!(state, v1::ContainerState::ContainerRunning);
    assert_eq!(pid_now, Some(pid));
    let (code, stdout, _) = harness.exec(&container_id, &["echo", "adopted"]).await;
    assert_eq!((code, stdout.as_str()), (0, "adopted\n"));

    harness.teardown().await;
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}
