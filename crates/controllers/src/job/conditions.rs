//! Pure decisions of the Job controller: conditions, pod failure policy, backoff.

use k8s_openapi::api::batch::v1::{Job, JobCondition, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

/// Reason and message of the Failed condition after too many failures.
pub(crate) const BACKOFF_LIMIT_EXCEEDED: (&str, &str) = (
    "BackoffLimitExceeded",
    "Job has reached the specified backoff limit",
);
/// Reason and message of the Failed condition after activeDeadlineSeconds.
pub(crate) const DEADLINE_EXCEEDED: (&str, &str) = (
    "DeadlineExceeded",
    "Job was active longer than specified deadline",
);
/// Reason and message of SuccessCriteriaMet and Complete.
pub(crate) const COMPLETIONS_REACHED: (&str, &str) = (
    "CompletionsReached",
    "Reached expected number of succeeded pods",
);

/// The condition of `type_` that is True.
pub(crate) fn has_true(conds: &[JobCondition], type_: &str) -> bool {
    find(conds, type_).is_some_and(|c| c.status == "True")
}

/// The condition of `type_`.
pub(crate) fn find<'a>(conds: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// Sets a condition; the transition time moves only when the status changes.
/// Returns true when anything changed.
pub(crate) fn set(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> bool {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
        {
            return false;
        }
        if c.status != status {
            c.last_transition_time = Some(Time(now));
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(Time(now));
        return true;
    }
    conds.push(JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
    true
}

/// What the pod failure policy says about a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FailureVerdict {
    /// Count toward backoffLimit (default, or a `Count` rule).
    Count,
    /// Do not count (an `Ignore` rule).
    Ignore,
    /// Fail the whole Job with this message (a `FailJob` rule).
    FailJob(String),
    /// Fail the pod's index for good (a `FailIndex` rule; backoffLimitPerIndex).
    FailIndex,
}

/// Applies `spec.podFailurePolicy` to a Failed pod (`matchPodFailurePolicy`).
pub(crate) fn failure_verdict(job: &Job, pod: &Pod) -> FailureVerdict {
    let Some(policy) = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.as_ref())
    else {
        return FailureVerdict::Count;
    };
    for (i, rule) in policy.rules.iter().enumerate() {
        if let Some(what) = rule_matches(rule, pod) {
            return match rule.action.as_str() {
                "Ignore" => FailureVerdict::Ignore,
                "FailJob" => {
                    FailureVerdict::FailJob(format!("{what} matching FailJob rule at index {i}"))
                }
                "FailIndex" => FailureVerdict::FailIndex,
                _ => FailureVerdict::Count,
            };
        }
    }
    FailureVerdict::Count
}

fn rule_matches(rule: &PodFailurePolicyRule, pod: &Pod) -> Option<String> {
    let pod_name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    let status = pod.status.as_ref()?;
    if let Some(req) = &rule.on_exit_codes {
        let statuses = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for cs in statuses {
            if req.container_name.as_ref().is_some_and(|n| *n != cs.name) {
                continue;
            }
            let Some(code) = cs
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code)
            else {
                continue;
            };
            if code == 0 {
                continue;
            }
            let listed = req.values.contains(&code);
            let hit = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            if hit {
                return Some(format!(
                    "Container {} for pod {pod_name} failed with exit code {code}",
                    cs.name
                ));
            }
        }
    }
    for p in rule.on_pod_conditions.iter().flatten() {
        let want = p.status.as_str();
        if status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == p.type_ && c.status == want)
        {
            return Some(format!("Pod {pod_name} has condition {}", p.type_));
        }
    }
    None
}

/// Delay before the next pod after `failures` consecutive failures: 10 s doubling,
/// at most 6 minutes (the Job controller's pod backoff).
pub(crate) fn backoff_delay(failures: i32) -> std::time::Duration {
    if failures <= 0 {
        return std::time::Duration::ZERO;
    }
    let exp = (failures - 1).min(6) as u32;
    std::time::Duration::from_secs((10u64 << exp).min(360))
}

/// Parses `completedIndexes` ("1,3-5") into a sorted list.
pub(crate) fn parse_indexes(s: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<i32>().ok()),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Formats indexes as Kubernetes does: sorted, ranges of 3+ as `a-b`... (Kubernetes
/// writes any run of consecutive numbers as a range, e.g. "1,3-5").
pub(crate) fn format_indexes(indexes: &[i32]) -> String {
    let mut v = indexes.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn completed_indexes_use_ranges_like_kubernetes() {
        assert_eq!(format_indexes(&[5, 1, 3, 4]), "1,3-5");
        assert_eq!(format_indexes(&[0, 1]), "0-1");
        assert_eq!(parse_indexes("1,3-5"), vec![1, 3, 4, 5]);
        assert_eq!(parse_indexes(""), Vec::<i32>::new());
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        assert_eq!(backoff_delay(0).as_secs(), 0);
        assert_eq!(backoff_delay(1).as_secs(), 10);
        assert_eq!(backoff_delay(3).as_secs(), 40);
        assert_eq!(backoff_delay(20).as_secs(), 360);
    }

    fn failed_pod(code: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code}}}]}
        }))
        .expect("pod")
    }

    #[test]
    fn pod_failure_policy_picks_the_first_matching_rule() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "spec": {"template": {}, "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
                {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            ]}}
        }))
        .expect("job");
        assert_eq!(
            failure_verdict(&job, &failed_pod(3)),
            FailureVerdict::Ignore
        );
        assert_eq!(failure_verdict(&job, &failed_pod(1)), FailureVerdict::Count);
        assert_eq!(
            failure_verdict(&job, &failed_pod(42)),
            FailureVerdict::FailJob(
                "Container main for pod default/p failed with exit code 42 matching FailJob rule at index 1".into()
            )
        );
    }
}
