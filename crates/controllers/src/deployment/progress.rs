//! Deployment status and conditions (Kubernetes' `progress.go` and the status parts
//! of `sync.go`): counts summed over the ReplicaSets, the Available condition, the
//! Progressing condition with its deadline, and when to look again.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::util;

/// Progressing: a new ReplicaSet was created.
pub(crate) const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
/// Progressing: an existing ReplicaSet matches the template.
pub(crate) const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
/// Progressing: pods moved.
pub(crate) const RS_UPDATED: &str = "ReplicaSetUpdated";
/// Progressing: the rollout finished.
pub(crate) const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// Progressing=False: no progress within progressDeadlineSeconds.
pub(crate) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
/// Progressing=False: the new ReplicaSet could not be created.
pub(crate) const FAILED_RS_CREATE: &str = "FailedRSCreate";
/// Progressing=Unknown: paused.
pub(crate) const PAUSED: &str = "DeploymentPaused";
/// Progressing=Unknown: resumed.
pub(crate) const RESUMED: &str = "DeploymentResumed";

/// Now, at the precision the API stores.
pub(crate) fn now() -> Timestamp {
    let t = Timestamp::now();
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// A condition with both times set to now.
pub(crate) fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
) -> DeploymentCondition {
    let t = Some(Time(now()));
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: t.clone(),
        last_transition_time: t,
    }
}

/// The condition of `type_`.
pub(crate) fn get<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Sets `c`, unless one with the same status and reason is there; keeps the
/// transition time when only the reason changes (`SetDeploymentCondition`).
pub(crate) fn set(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get(status, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove(status, &c.type_);
    status.conditions.get_or_insert_with(Vec::new).push(c);
}

/// Removes the condition of `type_`.
pub(crate) fn remove(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            status.conditions = None;
        }
    }
}

fn nz(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// The deadline, unless it is "never" (`HasProgressDeadline`).
pub(crate) fn progress_deadline(d: &Deployment) -> Option<i32> {
    let s = d.spec.as_ref()?.progress_deadline_seconds.unwrap_or(600);
    (s != i32::MAX).then_some(s)
}

/// The status the ReplicaSets add up to (`calculateStatus`), with the Available
/// condition.
pub(crate) fn calculate(
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    d: &Deployment,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(|rs| util::rs_available(rs)).sum();
    let total: i32 = all.iter().map(|rs| util::rs_replicas(rs)).sum();
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nz(all.iter().map(|rs| util::rs_actual(rs)).sum()),
        updated_replicas: nz(new.map(util::rs_actual).unwrap_or(0)),
        ready_replicas: nz(all.iter().map(|rs| util::rs_ready(rs)).sum()),
        available_replicas: nz(available),
        unavailable_replicas: nz((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= util::replicas(d) - util::max_unavailable(d) {
        set(
            &mut status,
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            ),
        );
    } else {
        set(
            &mut status,
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            ),
        );
    }
    status
}

/// Every replica updated and available, and the spec observed (`DeploymentComplete`).
pub(crate) fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = util::replicas(d);
    s.updated_replicas.unwrap_or(0) == r
        && s.replicas.unwrap_or(0) == r
        && s.available_replicas.unwrap_or(0) == r
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Pods moved since the stored status (`DeploymentProgressing`).
fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let g = |o: Option<i32>| o.unwrap_or(0);
    let old_old = g(old.replicas) - g(old.updated_replicas);
    let new_old = g(new.replicas) - g(new.updated_replicas);
    g(new.updated_replicas) > g(old.updated_replicas)
        || new_old < old_old
        || g(new.ready_replicas) > g(old.ready_replicas)
        || g(new.available_replicas) > g(old.available_replicas)
}

/// No progress for longer than the deadline (`DeploymentTimedOut`).
fn timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = get(s, "Progressing") else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0 + jiff::SignedDuration::from_secs(i64::from(deadline)) < now),
    }
}

fn rs_name(new: Option<&ReplicaSet>) -> Option<String> {
    new.and_then(|rs| rs.metadata.name.clone())
}

/// The status after a rollout step (`syncRolloutStatus`): Progressing moves to
/// ReplicaSetUpdated, NewReplicaSetAvailable or ProgressDeadlineExceeded, and
/// ReplicaFailure mirrors the ReplicaSets'.
pub(crate) fn rollout_status(
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    d: &Deployment,
) -> DeploymentStatus {
    let mut s = calculate(all, new, d);
    if progress_deadline(d).is_none() {
        remove(&mut s, "Progressing");
    }
    let cur = get(&s, "Progressing").cloned();
    let is_complete = s.replicas == s.updated_replicas
        && cur
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    if progress_deadline(d).is_some() && !is_complete {
        let now = now();
        if complete(d, &s) {
            let msg = match rs_name(new) {
                Some(n) => format!("ReplicaSet \"{n}\" has successfully progressed."),
                None => "Deployment has successfully progressed.".into(),
            };
            set(
                &mut s,
                condition("Progressing", "True", NEW_RS_AVAILABLE, msg),
            );
        } else if progressing(d, &s) {
            let msg = match rs_name(new) {
                Some(n) => format!("ReplicaSet \"{n}\" is progressing."),
                None => "Deployment is progressing.".into(),
            };
            let mut c = condition("Progressing", "True", RS_UPDATED, msg);
            if let Some(cur) = &cur
                && cur.status == "True"
            {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            remove(&mut s, "Progressing");
            set(&mut s, c);
        } else if timed_out(d, &s, now) {
            let msg = match rs_name(new) {
                Some(n) => format!("ReplicaSet \"{n}\" has timed out progressing."),
                None => format!(
                    "Deployment \"{}\" has timed out progressing.",
                    d.metadata.name.as_deref().unwrap_or("")
                ),
            };
            set(&mut s, condition("Progressing", "False", TIMED_OUT, msg));
        }
    }
    let failure = all.iter().find_map(|rs| {
        rs.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "ReplicaFailure")
            .cloned()
    });
    match failure {
        Some(c) => set(
            &mut s,
            DeploymentCondition {
                type_: "ReplicaFailure".into(),
                status: c.status,
                reason: c.reason,
                message: c.message,
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time,
            },
        ),
        None => remove(&mut s, "ReplicaFailure"),
    }
    s
}

/// When to look again at a deployment whose rollout is under way, to notice the
/// deadline passing (`requeueStuckDeployment`).
pub(crate) fn recheck_after(d: &Deployment, s: &DeploymentStatus) -> Option<Duration> {
    let deadline = progress_deadline(d)?;
    let c = get(s, "Progressing")?;
    if complete(d, s) || c.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let from = c.last_update_time.as_ref()?.0;
    let at = from + jiff::SignedDuration::from_secs(i64::from(deadline));
    let left = at.duration_since(Timestamp::now());
    let secs = left.as_secs().max(0) as u64;
    Some(Duration::from_secs(secs + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_status_and_reason_keeps_the_condition_untouched() {
        let mut s = DeploymentStatus::default();
        let mut c = condition("Available", "True", "MinimumReplicasAvailable", "x".into());
        c.last_update_time = Some(Time("2020-01-01T00:00:00Z".parse().expect("ts")));
        set(&mut s, c.clone());
        set(
            &mut s,
            condition("Available", "True", "MinimumReplicasAvailable", "y".into()),
        );
        assert_eq!(get(&s, "Available"), Some(&c));
    }

    #[test]
    fn a_finished_rollout_reports_new_replica_set_available() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 1},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
        }))
        .expect("d");
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-abc"},
            "spec": {"replicas": 2, "selector": {}},
            "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2},
        }))
        .expect("rs");
        let s = rollout_status(&[&rs], Some(&rs), &d);
        let c = get(&s, "Progressing").expect("progressing");
        assert_eq!(c.reason.as_deref(), Some(NEW_RS_AVAILABLE));
        assert_eq!(
            c.message.as_deref(),
            Some("ReplicaSet \"web-abc\" has successfully progressed.")
        );
        assert_eq!(
            get(&s, "Available")
                .and_then(|c| c.message.clone())
                .as_deref(),
            Some("Deployment has minimum availability.")
        );
    }
}
