//! One pod's worker: brings the pod to what its spec asks (sandbox, init containers
//! in order, containers with their restart policy and crash back-off), reports its
//! status on change, and terminates it gracefully when it is deleted. Every step
//! looks at the runtime first, so a worker started on running containers (after an
//! agent restart) adopts them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cri::{Rpc, v1};
use events::{Event, EventType};
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use tokio::sync::watch;

mod start;
mod stop;

use super::Ctx;
use super::container;
use super::probes::{self, Probes};
use super::sandbox;
use super::status::{self, History, Init, Observed, Waiting};
use crate::Error;
use crate::labels;
use crate::volumes::PodVolumes;

/// How often the runtime is looked at while nothing else happens.
const POLL: Duration = Duration::from_secs(1);
/// How often a finished pod is looked at.
const POLL_FINISHED: Duration = Duration::from_secs(10);
/// A container that ran this long before exiting restarts without back-off.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);
/// The shortest grace period a container gets when stopped (the kubelet's minimum).
const MIN_GRACE: i64 = 2;
/// How often configMap, secret and token volume contents are brought up to date.
const VOLUME_REFRESH: Duration = Duration::from_secs(10);
/// Older exited instances of a container beyond this many are removed.
const KEEP_EXITED: usize = 1;
/// The kubelet's reason and message for a pod past its activeDeadlineSeconds.
const DEADLINE_EXCEEDED: (&str, &str) = (
    "DeadlineExceeded",
    "Pod was active on the node longer than the specified deadline",
);

/// What the manager tells a worker: the pod as last seen, or that it is gone from
/// the API.
#[derive(Clone)]
pub(crate) struct Update {
    pub(crate) pod: Arc<Pod>,
    pub(crate) gone: bool,
}

/// Per container name: back-off and what it waits for.
#[derive(Debug, Default)]
struct Track {
    /// The back-off delay the next crash waits (None: restart at once).
    delay: Option<Duration>,
    /// The container whose BackOff event was recorded.
    backoff_reported: Option<String>,
    /// Why the container cannot be started (image, config), until it can.
    waiting: Option<(String, String)>,
    /// The container killed because a liveness or startup probe failed, which is
    /// restarted whatever its exit code (unless restartPolicy is Never).
    probe_killed: Option<String>,
}

/// The sandbox in use.
#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    ip: String,
    ready: bool,
    attempt: u32,
    config: Option<v1::PodSandboxConfig>,
}

/// One pod's worker.
pub(crate) struct Worker {
    ctx: Arc<Ctx>,
    pod: Arc<Pod>,
    name: String,
    namespace: String,
    uid: String,
    pod_dir: PathBuf,
    sandbox: Option<Sandbox>,
    volumes: Option<PodVolumes>,
    volumes_refreshed: Instant,
    tracks: HashMap<String, Track>,
    /// Statuses of exited containers (they do not change any more).
    exited: HashMap<String, v1::ContainerStatus>,
    /// Termination messages by container ID.
    messages: HashMap<String, String>,
    reported: Option<PodStatus>,
    start_time: Option<Time>,
    sandbox_stopped: bool,
    /// Whether this worker's last sync found the pod finished.
    finished: bool,
    /// The pod ran past its activeDeadlineSeconds: it is failed and its containers stopped.
    deadline_exceeded: bool,
    /// The liveness, readiness and startup probers of the running containers.
    probes: Probes,
}

impl Worker {
    /// A worker for `pod` (not started).
    pub(crate) fn new(ctx: Arc<Ctx>, pod: Arc<Pod>) -> Worker {
        let (name, namespace, uid) = sandbox::identity(&pod);
        let pod_dir = sandbox::pod_dir(&ctx.config.dir, &uid);
        let reported = pod.status.clone();
        let start_time = reported.as_ref().and_then(|s| s.start_time.clone());
        Worker {
            ctx,
            pod,
            name,
            namespace,
            uid,
            pod_dir,
            sandbox: None,
            volumes: None,
            volumes_refreshed: Instant::now(),
            tracks: HashMap::new(),
            exited: HashMap::new(),
            messages: HashMap::new(),
            reported,
            start_time,
            sandbox_stopped: false,
            finished: false,
            deadline_exceeded: false,
            probes: Probes::new(),
        }
    }

    /// Runs until the pod is terminated and removed, or the agent shuts down (then
    /// the pod's containers are left running).
    pub(crate) async fn run(
        mut self,
        mut updates: watch::Receiver<Update>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let span = tracing::debug_span!("pod", pod = %format!("{}/{}", self.namespace, self.name));
        let _ = &span;
        loop {
            let update = updates.borrow_and_update().clone();
            self.pod = update.pod;
            if update.gone || self.pod.metadata.deletion_timestamp.is_some() {
                self.probes.stop();
                let terminated = tokio::select! {
                    t = self.terminate(update.gone) => t,
                    _ = crate::stopped(&mut shutdown) => return,
                };
                match terminated {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(pod = %self.key(), error = %e, "terminating pod failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(POLL) => continue,
                            _ = crate::stopped(&mut shutdown) => return,
                        }
                    }
                }
            }
            let wait = match self.sync().await {
                Ok(()) if self.finished => POLL_FINISHED,
                Ok(()) => POLL,
                Err(e) => {
                    tracing::warn!(pod = %self.key(), error = %e, "pod sync failed");
                    POLL
                }
            };
            tokio::select! {
                changed = updates.changed() => if changed.is_err() { return },
                _ = self.probes.changed() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = crate::stopped(&mut shutdown) => return,
            }
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn spec(&self) -> k8s_openapi::api::core::v1::PodSpec {
        self.pod.spec.clone().unwrap_or_default()
    }

    fn restart_policy(&self) -> String {
        self.spec()
            .restart_policy
            .unwrap_or_else(|| "Always".to_owned())
    }

    /// One pass: sandbox, init containers, containers, status.
    async fn sync(&mut self) -> Result<(), Error> {
        if self.start_time.is_none() {
            self.start_time = Some(now());
        }
        let api_terminal = matches!(
            self.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if !api_terminal && !self.deadline_exceeded && self.past_active_deadline() {
            self.deadline_exceeded = true;
            self.event(
                EventType::Warning,
                DEADLINE_EXCEEDED.0,
                DEADLINE_EXCEEDED.1.to_owned(),
                None,
            );
        }
        self.find_sandbox().await?;
        let mut containers = self.observe().await?;
        let finished =
            api_terminal || self.deadline_exceeded || self.would_be_finished(&containers);
        let mut acted = false;
        if !finished {
            if !self.sandbox.as_ref().is_some_and(|s| s.ready) {
                if !sandbox::host_network(&self.pod) && !*self.ctx.network_ready.borrow() {
                    return self.report(&containers).await;
                }
                if let Err(e) = self.create_sandbox().await {
                    self.event(
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                        None,
                    );
                    self.report(&containers).await?;
                    return Err(e);
                }
                // A new sandbox has no containers yet (observe lists the current
                // sandbox's only): no need to ask the runtime.
                containers.clear();
            }
            self.ensure_volumes().await?;
            if self.kill_unhealthy(&containers).await {
                containers = self.observe().await?;
                acted = true;
            }
            acted |= self.run_containers(&containers).await?;
        }
        if acted {
            containers = self.observe().await?;
        }
        self.sync_probes(&containers);
        self.report(&containers).await?;
        self.finished = finished
            || matches!(
                self.reported.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
        if self.finished && !self.sandbox_stopped {
            self.stop_finished().await?;
        }
        Ok(())
    }

    /// Whether the pod has been active on this node longer than its
    /// activeDeadlineSeconds (counted from its startTime, as the kubelet does).
    fn past_active_deadline(&self) -> bool {
        let (Some(deadline), Some(start)) = (
            self.spec().active_deadline_seconds,
            self.start_time.as_ref(),
        ) else {
            return false;
        };
        let active = jiff::Timestamp::now().duration_since(start.0);
        active.as_secs() >= deadline
    }

    /// Whether every container has exited for good under the restart policy (the pod
    /// is finished and gets no new sandbox).
    fn would_be_finished(&self, containers: &HashMap<String, History>) -> bool {
        let spec = self.spec();
        let policy = self.restart_policy();
        if policy == "Always" {
            return false;
        }
        if let Init::Failed(_) = status::init_progress(&self.pod, containers) {
            return true;
        }
        !spec.containers.is_empty()
            && spec.containers.iter().all(|c| {
                containers
                    .get(&c.name)
                    .and_then(|h| h.first())
                    .is_some_and(|s| {
                        status::state(s) == v1::ContainerState::ContainerExited
                            && (policy == "Never" || s.exit_code == 0)
                            && !self.probe_killed(&c.name, &s.id)
                    })
            })
    }

    /// The pod's newest sandbox, from the runtime (adoption happens here).
    async fn find_sandbox(&mut self) -> Result<(), Error> {
        let found = self
            .ctx
            .runtime
            .list_sandboxes(HashMap::from([(
                labels::POD_UID.to_owned(),
                self.uid.clone(),
            )]))
            .await?;
        let Some(newest) = found.iter().max_by_key(|s| s.created_at) else {
            self.sandbox = None;
            return Ok(());
        };
        let ready = newest.state == v1::PodSandboxState::SandboxReady as i32;
        let attempt = newest.metadata.as_ref().map_or(0, |m| m.attempt);
        if let Some(current) = &mut self.sandbox
            && current.id == newest.id
        {
            current.ready = ready;
            return Ok(());
        }
        let ip = if ready {
            self.sandbox_ip(&newest.id).await?
        } else {
            String::new()
        };
        if ready && self.sandbox.is_none() {
            tracing::debug!(pod = %self.key(), sandbox = %newest.id, "adopting sandbox");
        }
        self.sandbox = Some(Sandbox {
            id: newest.id.clone(),
            ip,
            ready,
            attempt,
            config: None,
        });
        self.sandbox_stopped = !ready;
        Ok(())
    }

    async fn sandbox_ip(&self, id: &str) -> Result<String, Error> {
        let status = self
            .ctx
            .runtime
            .runtime()
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_owned(),
                verbose: false,
            })
            .await
            .rpc("PodSandboxStatus")?;
        let ip = status
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default();
        if ip.is_empty() && sandbox::host_network(&self.pod) {
            return Ok(self.ctx.config.node_ip.to_string());
        }
        Ok(ip)
    }

    /// Sets up the pod's directory and volumes and runs a new sandbox (removing any
    /// older one that is not ready: its containers are gone with it).
    async fn create_sandbox(&mut self) -> Result<(), Error> {
        let attempt = self.sandbox.as_ref().map_or(0, |s| s.attempt + 1);
        let old = self.sandbox.take();
        if let Some(old) = &old {
            tracing::info!(pod = %self.key(), sandbox = %old.id, "sandbox is not ready; replacing it");
            self.ctx.runtime.remove_sandbox(&old.id).await?;
        }
        for dir in [self.pod_dir.join("logs"), self.pod_dir.join("containers")] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let config = sandbox::config(&self.ctx.config, &self.pod, attempt)?;
        let started = Instant::now();
        // The sandbox does not use the volumes: mount them (token requests and
        // object reads through the API included) while the runtime builds it.
        let run = async {
            let _slot = self.ctx.sandbox_slots.acquire().await;
            self.ctx
                .runtime
                .runtime()
                .run_pod_sandbox(v1::RunPodSandboxRequest {
                    config: Some(config.clone()),
                    runtime_handler: String::new(),
                })
                .await
                .rpc("RunPodSandbox")
        };
        let (response, volumes) = tokio::join!(run, self.setup_volumes());
        let volumes = volumes.map(|v| self.adopt_volumes(v));
        let id = response?.pod_sandbox_id;
        if let Err(e) = volumes {
            // As the kubelet, no sandbox while volumes cannot be mounted: the pod
            // keeps no IP and the next sync starts over.
            if let Err(rm) = self.ctx.runtime.remove_sandbox(&id).await {
                tracing::warn!(pod = %self.key(), sandbox = %id, error = %rm, "cannot remove the sandbox of a pod whose volumes failed");
            }
            return Err(e);
        }
        let ip = self.sandbox_ip(&id).await?;
        tracing::debug!(pod = %self.key(), sandbox = %id, ip = %ip, elapsed_ms = started.elapsed().as_millis() as u64, "sandbox running");
        self.write_hosts(&ip)?;
        self.sandbox = Some(Sandbox {
            id,
            ip,
            ready: true,
            attempt,
            config: Some(config),
        });
        self.sandbox_stopped = false;
        Ok(())
    }

    /// Mounts the pod's volumes unless that was done already (then `Ok(None)`).
    async fn setup_volumes(&self) -> Result<Option<PodVolumes>, Error> {
        if self.volumes.is_some() {
            return Ok(None);
        }
        let started = Instant::now();
        let volumes = PodVolumes::setup(
            &self.ctx.client,
            &self.pod,
            &self.pod_dir,
            &self.ctx.config.node_name,
        )
        .await;
        match volumes {
            Ok(v) => {
                tracing::debug!(pod = %self.key(), elapsed_ms = started.elapsed().as_millis() as u64, "volumes mounted");
                Ok(Some(v))
            }
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "FailedMount",
                    format!("Unable to attach or mount volumes: {e}"),
                    None,
                );
                Err(e)
            }
        }
    }

    /// Sets up the pod's volumes once per worker (again after an agent restart, which
    /// keeps what is there), and re-projects configMap, secret and token contents every
    /// [`VOLUME_REFRESH`].
    async fn ensure_volumes(&mut self) -> Result<(), Error> {
        if let Some(volumes) = &self.volumes {
            if self.volumes_refreshed.elapsed() >= VOLUME_REFRESH {
                self.volumes_refreshed = Instant::now();
                if let Err(e) = volumes.refresh(&self.ctx.client, &self.pod).await {
                    tracing::debug!(pod = %self.key(), error = %e, "cannot refresh volumes");
                }
            }
            return Ok(());
        }
        self.adopt_volumes(self.setup_volumes().await?);
        Ok(())
    }

    fn adopt_volumes(&mut self, volumes: Option<PodVolumes>) {
        if let Some(v) = volumes {
            self.volumes = Some(v);
            self.volumes_refreshed = Instant::now();
        }
    }

    fn write_hosts(&self, ip: &str) -> Result<(), Error> {
        let path = container::hosts_path(&self.pod_dir);
        let text = if sandbox::host_network(&self.pod) {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            sandbox::hosts_file(&self.ctx.config, &self.pod, ip)
        };
        std::fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// The sandbox's config: as created, or rebuilt for an adopted sandbox.
    fn sandbox_config(&mut self) -> Result<v1::PodSandboxConfig, Error> {
        let Some(sandbox) = &mut self.sandbox else {
            return Err(Error::Invalid("no sandbox".into()));
        };
        if let Some(config) = &sandbox.config {
            return Ok(config.clone());
        }
        let config = sandbox::config(&self.ctx.config, &self.pod, sandbox.attempt)?;
        sandbox.config = Some(config.clone());
        Ok(config)
    }

    /// The runtime's containers of the current sandbox by name, newest first.
    async fn observe(&mut self) -> Result<HashMap<String, History>, Error> {
        let mut by_name: HashMap<String, History> = HashMap::new();
        let Some(sandbox) = &self.sandbox else {
            return Ok(by_name);
        };
        let listed = self.ctx.runtime.list_containers(&sandbox.id).await?;
        let mut listed: Vec<v1::Container> = listed;
        listed.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        for c in listed {
            let name = c
                .labels
                .get(labels::CONTAINER_NAME)
                .cloned()
                .or_else(|| c.metadata.as_ref().map(|m| m.name.clone()))
                .unwrap_or_default();
            let history = by_name.entry(name).or_default();
            // Only the newest two matter (state and last state).
            if history.len() >= 2 {
                continue;
            }
            if let Some(cached) = self.exited.get(&c.id) {
                history.push(cached.clone());
                continue;
            }
            let status = match self
                .ctx
                .runtime
                .runtime()
                .container_status(v1::ContainerStatusRequest {
                    container_id: c.id.clone(),
                    verbose: false,
                })
                .await
                .rpc("ContainerStatus")
            {
                Ok(response) => response.status,
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            };
            let Some(status) = status else { continue };
            if status::state(&status) == v1::ContainerState::ContainerExited {
                self.remember_exit(&status);
                self.exited.insert(c.id.clone(), status.clone());
            }
            history.push(status);
        }
        Ok(by_name)
    }

    /// Reads the termination message of a container that exited.
    fn remember_exit(&mut self, status: &v1::ContainerStatus) {
        let name = status
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let spec = self.spec();
        let Some(c) = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == name)
        else {
            return;
        };
        let message = container::termination_message(
            &self.pod_dir,
            c,
            status::restart_count(status),
            status.exit_code != 0,
            &status.log_path,
        );
        if !message.is_empty() {
            self.messages.insert(status.id.clone(), message);
        }
    }

    /// Starts what should run: init containers in order, then the containers. Returns
    /// whether anything was done.
    async fn run_containers(
        &mut self,
        containers: &HashMap<String, History>,
    ) -> Result<bool, Error> {
        let spec = self.spec();
        let policy = self.restart_policy();
        let mut acted = false;
        for c in spec.init_containers.iter().flatten() {
            let history = containers.get(&c.name).map(Vec::as_slice).unwrap_or(&[]);
            let latest = history.first();
            if status::is_sidecar(c) {
                acted |= self.keep_running(c, latest, true).await?;
                if latest.is_none_or(|s| status::state(s) != v1::ContainerState::ContainerRunning) {
                    return Ok(acted);
                }
                continue;
            }
            match latest.map(status::state) {
                Some(v1::ContainerState::ContainerExited)
                    if latest.is_some_and(|s| s.exit_code == 0) =>
                {
                    continue;
                }
                Some(v1::ContainerState::ContainerExited) if policy == "Never" => return Ok(acted),
                _ => {
                    self.keep_running(c, latest, true).await?;
                    return Ok(true);
                }
            }
        }
        for c in &spec.containers {
            let latest = containers.get(&c.name).and_then(|h| h.first());
            let restart = match latest.map(|s| (status::state(s), s.exit_code, &s.id)) {
                Some((v1::ContainerState::ContainerExited, code, id)) => {
                    policy == "Always"
                        || (policy == "OnFailure" && code != 0)
                        || self.probe_killed(&c.name, id)
                }
                _ => true,
            };
            if restart {
                acted |= self.keep_running(c, latest, true).await?;
            }
        }
        Ok(acted)
    }

    /// Computes the status and writes it when it changed.
    async fn report(&mut self, containers: &HashMap<String, History>) -> Result<(), Error> {
        let waiting: Waiting = self
            .tracks
            .iter()
            .filter_map(|(name, t)| t.waiting.clone().map(|w| (name.clone(), w)))
            .collect();
        let pod_ip = self
            .sandbox
            .as_ref()
            .map(|s| s.ip.clone())
            .unwrap_or_default();
        let host_ip = self.ctx.config.node_ip.to_string();
        let status = status::compute(
            &Observed {
                pod: &self.pod,
                containers,
                waiting: &waiting,
                messages: &self.messages,
                pod_ip: &pod_ip,
                host_ip: &host_ip,
                sandbox_ready: self.sandbox.as_ref().is_some_and(|s| s.ready),
                start_time: self.start_time.clone(),
                probes: &self.probes.snapshot(),
                failed: self.deadline_exceeded.then_some(DEADLINE_EXCEEDED),
            },
            self.reported.as_ref(),
        );
        if self.reported.as_ref() == Some(&status) {
            return Ok(());
        }
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let patch = serde_json::json!({ "status": status });
        match pods
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            // Deleted meanwhile: the watch tells the worker.
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => {
                return Err(Error::api(
                    format!("updating status of pod {}", self.key()),
                    e,
                ));
            }
        }
        tracing::debug!(pod = %self.key(), phase = ?status.phase, "pod status updated");
        self.reported = Some(status);
        Ok(())
    }

    /// The pod as events refer to it.
    fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            resource_version: self.pod.resource_version(),
            field_path: None,
        }
    }

    /// Whether container `id` (named `name`) was killed by a failed probe to be
    /// restarted.
    fn probe_killed(&self, name: &str, id: &str) -> bool {
        self.tracks
            .get(name)
            .and_then(|t| t.probe_killed.as_deref())
            == Some(id)
    }

    /// The containers probes run for: the regular ones and the sidecars.
    fn probed_containers(&self) -> Vec<(Container, bool)> {
        let spec = self.spec();
        let sidecars = spec
            .init_containers
            .into_iter()
            .flatten()
            .filter(status::is_sidecar)
            .map(|c| (c, true));
        spec.containers
            .into_iter()
            .map(|c| (c, false))
            .chain(sidecars)
            .collect()
    }

    /// Kills the running containers whose liveness or startup probe failed (they are
    /// restarted as their restart policy says). Returns whether any was.
    async fn kill_unhealthy(&mut self, containers: &HashMap<String, History>) -> bool {
        let snapshot = self.probes.snapshot();
        let mut killed = false;
        for (c, _) in self.probed_containers() {
            let Some(latest) = containers.get(&c.name).and_then(|h| h.first()) else {
                continue;
            };
            if status::state(latest) != v1::ContainerState::ContainerRunning {
                continue;
            }
            if let Some(kind) = snapshot.failed(&latest.id) {
                self.kill_for_probe(&c, &latest.id, kind).await;
                killed = true;
            }
        }
        killed
    }

    /// Starts the probers of newly running containers and stops those of containers
    /// that stopped.
    fn sync_probes(&mut self, containers: &HashMap<String, History>) {
        let probed = self.probed_containers();
        let running: Vec<probes::Running<'_>> = probed
            .iter()
            .filter_map(|(c, sidecar)| {
                let latest = containers.get(&c.name)?.first()?;
                (status::state(latest) == v1::ContainerState::ContainerRunning).then_some(
                    probes::Running {
                        spec: c,
                        id: &latest.id,
                        started_at: latest.started_at,
                        sidecar: *sidecar,
                    },
                )
            })
            .collect();
        let ctx = probes::Context {
            runtime: &self.ctx.runtime,
            recorder: &self.ctx.recorder,
            pod: self.reference(),
            target: probes::Target {
                pod_ip: self.sandbox.as_ref().and_then(|s| s.ip.parse().ok()),
                host_network: sandbox::host_network(&self.pod),
                node_ip: self.ctx.config.node_ip,
            },
        };
        self.probes.sync(&ctx, &running);
    }

    /// Records an event about the pod (about one of its containers when `container`),
    /// in the background.
    fn event(&self, type_: EventType, reason: &str, note: String, container: Option<&str>) {
        let spec = self.spec();
        let field_path = container.map(|name| {
            let init = spec
                .init_containers
                .iter()
                .flatten()
                .any(|c| c.name == name);
            if init {
                format!("spec.initContainers{{{name}}}")
            } else {
                format!("spec.containers{{{name}}}")
            }
        });
        let reference = ObjectReference {
            field_path,
            ..self.reference()
        };
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: None,
        };
        let recorder = self.ctx.recorder.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::debug!(error = %e, "cannot record event");
            }
        });
    }
}

fn now() -> Time {
    Time(
        jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .unwrap_or_else(|_| jiff::Timestamp::now()),
    )
}

/// A duration as Go prints it (`10s`, `1m20s`, `5m0s`), as the kubelet's messages do.
fn go_duration(d: Duration) -> String {
    let total = d.as_secs();
    let millis = d.subsec_millis();
    if total == 0 {
        return format!("{millis}ms");
    }
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    let seconds = if millis > 0 {
        let fraction = format!("{millis:03}");
        format!("{s}.{}s", fraction.trim_end_matches('0'))
    } else {
        format!("{s}s")
    };
    match (h, m) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
