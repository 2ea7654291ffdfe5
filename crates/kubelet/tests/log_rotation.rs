//! Container logs that outgrow their limit are rotated as the kubelet rotates them:
//! the file moves aside, containerd reopens the original path and keeps writing to
//! it, and only the newest rotated files are kept.

mod support_node_api;

use std::path::PathBuf;
use std::time::Duration;

use cri::{Rpc as _, v1};
use kubelet::logs::{LogRotation, rotate};
use support_node_api::{Harness, require_preconditions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_log_is_rotated_reopened_and_pruned() {
    require_preconditions("a_growing_log_is_rotated_reopened_and_pruned");
    let mut h = Harness::start().await;
    let pod = h.run_pod("default", "chatty").await;
    // About 100 KiB of log per 0.2 s.
    let id = h
        .run_container(
            &pod,
            "app",
            0,
            &[
                "sh",
                "-c",
                "while true; do yes 0123456789abcdef | head -c 100000; sleep 0.2; done",
            ],
        )
        .await;
    let log = PathBuf::from(
        h.runtime()
            .runtime()
            .container_status(v1::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .rpc("ContainerStatus")
            .expect("status")
            .status
            .expect("status")
            .log_path,
    );
    let policy = LogRotation {
        max_size: 64 << 10,
        max_files: 3,
    };
    let mut rotations = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rotations += rotate(h.runtime(), policy).await.expect("rotation").len();
    }
    assert!(
        rotations >= 3,
        "the log was rotated each time it outgrew 64 KiB ({rotations})"
    );
    let dir = log.parent().expect("log dir").to_path_buf();
    let name = log
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_string();
    let rotated: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("log dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}.")))
        })
        .collect();
    assert_eq!(
        rotated.len(),
        2,
        "max_files 3 keeps 2 rotated files: {rotated:?}"
    );
    // containerd writes to the reopened file again.
    let before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = std::fs::metadata(&log)
        .expect("the current log exists")
        .len();
    assert!(
        after > before,
        "the reopened log grows ({before} -> {after})"
    );
    let text = std::fs::read_to_string(&rotated[0]).expect("a rotated file");
    assert!(
        text.lines().next().is_some_and(|l| l.contains(" stdout ")),
        "rotated files keep the CRI format"
    );
    h.teardown().await;
}
