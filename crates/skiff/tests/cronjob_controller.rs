//! End-to-end: the CronJob controller creates Jobs on schedule. The schedule math
//! (macros, time zones, concurrency, deadlines, history limits) is unit-tested on a
//! fake clock in `controllers::cronjob`; this test waits for one real minute.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::ResourceExt;
use kube::api::{Api, ListParams};

#[tokio::test]
async fn every_minute_cronjob_creates_a_job_named_after_its_schedule_time() {
    let s = support::TestServer::start();
    let client = s.client().await;
    s.apply(
        r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
  namespace: default
spec:
  schedule: "* * * * *"
  jobTemplate:
    metadata:
      labels: {app: tick}
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: busybox
"#,
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job = cluster::eventually(
        Duration::from_secs(75),
        "a job from the cronjob",
        || async {
            jobs.list(&ListParams::default().labels("app=tick"))
                .await
                .ok()?
                .items
                .into_iter()
                .next()
        },
    )
    .await;
    let scheduled = job.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"].clone();
    let at: k8s_openapi::jiff::Timestamp = scheduled.parse().expect("RFC 3339 timestamp");
    assert_eq!(at.as_second() % 60, 0, "scheduled on a whole minute");
    assert_eq!(job.name_any(), format!("tick-{}", at.as_second() / 60));
    assert_eq!(job.owner_references()[0].kind, "CronJob");
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    cluster::eventually(
        Duration::from_secs(30),
        "status.active and lastScheduleTime",
        || async {
            let st = cronjobs.get("tick").await.ok()?.status?;
            let active = st.active?;
            (active
                .iter()
                .any(|r| r.name.as_deref() == Some(&job.name_any()))
                && st.last_schedule_time.is_some())
            .then_some(())
        },
    )
    .await;
    let out = s.kubectl_ok(&["get", "cronjob", "tick"]);
    assert!(out.contains("* * * * *"), "{out}");
}
