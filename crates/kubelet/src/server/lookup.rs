//! Finding a pod's sandbox and containers in the runtime by the kubelet's CRI labels.

use std::collections::HashMap;

use cri::{Rpc, v1};

use super::Failure;
use crate::labels;

/// The pod's newest sandbox (a ready one first), or 404 when the runtime has none.
pub(crate) async fn sandbox(
    runtime: &cri::Runtime,
    namespace: &str,
    pod: &str,
) -> Result<v1::PodSandbox, Failure> {
    let selector = HashMap::from([
        (labels::POD_NAMESPACE.to_owned(), namespace.to_owned()),
        (labels::POD_NAME.to_owned(), pod.to_owned()),
    ]);
    let mut sandboxes = runtime.list_sandboxes(selector).await?;
    sandboxes.sort_by_key(|s| {
        (
            s.state == v1::PodSandboxState::SandboxReady as i32,
            s.created_at,
        )
    });
    sandboxes.pop().ok_or_else(|| {
        Failure::not_found(format!(
            "pod \"{pod}\" in namespace \"{namespace}\" not found"
        ))
    })
}

/// The instances of container `name` of the pod, newest first. Only the containers
/// of the pod's newest incarnation count (by its UID), so a pod deleted and created
/// again under the same name does not show its predecessor's containers.
pub(crate) async fn containers(
    runtime: &cri::Runtime,
    namespace: &str,
    pod: &str,
    name: &str,
) -> Result<Vec<v1::Container>, Failure> {
    let mut selector = HashMap::from([
        (labels::POD_NAMESPACE.to_owned(), namespace.to_owned()),
        (labels::POD_NAME.to_owned(), pod.to_owned()),
        (labels::CONTAINER_NAME.to_owned(), name.to_owned()),
    ]);
    let uid = sandbox(runtime, namespace, pod)
        .await?
        .labels
        .get(labels::POD_UID)
        .cloned();
    if let Some(uid) = uid {
        selector.insert(labels::POD_UID.to_owned(), uid);
    }
    let response = runtime
        .runtime()
        .list_containers(v1::ListContainersRequest {
            filter: Some(v1::ContainerFilter {
                label_selector: selector,
                ..Default::default()
            }),
        })
        .await
        .rpc("ListContainers")?;
    let mut found = response.containers;
    found.sort_by_key(|c| std::cmp::Reverse((restart_count(c), c.created_at)));
    Ok(found)
}

/// The container's restart count from its annotation (0 when absent).
fn restart_count(c: &v1::Container) -> u32 {
    c.annotations
        .get(labels::RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The current instance of container `name` (the newest), for exec and attach,
/// which need it running.
pub(crate) async fn running_container(
    runtime: &cri::Runtime,
    namespace: &str,
    pod: &str,
    name: &str,
) -> Result<v1::Container, Failure> {
    let newest = containers(runtime, namespace, pod, name)
        .await?
        .into_iter()
        .next();
    match newest {
        Some(c) if c.state == v1::ContainerState::ContainerRunning as i32 => Ok(c),
        Some(_) => Err(Failure::bad_request(format!(
            "container {name} is not running in pod {pod}"
        ))),
        None => Err(Failure::not_found(format!(
            "container \"{name}\" in pod \"{pod}\" not found"
        ))),
    }
}

/// The container's status (log path, state).
pub(crate) async fn status(
    runtime: &cri::Runtime,
    container_id: &str,
) -> Result<v1::ContainerStatus, Failure> {
    runtime
        .runtime()
        .container_status(v1::ContainerStatusRequest {
            container_id: container_id.to_owned(),
            verbose: false,
        })
        .await
        .rpc("ContainerStatus")?
        .status
        .ok_or_else(|| Failure::internal(format!("container {container_id} has no status")))
}
