//! ImageLocality: nodes that already have the pod's images score higher, scaled
//! by how widely the image is spread (`node.status.images`).

use crate::cache::{Cache, NodeInfo};
use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, Status};
use crate::pod_info::PodInfo;

/// The plugin.
pub struct ImageLocality;

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// Per-cycle data: the summed image score of each node.
struct State {
    total_nodes: usize,
    images: Vec<Vec<(String, i64, usize)>>,
}

/// Image names a node may list for a container image (`nginx` ->
/// `nginx:latest`, `docker.io/library/nginx:latest`).
fn candidates(image: &str) -> Vec<String> {
    let last = image.rsplit('/').next().unwrap_or(image);
    let tagged = if last.contains(':') || image.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    };
    let first = tagged.split('/').next().unwrap_or_default();
    let has_registry = tagged.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut out = vec![tagged.clone()];
    if !has_registry {
        if tagged.contains('/') {
            out.push(format!("docker.io/{tagged}"));
        } else {
            out.push(format!("docker.io/library/{tagged}"));
        }
    }
    out
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cache: &Cache,
        _: &[&NodeInfo],
    ) -> Status {
        let Some(spec) = pod.pod.spec.as_ref() else {
            return Status::skip();
        };
        let images = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .map(|c| {
                candidates(c.image.as_deref().unwrap_or_default())
                    .into_iter()
                    .filter_map(|name| cache.image(&name).map(|(size, n)| (name, size, n)))
                    .collect()
            })
            .collect::<Vec<Vec<_>>>();
        if images.iter().all(Vec::is_empty) {
            // No node has any of the images: every node would score the minimum.
            return Status::skip();
        }
        state.write(
            "ImageLocality",
            State {
                total_nodes: cache.num_nodes(),
                images,
            },
        );
        Status::success()
    }

    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = state.read::<State>("ImageLocality") else {
            return 0;
        };
        if s.images.is_empty() || s.total_nodes == 0 {
            return 0;
        }
        let node_images = || {
            node.node
                .as_ref()
                .and_then(|n| n.status.as_ref())
                .and_then(|st| st.images.as_ref())
                .into_iter()
                .flatten()
                .flat_map(|i| i.names.iter().flatten())
        };
        let mut sum: i64 = 0;
        for container in &s.images {
            if let Some((_, size, n)) = container
                .iter()
                .find(|(name, _, _)| node_images().any(|have| have == name))
            {
                sum += (*size as f64 * (*n as f64 / s.total_nodes as f64)) as i64;
            }
        }
        let max = MAX_CONTAINER_THRESHOLD * s.images.len() as i64;
        let sum = sum.clamp(MIN_THRESHOLD, max);
        MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_image_names_are_completed_like_a_container_runtime_does() {
        assert_eq!(
            candidates("nginx"),
            vec!["nginx:latest", "docker.io/library/nginx:latest"]
        );
        assert_eq!(
            candidates("registry.k8s.io/pause:3.9"),
            vec!["registry.k8s.io/pause:3.9"]
        );
        assert_eq!(
            candidates("me/app:1"),
            vec!["me/app:1", "docker.io/me/app:1"]
        );
    }
}
