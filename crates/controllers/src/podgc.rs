//! The podgc controller (Kubernetes' `pkg/controller/podgc/gc_controller.go`), every
//! [`PERIOD`]: deletes terminated pods beyond `terminated_pod_gc_threshold` (oldest
//! first), pods bound to nodes that no longer exist, and terminating pods that were
//! never scheduled. A node counts as gone after [`QUARANTINE`]. Orphaned and
//! unscheduled pods are deleted with grace 0: no node agent will ever finish them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Preconditions};

use crate::{Context, Error};

/// How often pods are collected.
const PERIOD: Duration = Duration::from_secs(10);
/// How long a node must be missing before its pods count as orphaned (as
/// Kubernetes' `quarantineTime`), so a node being re-registered keeps its pods.
const QUARANTINE: Duration = Duration::from_secs(40);

/// Why a pod is collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// Too many terminated pods.
    Terminated,
    /// Bound to a node that does not exist.
    Orphaned,
    /// Being deleted and never scheduled.
    UnscheduledTerminating,
}

fn is_terminated(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn node_name(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// The pods to collect and why, given the pod cache and the names of existing nodes.
/// Orphans still need confirming against the API (the node cache may lag).
fn collect<'a>(
    pods: &'a [Arc<Pod>],
    nodes: &HashSet<String>,
    threshold: usize,
) -> Vec<(&'a Pod, Reason)> {
    let mut out: Vec<(&Pod, Reason)> = Vec::new();
    if threshold > 0 {
        let mut terminated: Vec<&Pod> = pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| is_terminated(p) && p.metadata.deletion_timestamp.is_none())
            .collect();
        if terminated.len() > threshold {
            terminated.sort_by(|a, b| {
                a.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
            });
            let excess = terminated.len() - threshold;
            out.extend(
                terminated
                    .into_iter()
                    .take(excess)
                    .map(|p| (p, Reason::Terminated)),
            );
        }
    }
    for p in pods {
        if out.iter().any(|(o, _)| std::ptr::eq(*o, p.as_ref())) {
            continue;
        }
        match node_name(p) {
            Some(n) if !nodes.contains(n) => out.push((p, Reason::Orphaned)),
            None if p.metadata.deletion_timestamp.is_some() => {
                out.push((p, Reason::UnscheduledTerminating));
            }
            _ => {}
        }
    }
    out
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let pods = ctx.informers.get::<Pod>().await.store();
    let nodes = ctx.informers.get::<Node>().await.store();
    let mut missing_since: HashMap<String, Instant> = HashMap::new();
    loop {
        let names: HashSet<String> = nodes
            .state()
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let all = pods.state();
        let now = Instant::now();
        let wanted = collect(&all, &names, ctx.config.terminated_pod_gc_threshold);
        let missing: HashSet<&str> = wanted
            .iter()
            .filter(|(_, r)| *r == Reason::Orphaned)
            .filter_map(|(p, _)| node_name(p))
            .collect();
        missing_since.retain(|n, _| missing.contains(n.as_str()));
        for n in missing {
            missing_since.entry(n.to_string()).or_insert(now);
        }
        for (pod, reason) in wanted {
            if reason == Reason::Orphaned
                && node_name(pod)
                    .and_then(|n| missing_since.get(n))
                    .is_some_and(|since| now.duration_since(*since) < QUARANTINE)
            {
                continue;
            }
            if let Err(e) = delete(&ctx, pod, reason).await {
                tracing::debug!(error = %e, "pod garbage collection failed");
            }
        }
        tokio::time::sleep(PERIOD).await;
    }
}

#[tracing::instrument(skip_all, fields(object = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default()), reason = ?reason))]
async fn delete(ctx: &Context, pod: &Pod, reason: Reason) -> Result<(), Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    if reason == Reason::Orphaned {
        let node = node_name(pod).unwrap_or_default();
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        if nodes
            .get_opt(node)
            .await
            .map_err(|e| Error::api("checking node", e))?
            .is_some()
        {
            return Ok(());
        }
    }
    let dp = DeleteParams {
        grace_period_seconds: (reason != Reason::Terminated).then_some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    tracing::debug!("deleting pod");
    match Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .delete(name, &dp)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(Error::api("deleting pod", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, phase: &str, created: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": phase}
            }))
            .expect("pod"),
        )
    }

    #[test]
    fn oldest_terminated_pods_beyond_the_threshold_go_first() {
        let nodes = HashSet::from(["n1".to_string()]);
        let pods = vec![
            pod("new", Some("n1"), "Succeeded", "2024-01-02T00:00:00Z"),
            pod("old", Some("n1"), "Failed", "2024-01-01T00:00:00Z"),
            pod("running", Some("n1"), "Running", "2023-01-01T00:00:00Z"),
        ];
        let out = collect(&pods, &nodes, 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.metadata.name.as_deref(), Some("old"));
        assert_eq!(out[0].1, Reason::Terminated);
    }

    #[test]
    fn pods_on_missing_nodes_are_orphans() {
        let pods = vec![pod("a", Some("gone"), "Running", "2024-01-01T00:00:00Z")];
        let out = collect(&pods, &HashSet::new(), 10);
        assert_eq!(out[0].1, Reason::Orphaned);
        let pending = vec![pod("b", None, "Pending", "2024-01-01T00:00:00Z")];
        assert!(collect(&pending, &HashSet::new(), 10).is_empty());
    }
}
