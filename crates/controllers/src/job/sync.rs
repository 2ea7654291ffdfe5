//! One sync of a Job: count finished pods, decide conditions, create or delete pods,
//! write status.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use events::EventType;
use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::conditions::{self as cond, FailureVerdict};
use super::indexes;
use super::pod_state::{self, is_active, is_finished, is_ready, is_terminating};
use super::pods::{completion_index, new_pod};
use super::{JobController, has_tracking_finalizer};
use crate::Error;

/// Resync period when nothing else is due.
const RESYNC: Duration = Duration::from_secs(300);

struct Counts {
    succeeded: BTreeSet<String>,
    failed: BTreeSet<String>,
}

pub(super) async fn sync(
    job: &Job,
    pods: &[Arc<Pod>],
    jc: &JobController,
    key: &str,
) -> Result<Action, Error> {
    let ns = job.namespace().unwrap_or_default();
    let uid = job.uid().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(jc.client.clone(), &ns);
    let now = jiff::Timestamp::now();
    let spec = job.spec.clone().unwrap_or_default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let mut job = job.clone();
    let mut status = job.status.clone().unwrap_or_default();
    let mut conds = status.conditions.clone().unwrap_or_default();
    let finished = cond::has_true(&conds, "Complete") || cond::has_true(&conds, "Failed");
    let suspended = spec.suspend == Some(true);
    let success_target = cond::has_true(&conds, "SuccessCriteriaMet");
    let unc = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut counts = Counts {
        succeeded: unc.succeeded.unwrap_or_default().into_iter().collect(),
        failed: unc.failed.unwrap_or_default().into_iter().collect(),
    };
    let mut completed = cond::parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
    let completions = spec.completions;
    let per_index = indexes::limit_per_index(&job);
    let mut failed_indexes = cond::parse_indexes(status.failed_indexes.as_deref().unwrap_or(""));
    // An index whose pod failed: failed for good past its limit (or by FailIndex).
    let mut fail_index = |pod: &Pod, verdict: &FailureVerdict| {
        if let (Some(limit), Some(i)) = (per_index, completion_index(pod))
            && (*verdict == FailureVerdict::FailIndex
                || indexes::failures_with(pod, verdict) > limit)
            && !failed_indexes.contains(&i)
        {
            failed_indexes.push(i);
        }
    };

    // 1. Record newly finished pods as uncounted before releasing them.
    let mut release: Vec<&Pod> = Vec::new();
    let mut new_uncounted = false;
    let mut new_failures = 0;
    for pod in pods.iter().map(|p| p.as_ref()) {
        let Some(puid) = pod.uid() else { continue };
        if !has_tracking_finalizer(pod) || jc.was_removed(&puid) {
            continue;
        }
        if counts.succeeded.contains(&puid) || counts.failed.contains(&puid) {
            release.push(pod);
            continue;
        }
        if !is_finished(pod) && !is_terminating(pod) {
            continue;
        }
        release.push(pod);
        if finished {
            continue;
        }
        match pod_state::phase(pod) {
            "Succeeded" => {
                if indexed
                    && let Some(i) = completion_index(pod)
                    && completions.is_some_and(|c| i >= 0 && i < c)
                {
                    completed.push(i);
                }
                counts.succeeded.insert(puid);
            }
            "Failed" => match cond::failure_verdict(&job, pod) {
                FailureVerdict::Ignore => continue,
                verdict @ (FailureVerdict::Count | FailureVerdict::FailIndex) => {
                    fail_index(pod, &verdict);
                    counts.failed.insert(puid);
                    new_failures += 1;
                }
                FailureVerdict::FailJob(msg) => {
                    counts.failed.insert(puid);
                    new_failures += 1;
                    if !cond::has_true(&conds, "FailureTarget") {
                        cond::set(
                            &mut conds,
                            "FailureTarget",
                            "True",
                            "PodFailurePolicy",
                            &msg,
                            now,
                        );
                    }
                }
            },
            // Terminating before finishing: a failure, unless the controller itself
            // removed it because the Job is suspended or has succeeded.
            _ if suspended || success_target => continue,
            _ => {
                fail_index(pod, &FailureVerdict::Count);
                counts.failed.insert(puid);
                new_failures += 1;
            }
        }
        new_uncounted = true;
    }
    if new_failures > 0 {
        jc.last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.clone(), std::time::Instant::now());
    }
    if new_uncounted {
        status.uncounted_terminated_pods = Some(uncounted(&counts));
        if indexed {
            status.completed_indexes = Some(cond::format_indexes(&completed));
        }
        if per_index.is_some() {
            status.failed_indexes = Some(cond::format_indexes(&failed_indexes));
        }
        status.conditions = Some(conds.clone());
        write_status(&api, &mut job, status.clone()).await?;
    }

    // 2. Release them.
    for pod in &release {
        jc.remove_finalizer(pod).await?;
    }

    // 3. Count what is released.
    let released = |u: &String| {
        pods.iter()
            .find(|p| p.uid().as_ref() == Some(u))
            .is_none_or(|p| !has_tracking_finalizer(p) || jc.was_removed(u))
    };
    let moved_s = counts.succeeded.iter().filter(|u| released(u)).count() as i32;
    let moved_f = counts.failed.iter().filter(|u| released(u)).count() as i32;
    counts.succeeded.retain(|u| !released(u));
    counts.failed.retain(|u| !released(u));
    let mut succeeded = status.succeeded.unwrap_or(0) + moved_s;
    if indexed {
        completed.sort_unstable();
        completed.dedup();
        succeeded = completed.len() as i32;
        status.completed_indexes = Some(cond::format_indexes(&completed));
    }
    status.succeeded = Some(succeeded);
    status.failed = Some(status.failed.unwrap_or(0) + moved_f);
    status.uncounted_terminated_pods = Some(uncounted(&counts));
    let succeeded_total = if indexed {
        succeeded
    } else {
        succeeded + counts.succeeded.len() as i32
    };
    let failed_total = status.failed.unwrap_or(0) + counts.failed.len() as i32;

    let mut active: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| is_active(p))
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| is_terminating(p) && !is_finished(p))
        .count() as i32;
    let all_counted = counts.succeeded.is_empty() && counts.failed.is_empty();
    let mut requeue = RESYNC;

    if finished {
        // Nothing left to do but keep the numbers right.
    } else {
        // 4. Decide whether the Job has failed or succeeded.
        let mut failure = cond::find(&conds, "FailureTarget")
            .filter(|c| c.status == "True")
            .map(|c| {
                (
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            });
        if failure.is_none() && !success_target {
            let on_failure_restarts: i32 = if spec
                .template
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.as_deref())
                == Some("OnFailure")
            {
                active.iter().map(|p| pod_state::restarts(p)).sum()
            } else {
                0
            };
            let deadline_left = deadline_left(&spec, &status, now);
            let all_indexes_done = completions.is_some_and(|c| {
                (0..c).all(|i| completed.contains(&i) || failed_indexes.contains(&i))
            });
            if per_index.is_some()
                && spec
                    .max_failed_indexes
                    .is_some_and(|m| failed_indexes.len() as i64 > i64::from(m))
            {
                failure = Some(pair(indexes::MAX_FAILED_INDEXES));
            } else if failed_total + on_failure_restarts
                > spec
                    .backoff_limit
                    .unwrap_or(if per_index.is_some() { i32::MAX } else { 6 })
            {
                failure = Some(pair(cond::BACKOFF_LIMIT_EXCEEDED));
            } else if per_index.is_some() && !failed_indexes.is_empty() && all_indexes_done {
                failure = Some(pair(indexes::FAILED_INDEXES));
            } else if deadline_left.is_some_and(|d| d.is_zero()) && !suspended {
                failure = Some(pair(cond::DEADLINE_EXCEEDED));
            } else if let Some(d) = deadline_left {
                requeue = requeue.min(d);
            }
            if let Some((r, m)) = &failure {
                cond::set(&mut conds, "FailureTarget", "True", r, m, now);
            }
        }
        let mut success = success_target;
        if failure.is_none() && !success {
            if let Some(rule) = indexes::success_rule_met(&job, &completed) {
                success = true;
                let message = format!("Matched rules at index {rule}");
                cond::set(
                    &mut conds,
                    "SuccessCriteriaMet",
                    "True",
                    indexes::SUCCESS_POLICY,
                    &message,
                    now,
                );
            } else {
                success = match completions {
                    Some(c) => succeeded_total >= c,
                    None => succeeded_total > 0 && active.is_empty(),
                };
                if success {
                    let (r, m) = cond::COMPLETIONS_REACHED;
                    cond::set(&mut conds, "SuccessCriteriaMet", "True", r, m, now);
                }
            }
        }
        if failure.is_some() || success {
            for pod in active.drain(..) {
                delete_pod(jc, &job, key, pod).await?;
            }
            if terminating == 0
                && all_counted
                && pods.iter().all(|p| !is_terminating(p) || is_finished(p))
            {
                if let Some((r, m)) = failure {
                    cond::set(&mut conds, "Failed", "True", &r, &m, now);
                    jc.event(&job, EventType::Warning, &r, m, None).await;
                } else {
                    // Complete says what SuccessCriteriaMet said.
                    let (r, m) = cond::find(&conds, "SuccessCriteriaMet")
                        .map(|c| {
                            (
                                c.reason.clone().unwrap_or_default(),
                                c.message.clone().unwrap_or_default(),
                            )
                        })
                        .unwrap_or_else(|| pair(cond::COMPLETIONS_REACHED));
                    cond::set(&mut conds, "Complete", "True", &r, &m, now);
                    status.completion_time = Some(Time(now));
                    jc.event(
                        &job,
                        EventType::Normal,
                        "Completed",
                        "Job completed".into(),
                        None,
                    )
                    .await;
                }
            }
        } else if suspended {
            for pod in active.drain(..) {
                delete_pod(jc, &job, key, pod).await?;
            }
            if !cond::has_true(&conds, "Suspended") {
                cond::set(
                    &mut conds,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    now,
                );
                jc.event(
                    &job,
                    EventType::Normal,
                    "Suspended",
                    "Job suspended".into(),
                    None,
                )
                .await;
            }
        } else {
            if cond::has_true(&conds, "Suspended") {
                cond::set(
                    &mut conds,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    now,
                );
                jc.event(
                    &job,
                    EventType::Normal,
                    "Resumed",
                    "Job resumed".into(),
                    None,
                )
                .await;
                status.start_time = Some(Time(now));
            }
            if status.start_time.is_none() {
                status.start_time = Some(Time(now));
                if let Some(d) = deadline_left(&spec, &status, now) {
                    requeue = requeue.min(d);
                }
            }
            // With backoffLimitPerIndex each index backs off on its own.
            let wait = match per_index {
                None => backoff_left(jc, &uid, failed_total),
                Some(_) => None,
            };
            if let Some(w) = wait {
                requeue = requeue.min(w);
            }
            let by_index = match per_index {
                Some(_) => indexes::failures_by_index(&job, pods.iter().map(|p| p.as_ref())),
                None => Default::default(),
            };
            let plan = Plan {
                completed: &completed,
                failed_indexes: &failed_indexes,
                by_index: &by_index,
                per_index: per_index.is_some(),
                succeeded: succeeded_total,
                in_backoff: wait.is_some(),
                now,
            };
            if let Some(w) = manage(jc, &job, key, &mut active, &plan).await? {
                requeue = requeue.min(w);
            }
        }
    }

    // 5. Write status.
    status.conditions = (!conds.is_empty()).then_some(conds);
    if per_index.is_some() {
        status.failed_indexes = Some(cond::format_indexes(&failed_indexes));
    }
    status.active = Some(active.len() as i32);
    status.ready = Some(active.iter().filter(|p| is_ready(p)).count() as i32);
    status.terminating = Some(terminating);
    if job.status.as_ref() != Some(&status) {
        write_status(&api, &mut job, status).await?;
    }
    Ok(Action::requeue(requeue))
}

fn pair((r, m): (&str, &str)) -> (String, String) {
    (r.to_string(), m.to_string())
}

fn uncounted(c: &Counts) -> UncountedTerminatedPods {
    UncountedTerminatedPods {
        succeeded: (!c.succeeded.is_empty()).then(|| c.succeeded.iter().cloned().collect()),
        failed: (!c.failed.is_empty()).then(|| c.failed.iter().cloned().collect()),
    }
}

/// Time left before activeDeadlineSeconds, if the Job has one and has started.
fn deadline_left(
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    status: &JobStatus,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let secs = spec.active_deadline_seconds?;
    let start = status.start_time.as_ref()?.0;
    let elapsed = now.as_millisecond() - start.as_millisecond();
    let left = secs.saturating_mul(1000) - elapsed;
    Some(Duration::from_millis(left.max(0) as u64))
}

/// Time left in the pod backoff after the last failure, if any.
fn backoff_left(jc: &JobController, uid: &str, failures: i32) -> Option<Duration> {
    let last = *jc
        .last_failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(uid)?;
    let delay = cond::backoff_delay(failures);
    delay.checked_sub(last.elapsed()).filter(|d| !d.is_zero())
}

async fn write_status(api: &Api<Job>, job: &mut Job, status: JobStatus) -> Result<(), Error> {
    let mut next = job.clone();
    next.status = Some(status);
    next.metadata.managed_fields = None;
    *job = api
        .replace_status(&job.name_any(), &PostParams::default(), &next)
        .await
        .map_err(|source| Error::Api {
            context: format!("updating status of job {}", job.name_any()),
            source,
        })?;
    Ok(())
}

/// What `manage` works from.
struct Plan<'a> {
    completed: &'a [i32],
    /// Indexes failed for good (backoffLimitPerIndex).
    failed_indexes: &'a [i32],
    /// Per index, its failures so far (backoffLimitPerIndex).
    by_index: &'a std::collections::BTreeMap<i32, indexes::IndexFailures>,
    /// The Job has backoffLimitPerIndex: its pods carry their index's failure counts.
    per_index: bool,
    succeeded: i32,
    in_backoff: bool,
    now: jiff::Timestamp,
}

/// Creates missing pods and deletes surplus ones; `active` is updated. Returns when
/// to look again for an index still backing off.
async fn manage(
    jc: &JobController,
    job: &Job,
    key: &str,
    active: &mut Vec<&Pod>,
    plan: &Plan<'_>,
) -> Result<Option<Duration>, Error> {
    let (completed, succeeded, in_backoff) = (plan.completed, plan.succeeded, plan.in_backoff);
    let spec = job.spec.clone().unwrap_or_default();
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let want = match spec.completions {
        Some(c) => parallelism.min((c - succeeded - plan.failed_indexes.len() as i32).max(0)),
        None if succeeded > 0 => 0,
        None => parallelism,
    } as usize;

    // Surplus: for Indexed Jobs first pods of completed, out-of-range or duplicate
    // indexes, then (both modes) the least advanced pods.
    let mut surplus: Vec<&Pod> = Vec::new();
    if indexed {
        let c = spec.completions.unwrap_or(0);
        let mut held = BTreeSet::new();
        active.retain(|p| {
            let keep = match completion_index(p) {
                Some(i)
                    if i >= 0
                        && i < c
                        && !completed.contains(&i)
                        && !plan.failed_indexes.contains(&i) =>
                {
                    held.insert(i)
                }
                _ => false,
            };
            if !keep {
                surplus.push(p);
            }
            keep
        });
    }
    if active.len() > want {
        active.sort_by_key(|p| {
            (
                is_ready(p),
                p.spec.as_ref().is_some_and(|s| s.node_name.is_some()),
                std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)),
            )
        });
        let extra = active.len() - want;
        surplus.extend(active.drain(..extra));
    }
    for pod in surplus {
        delete_pod(jc, job, key, pod).await?;
    }
    if active.len() >= want || in_backoff {
        return Ok(None);
    }
    let mut to_create: Vec<Option<i32>> = Vec::new();
    let mut wait: Option<Duration> = None;
    if indexed {
        let held: BTreeSet<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
        // An index that failed before waits out its own back-off.
        let mut backing_off = |i: &i32| {
            let Some(f) = plan.by_index.get(i) else {
                return false;
            };
            let Some(last) = f.last else { return false };
            let delay = cond::backoff_delay(f.failures);
            let elapsed = plan.now.duration_since(last).as_secs_f64().max(0.0);
            let left = delay.as_secs_f64() - elapsed;
            if left > 0.0 {
                let left = Duration::from_secs_f64(left);
                wait = Some(wait.map_or(left, |w| w.min(left)));
                return true;
            }
            false
        };
        to_create = (0..spec.completions.unwrap_or(0))
            .filter(|i| {
                !completed.contains(i) && !plan.failed_indexes.contains(i) && !held.contains(i)
            })
            .filter(|i| !backing_off(i))
            .take(want - active.len())
            .map(Some)
            .collect();
    } else {
        to_create.resize(want - active.len(), None);
    }
    let ns = job.namespace().unwrap_or_default();
    for index in to_create {
        let mut pod = new_pod(job, index);
        if let Some(i) = index.filter(|_| plan.per_index) {
            let f = plan.by_index.get(&i).copied().unwrap_or_default();
            let annotations = pod.annotations_mut();
            annotations.insert(indexes::FAILURE_COUNT.into(), f.failures.to_string());
            annotations.insert(indexes::IGNORED_FAILURE_COUNT.into(), f.ignored.to_string());
        }
        match jc.pod_api(&ns).create(&PostParams::default(), &pod).await {
            Ok(created) => {
                jc.expectations.created(key, &created.name_any());
                tracing::debug!(pod = %created.name_any(), "created pod");
                jc.event(
                    job,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", created.name_any()),
                    Some(created.object_ref(&())),
                )
                .await;
            }
            Err(source) => {
                jc.event(
                    job,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {source}"),
                    None,
                )
                .await;
                return Err(Error::Api {
                    context: format!("creating pod for job {key}"),
                    source,
                });
            }
        }
    }
    Ok(wait)
}

async fn delete_pod(jc: &JobController, job: &Job, key: &str, pod: &Pod) -> Result<(), Error> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    match jc
        .pod_api(&ns)
        .delete(&name, &pod_state::delete_params(pod))
        .await
    {
        Ok(_) => {
            jc.expectations.deleted(key, &name);
            jc.event(
                job,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
                Some(pod.object_ref(&())),
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Api {
            context: format!("deleting pod {ns}/{name}"),
            source,
        }),
    }
}
