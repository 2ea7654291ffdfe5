//! Stopping containers and pods: a finished pod's sandbox, graceful termination of a
//! deleted pod (preStop hooks, SIGTERM, SIGKILL after the grace period), removal of
//! what it leaves on the host, and the final deletion of the pod object.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cri::{Rpc, v1};
use events::EventType;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use kube::Api;
use kube::api::{DeleteParams, Preconditions};

use super::{MIN_GRACE, Worker};
use crate::Error;
use crate::labels;
use crate::pods::container;
use crate::pods::probes::Kind;

impl Worker {
    /// A finished pod: stop what still runs (sidecars) and its sandbox, which frees
    /// its IP; the exited containers stay for their logs until the pod is deleted.
    pub(super) async fn stop_finished(&mut self) -> Result<(), Error> {
        let Some(sandbox) = self.sandbox.clone() else {
            self.sandbox_stopped = true;
            return Ok(());
        };
        let listed = self.ctx.runtime.list_containers(&sandbox.id).await?;
        let grace = self.grace_seconds();
        for c in listed
            .iter()
            .filter(|c| c.state == v1::ContainerState::ContainerRunning as i32)
        {
            let name = c
                .labels
                .get(labels::CONTAINER_NAME)
                .cloned()
                .unwrap_or_default();
            self.stop_container(&c.id, &name, grace, None).await;
        }
        self.ctx
            .runtime
            .runtime()
            .stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: sandbox.id.clone(),
            })
            .await
            .rpc("StopPodSandbox")?;
        tracing::debug!(pod = %self.key(), "pod finished; sandbox stopped");
        self.sandbox_stopped = true;
        Ok(())
    }

    /// The grace period the pod gets: the deletion's, else the spec's (30 s default).
    pub(super) fn grace_seconds(&self) -> i64 {
        self.pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| self.spec().termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0)
    }

    /// Stops a container within `grace` seconds: its preStop hook first (if given),
    /// then SIGTERM, then SIGKILL.
    pub(super) async fn stop_container(
        &self,
        id: &str,
        name: &str,
        grace: i64,
        pre_stop: Option<&LifecycleHandler>,
    ) {
        let note = format!("Stopping container {name}");
        self.stop_container_saying(id, name, grace, pre_stop, note)
            .await;
    }

    /// Kills container `c` (ID `id`) because its `kind` probe failed, as the kubelet
    /// does: the Killing event says why, the grace period is the deletion's, else the
    /// probe's terminationGracePeriodSeconds, else the pod's; the preStop hook runs.
    /// Unless restartPolicy is Never, the container is then restarted whatever its
    /// exit code.
    pub(super) async fn kill_for_probe(&mut self, c: &Container, id: &str, kind: Kind) {
        let what = match kind {
            Kind::Liveness => "liveness",
            Kind::Startup => "startup",
            Kind::Readiness => return,
        };
        let restart = self.restart_policy() != "Never";
        let mut note = format!("Container {} failed {what} probe", c.name);
        if restart {
            note.push_str(", will be restarted");
        }
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| kind.of(c).and_then(|p| p.termination_grace_period_seconds))
            .or_else(|| self.spec().termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0);
        tracing::info!(pod = %self.key(), container = %c.name, probe = %kind, grace, "killing a container that failed its probe");
        let pre_stop = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref());
        self.stop_container_saying(id, &c.name, grace, pre_stop, note)
            .await;
        if restart {
            self.tracks.entry(c.name.clone()).or_default().probe_killed = Some(id.to_owned());
        }
    }

    /// [`Worker::stop_container`] with the Killing event's note.
    async fn stop_container_saying(
        &self,
        id: &str,
        name: &str,
        grace: i64,
        pre_stop: Option<&LifecycleHandler>,
        note: String,
    ) {
        self.event(EventType::Normal, "Killing", note, Some(name));
        let deadline = Instant::now() + Duration::from_secs(grace.max(0) as u64);
        if let Some(hook) = pre_stop {
            let ip = self
                .sandbox
                .as_ref()
                .map(|s| s.ip.clone())
                .unwrap_or_default();
            let budget = Duration::from_secs(grace.max(MIN_GRACE) as u64);
            if let Err(message) =
                container::run_hook(&self.ctx.runtime, id, &ip, hook, budget).await
            {
                self.event(EventType::Warning, "FailedPreStopHook", message, Some(name));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now()).as_secs() as i64;
        let timeout = left.max(MIN_GRACE);
        let mut request = tonic::Request::new(v1::StopContainerRequest {
            container_id: id.to_owned(),
            timeout,
        });
        request.set_timeout(Duration::from_secs(timeout as u64 + 30));
        if let Err(e) = self
            .ctx
            .runtime
            .runtime()
            .stop_container(request)
            .await
            .rpc("StopContainer")
            && !e.is_not_found()
        {
            tracing::warn!(pod = %self.key(), container = %name, error = %e, "cannot stop container");
        }
    }

    /// Terminates the pod: containers (with preStop hooks) within the grace period,
    /// sandboxes, cgroup, volumes and directory; then deletes the pod object, unless it
    /// is gone already.
    pub(super) async fn terminate(&mut self, gone: bool) -> Result<(), Error> {
        let grace = if gone {
            MIN_GRACE
        } else {
            self.grace_seconds()
        };
        tracing::info!(pod = %self.key(), grace, "terminating pod");
        let spec = self.spec();
        let sandboxes = self
            .ctx
            .runtime
            .list_sandboxes(HashMap::from([(
                labels::POD_UID.to_owned(),
                self.uid.clone(),
            )]))
            .await?;
        let me: &Worker = self;
        for sandbox in &sandboxes {
            let listed = me.ctx.runtime.list_containers(&sandbox.id).await?;
            let running: Vec<&v1::Container> = listed
                .iter()
                .filter(|c| {
                    matches!(
                        v1::ContainerState::try_from(c.state),
                        Ok(v1::ContainerState::ContainerRunning
                            | v1::ContainerState::ContainerCreated
                            | v1::ContainerState::ContainerUnknown)
                    )
                })
                .collect();
            let is_regular = |c: &&v1::Container| {
                let name = c
                    .labels
                    .get(labels::CONTAINER_NAME)
                    .map(String::as_str)
                    .unwrap_or_default();
                spec.containers.iter().any(|s| s.name == name)
            };
            // Containers first, all at once; then sidecars and init containers.
            let (regular, others): (Vec<&v1::Container>, Vec<&v1::Container>) =
                running.into_iter().partition(is_regular);
            for group in [regular, others] {
                let stops = group.iter().map(|c| {
                    let name = c
                        .labels
                        .get(labels::CONTAINER_NAME)
                        .cloned()
                        .unwrap_or_default();
                    let pre_stop = spec
                        .containers
                        .iter()
                        .chain(spec.init_containers.iter().flatten())
                        .find(|s| s.name == name)
                        .and_then(|s| s.lifecycle.as_ref())
                        .and_then(|l| l.pre_stop.clone());
                    let id = c.id.clone();
                    async move {
                        me.stop_container(&id, &name, grace, pre_stop.as_ref())
                            .await;
                    }
                });
                futures::future::join_all(stops).await;
            }
            me.ctx.runtime.remove_sandbox(&sandbox.id).await?;
        }
        crate::pods::remove_pod_leftovers(&self.ctx.config.dir, &self.uid).await?;
        self.sandbox = None;
        if !gone {
            let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match pods.delete(&self.name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(Error::api(format!("deleting pod {}", self.key()), e)),
            }
        }
        tracing::info!(pod = %self.key(), "pod terminated");
        Ok(())
    }
}
