//! A container as the kubelet describes it to CRI: command and args with `$(VAR)`
//! expansion, environment, mounts (volumes, `/etc/hosts`, the termination log),
//! resources as cgroup settings, and the security context; plus lifecycle hooks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cri::{Rpc, v1};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::sandbox::{self, Qos, quantity};
use crate::labels;
use crate::{AgentConfig, Error};

/// CPU period of CFS quotas (100 ms), as the kubelet sets it.
const CPU_PERIOD: i64 = 100_000;
/// The smallest CFS quota the kubelet sets (1 ms).
const MIN_QUOTA: i64 = 1_000;
/// The smallest cpu shares value (the kernel's minimum).
const MIN_SHARES: i64 = 2;
/// Where a container writes its termination message unless told otherwise.
const TERMINATION_LOG: &str = "/dev/termination-log";
/// The most of a termination message that is reported.
const MESSAGE_MAX: usize = 4096;

/// The host file mounted at a container's terminationMessagePath for `restart`.
pub(crate) fn termination_log(pod_dir: &Path, name: &str, restart: u32) -> PathBuf {
    pod_dir
        .join("containers")
        .join(name)
        .join(format!("termination-{restart}"))
}

/// The pod's `/etc/hosts` on the host.
pub(crate) fn hosts_path(pod_dir: &Path) -> PathBuf {
    pod_dir.join("etc-hosts")
}

/// Everything but the environment and volume mounts, which come from `env.rs` and
/// `volumes.rs`: see [`config`].
pub(crate) struct Inputs<'a> {
    pub(crate) agent: &'a AgentConfig,
    pub(crate) pod: &'a Pod,
    pub(crate) container: &'a Container,
    pub(crate) image: &'a v1::Image,
    pub(crate) restart: u32,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) mounts: Vec<v1::Mount>,
}

/// The CRI config of a container, or the message of a `CreateContainerConfigError`.
pub(crate) fn config(inputs: Inputs<'_>) -> Result<v1::ContainerConfig, Error> {
    let Inputs {
        agent,
        pod,
        container,
        image,
        restart,
        env,
        mut mounts,
    } = inputs;
    let (pod_name, _, uid) = sandbox::identity(pod);
    let pod_dir = sandbox::pod_dir(&agent.dir, &uid);
    let security = security_context(pod, container, image)?;

    let expand = |s: &String| crate::env::expand(s, &env);
    let command = container.command.iter().flatten().map(expand).collect();
    let args = container.args.iter().flatten().map(expand).collect();

    let mounted = |mounts: &[v1::Mount], path: &str| {
        mounts.iter().any(|m| m.container_path == path)
            || container
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == path)
    };
    if !mounted(&mounts, "/etc/hosts") {
        mounts.push(v1::Mount {
            container_path: "/etc/hosts".into(),
            host_path: hosts_path(&pod_dir).to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
    let message_path = container
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| TERMINATION_LOG.into());
    if !mounted(&mounts, &message_path) {
        mounts.push(v1::Mount {
            container_path: message_path.clone(),
            host_path: termination_log(&pod_dir, &container.name, restart)
                .to_string_lossy()
                .into_owned(),
            ..Default::default()
        });
    }

    let mut labels = HashMap::from([
        (labels::POD_NAME.to_owned(), pod_name),
        (labels::POD_NAMESPACE.to_owned(), sandbox::identity(pod).1),
        (labels::POD_UID.to_owned(), uid),
        (labels::CONTAINER_NAME.to_owned(), container.name.clone()),
    ]);
    labels.insert(labels::MANAGED_BY.into(), labels::MANAGED_BY_VALUE.into());
    let annotations = HashMap::from([
        (labels::RESTART_COUNT.to_owned(), restart.to_string()),
        (
            "io.kubernetes.container.terminationMessagePath".to_owned(),
            message_path,
        ),
    ]);
    Ok(v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: container.name.clone(),
            attempt: restart,
        }),
        image: Some(v1::ImageSpec {
            image: image.id.clone(),
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env
            .into_iter()
            .map(|(key, value)| v1::KeyValue { key, value })
            .collect(),
        mounts,
        labels,
        annotations,
        log_path: format!("{}/{restart}.log", container.name),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(resources(pod, container)),
            security_context: Some(security),
        }),
        ..Default::default()
    })
}

/// cgroup settings from the container's requests and limits, as the kubelet computes
/// them on cgroup v1: shares from the cpu request, a CFS quota from the cpu limit, the
/// memory limit, and an OOM score from the pod's QoS class.
pub(crate) fn resources(pod: &Pod, container: &Container) -> v1::LinuxContainerResources {
    let resources = container.resources.clone().unwrap_or_default();
    let requests = resources.requests.unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    let milli = |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
        (quantity(q) * 1000.0).ceil() as i64
    };
    let cpu_request = requests.get("cpu").or(limits.get("cpu")).map(milli);
    let cpu_limit = limits.get("cpu").map(milli);
    let memory_limit = limits.get("memory").map(|q| quantity(q) as i64);
    let memory_request = requests
        .get("memory")
        .or(limits.get("memory"))
        .map(|q| quantity(q) as i64);
    let shares = cpu_request.map_or(MIN_SHARES, |m| (m * 1024 / 1000).max(MIN_SHARES));
    let (cpu_quota, cpu_period) = match cpu_limit {
        Some(m) if m > 0 => ((m * CPU_PERIOD / 1000).max(MIN_QUOTA), CPU_PERIOD),
        _ => (0, 0),
    };
    let oom_score_adj = match Qos::of(pod) {
        Qos::Guaranteed => -997,
        Qos::BestEffort => 1000,
        Qos::Burstable => {
            let capacity = crate::node::memory_total().unwrap_or(0) as i64;
            let request = memory_request.unwrap_or(0);
            let score = if capacity > 0 {
                1000 - 1000 * request / capacity
            } else {
                1000
            };
            score.clamp(2, 999)
        }
    };
    v1::LinuxContainerResources {
        cpu_period,
        cpu_quota,
        cpu_shares: shares,
        memory_limit_in_bytes: memory_limit.unwrap_or(0),
        oom_score_adj,
        ..Default::default()
    }
}

/// The container's security context merged with the pod's, with the runAsNonRoot
/// check against the image's user.
fn security_context(
    pod: &Pod,
    container: &Container,
    image: &v1::Image,
) -> Result<v1::LinuxContainerSecurityContext, Error> {
    let pod_security = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let security = container.security_context.clone().unwrap_or_default();
    let run_as_user = security.run_as_user.or(pod_security.run_as_user);
    let run_as_group = security.run_as_group.or(pod_security.run_as_group);
    let non_root = security
        .run_as_non_root
        .or(pod_security.run_as_non_root)
        .unwrap_or(false);
    if non_root {
        let (pod_name, namespace, _) = sandbox::identity(pod);
        match run_as_user.or(image.uid.as_ref().map(|u| u.value)) {
            Some(0) => {
                return Err(Error::Invalid(format!(
                    "container has runAsNonRoot and image will run as root (pod: \"{pod_name}_{namespace}({})\", container: {})",
                    sandbox::identity(pod).2,
                    container.name
                )));
            }
            Some(_) => {}
            None if !image.username.is_empty() => {
                return Err(Error::Invalid(format!(
                    "container has runAsNonRoot and image has non-numeric user ({}), cannot verify user is non-root (pod: \"{pod_name}_{namespace}({})\", container: {})",
                    image.username,
                    sandbox::identity(pod).2,
                    container.name
                )));
            }
            // No user in the image: it runs as root.
            None => {
                return Err(Error::Invalid(format!(
                    "container has runAsNonRoot and image will run as root (pod: \"{pod_name}_{namespace}({})\", container: {})",
                    sandbox::identity(pod).2,
                    container.name
                )));
            }
        }
    }
    let capabilities = security.capabilities.clone().unwrap_or_default();
    let privileged = security.privileged.unwrap_or(false);
    let mut supplemental_groups = pod_security.supplemental_groups.clone().unwrap_or_default();
    supplemental_groups.extend(pod_security.fs_group);
    Ok(v1::LinuxContainerSecurityContext {
        capabilities: Some(v1::Capability {
            add_capabilities: capabilities.add.unwrap_or_default(),
            drop_capabilities: capabilities.drop.unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(sandbox::namespace_options(pod)),
        run_as_user: run_as_user.map(|value| v1::Int64Value { value }),
        run_as_group: run_as_group.map(|value| v1::Int64Value { value }),
        readonly_rootfs: security.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups,
        no_new_privs: security.allow_privilege_escalation == Some(false) && !privileged,
        ..Default::default()
    })
}

/// The termination message a container left: its termination log file, or, with
/// `FallbackToLogsOnError` after a failure and an empty file, the end of its log.
pub(crate) fn termination_message(
    pod_dir: &Path,
    container: &Container,
    restart: u32,
    failed: bool,
    log_path: &str,
) -> String {
    let file = termination_log(pod_dir, &container.name, restart);
    let mut message = std::fs::read(&file)
        .map(|bytes| String::from_utf8_lossy(&bytes[..bytes.len().min(MESSAGE_MAX)]).into_owned())
        .unwrap_or_default();
    let fallback = container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    if message.is_empty() && fallback && failed && !log_path.is_empty() {
        message = log_tail(Path::new(log_path), 80, 2048);
    }
    message
}

/// The last `lines` lines (at most `max` bytes) of a CRI-format log file.
fn log_tail(path: &Path, lines: usize, max: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let mut out = String::new();
    let messages: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(4, ' ');
            let (_, _, tag, msg) = (
                parts.next()?,
                parts.next()?,
                parts.next()?,
                parts.next().unwrap_or(""),
            );
            Some(if tag == "P" {
                msg.to_owned()
            } else {
                format!("{msg}\n")
            })
        })
        .collect();
    for message in &messages[messages.len().saturating_sub(lines)..] {
        out.push_str(message);
    }
    if out.len() > max {
        let mut cut = out.len() - max;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = out[cut..].to_owned();
    }
    out
}

/// Runs a postStart or preStop handler against a container, bounded by `timeout`.
/// The error is what the kubelet reports in the FailedPostStartHook/FailedPreStopHook
/// event.
pub(crate) async fn run_hook(
    runtime: &cri::Runtime,
    container_id: &str,
    pod_ip: &str,
    handler: &LifecycleHandler,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &handler.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        let mut request = tonic::Request::new(v1::ExecSyncRequest {
            container_id: container_id.to_owned(),
            cmd: cmd.clone(),
            timeout: timeout.as_secs().max(1) as i64,
        });
        request.set_timeout(timeout + Duration::from_secs(5));
        let response = runtime
            .runtime()
            .exec_sync(request)
            .await
            .rpc("ExecSync")
            .map_err(|e| {
                format!("Exec lifecycle hook ({cmd:?}) for Container in Pod failed - error: {e}")
            })?;
        if response.exit_code != 0 {
            return Err(format!(
                "Exec lifecycle hook ({cmd:?}) for Container in Pod failed - error: command '{}' exited with {}: {}",
                cmd.join(" "),
                response.exit_code,
                String::from_utf8_lossy(&response.stderr).trim()
            ));
        }
        return Ok(());
    }
    if let Some(get) = &handler.http_get {
        let host = get
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_owned());
        let port = match &get.port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => *p,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s
                .parse()
                .map_err(|_| format!("named port {s:?} of an httpGet hook is not supported"))?,
        };
        let path = get.path.clone().unwrap_or_else(|| "/".into());
        let result = tokio::time::timeout(timeout, http_get(&host, port, &path)).await;
        return match result {
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
            Ok(Ok(code)) => Err(format!(
                "HTTP lifecycle hook ({path}) for Container in Pod failed - error: HTTP status {code}"
            )),
            Ok(Err(e)) => Err(format!(
                "HTTP lifecycle hook ({path}) for Container in Pod failed - error: {e}"
            )),
            Err(_) => Err(format!(
                "HTTP lifecycle hook ({path}) for Container in Pod failed - error: timeout"
            )),
        };
    }
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
    }
    Ok(())
}

/// A plain HTTP/1.1 GET; returns the status code.
async fn http_get(host: &str, port: i32, path: &str) -> Result<u16, String> {
    let mut stream = tokio::net::TcpStream::connect((host, port as u16))
        .await
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-lifecycle/1.33\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("a pod")
    }

    #[test]
    fn cpu_and_memory_become_shares_quota_and_limit() {
        let pod = pod(serde_json::json!({
            "spec": {"containers": [{"name": "c", "resources": {
                "requests": {"cpu": "250m", "memory": "32Mi"},
                "limits": {"cpu": "500m", "memory": "64Mi"}}}]},
        }));
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let r = resources(&pod, container);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!((r.cpu_quota, r.cpu_period), (50_000, 100_000));
        assert_eq!(r.memory_limit_in_bytes, 64 * 1024 * 1024);
        assert!((2..=999).contains(&r.oom_score_adj));
    }

    #[test]
    fn best_effort_containers_get_minimal_shares_and_no_quota() {
        let pod = pod(serde_json::json!({"spec": {"containers": [{"name": "c"}]}}));
        let r = resources(&pod, &pod.spec.as_ref().expect("spec").containers[0]);
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
            (2, 0, 0)
        );
        assert_eq!(r.oom_score_adj, 1000);
    }

    #[test]
    fn run_as_non_root_refuses_a_root_image() {
        let pod = pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "u"},
            "spec": {"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "c"}]},
        }));
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let root = v1::Image {
            uid: Some(v1::Int64Value { value: 0 }),
            ..Default::default()
        };
        let error = security_context(&pod, container, &root).expect_err("refused");
        assert!(
            error.to_string().contains("image will run as root"),
            "{error}"
        );
        let mut as_user = container.clone();
        as_user.security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
            run_as_user: Some(1000),
            ..Default::default()
        });
        let security = security_context(&pod, &as_user, &root).expect("allowed");
        assert_eq!(security.run_as_user.map(|u| u.value), Some(1000));
    }

    #[test]
    fn the_log_tail_joins_partial_lines() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("0.log");
        std::fs::write(
            &log,
            "2024-01-01T00:00:00Z stdout P hel\n2024-01-01T00:00:00Z stdout F lo\n2024-01-01T00:00:01Z stderr F boom\n",
        )
        .expect("write");
        assert_eq!(log_tail(&log, 80, 2048), "hello\nboom\n");
        assert_eq!(log_tail(&log, 1, 2048), "boom\n");
    }
}
