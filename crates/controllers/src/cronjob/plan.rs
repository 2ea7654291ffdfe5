//! What one sync of a CronJob should do, decided from the CronJob, its Jobs and the
//! clock alone (no IO), so the schedule math is tested on a fake clock.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use super::clock::Clock;
use super::schedule;

/// Annotation with the time a Job was scheduled for.
pub(crate) const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Missed start times above which the controller warns.
const TOO_MANY_MISSED: usize = 100;

/// An event to record on the CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    /// Warning rather than Normal.
    pub warning: bool,
    /// Reason.
    pub reason: &'static str,
    /// Message.
    pub message: String,
}

/// The decisions of one sync.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// New `status.active`.
    pub active: Vec<ObjectReference>,
    /// New `status.lastScheduleTime`.
    pub last_schedule_time: Option<Timestamp>,
    /// New `status.lastSuccessfulTime`.
    pub last_successful_time: Option<Timestamp>,
    /// A Job to create.
    pub create: Option<Job>,
    /// Active Jobs to delete first (concurrencyPolicy Replace).
    pub delete_active: Vec<String>,
    /// Finished Jobs beyond the history limits.
    pub delete_history: Vec<String>,
    /// Events to record.
    pub notes: Vec<Note>,
    /// When to look again.
    pub requeue: Option<Duration>,
}

fn finished_as(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    for c in conds {
        if c.status == "True" {
            match c.type_.as_str() {
                "Complete" => return Some("Complete"),
                "Failed" => return Some("Failed"),
                _ => {}
            }
        }
    }
    None
}

/// The Job's name for a scheduled time: `<cronjob>-<minutes since the epoch>`.
pub(crate) fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!("{}-{}", cj.name_any(), scheduled.as_second().div_euclid(60))
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: Some(job.name_any()),
        namespace: job.namespace(),
        uid: job.uid(),
        resource_version: job.resource_version(),
        ..Default::default()
    }
}

/// Time as Go's RFC 3339 in `tz` (`Z` for UTC).
fn rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The Job for `scheduled`, from `spec.jobTemplate`.
pub(crate) fn job_for(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let tmpl = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = tmpl.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), rfc3339(scheduled, tz));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.name_any(),
                uid: cj.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: tmpl.spec,
        status: None,
    }
}

/// Finished Jobs to delete so that at most the history limits remain, oldest first.
pub(crate) fn history_to_delete(cj: &CronJob, jobs: &[&Job]) -> Vec<String> {
    let spec = cj.spec.clone().unwrap_or_default();
    let mut out = Vec::new();
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&&Job> = jobs
            .iter()
            .filter(|j| finished_as(j) == Some(kind))
            .collect();
        done.sort_by_key(|j| {
            (
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.clone())
                    .map(|t| t.0),
                j.metadata.creation_timestamp.clone().map(|t| t.0),
                j.name_any(),
            )
        });
        let extra = done.len().saturating_sub(limit.max(0) as usize);
        out.extend(done.iter().take(extra).map(|j| j.name_any()));
    }
    out
}

/// The latest schedule time in (earliest, now] and how many there were (capped a
/// little above the warning threshold).
fn most_recent(
    sched: &schedule::Schedule,
    tz: &TimeZone,
    earliest: Timestamp,
    now: Timestamp,
) -> (Option<Timestamp>, usize) {
    let mut count = 0;
    let mut last = None;
    let mut t = earliest;
    while let Some(n) = sched.next(t, tz) {
        if n > now {
            return (last, count);
        }
        count += 1;
        last = Some(n);
        t = n;
        if count > TOO_MANY_MISSED {
            break;
        }
    }
    if count <= TOO_MANY_MISSED {
        return (last, count);
    }
    // Many missed: find the latest one in a window just before now.
    for back in [
        3_600i64,
        86_400,
        32 * 86_400,
        367 * 86_400,
        5 * 367 * 86_400,
    ] {
        let from = Timestamp::from_second((now.as_second() - back).max(earliest.as_second()))
            .unwrap_or(earliest);
        let mut t = from;
        let mut found = None;
        while let Some(n) = sched.next(t, tz) {
            if n > now {
                break;
            }
            found = Some(n);
            t = n;
        }
        if found.is_some() {
            return (found, count);
        }
    }
    (last, count)
}

/// Decides one sync of `cj` given the Jobs it owns. `missing` names active Jobs
/// confirmed gone from the API.
pub(crate) fn plan(cj: &CronJob, jobs: &[&Job], missing: &[String], clock: &dyn Clock) -> Plan {
    let now = clock.now();
    let spec = cj.spec.clone().unwrap_or_default();
    let status = cj.status.clone().unwrap_or_default();
    let mut p = Plan {
        last_schedule_time: status.last_schedule_time.as_ref().map(|t| t.0),
        last_successful_time: status.last_successful_time.as_ref().map(|t| t.0),
        ..Default::default()
    };
    let by_name: BTreeMap<String, &Job> = jobs.iter().map(|j| (j.name_any(), *j)).collect();

    // Active list: drop finished and vanished Jobs, add running ones we own.
    for r in status.active.iter().flatten() {
        let name = r.name.clone().unwrap_or_default();
        match by_name.get(&name) {
            Some(j) => match finished_as(j) {
                Some(how) => {
                    p.notes.push(Note {
                        warning: false,
                        reason: "SawCompletedJob",
                        message: format!("Saw completed job: {name}, status: {how}"),
                    });
                    if how == "Complete" {
                        let done = j
                            .status
                            .as_ref()
                            .and_then(|s| s.completion_time.as_ref())
                            .map(|t| t.0)
                            .unwrap_or(now);
                        p.last_successful_time = p.last_successful_time.max(Some(done));
                    }
                }
                None => p.active.push(reference(j)),
            },
            None if missing.contains(&name) => p.notes.push(Note {
                warning: false,
                reason: "MissingJob",
                message: format!("Active job went missing: {name}"),
            }),
            None => p.active.push(r.clone()),
        }
    }
    for j in jobs {
        let listed = p
            .active
            .iter()
            .any(|r| r.name.as_deref() == Some(&j.name_any()));
        if !listed && finished_as(j).is_none() && j.metadata.deletion_timestamp.is_none() {
            p.active.push(reference(j));
        }
    }
    p.delete_history = history_to_delete(cj, jobs);
    if cj.metadata.deletion_timestamp.is_some() {
        return p;
    }

    let tz = match spec.time_zone.as_deref() {
        None => TimeZone::system(),
        Some(name) => match TimeZone::get(name) {
            Ok(tz) => tz,
            Err(e) => {
                p.notes.push(Note {
                    warning: true,
                    reason: "UnknownTimeZone",
                    message: format!("invalid timeZone: {name:?}: {e}"),
                });
                return p;
            }
        },
    };
    let parsed = match schedule::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            p.notes.push(Note {
                warning: true,
                reason: "UnparseableSchedule",
                message: format!("unparseable schedule: {:?} : {e}", spec.schedule),
            });
            return p;
        }
    };
    let tz = match parsed.zone.as_deref().map(TimeZone::get) {
        None => tz,
        Some(Ok(z)) => z,
        Some(Err(e)) => {
            p.notes.push(Note {
                warning: true,
                reason: "UnparseableSchedule",
                message: format!("unparseable schedule: {:?} : {e}", spec.schedule),
            });
            return p;
        }
    };
    let sched = parsed.schedule;
    if spec.suspend == Some(true) {
        return p;
    }
    let next_wait = sched.next(now, &tz).map(|n| {
        Duration::from_millis((n.as_millisecond() - now.as_millisecond()).max(0) as u64 + 100)
    });
    p.requeue = next_wait;

    let created = cj
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let mut earliest = p.last_schedule_time.unwrap_or(created);
    if let Some(sds) = spec.starting_deadline_seconds
        && let Ok(deadline) = Timestamp::from_second(now.as_second() - sds)
        && deadline > earliest
    {
        earliest = deadline;
    }
    let (Some(scheduled), missed) = most_recent(&sched, &tz, earliest, now) else {
        return p;
    };
    if missed > TOO_MANY_MISSED {
        p.notes.push(Note {
            warning: true,
            reason: "TooManyMissedTimes",
            message: format!(
                "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
            ),
        });
    }
    if let Some(sds) = spec.starting_deadline_seconds
        && scheduled.as_second() + sds < now.as_second()
    {
        p.notes.push(Note {
            warning: true,
            reason: "MissSchedule",
            message: format!(
                "Missed scheduled time to start a job: {}",
                scheduled
                    .to_zoned(tz.clone())
                    .strftime("%a, %d %b %Y %H:%M:%S %z")
            ),
        });
        return p;
    }
    let name = job_name(cj, scheduled);
    if by_name.contains_key(&name) || p.active.iter().any(|r| r.name.as_deref() == Some(&name)) {
        p.last_schedule_time = p.last_schedule_time.max(Some(scheduled));
        return p;
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !p.active.is_empty() => {
            p.notes.push(Note {
                warning: false,
                reason: "JobAlreadyActive",
                message: "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            });
            return p;
        }
        Some("Replace") => {
            p.delete_active = p.active.iter().filter_map(|r| r.name.clone()).collect();
            p.active.clear();
        }
        _ => {}
    }
    p.create = Some(job_for(cj, scheduled, &tz));
    p.last_schedule_time = Some(scheduled);
    p
}

#[cfg(test)]
mod tests {
    use super::super::clock::FakeClock;
    use super::*;
    use serde_json::json;

    fn cronjob(extra: serde_json::Value) -> CronJob {
        let mut v = json!({
            "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid",
                         "creationTimestamp": "2024-01-01T10:00:30Z"},
            "spec": {"schedule": "* * * * *", "timeZone": "Etc/UTC", "concurrencyPolicy": "Allow",
                     "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                     "jobTemplate": {"metadata": {"labels": {"app": "tick"}}, "spec": {"template": {}}}},
        });
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            for (k, val) in extra {
                spec.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).expect("cronjob")
    }

    fn job(name: &str, finished: Option<&str>, start: &str) -> Job {
        let conds = finished
            .map(|t| json!([{"type": t, "status": "True"}]))
            .unwrap_or(json!([]));
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"template": {}},
            "status": {"startTime": start, "conditions": conds},
        }))
        .expect("job")
    }

    #[test]
    fn nothing_runs_before_the_first_schedule_time() {
        let cj = cronjob(json!({}));
        let clock = FakeClock::at("2024-01-01T10:00:40Z");
        let p = plan(&cj, &[], &[], &clock);
        assert!(p.create.is_none());
        assert_eq!(p.requeue, Some(Duration::from_millis(20_100)));
    }

    #[test]
    fn a_job_is_created_at_the_schedule_time_named_by_minutes_since_the_epoch() {
        let cj = cronjob(json!({}));
        let clock = FakeClock::at("2024-01-01T10:01:02Z");
        let p = plan(&cj, &[], &[], &clock);
        let job = p.create.expect("job to create");
        let minutes = "2024-01-01T10:01:00Z"
            .parse::<Timestamp>()
            .expect("ts")
            .as_second()
            / 60;
        assert_eq!(job.name_any(), format!("tick-{minutes}"));
        assert_eq!(
            job.annotations()[SCHEDULED_TIMESTAMP],
            "2024-01-01T10:01:00Z"
        );
        assert_eq!(job.labels()["app"], "tick");
        assert_eq!(job.owner_references()[0].kind, "CronJob");
        assert_eq!(
            p.last_schedule_time.map(|t| t.to_string()).as_deref(),
            Some("2024-01-01T10:01:00Z")
        );
        // Once the Job exists, the same minute creates nothing more.
        clock.set("2024-01-01T10:01:30Z");
        let existing = job.clone();
        let p = plan(&cj, &[&existing], &[], &clock);
        assert!(p.create.is_none());
        assert_eq!(p.active.len(), 1);
    }

    #[test]
    fn forbid_skips_while_a_job_runs_and_replace_deletes_it() {
        let running = job("tick-1", None, "2024-01-01T10:01:00Z");
        let clock = FakeClock::at("2024-01-01T10:02:05Z");
        let mut cj = cronjob(json!({"concurrencyPolicy": "Forbid"}));
        cj.status = Some(
            serde_json::from_value(json!({"lastScheduleTime": "2024-01-01T10:01:00Z"}))
                .expect("status"),
        );
        let p = plan(&cj, &[&running], &[], &clock);
        assert!(p.create.is_none());
        assert_eq!(p.notes[0].reason, "JobAlreadyActive");
        let mut cj = cronjob(json!({"concurrencyPolicy": "Replace"}));
        cj.status = Some(
            serde_json::from_value(json!({"lastScheduleTime": "2024-01-01T10:01:00Z"}))
                .expect("status"),
        );
        let p = plan(&cj, &[&running], &[], &clock);
        assert!(p.create.is_some());
        assert_eq!(p.delete_active, vec!["tick-1".to_string()]);
    }

    #[test]
    fn history_limits_delete_the_oldest_finished_jobs() {
        let cj = cronjob(json!({"successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 1}));
        let jobs = [
            job("ok-1", Some("Complete"), "2024-01-01T10:01:00Z"),
            job("ok-2", Some("Complete"), "2024-01-01T10:02:00Z"),
            job("ok-3", Some("Complete"), "2024-01-01T10:03:00Z"),
            job("bad-1", Some("Failed"), "2024-01-01T10:04:00Z"),
            job("bad-2", Some("Failed"), "2024-01-01T10:05:00Z"),
            job("run-1", None, "2024-01-01T10:06:00Z"),
        ];
        let refs: Vec<&Job> = jobs.iter().collect();
        assert_eq!(history_to_delete(&cj, &refs), vec!["ok-1", "bad-1"]);
    }

    #[test]
    fn finished_active_jobs_leave_the_active_list_and_set_last_successful_time() {
        let mut done = job("tick-1", Some("Complete"), "2024-01-01T10:01:00Z");
        done.status.as_mut().expect("status").completion_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2024-01-01T10:01:10Z".parse().expect("ts"),
            ));
        let mut cj = cronjob(json!({}));
        cj.status = Some(
            serde_json::from_value(json!({
            "active": [{"kind": "Job", "name": "tick-1", "namespace": "default"}],
            "lastScheduleTime": "2024-01-01T10:01:00Z"}))
            .expect("status"),
        );
        let clock = FakeClock::at("2024-01-01T10:01:20Z");
        let p = plan(&cj, &[&done], &[], &clock);
        assert!(p.active.is_empty());
        assert_eq!(
            p.notes[0].message,
            "Saw completed job: tick-1, status: Complete"
        );
        assert_eq!(
            p.last_successful_time.map(|t| t.to_string()).as_deref(),
            Some("2024-01-01T10:01:10Z")
        );
    }

    #[test]
    fn a_long_outage_warns_about_too_many_missed_times_and_runs_the_latest() {
        let cj = cronjob(json!({}));
        let clock = FakeClock::at("2024-01-02T10:00:30Z");
        let p = plan(&cj, &[], &[], &clock);
        assert_eq!(p.notes[0].reason, "TooManyMissedTimes");
        assert_eq!(
            p.last_schedule_time.map(|t| t.to_string()).as_deref(),
            Some("2024-01-02T10:00:00Z")
        );
    }

    #[test]
    fn starting_deadline_limits_how_far_back_the_controller_looks() {
        let cj = cronjob(json!({"schedule": "0 * * * *", "startingDeadlineSeconds": 60}));
        // 10:00 was missed by more than a minute: nothing runs, no warning flood.
        let clock = FakeClock::at("2024-01-01T11:30:00Z");
        let p = plan(&cj, &[], &[], &clock);
        assert!(p.create.is_none());
        assert!(p.notes.is_empty());
    }

    #[test]
    fn unknown_time_zone_and_suspend_stop_scheduling() {
        let clock = FakeClock::at("2024-01-01T10:05:00Z");
        let p = plan(
            &cronjob(json!({"timeZone": "Mars/Olympus"})),
            &[],
            &[],
            &clock,
        );
        assert_eq!(p.notes[0].reason, "UnknownTimeZone");
        assert!(p.create.is_none());
        let p = plan(&cronjob(json!({"suspend": true})), &[], &[], &clock);
        assert!(p.create.is_none() && p.requeue.is_none());
    }
}
