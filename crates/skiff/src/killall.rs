//! `skiff killall`: leaves the machine without anything of one data dir's node agent —
//! its pods and containers, its containerd, mounts, pod cgroups, the pod bridge, its
//! iptables chains (the service proxy's included) and routes, host-local's
//! allocations. Images stay.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use cri::host::processes_mentioning;

/// Flags of `skiff killall`.
#[derive(Args, Debug, Clone)]
pub struct KillallArgs {
    /// The data dir whose agent is to be cleaned up.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// Runs `skiff killall`; fails when something could not be removed.
pub async fn run(args: KillallArgs) -> anyhow::Result<()> {
    let dir = crate::agent::agent_dir(&args.data_dir);
    if !dir.is_dir() {
        println!("nothing to do: {} does not exist", dir.display());
        return Ok(());
    }
    let _lock = crate::agent::lock(&dir).context("stop the server or agent first")?;
    let mut removed = Vec::new();
    // Known before the pod directories go.
    let cgroups = kubelet::leftover_cgroups(&dir);

    // Pods go through containerd, so CNI releases addresses and hostPort rules.
    let config = kubelet::containerd_config(&dir);
    if config.dir.join("config.toml").exists() {
        let containerd = cri::containerd::Containerd::start(config.clone())
            .await
            .context("starting the agent's containerd to remove its pods")?;
        let result = cri::containerd::cleanup(containerd.runtime()).await;
        containerd.stop().await;
        match result {
            Ok(0) => {}
            Ok(n) => removed.push(format!("{n} pod sandbox(es) and their containers")),
            Err(e) => eprintln!("warning: removing pods through containerd: {e}"),
        }
    }

    // Shims exit once their containers are removed; anything left is killed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(&dir).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in processes_mentioning(&dir) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        removed.push(format!("process {pid}"));
    }
    if !processes_mentioning(&dir).is_empty() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (unmounted, error) = cri::host::unmount_all_under(&args.data_dir);
    removed.extend(unmounted.iter().map(|m| format!("mount {}", m.display())));
    if let Some(e) = error {
        eprintln!("warning: {e}");
    }

    for cgroup in &cgroups {
        if cgroup_exists(cgroup) {
            for pid in cri::cgroup::processes(cgroup) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                removed.push(format!("process {pid} of cgroup {cgroup}"));
            }
            match cri::cgroup::remove(cgroup) {
                Ok(()) => removed.push(format!("cgroup {cgroup}")),
                Err(e) => eprintln!("warning: cannot remove cgroup {cgroup}: {e}"),
            }
        }
    }
    removed.extend(kubelet::remove_network(&dir));
    match service_proxy::cleanup(&crate::agent::proxy_prefix(&dir)) {
        Ok(lines) => removed.extend(lines),
        Err(e) => eprintln!("warning: removing the service proxy's chains: {e}"),
    }

    let pods = dir.join("pods");
    if pods.exists() && mounts_under(&pods).is_empty() {
        std::fs::remove_dir_all(&pods).with_context(|| format!("removing {}", pods.display()))?;
        removed.push(format!("pod directories {}", pods.display()));
    }

    for line in &removed {
        println!("removed {line}");
    }
    let left = leftovers(&args.data_dir, &dir, &cgroups);
    if !left.is_empty() {
        for line in &left {
            println!("left behind: {line}");
        }
        bail!("{} thing(s) could not be removed", left.len());
    }
    println!("nothing of {} is left running", dir.display());
    Ok(())
}

/// What of the agent is still on the machine.
fn leftovers(data_dir: &Path, dir: &Path, cgroups: &[String]) -> Vec<String> {
    let mut left: Vec<String> = kubelet::network_leftovers(dir);
    match service_proxy::leftovers(&crate::agent::proxy_prefix(dir)) {
        Ok(chains) => left.extend(chains),
        Err(e) => left.push(format!("service proxy chains (cannot list them: {e})")),
    }
    left.extend(
        mounts_under(data_dir)
            .into_iter()
            .map(|m| format!("mount {}", m.display())),
    );
    left.extend(
        processes_mentioning(dir)
            .into_iter()
            .map(|p| format!("process {p}")),
    );
    left.extend(
        cgroups
            .iter()
            .filter(|c| cgroup_exists(c))
            .map(|c| format!("cgroup {c}")),
    );
    left
}

/// Whether the cgroup exists in any hierarchy we check (memory, cpu, pids, systemd,
/// unified).
fn cgroup_exists(cgroup: &str) -> bool {
    let relative = cgroup.trim_start_matches('/');
    ["memory", "cpu", "pids", "systemd", "unified", ""]
        .iter()
        .any(|h| Path::new("/sys/fs/cgroup").join(h).join(relative).is_dir())
}

/// Mount points at or below `dir`, deepest first (none when mountinfo is unreadable).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    cri::host::mounts_under(dir).unwrap_or_default()
}
