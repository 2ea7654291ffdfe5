//! Indexed Jobs' per-index rules: `backoffLimitPerIndex` (failures counted per index
//! through the `job-index-failure-count` annotation each replacement pod carries,
//! `maxFailedIndexes`, the `FailIndex` pod failure policy action) and `successPolicy`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::conditions::{FailureVerdict, failure_verdict, parse_indexes};
use super::pod_state;
use super::pods::completion_index;

/// Failures of the index so far, on the pod that replaces a failed one.
pub(crate) const FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// Ignored failures of the index so far (pod failure policy `Ignore`).
pub(crate) const IGNORED_FAILURE_COUNT: &str =
    "batch.kubernetes.io/job-index-ignored-failure-count";

/// Reason and message of FailureTarget/Failed when indexes failed for good.
pub(crate) const FAILED_INDEXES: (&str, &str) = ("FailedIndexes", "Job has failed indexes");
/// Reason and message when more indexes failed than `maxFailedIndexes`.
pub(crate) const MAX_FAILED_INDEXES: (&str, &str) = (
    "MaxFailedIndexesExceeded",
    "Job has exceeded the specified maximal number of failed indexes",
);
/// Reason of SuccessCriteriaMet and Complete when a success policy rule is met.
pub(crate) const SUCCESS_POLICY: &str = "SuccessPolicy";

/// The Job's `backoffLimitPerIndex` (Indexed Jobs only).
pub(crate) fn limit_per_index(job: &Job) -> Option<i32> {
    let spec = job.spec.as_ref()?;
    if spec.completion_mode.as_deref() != Some("Indexed") {
        return None;
    }
    spec.backoff_limit_per_index
}

fn annotation(pod: &Pod, key: &str) -> i32 {
    pod.annotations()
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The failures of a failed pod's index counting this one (`Ignore`d ones do not
/// count).
pub(crate) fn failures_with(pod: &Pod, verdict: &FailureVerdict) -> i32 {
    let before = annotation(pod, FAILURE_COUNT);
    match verdict {
        FailureVerdict::Ignore => before,
        _ => before + 1,
    }
}

/// What an index's failed pods say: failures so far and ignored failures, plus when
/// the newest failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IndexFailures {
    pub(crate) failures: i32,
    pub(crate) ignored: i32,
    pub(crate) last: Option<jiff::Timestamp>,
}

/// Per index, the failures recorded by its failed (or failing) pods.
pub(crate) fn failures_by_index<'a>(
    job: &Job,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> BTreeMap<i32, IndexFailures> {
    let mut out: BTreeMap<i32, IndexFailures> = BTreeMap::new();
    for pod in pods {
        let failed = pod_state::phase(pod) == "Failed"
            || (pod_state::is_terminating(pod) && !pod_state::is_finished(pod));
        let Some(index) = completion_index(pod).filter(|_| failed) else {
            continue;
        };
        let verdict = if pod_state::phase(pod) == "Failed" {
            failure_verdict(job, pod)
        } else {
            FailureVerdict::Count
        };
        let entry = out.entry(index).or_default();
        entry.failures = entry.failures.max(failures_with(pod, &verdict));
        let ignored =
            annotation(pod, IGNORED_FAILURE_COUNT) + i32::from(verdict == FailureVerdict::Ignore);
        entry.ignored = entry.ignored.max(ignored);
        let at = finished_at(pod);
        if at > entry.last {
            entry.last = at;
        }
    }
    out
}

/// When a pod's last container terminated.
fn finished_at(pod: &Pod) -> Option<jiff::Timestamp> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
}

/// The index of the first `successPolicy` rule the succeeded indexes meet.
pub(crate) fn success_rule_met(job: &Job, completed: &[i32]) -> Option<usize> {
    let spec = job.spec.as_ref()?;
    if spec.completion_mode.as_deref() != Some("Indexed") {
        return None;
    }
    let policy = spec.success_policy.as_ref()?;
    policy.rules.iter().position(|rule| {
        let within: Vec<i32> = match &rule.succeeded_indexes {
            Some(listed) => {
                let listed = parse_indexes(listed);
                let done = completed.iter().filter(|i| listed.contains(i)).count();
                if rule.succeeded_count.is_none() && done < listed.len() {
                    return false;
                }
                completed
                    .iter()
                    .copied()
                    .filter(|i| listed.contains(i))
                    .collect()
            }
            None => completed.to_vec(),
        };
        rule.succeeded_count
            .is_none_or(|want| within.len() as i64 >= i64::from(want))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(spec: serde_json::Value) -> Job {
        serde_json::from_value(
            json!({"metadata": {"name": "j", "namespace": "default"}, "spec": spec}),
        )
        .expect("job")
    }

    fn failed_pod(index: i32, count: i32, exit: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("p{index}-{count}"), "namespace": "default",
                "annotations": {"batch.kubernetes.io/job-completion-index": index.to_string(),
                                FAILURE_COUNT: count.to_string()}},
            "status": {"phase": "Failed", "containerStatuses": [{
                "name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit, "finishedAt": "2026-01-01T00:00:00Z"}}}]}
        }))
        .expect("pod")
    }

    #[test]
    fn failures_are_counted_per_index_from_the_replacement_annotation() {
        let j = job(
            json!({"completionMode": "Indexed", "completions": 3, "backoffLimitPerIndex": 1,
            "template": {},
            "podFailurePolicy": {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]}}),
        );
        let pods = [
            failed_pod(0, 0, 1),
            failed_pod(0, 1, 1),
            failed_pod(2, 0, 7),
        ];
        let by = failures_by_index(&j, pods.iter());
        assert_eq!(by[&0].failures, 2, "the second failure of index 0");
        assert_eq!(by[&2].failures, 0, "an ignored failure does not count");
        assert_eq!(by[&2].ignored, 1);
        assert!(!by.contains_key(&1));
        assert_eq!(limit_per_index(&j), Some(1));
    }

    #[test]
    fn success_policy_rules_match_like_kubernetes() {
        let j = job(
            json!({"completionMode": "Indexed", "completions": 5, "template": {},
            "successPolicy": {"rules": [
                {"succeededIndexes": "0,2-3"},
                {"succeededCount": 4},
                {"succeededIndexes": "1-4", "succeededCount": 2}]}}),
        );
        assert_eq!(success_rule_met(&j, &[0, 2]), None);
        assert_eq!(success_rule_met(&j, &[0, 2, 3]), Some(0));
        assert_eq!(success_rule_met(&j, &[1, 4]), Some(2));
        assert_eq!(success_rule_met(&j, &[0, 1]), None);
        let non_indexed = job(json!({"completions": 5, "template": {},
            "successPolicy": {"rules": [{"succeededCount": 1}]}}));
        assert_eq!(success_rule_met(&non_indexed, &[0]), None);
    }
}
