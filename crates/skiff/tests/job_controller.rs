//! End-to-end: the Job and TTL-after-finished controllers against a real server.
//! No node agent runs: the tests play the kubelet with `cluster::set_pod_finished`.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/server.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn job_yaml(name: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  namespace: default
spec:
{extra_spec}
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
        command: ["true"]
"#
    )
}

async fn pods_of(client: &kube::Client, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .expect("list pods")
        .items
}

/// Pods of `job` that are neither finished nor being deleted.
async fn running_pods(client: &kube::Client, job: &str) -> Vec<Pod> {
    pods_of(client, job)
        .await
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        })
        .collect()
}

async fn wait_condition(client: &kube::Client, job: &str, type_: &str) -> Job {
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    cluster::eventually(WAIT, &format!("job {job} condition {type_}"), || {
        let jobs = jobs.clone();
        async move {
            let j = jobs.get(job).await.ok()?;
            let has = j
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == type_ && c.status == "True");
            has.then_some(j)
        }
    })
    .await
}

#[tokio::test]
async fn job_with_three_completions_runs_two_pods_at_a_time_and_completes() {
    let s = support::TestServer::start();
    let client = s.client().await;
    s.apply(&job_yaml("pi", "  completions: 3\n  parallelism: 2"));
    let first = cluster::eventually(WAIT, "two pods", || async {
        let p = running_pods(&client, "pi").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    for p in &first {
        assert!(
            p.finalizers()
                .iter()
                .any(|f| f == "batch.kubernetes.io/job-tracking")
        );
        assert_eq!(p.owner_references()[0].kind, "Job");
        cluster::set_pod_finished(&client, "default", &p.name_any(), 0).await;
    }
    let third = cluster::eventually(WAIT, "the third pod", || async {
        let p = running_pods(&client, "pi").await;
        (p.len() == 1).then_some(p)
    })
    .await;
    cluster::set_pod_finished(&client, "default", &third[0].name_any(), 0).await;
    let job = wait_condition(&client, "pi", "Complete").await;
    let st = job.status.expect("status");
    assert_eq!(st.succeeded, Some(3));
    assert!(st.completion_time.is_some());
    assert_eq!(pods_of(&client, "pi").await.len(), 3);
    let out = s.kubectl_ok(&["get", "job", "pi"]);
    assert!(out.contains("3/3"), "{out}");
    // Counted pods are released.
    cluster::eventually(WAIT, "finalizers removed", || async {
        pods_of(&client, "pi")
            .await
            .iter()
            .all(|p| p.finalizers().is_empty())
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn job_fails_with_backoff_limit_exceeded_after_two_failed_pods() {
    let s = support::TestServer::start();
    let client = s.client().await;
    s.apply(&job_yaml("flaky", "  backoffLimit: 1"));
    for n in 1..=2 {
        let p = cluster::eventually(WAIT, &format!("pod attempt {n}"), || async {
            running_pods(&client, "flaky").await.into_iter().next()
        })
        .await;
        cluster::set_pod_finished(&client, "default", &p.name_any(), 1).await;
    }
    let job = wait_condition(&client, "flaky", "Failed").await;
    let st = job.status.expect("status");
    let failed = st
        .conditions
        .expect("conditions")
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .expect("Failed");
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(st.failed, Some(2));
    let describe = s.kubectl_ok(&["describe", "job", "flaky"]);
    assert!(describe.contains("BackoffLimitExceeded"), "{describe}");
}

#[tokio::test]
async fn indexed_job_gives_each_pod_its_completion_index() {
    let s = support::TestServer::start();
    let client = s.client().await;
    s.apply(&job_yaml(
        "idx",
        "  completions: 3\n  parallelism: 3\n  completionMode: Indexed",
    ));
    let pods = cluster::eventually(WAIT, "three indexed pods", || async {
        let p = running_pods(&client, "idx").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    let mut indexes: Vec<String> = pods
        .iter()
        .map(|p| p.annotations()["batch.kubernetes.io/job-completion-index"].clone())
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
    for p in &pods {
        let i = &p.annotations()["batch.kubernetes.io/job-completion-index"];
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{i}").as_str()));
        let env = spec.containers[0].env.as_ref().expect("env");
        assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
        cluster::set_pod_finished(&client, "default", &p.name_any(), 0).await;
    }
    let job = wait_condition(&client, "idx", "Complete").await;
    assert_eq!(
        job.status.expect("status").completed_indexes.as_deref(),
        Some("0-2")
    );
}

#[tokio::test]
async fn suspended_job_runs_no_pods_until_resumed() {
    let s = support::TestServer::start();
    let client = s.client().await;
    s.apply(&job_yaml("later", "  suspend: true"));
    wait_condition(&client, "later", "Suspended").await;
    assert!(pods_of(&client, "later").await.is_empty());
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.patch(
        "later",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"suspend": false}})),
    )
    .await
    .expect("resume");
    let pod = cluster::eventually(WAIT, "a pod after resume", || async {
        running_pods(&client, "later").await.into_iter().next()
    })
    .await;
    let job = jobs.get("later").await.expect("job");
    let suspended = job
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "Suspended"))
        .expect("Suspended condition");
    assert_eq!(suspended.status, "False");
    // Suspending again removes the running pod.
    jobs.patch(
        "later",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"suspend": true}})),
    )
    .await
    .expect("suspend");
    cluster::eventually(WAIT, "pod removed on suspend", || async {
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        pods.get_opt(&pod.name_any())
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn finished_job_is_deleted_after_ttl_seconds_after_finished() {
    let s = support::TestServer::start();
    let client = s.client().await;
    s.apply(&job_yaml("brief", "  ttlSecondsAfterFinished: 2"));
    let p = cluster::eventually(WAIT, "pod", || async {
        running_pods(&client, "brief").await.into_iter().next()
    })
    .await;
    cluster::set_pod_finished(&client, "default", &p.name_any(), 0).await;
    wait_condition(&client, "brief", "Complete").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    // The TTL controller deletes with foreground propagation; the garbage collector
    // then removes the pods and the Job. Either state shows the TTL fired.
    cluster::eventually(WAIT, "job deleted by TTL", || async {
        match jobs.get_opt("brief").await.ok()? {
            None => Some(()),
            Some(j) => (j.metadata.deletion_timestamp.is_some()
                && j.finalizers().iter().any(|f| f == "foregroundDeletion"))
            .then_some(()),
        }
    })
    .await;
}

fn condition(job: &Job, type_: &str) -> (String, String) {
    let c = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("{type_} condition"));
    (
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

fn index_of(p: &Pod) -> String {
    p.annotations()["batch.kubernetes.io/job-completion-index"].clone()
}

#[tokio::test]
async fn backoff_limit_per_index_fails_only_the_index_and_then_the_job() {
    let s = support::TestServer::start();
    let client = s.client().await;
    s.apply(&job_yaml(
        "per-index",
        "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n  backoffLimitPerIndex: 1\n  podFailurePolicy:\n    rules:\n    - action: FailIndex\n      onExitCodes: {operator: In, values: [42]}",
    ));
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let spec = jobs
        .get("per-index")
        .await
        .expect("job")
        .spec
        .expect("spec");
    assert_eq!(
        spec.backoff_limit,
        Some(i32::MAX),
        "no Job-wide limit by default"
    );
    let pods = cluster::eventually(WAIT, "three indexed pods", || async {
        let p = running_pods(&client, "per-index").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    let by_index = |i: &str| {
        pods.iter()
            .find(|p| index_of(p) == i)
            .expect("a pod per index")
            .clone()
    };
    for p in &pods {
        assert_eq!(
            p.annotations()["batch.kubernetes.io/job-index-failure-count"],
            "0"
        );
    }
    // Index 1 hits the FailIndex rule: failed for good, never recreated.
    cluster::set_pod_finished(&client, "default", &by_index("1").name_any(), 42).await;
    // Index 2 fails once: within its limit of 1, it gets a replacement (after the
    // 10 s back-off) that carries the failure count.
    cluster::set_pod_finished(&client, "default", &by_index("2").name_any(), 1).await;
    cluster::eventually(WAIT, "failedIndexes 1", || async {
        let j = jobs.get("per-index").await.ok()?;
        (j.status?.failed_indexes.as_deref() == Some("1")).then_some(())
    })
    .await;
    let replacement = cluster::eventually(WAIT, "the replacement of index 2", || async {
        running_pods(&client, "per-index")
            .await
            .into_iter()
            .find(|p| index_of(p) == "2")
    })
    .await;
    assert_eq!(
        replacement.annotations()["batch.kubernetes.io/job-index-failure-count"],
        "1"
    );
    assert!(
        running_pods(&client, "per-index")
            .await
            .iter()
            .all(|p| index_of(p) != "1"),
        "a failed index is not retried"
    );
    cluster::set_pod_finished(&client, "default", &replacement.name_any(), 0).await;
    cluster::set_pod_finished(&client, "default", &by_index("0").name_any(), 0).await;
    let job = wait_condition(&client, "per-index", "Failed").await;
    assert_eq!(
        condition(&job, "Failed"),
        ("FailedIndexes".into(), "Job has failed indexes".into())
    );
    let st = job.status.expect("status");
    assert_eq!(st.completed_indexes.as_deref(), Some("0,2"));
    assert_eq!(st.failed_indexes.as_deref(), Some("1"));
    assert_eq!(st.failed, Some(2));
}

#[tokio::test]
async fn a_success_policy_completes_the_job_and_stops_the_rest() {
    let s = support::TestServer::start();
    let client = s.client().await;
    s.apply(&job_yaml(
        "leader",
        "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n  successPolicy:\n    rules:\n    - succeededIndexes: \"0\"",
    ));
    let pods = cluster::eventually(WAIT, "three indexed pods", || async {
        let p = running_pods(&client, "leader").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    let leader = pods.iter().find(|p| index_of(p) == "0").expect("index 0");
    cluster::set_pod_finished(&client, "default", &leader.name_any(), 0).await;
    let met = wait_condition(&client, "leader", "SuccessCriteriaMet").await;
    let why = (
        "SuccessPolicy".to_owned(),
        "Matched rules at index 0".to_owned(),
    );
    assert_eq!(condition(&met, "SuccessCriteriaMet"), why);
    // The other indexes' pods are deleted; without a kubelet they stay terminating,
    // so play it: finish them.
    cluster::eventually(WAIT, "the other pods deleted", || async {
        running_pods(&client, "leader")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    for p in pods.iter().filter(|p| index_of(p) != "0") {
        let _ = Api::<Pod>::namespaced(client.clone(), "default")
            .delete(
                &p.name_any(),
                &kube::api::DeleteParams::default().grace_period(0),
            )
            .await;
    }
    let job = wait_condition(&client, "leader", "Complete").await;
    assert_eq!(condition(&job, "Complete"), why);
    assert_eq!(
        job.status.expect("status").completed_indexes.as_deref(),
        Some("0")
    );
}

#[tokio::test]
async fn per_index_fields_are_refused_where_kubernetes_refuses_them() {
    let s = support::TestServer::start();
    let path = s.dir.path().join("bad-job.yaml");
    for (spec, message) in [
        (
            "  podFailurePolicy:\n    rules:\n    - action: FailIndex\n      onExitCodes: {operator: In, values: [42]}",
            "spec.podFailurePolicy.rules[0].action: Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set",
        ),
        (
            "  backoffLimitPerIndex: 2",
            "spec.backoffLimitPerIndex: Invalid value: 2: requires indexed completion mode",
        ),
        (
            "  completionMode: Indexed\n  completions: 2\n  maxFailedIndexes: 1",
            "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified",
        ),
    ] {
        std::fs::write(&path, job_yaml("bad", spec)).expect("manifest");
        let out = s.kubectl(&["apply", "-f", path.to_str().expect("utf8")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{spec}");
        assert!(stderr.contains(message), "{stderr}");
    }
    let jobs: Api<Job> = Api::namespaced(s.client().await, "default");
    assert!(jobs.get_opt("bad").await.expect("get").is_none());
}
