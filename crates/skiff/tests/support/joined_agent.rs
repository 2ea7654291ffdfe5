//! Test harness for `skiff agent` processes that join a server with `--server` and
//! `--token`, on the host or inside a network namespace of the test's own (entered with
//! `nsenter --net`, so the agent's mounts stay in the host's mount namespace where
//! `skiff killall` finds them). Each has its own data dir with the busybox image in
//! `agent/images/`. Dropping one stops it, runs `skiff killall` on its data dir in the
//! same network namespace and checks that none of its processes or mounts are left —
//! also when the test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One `skiff agent` process (started and restarted on the same data dir).
pub struct JoinedAgent {
    /// Its data dir, `/tmp/skiff-join-<id>`.
    pub dir: PathBuf,
    /// The network namespace it runs in (`/run/netns/<name>`), if any.
    pub netns: Option<String>,
    args: Vec<String>,
    child: Option<Child>,
}

impl JoinedAgent {
    /// A data dir with the busybox image; `args` are the flags of `skiff agent`
    /// besides `--data-dir`. Nothing runs yet.
    pub fn new(netns: Option<&str>, args: &[String]) -> JoinedAgent {
        let id = format!("{:06x}", rand::random::<u32>() & 0x00ff_ffff);
        let dir = PathBuf::from(format!("/tmp/skiff-join-{id}"));
        let images = dir.join("agent").join("images");
        std::fs::create_dir_all(&images).expect("create the images dir");
        cri::image::busybox(
            &images.join("busybox.tar"),
            "busybox",
            cri::image::Compression::None,
        )
        .expect("build the busybox image");
        JoinedAgent {
            dir,
            netns: netns.map(String::from),
            args: args.to_vec(),
            child: None,
        }
    }

    /// `skiff <args>` in the agent's network namespace.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("/usr/bin/nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_skiff"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_skiff")),
        };
        cmd.args(args);
        cmd
    }

    /// Starts the agent (its log appends to `<dir>/agent.log`).
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .expect("log file");
        let child = self
            .command(&["agent", "--data-dir", &self.dir.display().to_string()])
            .args(&self.args)
            .env("SKIFF_LOG", "info,kubelet=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start skiff agent");
        self.child = Some(child);
    }

    /// Runs the agent with `args` instead of its own and waits for it to exit.
    pub fn run_to_exit(&self, args: &[String], timeout: Duration) -> Output {
        let mut child = self
            .command(&["agent", "--data-dir", &self.dir.display().to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run skiff agent");
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = child.try_wait() {
                return child.wait_with_output().expect("agent output");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let out = child.wait_with_output().expect("agent output");
        panic!(
            "skiff agent {args:?} did not exit within {timeout:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether the agent process is still running.
    pub fn running(&self) -> bool {
        self.child.as_ref().is_some_and(|c| {
            // Alive and not a zombie waiting to be reaped.
            std::fs::read_to_string(format!("/proc/{}/stat", c.id())).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
        })
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// SIGTERM and wait (containerd stops; pods keep running); the exit code.
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

    /// Stops the agent, runs `skiff killall` in its namespace; what is left behind.
    pub fn teardown(&mut self) -> Vec<String> {
        self.terminate();
        let mut problems = Vec::new();
        match self
            .command(&["killall", "--data-dir", &self.dir.display().to_string()])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => problems.push(format!(
                "skiff killall failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(e) => problems.push(format!("cannot run skiff killall: {e}")),
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mountinfo.lines() {
            if let Some(point) = line.split_whitespace().nth(4)
                && Path::new(point).starts_with(&self.dir)
            {
                problems.push(format!("mount {point}"));
            }
        }
        for pid in cri::host::processes_mentioning(&self.dir) {
            problems.push(format!("process {pid}"));
        }
        problems
    }
}

impl Drop for JoinedAgent {
    fn drop(&mut self) {
        let problems = self.teardown();
        if problems.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else if std::thread::panicking() {
            eprintln!("LEFT BEHIND after a failed test: {problems:#?}");
        } else {
            panic!("left behind: {problems:#?}\nagent log:\n{}", self.log());
        }
    }
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

/// Whether the Node is Ready.
pub async fn node_ready(client: &kube::Client, name: &str) -> bool {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let Ok(Some(node)) = nodes.get_opt(name).await else {
        return false;
    };
    node.status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}
