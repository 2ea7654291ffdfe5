//! What a controller reads from a pod: ownership, phase, readiness, termination.
//! Shared by the workload controllers (Job, StatefulSet, DaemonSet).

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::expectations::Seen;

/// The UID of the pod's controller (the ownerReference with `controller: true`).
/// Pods in `ns` whose controller owner has `uid`, from the pod cache.
pub(crate) fn owned_pods(
    pods: &kube::runtime::reflector::Store<Pod>,
    ns: &str,
    uid: &str,
) -> Vec<std::sync::Arc<Pod>> {
    pods.state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns) && controller_uid(p) == Some(uid))
        .collect()
}

pub(crate) fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// The pod's phase, `Pending` when unset.
pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Succeeded or Failed.
pub(crate) fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Has a deletionTimestamp.
pub(crate) fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Neither finished nor being deleted (`controller.IsPodActive`).
pub(crate) fn is_active(pod: &Pod) -> bool {
    !is_finished(pod) && !is_terminating(pod)
}

/// The pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// When the Ready condition last turned True.
pub(crate) fn ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// Ready for at least `min_ready_seconds` at `now` (`podutil.IsPodAvailable`).
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod)
        .is_some_and(|t| now.as_second() - t.as_second() >= i64::from(min_ready_seconds))
}

/// Sum of container restarts.
pub(crate) fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// How an expectation sees the pod named `name` among `pods`.
pub(crate) fn seen<'a>(pods: impl IntoIterator<Item = &'a Pod>, name: &str) -> Seen {
    Seen::of(pods.into_iter().find(|p| p.name_any() == name))
}

/// The node a pod runs on or is meant for: `spec.nodeName`, else the single node
/// named by a required node affinity `matchFields metadata.name` term.
pub(crate) fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = &spec.node_name {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_ref()?.iter().find_map(|r| {
            (r.key == "metadata.name" && r.operator == "In")
                .then(|| r.values.as_ref()?.first().cloned())
                .flatten()
        })
    })
}

/// Delete options for a pod the controller removes: pods not bound to a node are
/// removed at once (no node agent will confirm them), others get their grace period.
pub(crate) fn delete_params(pod: &Pod) -> kube::api::DeleteParams {
    let bound = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    if bound {
        kube::api::DeleteParams::default()
    } else {
        kube::api::DeleteParams::default().grace_period(0)
    }
}
