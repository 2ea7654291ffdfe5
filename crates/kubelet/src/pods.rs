//! The pods bound to this node: a watch (`spec.nodeName=<node>`) feeds one worker
//! task per pod, each with its own channel carrying the latest pod; after every full
//! list, sandboxes and pod directories of pods that no longer exist are removed.

mod container;
mod probes;
mod sandbox;
mod status;
mod worker;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use events::Recorder;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::labels;
use crate::volumes::PodVolumes;
use crate::{AgentConfig, Error};
use worker::{Update, Worker};

/// Sandboxes created at once: more only slow each other down on a small machine.
const SANDBOX_SLOTS: usize = 3;
/// How long a pod found without an API object gets to stop.
const ORPHAN_GRACE: i64 = 2;

/// What every pod worker shares.
pub(crate) struct Ctx {
    pub(crate) client: Client,
    pub(crate) config: AgentConfig,
    pub(crate) runtime: cri::Runtime,
    pub(crate) recorder: Recorder,
    pub(crate) network_ready: watch::Receiver<bool>,
    pub(crate) sandbox_slots: Semaphore,
}

impl Ctx {
    /// The shared context of the pod workers.
    pub(crate) fn new(
        client: Client,
        config: AgentConfig,
        runtime: cri::Runtime,
        network_ready: watch::Receiver<bool>,
    ) -> Ctx {
        let recorder = Recorder::new(
            client.clone(),
            events::Reporter {
                controller: "kubelet".into(),
                instance: Some(config.node_name.clone()),
            },
        );
        Ctx {
            client,
            config,
            runtime,
            recorder,
            network_ready,
            sandbox_slots: Semaphore::new(SANDBOX_SLOTS),
        }
    }
}

struct Handle {
    updates: watch::Sender<Update>,
    task: JoinHandle<()>,
}

/// Runs the pod workers until shutdown. Workers stop with it, leaving their pods'
/// containers running.
pub(crate) async fn run(ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) -> Result<(), Error> {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let selector = format!("spec.nodeName={}", ctx.config.node_name);
    let mut events = watcher::watcher(pods, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let mut workers: HashMap<String, Handle> = HashMap::new();
    // Pods with a worker now: never orphans, even if they arrived after a list.
    let live: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut listing: Option<HashSet<String>> = None;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = crate::stopped(&mut shutdown) => break,
        };
        let Some(event) = event else { break };
        match event {
            Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying"),
            Ok(Event::Init) => listing = Some(HashSet::new()),
            Ok(Event::InitApply(pod)) => {
                if let Some(seen) = &mut listing
                    && let Some(uid) = &pod.metadata.uid
                {
                    seen.insert(uid.clone());
                }
                dispatch(&ctx, &mut workers, &live, pod, false, &shutdown);
            }
            Ok(Event::InitDone) => {
                let seen = listing.take().unwrap_or_default();
                for (uid, handle) in &workers {
                    if !seen.contains(uid) {
                        let pod = handle.updates.borrow().pod.clone();
                        handle.updates.send_replace(Update { pod, gone: true });
                    }
                }
                let (ctx, live) = (Arc::clone(&ctx), Arc::clone(&live));
                tokio::spawn(async move {
                    if let Err(e) = remove_orphans(&ctx, &seen, &live).await {
                        tracing::warn!(error = %e, "cannot remove pods that no longer exist");
                    }
                });
            }
            Ok(Event::Apply(pod)) => dispatch(&ctx, &mut workers, &live, pod, false, &shutdown),
            Ok(Event::Delete(pod)) => dispatch(&ctx, &mut workers, &live, pod, true, &shutdown),
        }
        workers.retain(|_, h| !h.task.is_finished());
        if let Ok(mut live) = live.lock() {
            live.clear();
            live.extend(workers.keys().cloned());
        }
    }
    // Workers see the shutdown themselves; give them a moment to finish a CRI call.
    for (_, handle) in workers {
        let _ = tokio::time::timeout(Duration::from_secs(5), handle.task).await;
    }
    Ok(())
}

/// Hands the pod to its worker, starting one if needed.
fn dispatch(
    ctx: &Arc<Ctx>,
    workers: &mut HashMap<String, Handle>,
    live: &Mutex<HashSet<String>>,
    pod: Pod,
    gone: bool,
    shutdown: &watch::Receiver<bool>,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    let update = Update {
        pod: Arc::new(pod),
        gone,
    };
    if let Some(handle) = workers.get(&uid)
        && !handle.task.is_finished()
    {
        handle.updates.send_replace(update);
        return;
    }
    if gone {
        // No worker ever ran it: the orphan pass removes what may be left.
        return;
    }
    if let Ok(mut live) = live.lock() {
        live.insert(uid.clone());
    }
    let (updates, receiver) = watch::channel(update.clone());
    let worker = Worker::new(Arc::clone(ctx), update.pod);
    let task = tokio::spawn(worker.run(receiver, shutdown.clone()));
    workers.insert(uid, Handle { updates, task });
}

/// Removes sandboxes and pod directories of pods not in `known` (deleted while the
/// agent was not watching).
async fn remove_orphans(
    ctx: &Ctx,
    known: &HashSet<String>,
    live: &Mutex<HashSet<String>>,
) -> Result<(), Error> {
    let known =
        |uid: &str| known.contains(uid) || live.lock().map(|l| l.contains(uid)).unwrap_or(true);
    let sandboxes = ctx
        .runtime
        .list_sandboxes(HashMap::from([(
            labels::MANAGED_BY.to_owned(),
            labels::MANAGED_BY_VALUE.to_owned(),
        )]))
        .await?;
    let mut orphans: HashSet<String> = HashSet::new();
    for sandbox in &sandboxes {
        let Some(uid) = sandbox.labels.get(labels::POD_UID) else {
            continue;
        };
        if known(uid) {
            continue;
        }
        tracing::info!(pod_uid = %uid, sandbox = %sandbox.id, "removing the sandbox of a pod that no longer exists");
        for c in ctx.runtime.list_containers(&sandbox.id).await? {
            if c.state == cri::v1::ContainerState::ContainerRunning as i32 {
                let mut request = tonic::Request::new(cri::v1::StopContainerRequest {
                    container_id: c.id.clone(),
                    timeout: ORPHAN_GRACE,
                });
                request.set_timeout(Duration::from_secs(30));
                let _ = ctx.runtime.runtime().stop_container(request).await;
            }
        }
        ctx.runtime.remove_sandbox(&sandbox.id).await?;
        orphans.insert(uid.clone());
    }
    let pods_dir = sandbox::pods_dir(&ctx.config.dir);
    if let Ok(entries) = std::fs::read_dir(&pods_dir) {
        for entry in entries.flatten() {
            let uid = entry.file_name().to_string_lossy().into_owned();
            if !known(&uid) {
                orphans.insert(uid);
            }
        }
    }
    for uid in orphans {
        if known(&uid) {
            continue;
        }
        remove_pod_leftovers(&ctx.config.dir, &uid).await?;
    }
    Ok(())
}

/// Removes what a pod leaves on the host once its sandboxes are gone: its cgroup in
/// every hierarchy, its volumes and its directory.
pub(crate) async fn remove_pod_leftovers(dir: &Path, uid: &str) -> Result<(), Error> {
    for cgroup in sandbox::cgroup_candidates(uid) {
        if let Err(e) = cri::cgroup::remove(&cgroup) {
            return Err(Error::io(format!("removing cgroup {cgroup}"), e));
        }
    }
    let pod_dir = sandbox::pod_dir(dir, uid);
    if pod_dir.exists() {
        PodVolumes::teardown(&pod_dir).await?;
        std::fs::remove_dir_all(&pod_dir)
            .map_err(|e| Error::io(format!("removing {}", pod_dir.display()), e))?;
    }
    Ok(())
}

/// The cgroups pods of this agent directory may have left (for `skiff killall`):
/// every QoS location for each pod directory.
pub fn leftover_cgroups(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(sandbox::pods_dir(dir)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| sandbox::cgroup_candidates(&e.file_name().to_string_lossy()))
        .collect()
}
