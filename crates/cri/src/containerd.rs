//! The agent's own containerd: configured, started, supervised and stopped by us.
//!
//! [`Containerd::start`] writes `<dir>/config.toml` (root `<dir>/root`, state
//! `<dir>/state`, socket `<dir>/containerd.sock`, the CRI plugin set up for this
//! machine), starts `/usr/bin/containerd` with its log in `<dir>/containerd.log`, and
//! returns once the CRI socket answers `Version`. A background task restarts containerd
//! with backoff whenever it dies. Stopping it ([`Containerd::stop`], or dropping the
//! handle) sends SIGTERM, then SIGKILL after a grace period.
//!
//! Containers outlive containerd: their shims keep running through a restart of
//! containerd or of the agent, and the next containerd finds them again. Removing
//! every pod is a separate, explicit step: [`cleanup`].

mod config;
mod process;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Runtime;

/// The containerd binary, as Debian installs it.
pub const CONTAINERD: &str = "/usr/bin/containerd";

/// First wait before restarting a containerd that died; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A containerd that ran this long before dying is restarted after [`MIN_BACKOFF`] again.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How often the socket is tried while containerd starts.
const READY_POLL: Duration = Duration::from_millis(50);
/// How many lines of containerd's log an error quotes.
const LOG_TAIL_LINES: usize = 15;

/// Where and how to run containerd.
#[derive(Debug, Clone)]
pub struct Config {
    /// containerd's directory: config, root, state, socket, log, pid file.
    pub dir: PathBuf,
    /// Where the CNI plugin looks for network configurations.
    pub cni_conf_dir: PathBuf,
    /// The image every pod sandbox runs (its "pause" container).
    pub sandbox_image: String,
    /// The containerd binary.
    pub binary: PathBuf,
    /// How long containerd may take to answer on its socket after a (re)start.
    pub ready_timeout: Duration,
    /// The default deadline of CRI requests through [`Containerd::runtime`].
    pub request_timeout: Duration,
    /// How long containerd has to exit after SIGTERM before it is killed.
    pub stop_timeout: Duration,
    /// The CRI plugin's `registry.config_path`: a directory with one
    /// `<registry host>/hosts.toml` per registry (mirrors, TLS), read at every pull.
    /// `None` leaves containerd's built-in registry defaults alone.
    pub registry_config_path: Option<PathBuf>,
}

impl Config {
    /// Defaults for containerd in `dir` with CNI configurations in `cni_conf_dir`: the
    /// local pause image, Debian's binary, 30 s to get ready, requests bounded by 2 min
    /// (the kubelet's runtime request timeout), 10 s to stop, registry hosts
    /// configuration in `<dir>/certs.d`.
    pub fn new(dir: impl Into<PathBuf>, cni_conf_dir: impl Into<PathBuf>) -> Config {
        let dir = dir.into();
        Config {
            registry_config_path: Some(dir.join("certs.d")),
            dir,
            cni_conf_dir: cni_conf_dir.into(),
            sandbox_image: crate::image::PAUSE_IMAGE.to_owned(),
            binary: PathBuf::from(CONTAINERD),
            ready_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            stop_timeout: Duration::from_secs(10),
        }
    }

    /// The CRI (and containerd API) socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// containerd's log, appended to across restarts.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    /// The configuration file written at start.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    fn root_dir(&self) -> PathBuf {
        self.dir.join("root")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("containerd.pid")
    }
}

/// Starting, supervising or cleaning up containerd failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// containerd's directories or config file could not be written.
    #[error("cannot prepare containerd's directory {}: {source}", path.display())]
    PrepareFailed {
        /// The file or directory that could not be written.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// The containerd process could not be started.
    #[error("cannot start {}: {source}", binary.display())]
    SpawnFailed {
        /// The binary that was run.
        binary: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// containerd exited before its CRI socket answered.
    #[error("containerd exited ({status}) while starting; see {}:\n{tail}", log.display())]
    ExitedWhileStarting {
        /// How it exited.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// containerd's CRI socket did not answer `Version` in time.
    #[error(
        "containerd's CRI socket {} did not answer within {timeout:?} ({last_error}); see {}:\n{tail}",
        socket.display(),
        log.display()
    )]
    NotReady {
        /// The socket that was tried.
        socket: PathBuf,
        /// How long we waited.
        timeout: Duration,
        /// The last error of a `Version` call.
        last_error: String,
        /// containerd's log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// A CRI call failed during cleanup.
    #[error(transparent)]
    Runtime(#[from] crate::Error),
    /// A pod's cgroup directories could not be removed during cleanup.
    #[error("cannot remove the cgroup {cgroup} of pod sandbox {sandbox}: {source}")]
    CgroupRemoveFailed {
        /// The sandbox the cgroup belonged to.
        sandbox: String,
        /// The cgroup path (the sandbox's cgroup parent).
        cgroup: String,
        /// The first IO error.
        #[source]
        source: io::Error,
    },
}

/// What the supervisor and the handle share.
#[derive(Debug, Default)]
struct State {
    /// The running containerd, if any.
    pid: Option<u32>,
    /// Set once shutdown began; no containerd is started after.
    stopping: bool,
    /// How many times containerd was restarted after dying.
    restarts: u32,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every write is one field.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running, supervised containerd. Dropping it stops containerd (not the containers).
#[derive(Debug)]
pub struct Containerd {
    config: Arc<Config>,
    runtime: Runtime,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    supervisor: Option<JoinHandle<()>>,
}

impl Containerd {
    /// Writes the config, starts containerd and waits until its CRI socket answers.
    ///
    /// A containerd left running on the same directory by an agent that died is
    /// stopped first (its containers keep running).
    pub async fn start(config: Config) -> Result<Containerd, Error> {
        let config = Arc::new(config);
        prepare(&config)?;
        let leftover = Arc::clone(&config);
        if let Err(e) = tokio::task::spawn_blocking(move || stop_leftover(&leftover)).await {
            tracing::warn!(error = %e, "cannot stop a leftover containerd");
        }

        let shared = Arc::new(Shared::default());
        let started = Instant::now();
        let mut child = spawn(&config, &shared)?;
        let connected = match wait_ready(&config, &mut child).await {
            Ok(()) => Runtime::connect(config.socket(), config.request_timeout)
                .await
                .map_err(Error::from),
            Err(e) => Err(e),
        };
        let runtime = match connected {
            Ok(runtime) => runtime,
            Err(e) => {
                stop_child(&mut child, &config).await;
                return Err(e);
            }
        };
        tracing::info!(
            socket = %config.socket().display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "containerd ready"
        );

        let (shutdown, shutdown_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(
            Arc::clone(&config),
            Arc::clone(&shared),
            child,
            shutdown_rx,
        ));
        Ok(Containerd {
            config,
            runtime,
            shared,
            shutdown,
            supervisor: Some(supervisor),
        })
    }

    /// A CRI client for this containerd. It reconnects by itself after a restart.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The pid of the containerd process running now, if one is.
    pub fn pid(&self) -> Option<u32> {
        self.shared.lock().pid
    }

    /// How many times containerd died and was started again (and answered).
    pub fn restarts(&self) -> u32 {
        self.shared.lock().restarts
    }

    /// Stops containerd: SIGTERM, then SIGKILL after the stop timeout. Containers and
    /// their shims keep running.
    pub async fn stop(mut self) {
        self.shared.lock().stopping = true;
        let _ = self.shutdown.send(true);
        if let Some(supervisor) = self.supervisor.take()
            && let Err(e) = supervisor.await
        {
            tracing::warn!(error = %e, "containerd supervisor failed");
        }
        // Drop finds nothing left to stop, unless the supervisor had panicked.
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let pid = {
            let mut state = self.shared.lock();
            state.stopping = true;
            state.pid.take()
        };
        let _ = self.shutdown.send(true);
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.abort();
        }
        if let Some(pid) = pid {
            process::terminate_blocking(pid, &self.config.config_file(), self.config.stop_timeout);
            let _ = std::fs::remove_file(self.config.pid_file());
        }
    }
}

/// Stops and removes every pod sandbox of the runtime (with their containers), then
/// removes each pod's cgroup directories, which the runtime leaves behind. Returns how
/// many sandboxes were removed.
///
/// For tests and for wiping a node; the agent never calls it on a normal shutdown.
pub async fn cleanup(runtime: &Runtime) -> Result<usize, Error> {
    let sandboxes = runtime.list_sandboxes(HashMap::new()).await?;
    let mut first_error = None;
    for sandbox in &sandboxes {
        let cgroup = sandbox_cgroup_parent(runtime, &sandbox.id).await;
        runtime.remove_sandbox(&sandbox.id).await?;
        if let Some(cgroup) = cgroup
            && let Err(source) = crate::cgroup::remove(&cgroup)
        {
            first_error.get_or_insert(Error::CgroupRemoveFailed {
                sandbox: sandbox.id.clone(),
                cgroup,
                source,
            });
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(sandboxes.len()),
    }
}

/// The sandbox's cgroup parent, from containerd's verbose status (`config.linux`).
async fn sandbox_cgroup_parent(runtime: &Runtime, id: &str) -> Option<String> {
    use crate::Rpc;
    let status = runtime
        .runtime()
        .pod_sandbox_status(crate::v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        })
        .await
        .rpc("PodSandboxStatus")
        .ok()?;
    let info: serde_json::Value = serde_json::from_str(status.info.get("info")?).ok()?;
    let parent = info.pointer("/config/linux/cgroup_parent")?.as_str()?;
    (!parent.is_empty()).then(|| parent.to_owned())
}

/// Creates containerd's directories and writes its config file.
fn prepare(config: &Config) -> Result<(), Error> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::PrepareFailed { path, source }
    };
    for dir in [
        &config.dir,
        &config.root_dir(),
        &config.state_dir(),
        &config.cni_conf_dir,
    ] {
        std::fs::create_dir_all(dir).map_err(failed(dir))?;
    }
    let file = config.config_file();
    std::fs::write(&file, config::render(config)).map_err(failed(&file))
}

/// Stops a containerd that a previous agent started on this directory and left running.
fn stop_leftover(config: &Config) {
    let Ok(text) = std::fs::read_to_string(config.pid_file()) else {
        return;
    };
    if let Ok(pid) = text.trim().parse::<u32>()
        && process::is_ours(pid, &config.config_file())
    {
        tracing::info!(pid, "stopping the containerd a previous agent left running");
        process::terminate_blocking(pid, &config.config_file(), config.stop_timeout);
    }
}

/// Starts containerd unless shutdown began, and records its pid.
fn spawn(config: &Config, shared: &Shared) -> Result<Child, Error> {
    let log_file = config.log_file();
    let prepare_failed = |source| Error::PrepareFailed {
        path: log_file.clone(),
        source,
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_file)
        .map_err(prepare_failed)?;
    let log_err = log.try_clone().map_err(prepare_failed)?;

    let mut state = shared.lock();
    if state.stopping {
        return Err(Error::SpawnFailed {
            binary: config.binary.clone(),
            source: io::Error::other("the agent is shutting down"),
        });
    }
    let child = Command::new(&config.binary)
        .arg("--config")
        .arg(config.config_file())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: a Ctrl-C meant for the agent must not reach it; the
        // agent stops it in order.
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|source| Error::SpawnFailed {
            binary: config.binary.clone(),
            source,
        })?;
    state.pid = child.id();
    drop(state);
    if let Some(pid) = child.id()
        && let Err(e) = std::fs::write(config.pid_file(), format!("{pid}\n"))
    {
        tracing::warn!(error = %e, "cannot write containerd's pid file");
    }
    Ok(child)
}

/// Waits until the CRI socket answers `Version`, or containerd exits, or the timeout.
async fn wait_ready(config: &Config, child: &mut Child) -> Result<(), Error> {
    let deadline = Instant::now() + config.ready_timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::ExitedWhileStarting {
                status,
                log: config.log_file(),
                tail: log_tail(&config.log_file()),
            });
        }
        let last_error = match answers_version(config).await {
            Ok(()) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(Error::NotReady {
                socket: config.socket(),
                timeout: config.ready_timeout,
                last_error,
                log: config.log_file(),
                tail: log_tail(&config.log_file()),
            });
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

async fn answers_version(config: &Config) -> Result<(), crate::Error> {
    let probe = Runtime::connect(config.socket(), Duration::from_secs(2)).await?;
    probe.version().await.map(drop)
}

/// Restarts containerd whenever it dies, until shutdown; then stops it.
async fn supervise(
    config: Arc<Config>,
    shared: Arc<Shared>,
    child: Child,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut child = Some(child);
    let mut started = Instant::now();
    let mut backoff = MIN_BACKOFF;
    loop {
        if let Some(running) = child.as_mut() {
            tokio::select! {
                status = running.wait() => {
                    shared.lock().pid = None;
                    let ran = started.elapsed();
                    if ran >= STABLE_AFTER {
                        backoff = MIN_BACKOFF;
                    }
                    match status {
                        Ok(status) => tracing::warn!(%status, ran_s = ran.as_secs(), log = %config.log_file().display(), "containerd exited; restarting it"),
                        Err(e) => tracing::warn!(error = %e, "cannot wait for containerd; restarting it"),
                    }
                    child = None;
                }
                _ = shutdown_requested(&mut shutdown) => {
                    stop_child(running, &config).await;
                    shared.lock().pid = None;
                    return;
                }
            }
        }

        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown_requested(&mut shutdown) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);

        let mut restarted = match spawn(&config, &shared) {
            Ok(restarted) => restarted,
            Err(e) => {
                if shared.lock().stopping {
                    return;
                }
                tracing::error!(error = %e, "cannot restart containerd");
                continue;
            }
        };
        started = Instant::now();
        let ready = tokio::select! {
            ready = wait_ready(&config, &mut restarted) => ready,
            _ = shutdown_requested(&mut shutdown) => {
                stop_child(&mut restarted, &config).await;
                shared.lock().pid = None;
                return;
            }
        };
        match ready {
            Ok(()) => {
                shared.lock().restarts += 1;
                tracing::info!(pid = restarted.id(), "containerd restarted and ready");
            }
            Err(e) => tracing::error!(error = %e, "restarted containerd is not answering"),
        }
        // One that never got ready is watched like any other: if it is stuck it is
        // left to the operator, if it dies it is restarted with more backoff.
        child = Some(restarted);
    }
}

/// Resolves once shutdown was asked for (or the handle is gone).
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// SIGTERM, up to the stop timeout, then SIGKILL; reaps the child.
async fn stop_child(child: &mut Child, config: &Config) {
    let Some(pid) = child.id() else {
        return; // already reaped
    };
    process::signal(pid, Signal::SIGTERM);
    match tokio::time::timeout(config.stop_timeout, child.wait()).await {
        Ok(_) => tracing::info!(pid, "containerd stopped"),
        Err(_) => {
            tracing::warn!(pid, "containerd ignored SIGTERM; killing it");
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
    if let Err(e) = std::fs::remove_file(config.pid_file())
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::debug!(error = %e, "cannot remove containerd's pid file");
    }
}

/// The last lines of containerd's log, for error messages.
fn log_tail(log: &Path) -> String {
    let Ok(text) = std::fs::read(log) else {
        return String::from("(no log)");
    };
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A config whose "containerd" is the shell script `script`.
    fn fake(dir: &Path, script: &str) -> Config {
        let binary = dir.join("fake-containerd");
        std::fs::write(&binary, format!("#!/bin/sh\n{script}\n")).expect("write script");
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut config = Config::new(dir.join("containerd"), dir.join("cni"));
        config.binary = binary;
        config.ready_timeout = Duration::from_millis(500);
        config.stop_timeout = Duration::from_secs(2);
        config
    }

    #[tokio::test]
    async fn a_containerd_that_exits_at_start_is_reported_with_its_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = fake(
            dir.path(),
            "echo 'failed to load plugin: no such thing' >&2; exit 3",
        );
        let error = Containerd::start(config.clone())
            .await
            .expect_err("it exits");
        let Error::ExitedWhileStarting { status, log, tail } = &error else {
            panic!("unexpected error {error}");
        };
        assert_eq!(status.code(), Some(3));
        assert_eq!(log, &config.log_file());
        assert!(tail.contains("no such thing"), "{tail}");
        assert!(error.to_string().contains("containerd.log"), "{error}");
    }

    #[tokio::test]
    async fn a_containerd_that_never_answers_times_out_naming_its_log_and_is_stopped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pid_file = dir.path().join("fake.pid");
        let script = format!(
            "echo $$ > {}; echo starting >&2; exec sleep 60",
            pid_file.display()
        );
        let config = fake(dir.path(), &script);
        let started = Instant::now();
        let error = Containerd::start(config.clone())
            .await
            .expect_err("it never answers");
        assert!(started.elapsed() < Duration::from_secs(5));
        let Error::NotReady { log, tail, .. } = &error else {
            panic!("unexpected error {error}");
        };
        assert_eq!(log, &config.log_file());
        assert!(tail.contains("starting"), "{tail}");
        assert!(error.to_string().contains("containerd.sock"), "{error}");
        // The process was stopped.
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .expect("the fake wrote its pid")
            .trim()
            .parse()
            .expect("a pid");
        assert!(!process::is_alive(pid), "pid {pid} still runs");
    }

    #[test]
    fn the_config_file_is_written_with_the_directories() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config::new(dir.path().join("containerd"), dir.path().join("cni"));
        prepare(&config).expect("prepared");
        let text = std::fs::read_to_string(config.config_file()).expect("config.toml");
        assert!(text.contains("restrict_oom_score_adj = true"));
        assert!(config.root_dir().is_dir() && config.state_dir().is_dir());
        assert!(config.cni_conf_dir.is_dir());
    }
}
