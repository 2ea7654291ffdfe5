//! Starting containers: image presence and pulls, the container's config, create
//! and start with the kubelet's events, restarts with crash back-off, postStart hooks.

use std::time::{Duration, Instant};

use cri::{Rpc, v1};
use events::EventType;
use k8s_openapi::api::core::v1::Container;

use super::{BACKOFF_RESET_AFTER, KEEP_EXITED, MIN_GRACE, Worker, go_duration};
use crate::Error;
use crate::images::{self, Local};
use crate::labels;
use crate::pods::{container, status};

impl Worker {
    /// Makes sure container `c` runs: starts it when it never ran, starts a created
    /// one, restarts an exited one when `restart` (after its back-off). Returns
    /// whether anything was done.
    pub(super) async fn keep_running(
        &mut self,
        c: &Container,
        latest: Option<&v1::ContainerStatus>,
        restart: bool,
    ) -> Result<bool, Error> {
        let Some(latest) = latest else {
            self.start(c, 0).await?;
            return Ok(true);
        };
        match status::state(latest) {
            v1::ContainerState::ContainerRunning => {
                self.tracks.entry(c.name.clone()).or_default().waiting = None;
                Ok(false)
            }
            v1::ContainerState::ContainerCreated => {
                self.start_created(c, &latest.id).await?;
                Ok(true)
            }
            v1::ContainerState::ContainerUnknown => {
                self.stop_container(&latest.id, &c.name, MIN_GRACE, None)
                    .await;
                Ok(true)
            }
            v1::ContainerState::ContainerExited if restart => {
                let now_ns = jiff::Timestamp::now().as_nanosecond() as i64;
                let ran =
                    Duration::from_nanos((latest.finished_at - latest.started_at).max(0) as u64);
                let since_exit = Duration::from_nanos((now_ns - latest.finished_at).max(0) as u64);
                let base = self.ctx.config.crash_backoff_base;
                let max = self.ctx.config.crash_backoff_max;
                let pod_ref = format!("{}_{}({})", self.name, self.namespace, self.uid);
                let track = self.tracks.entry(c.name.clone()).or_default();
                if ran >= BACKOFF_RESET_AFTER {
                    track.delay = None;
                }
                if let Some(delay) = track.delay
                    && since_exit < delay
                {
                    track.waiting = Some((
                        "CrashLoopBackOff".to_owned(),
                        format!(
                            "back-off {} restarting failed container={} pod={pod_ref}",
                            go_duration(delay),
                            c.name
                        ),
                    ));
                    if track.backoff_reported.as_deref() != Some(latest.id.as_str()) {
                        track.backoff_reported = Some(latest.id.clone());
                        self.event(
                            EventType::Warning,
                            "BackOff",
                            format!(
                                "Back-off restarting failed container {} in pod {pod_ref}",
                                c.name
                            ),
                            Some(&c.name),
                        );
                    }
                    return Ok(false);
                }
                track.delay = Some(match track.delay {
                    None => base,
                    Some(d) => (d * 2).min(max),
                });
                let next = status::restart_count(latest) + 1;
                self.start(c, next).await?;
                Ok(true)
            }
            v1::ContainerState::ContainerExited => Ok(false),
        }
    }

    /// Creates and starts container `c` as restart number `restart`.
    pub(super) async fn start(&mut self, c: &Container, restart: u32) -> Result<(), Error> {
        let began = std::time::Instant::now();
        let image_name = c.image.clone().unwrap_or_default();
        let image = match self.image(c, &image_name).await? {
            Some(image) => image,
            None => return Ok(()),
        };
        let config = match self.container_config(c, &image, restart).await {
            Ok(config) => config,
            Err(e) => {
                self.wait_for(c, "CreateContainerConfigError", e.to_string());
                self.event(
                    EventType::Warning,
                    "Failed",
                    format!("Error: {e}"),
                    Some(&c.name),
                );
                return Ok(());
            }
        };
        let sandbox_config = self.sandbox_config()?;
        let Some(sandbox_id) = self.sandbox.as_ref().map(|s| s.id.clone()) else {
            return Ok(());
        };
        let prepared_ms = began.elapsed().as_millis() as u64;
        let created = self
            .ctx
            .runtime
            .runtime()
            .create_container(v1::CreateContainerRequest {
                pod_sandbox_id: sandbox_id,
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .rpc("CreateContainer");
        let id = match created {
            Ok(response) => response.container_id,
            Err(e) => {
                self.wait_for(c, "CreateContainerError", e.to_string());
                self.event(
                    EventType::Warning,
                    "Failed",
                    format!("Error: {e}"),
                    Some(&c.name),
                );
                return Ok(());
            }
        };
        self.event(
            EventType::Normal,
            "Created",
            format!("Created container: {}", c.name),
            Some(&c.name),
        );
        let created_ms = began.elapsed().as_millis() as u64;
        self.start_created(c, &id).await?;
        tracing::debug!(
            pod = %self.key(),
            container = %c.name,
            prepared_ms,
            created_ms,
            started_ms = began.elapsed().as_millis() as u64,
            "container started (image, env and mounts ready / created / started, since the start of this step)"
        );
        self.remove_old_instances(&c.name, &id).await;
        Ok(())
    }

    /// Starts a created container and runs its postStart hook.
    pub(super) async fn start_created(&mut self, c: &Container, id: &str) -> Result<(), Error> {
        let started = self
            .ctx
            .runtime
            .runtime()
            .start_container(v1::StartContainerRequest {
                container_id: id.to_owned(),
            })
            .await
            .rpc("StartContainer");
        if let Err(e) = started {
            self.wait_for(c, "RunContainerError", e.to_string());
            self.event(
                EventType::Warning,
                "Failed",
                format!("Error: {e}"),
                Some(&c.name),
            );
            return Ok(());
        }
        self.tracks.entry(c.name.clone()).or_default().waiting = None;
        self.event(
            EventType::Normal,
            "Started",
            format!("Started container {}", c.name),
            Some(&c.name),
        );
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let ip = self
                .sandbox
                .as_ref()
                .map(|s| s.ip.clone())
                .unwrap_or_default();
            let grace = self.grace_seconds();
            if let Err(message) = container::run_hook(
                &self.ctx.runtime,
                id,
                &ip,
                hook,
                Duration::from_secs(grace.max(MIN_GRACE) as u64),
            )
            .await
            {
                self.event(
                    EventType::Warning,
                    "FailedPostStartHook",
                    message,
                    Some(&c.name),
                );
                self.stop_container(id, &c.name, grace, None).await;
            }
        }
        Ok(())
    }

    /// Removes exited instances of container `name` older than the newest exited one
    /// (which `--previous` logs read).
    pub(super) async fn remove_old_instances(&mut self, name: &str, keep: &str) {
        let Some(sandbox) = &self.sandbox else { return };
        let Ok(listed) = self.ctx.runtime.list_containers(&sandbox.id).await else {
            return;
        };
        let mut exited: Vec<&v1::Container> = listed
            .iter()
            .filter(|c| c.id != keep)
            .filter(|c| c.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(name))
            .filter(|c| c.state == v1::ContainerState::ContainerExited as i32)
            .collect();
        exited.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        for old in exited.into_iter().skip(KEEP_EXITED) {
            let removed = self
                .ctx
                .runtime
                .runtime()
                .remove_container(v1::RemoveContainerRequest {
                    container_id: old.id.clone(),
                })
                .await
                .rpc("RemoveContainer");
            if let Err(e) = removed {
                tracing::debug!(error = %e, "cannot remove an old container");
            }
            self.exited.remove(&old.id);
            self.messages.remove(&old.id);
        }
    }

    /// The image of `c` as its pull policy asks, with the kubelet's events; `None` when
    /// the container must wait (the reason is recorded).
    pub(super) async fn image(
        &mut self,
        c: &Container,
        image: &str,
    ) -> Result<Option<v1::Image>, Error> {
        let policy = c.image_pull_policy.clone().unwrap_or_default();
        match images::local(&self.ctx.runtime, image, &policy).await? {
            Local::Ready(found) => {
                self.event(
                    EventType::Normal,
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                    Some(&c.name),
                );
                Ok(Some(*found))
            }
            Local::NeverPull(message) => {
                self.wait_for(c, "ErrImageNeverPull", message.clone());
                self.event(
                    EventType::Warning,
                    "ErrImageNeverPull",
                    message,
                    Some(&c.name),
                );
                Ok(None)
            }
            Local::Pull => {
                let key = images::backoff::key(&self.uid, image);
                let backing_off = images::backoff::pulls()
                    .waiting(&key, Instant::now())
                    .map(str::to_owned);
                if let Some(last) = backing_off {
                    let note = format!("Back-off pulling image \"{image}\"");
                    self.wait_for(c, "ImagePullBackOff", format!("{note}: {last}"));
                    self.event(EventType::Normal, "BackOff", note, Some(&c.name));
                    let failed = "Error: ImagePullBackOff".to_owned();
                    self.event(EventType::Warning, "Failed", failed, Some(&c.name));
                    return Ok(None);
                }
                let started = Instant::now();
                let (secrets, missing) = images::pull_secrets(&self.ctx.client, &self.pod).await;
                if !missing.is_empty() {
                    let note = format!(
                        "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                        missing.join(", ")
                    );
                    let reason = "FailedToRetrieveImagePullSecret";
                    self.event(EventType::Warning, reason, note, None);
                }
                let auths = images::credentials(&self.ctx.config.dir, &secrets, image);
                let pulling = format!("Pulling image \"{image}\"");
                self.event(EventType::Normal, "Pulling", pulling, Some(&c.name));
                let (base, max) = (
                    self.ctx.config.crash_backoff_base,
                    self.ctx.config.crash_backoff_max,
                );
                match images::pull(&self.ctx.runtime, image, auths).await {
                    Ok(pulled) => {
                        images::backoff::pulls().succeeded(&key, Instant::now(), max);
                        self.event(
                            EventType::Normal,
                            "Pulled",
                            format!(
                                "Successfully pulled image \"{image}\" in {} ({} including waiting). Image size: {} bytes.",
                                go_duration(pulled.took),
                                go_duration(started.elapsed()),
                                pulled.image.size
                            ),
                            Some(&c.name),
                        );
                        Ok(Some(pulled.image))
                    }
                    Err(message) => {
                        let last = format!("ErrImagePull: {message}");
                        images::backoff::pulls().failed(&key, Instant::now(), base, max, last);
                        let note = format!("Failed to pull image \"{image}\": {message}");
                        self.event(EventType::Warning, "Failed", note, Some(&c.name));
                        let failed = "Error: ErrImagePull".to_owned();
                        self.event(EventType::Warning, "Failed", failed, Some(&c.name));
                        self.wait_for(c, "ErrImagePull", message);
                        Ok(None)
                    }
                }
            }
        }
    }

    /// The CRI config of `c`: environment (env.rs), mounts (volumes.rs) and the rest.
    pub(super) async fn container_config(
        &mut self,
        c: &Container,
        image: &v1::Image,
        restart: u32,
    ) -> Result<v1::ContainerConfig, Error> {
        let pod_ip = self
            .sandbox
            .as_ref()
            .map(|s| s.ip.clone())
            .unwrap_or_default();
        let host_ip = self.ctx.config.node_ip.to_string();
        let env = crate::env::container_env(
            &crate::env::EnvContext {
                client: &self.ctx.client,
                pod: &self.pod,
                pod_ip: &pod_ip,
                host_ip: &host_ip,
                node_name: &self.ctx.config.node_name,
            },
            c,
        )
        .await?;
        let mounts = match &self.volumes {
            Some(volumes) => volumes.mounts_with_env(c, &env)?,
            None => Vec::new(),
        };
        let log = container::termination_log(&self.pod_dir, &c.name, restart);
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::write(&log, b"")
            .map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
        container::config(container::Inputs {
            agent: &self.ctx.config,
            pod: &self.pod,
            container: c,
            image,
            restart,
            env,
            mounts,
        })
    }

    pub(super) fn wait_for(&mut self, c: &Container, reason: &str, message: String) {
        self.tracks.entry(c.name.clone()).or_default().waiting = Some((reason.to_owned(), message));
    }
}
