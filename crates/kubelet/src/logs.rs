//! Container log rotation, the kubelet's container log manager: containerd only
//! appends to a container's CRI log file, so the agent renames a file that outgrew
//! its limit to `<file>.<UTC timestamp>`, asks containerd to reopen the original path
//! (`ReopenContainerLog`), and keeps at most `max_files - 1` rotated files beside it.
//! The node API follows a rotated file to its new one (`kubectl logs -f`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cri::{Rpc as _, v1};
use tokio::sync::watch;

use crate::Error;

/// How often running containers' logs are checked (the kubelet checks every 10 s).
const CHECK_EVERY: Duration = Duration::from_secs(10);

/// Limits of one container's logs (the kubelet's `containerLogMaxSize` and
/// `containerLogMaxFiles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    /// A log file bigger than this is rotated.
    pub max_size: u64,
    /// Files kept per container, the current one included (at least 2).
    pub max_files: usize,
}

impl Default for LogRotation {
    /// The kubelet's defaults: 10 MiB, 5 files.
    fn default() -> Self {
        Self {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// Rotates every running container's log that outgrew `policy.max_size`; returns
/// the files rotated away.
pub async fn rotate(runtime: &cri::Runtime, policy: LogRotation) -> Result<Vec<PathBuf>, Error> {
    let running = runtime
        .runtime()
        .list_containers(v1::ListContainersRequest {
            filter: Some(v1::ContainerFilter {
                state: Some(v1::ContainerStateValue {
                    state: v1::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .rpc("ListContainers")?
        .containers;
    let mut rotated = Vec::new();
    for c in running {
        let status = runtime
            .runtime()
            .container_status(v1::ContainerStatusRequest {
                container_id: c.id.clone(),
                verbose: false,
            })
            .await
            .rpc("ContainerStatus");
        let Some(path) = status
            .ok()
            .and_then(|s| s.status)
            .map(|s| PathBuf::from(s.log_path))
            .filter(|p| !p.as_os_str().is_empty())
        else {
            continue;
        };
        prune(&path, policy.max_files);
        let big = std::fs::metadata(&path).is_ok_and(|m| m.len() > policy.max_size);
        if !big {
            continue;
        }
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%d-%H%M%S%.6f")
            .to_string();
        let target = PathBuf::from(format!("{}.{stamp}", path.display()));
        std::fs::rename(&path, &target)
            .map_err(|e| Error::io(format!("rotating {}", path.display()), e))?;
        let reopened = runtime
            .runtime()
            .reopen_container_log(v1::ReopenContainerLogRequest {
                container_id: c.id.clone(),
            })
            .await
            .rpc("ReopenContainerLog");
        if let Err(e) = reopened {
            // As the kubelet: put the file back so the container keeps one log.
            let _ = std::fs::rename(&target, &path);
            tracing::warn!(container = %c.id, error = %e, "cannot reopen a rotated container log");
            continue;
        }
        prune(&path, policy.max_files);
        rotated.push(target);
    }
    Ok(rotated)
}

/// Removes the oldest rotated files of `log` beyond `max_files - 1`.
fn prune(log: &Path, max_files: usize) {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let prefix = format!("{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut old: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| e.path())
        .collect();
    // Timestamps sort as text: oldest first.
    old.sort();
    let keep = max_files.max(2) - 1;
    if old.len() > keep {
        for p in &old[..old.len() - keep] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Rotates logs every 10 s until `shutdown`.
pub(crate) async fn run(
    runtime: cri::Runtime,
    policy: LogRotation,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = crate::stopped(&mut shutdown) => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        if let Err(e) = rotate(&runtime, policy).await {
            tracing::debug!(error = %e, "container log rotation failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_rotated_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("0.log");
        std::fs::write(&log, "current").expect("write");
        for stamp in ["20261127-000001", "20261127-000003", "20261127-000002"] {
            std::fs::write(dir.path().join(format!("0.log.{stamp}")), stamp).expect("write");
        }
        std::fs::write(dir.path().join("1.log.20261127-000000"), "other").expect("write");
        prune(&log, 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string))
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "0.log",
                "0.log.20261127-000002",
                "0.log.20261127-000003",
                "1.log.20261127-000000"
            ]
        );
    }
}
