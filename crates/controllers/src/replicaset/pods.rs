//! Pod facts the replica controllers decide on (Kubernetes' `podutil` and
//! `controller_utils`): activeness, readiness, availability, the order in which
//! surplus pods are deleted, and pods made from a template.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The owner reference that marks `meta`'s managing controller.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The phase, `""` when unset.
pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Not terminal (Succeeded/Failed) and not being deleted (`controller.IsPodActive`).
pub(crate) fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod's Ready condition last turned True, if it is True now.
pub(crate) fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (c.status == "True").then(|| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Whether the pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (`podutil.IsPodAvailable`).
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(t)) => t + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds)) < now,
    }
}

/// For a ready but not yet available pod: how long until it becomes available.
pub(crate) fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<std::time::Duration> {
    if min_ready_seconds <= 0 || is_available(pod, min_ready_seconds, now) {
        return None;
    }
    let since = ready_since(pod)??;
    let at = since + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds));
    let left = at.duration_since(now);
    Some(std::time::Duration::from_millis(
        left.as_millis().max(0) as u64 + 1000,
    ))
}

/// The name prefix of pods a controller named `name` creates (`getPodsPrefix`).
pub(crate) fn name_prefix(name: &str) -> String {
    let prefix = format!("{name}-");
    // Validated with the trailing dash masked, as `ValidatePodName(prefix, true)` does.
    if api::selector::is_dns1123_subdomain(&format!("{name}a")).is_empty() {
        prefix
    } else {
        name.to_string()
    }
}

/// A pod from `template` owned by `owner` (`controller.GetPodFromTemplate`).
pub(crate) fn from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner_name: &str,
    owner: OwnerReference,
) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(name_prefix(owner_name)),
            namespace: Some(namespace.to_string()),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// `afterOrZero`: a missing time sorts first, then the later time.
fn after_or_zero(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Less,
        (_, None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// Compares ages on a logarithmic scale (`LogarithmicScaleDown`): pods whose ages are
/// within a power of two of each other count as equally old; ties fall to the UID.
fn log_age(
    a: Option<Timestamp>,
    b: Option<Timestamp>,
    now: Timestamp,
    ua: &str,
    ub: &str,
) -> Ordering {
    let (Some(a), Some(b)) = (a, b) else {
        return after_or_zero(a, b);
    };
    if a == b {
        return Ordering::Equal;
    }
    let rank = |t: Timestamp| {
        let d = now.duration_since(t).as_nanos();
        if d > 0 { (d as f64).log2() as i64 } else { -1 }
    };
    match rank(a).cmp(&rank(b)) {
        Ordering::Equal => ua.cmp(ub),
        o => o,
    }
}

/// Sorts `pods` so the ones to delete first come first (`ActivePodsWithRanks`):
/// unscheduled before scheduled, Pending < Unknown < Running, not ready before
/// ready, lower deletion cost first, more related pods on the same node first,
/// ready for a shorter time first, more restarts first, newer first.
pub(crate) fn sort_for_deletion(pods: &mut [&Pod], related: &[&Pod], now: Timestamp) {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related {
        if is_active(p) {
            *on_node.entry(node_name(p)).or_default() += 1;
        }
    }
    let rank = |p: &Pod| on_node.get(node_name(p)).copied().unwrap_or(0);
    pods.sort_by(|a, b| {
        let (na, nb) = (node_name(a), node_name(b));
        if na != nb && (na.is_empty() || nb.is_empty()) {
            return if na.is_empty() {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let o = phase_ordinal(a).cmp(&phase_ordinal(b));
        if o != Ordering::Equal {
            return o;
        }
        let (ra, rb) = (is_ready(a), is_ready(b));
        if ra != rb {
            return if ra {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let o = deletion_cost(a).cmp(&deletion_cost(b));
        if o != Ordering::Equal {
            return o;
        }
        let o = rank(b).cmp(&rank(a));
        if o != Ordering::Equal {
            return o;
        }
        let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
        if ra && rb {
            let (ta, tb) = (ready_since(a).flatten(), ready_since(b).flatten());
            if ta != tb {
                let o = log_age(ta, tb, now, &uid(a), &uid(b));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
        let o = max_restarts(b).cmp(&max_restarts(a));
        if o != Ordering::Equal {
            return o;
        }
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if created(a) != created(b) {
            return log_age(created(a), created(b), now, &uid(a), &uid(b));
        }
        Ordering::Equal
    });
}

fn node_name(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// The labels of `pod`, empty when it has none.
pub(crate) fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": name, "creationTimestamp": created},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase, "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" },
                 "lastTransitionTime": "2025-01-01T00:00:00Z"}]}
        }))
        .expect("pod")
    }

    #[test]
    fn unscheduled_pending_and_unready_pods_are_deleted_first() {
        let now: Timestamp = "2025-01-02T00:00:00Z".parse().expect("ts");
        let running = pod("running", "n1", "Running", true, "2025-01-01T00:00:00Z");
        let unready = pod("unready", "n1", "Running", false, "2025-01-01T00:00:00Z");
        let pending = pod("pending", "n1", "Pending", false, "2025-01-01T00:00:00Z");
        let unscheduled = pod("unscheduled", "", "Pending", false, "2025-01-01T00:00:00Z");
        let mut pods = vec![&running, &unready, &pending, &unscheduled];
        sort_for_deletion(&mut pods, &[], now);
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["unscheduled", "pending", "unready", "running"]);
    }

    #[test]
    fn newer_pods_are_deleted_before_much_older_ones() {
        let now: Timestamp = "2025-01-02T00:00:00Z".parse().expect("ts");
        let old = pod("old", "n1", "Running", false, "2024-01-01T00:00:00Z");
        let young = pod("young", "n1", "Running", false, "2025-01-01T23:59:00Z");
        let mut pods = vec![&old, &young];
        sort_for_deletion(&mut pods, &[], now);
        assert_eq!(pods[0].metadata.name.as_deref(), Some("young"));
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("p", "n1", "Running", true, "2025-01-01T00:00:00Z");
        let at = |s: &str| s.parse::<Timestamp>().expect("ts");
        assert!(is_available(&p, 0, at("2025-01-01T00:00:00Z")));
        assert!(!is_available(&p, 10, at("2025-01-01T00:00:05Z")));
        assert!(is_available(&p, 10, at("2025-01-01T00:00:11Z")));
        assert!(until_available(&p, 10, at("2025-01-01T00:00:05Z")).is_some());
    }
}
