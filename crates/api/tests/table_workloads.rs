//! `kubectl get` for workload controllers: deployments, replica sets, stateful sets, daemon
//! sets, jobs, cron jobs, autoscalers, disruption budgets and controller revisions.

use api::k8s_openapi::jiff::{SignedDuration, Timestamp};
use api::table::{column_definitions, row_cells};
use serde_json::{Value, json};

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

fn ago(seconds: i64) -> String {
    (now() - SignedDuration::from_secs(seconds)).to_string()
}

/// Column headers with their priorities.
fn headers(group: &str, kind: &str) -> Vec<(String, i32)> {
    column_definitions(group, kind)
        .into_iter()
        .map(|c| (c.name, c.priority))
        .collect()
}

/// The cell a user sees under `column`.
fn shown(group: &str, kind: &str, obj: &Value, column: &str) -> Value {
    let index = column_definitions(group, kind)
        .iter()
        .position(|c| c.name == column)
        .unwrap_or_else(|| panic!("{kind} has no column {column}"));
    row_cells(group, kind, obj, now())[index].clone()
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": ago(2 * 86400 + 3 * 3600)})
}

fn template() -> Value {
    json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [
            {"name": "app", "image": "nginx:1.27"},
            {"name": "log", "image": "busybox"},
        ]},
    })
}

#[test]
fn deployment_with_three_desired_and_two_ready_shows_2_of_3() {
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta("web"),
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    });
    assert_eq!(
        row_cells("apps", "Deployment", &d, now()),
        vec![
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("2d3h"),
            json!("app,log"),
            json!("nginx:1.27,busybox"),
            json!("app=web"),
        ]
    );
}

#[test]
fn deployment_columns_are_ready_up_to_date_available_age_then_wide_ones() {
    assert_eq!(
        headers("apps", "Deployment"),
        [
            ("Name".to_owned(), 0),
            ("Ready".to_owned(), 0),
            ("Up-to-date".to_owned(), 0),
            ("Available".to_owned(), 0),
            ("Age".to_owned(), 0),
            ("Containers".to_owned(), 1),
            ("Images".to_owned(), 1),
            ("Selector".to_owned(), 1),
        ]
    );
}

#[test]
fn deployment_without_replicas_or_status_reads_as_0_of_1() {
    let d = json!({"metadata": meta("web"), "spec": {"template": template()}});
    assert_eq!(shown("apps", "Deployment", &d, "Ready"), json!("0/1"));
    assert_eq!(shown("apps", "Deployment", &d, "Available"), json!(0));
    assert_eq!(shown("apps", "Deployment", &d, "Selector"), json!(""));
}

#[test]
fn selectors_print_sorted_with_set_operators() {
    let rs = json!({
        "metadata": meta("web-5d8f"),
        "spec": {
            "replicas": 2,
            "selector": {
                "matchLabels": {"tier": "front", "app": "web"},
                "matchExpressions": [
                    {"key": "env", "operator": "In", "values": ["prod", "canary"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                    {"key": "zone", "operator": "NotIn", "values": ["b"]},
                    {"key": "pinned", "operator": "Exists"},
                ],
            },
            "template": template(),
        },
        "status": {"replicas": 2, "readyReplicas": 1},
    });
    assert_eq!(
        shown("apps", "ReplicaSet", &rs, "Selector"),
        json!("app=web,env in (canary,prod),!legacy,pinned,tier=front,zone notin (b)")
    );
    assert_eq!(
        row_cells("apps", "ReplicaSet", &rs, now())[..5],
        [
            json!("web-5d8f"),
            json!(2),
            json!(2),
            json!(1),
            json!("2d3h")
        ]
    );
}

#[test]
fn replica_set_with_invalid_selector_operator_shows_error() {
    let rs = json!({
        "metadata": meta("web"),
        "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Near", "values": ["b"]}]}},
    });
    assert_eq!(
        shown("apps", "ReplicaSet", &rs, "Selector"),
        json!("<error>")
    );
}

#[test]
fn stateful_set_shows_ready_of_desired_and_its_images() {
    let s = json!({
        "metadata": meta("db"),
        "spec": {"replicas": 3, "template": template()},
        "status": {"readyReplicas": 3},
    });
    assert_eq!(
        row_cells("apps", "StatefulSet", &s, now()),
        vec![
            json!("db"),
            json!("3/3"),
            json!("2d3h"),
            json!("app,log"),
            json!("nginx:1.27,busybox")
        ]
    );
    assert_eq!(headers("apps", "StatefulSet").len(), 5);
}

#[test]
fn daemon_set_shows_scheduling_counts_and_node_selector() {
    let mut tpl = template();
    tpl["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
    let ds = json!({
        "metadata": meta("agent"),
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": tpl},
        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                   "updatedNumberScheduled": 3, "numberAvailable": 2},
    });
    assert_eq!(
        row_cells("apps", "DaemonSet", &ds, now()),
        vec![
            json!("agent"),
            json!(3),
            json!(3),
            json!(2),
            json!(3),
            json!(2),
            json!("kubernetes.io/os=linux"),
            json!("2d3h"),
            json!("app,log"),
            json!("nginx:1.27,busybox"),
            json!("app=agent"),
        ]
    );
    let names: Vec<String> = headers("apps", "DaemonSet")
        .into_iter()
        .filter(|(_, p)| *p == 0)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Up-to-date",
            "Available",
            "Node Selector",
            "Age"
        ]
    );
}

#[test]
fn daemon_set_without_node_selector_shows_none() {
    let ds = json!({"metadata": meta("agent"), "spec": {"template": template()}});
    assert_eq!(
        shown("apps", "DaemonSet", &ds, "Node Selector"),
        json!("<none>")
    );
}

#[test]
fn replication_controller_selector_defaults_to_template_labels() {
    let rc = json!({
        "metadata": meta("legacy"),
        "spec": {"replicas": 2, "template": template()},
        "status": {"replicas": 2, "readyReplicas": 2},
    });
    assert_eq!(
        row_cells("", "ReplicationController", &rc, now()),
        vec![
            json!("legacy"),
            json!(2),
            json!(2),
            json!(2),
            json!("2d3h"),
            json!("app,log"),
            json!("nginx:1.27,busybox"),
            json!("app=web"),
        ]
    );
}

#[test]
fn job_columns_start_with_status_in_1_33() {
    let names: Vec<String> = headers("batch", "Job")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Status",
            "Completions",
            "Duration",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
}

#[test]
fn completed_job_shows_complete_completions_and_run_time() {
    let job = json!({
        "metadata": meta("pi"),
        "spec": {"completions": 1, "parallelism": 1, "template": template(),
                 "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}},
        "status": {"succeeded": 1, "startTime": ago(600), "completionTime": ago(600 - 83),
                   "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]},
    });
    assert_eq!(
        row_cells("batch", "Job", &job, now())[..5],
        [
            json!("pi"),
            json!("Complete"),
            json!("1/1"),
            json!("83s"),
            json!("2d3h")
        ]
    );
    assert_eq!(
        shown("batch", "Job", &job, "Selector"),
        json!("batch.kubernetes.io/controller-uid=u1")
    );
}

#[test]
fn running_job_shows_running_and_time_since_start() {
    let job = json!({
        "metadata": meta("work"),
        "spec": {"parallelism": 3, "template": template()},
        "status": {"succeeded": 1, "active": 2, "startTime": ago(125)},
    });
    assert_eq!(shown("batch", "Job", &job, "Status"), json!("Running"));
    assert_eq!(
        shown("batch", "Job", &job, "Completions"),
        json!("1/1 of 3")
    );
    assert_eq!(shown("batch", "Job", &job, "Duration"), json!("2m5s"));
}

#[test]
fn job_status_follows_kubectls_precedence() {
    let with = |conditions: Value, deleting: bool| {
        let mut job = json!({"metadata": meta("j"), "spec": {"completions": 2}, "status": {"conditions": conditions}});
        if deleting {
            job["metadata"]["deletionTimestamp"] = json!(ago(1));
        }
        shown("batch", "Job", &job, "Status")
    };
    assert_eq!(
        with(json!([{"type": "Failed", "status": "True"}]), true),
        json!("Failed")
    );
    assert_eq!(with(json!([]), true), json!("Terminating"));
    assert_eq!(
        with(json!([{"type": "Suspended", "status": "True"}]), false),
        json!("Suspended")
    );
    assert_eq!(
        with(json!([{"type": "FailureTarget", "status": "True"}]), false),
        json!("FailureTarget")
    );
    assert_eq!(
        with(json!([{"type": "Complete", "status": "False"}]), false),
        json!("Running")
    );
    let pending = json!({"metadata": meta("j"), "spec": {"completions": 2}});
    assert_eq!(shown("batch", "Job", &pending, "Completions"), json!("0/2"));
    assert_eq!(shown("batch", "Job", &pending, "Duration"), json!(""));
}

#[test]
fn cron_job_shows_schedule_timezone_suspend_active_and_last_schedule() {
    let cj = json!({
        "metadata": meta("backup"),
        "spec": {"schedule": "*/5 * * * *", "timeZone": "Europe/Paris",
                 "jobTemplate": {"spec": {"template": template()}}},
        "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": ago(65)},
    });
    assert_eq!(
        row_cells("batch", "CronJob", &cj, now()),
        vec![
            json!("backup"),
            json!("*/5 * * * *"),
            json!("Europe/Paris"),
            json!("False"),
            json!(1),
            json!("65s"),
            json!("2d3h"),
            json!("app,log"),
            json!("nginx:1.27,busybox"),
            json!("<none>"),
        ]
    );
    let names: Vec<String> = headers("batch", "CronJob")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names[..7],
        [
            "Name",
            "Schedule",
            "Timezone",
            "Suspend",
            "Active",
            "Last Schedule",
            "Age"
        ]
    );
}

#[test]
fn cron_job_never_scheduled_shows_none() {
    let cj = json!({"metadata": meta("nightly"), "spec": {"schedule": "@daily", "suspend": true}});
    assert_eq!(shown("batch", "CronJob", &cj, "Timezone"), json!("<none>"));
    assert_eq!(shown("batch", "CronJob", &cj, "Suspend"), json!("True"));
    assert_eq!(shown("batch", "CronJob", &cj, "Active"), json!(0));
    assert_eq!(
        shown("batch", "CronJob", &cj, "Last Schedule"),
        json!("<none>")
    );
}

#[test]
fn hpa_shows_reference_targets_and_replica_bounds() {
    let hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": meta("web"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 10,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1024Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
            ],
        },
        "status": {
            "currentReplicas": 3,
            "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 37, "averageValue": "120m"}}},
                {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "512Mi"}}},
            ],
        },
    });
    assert_eq!(
        row_cells("autoscaling", "HorizontalPodAutoscaler", &hpa, now()),
        vec![
            json!("web"),
            json!("Deployment/web"),
            json!("cpu: 37%/50%, memory: 512Mi/1Gi + 1 more..."),
            json!("2"),
            json!(10),
            json!(3),
            json!("2d3h"),
        ]
    );
}

#[test]
fn hpa_without_metrics_shows_the_default_cpu_target() {
    let hpa = json!({
        "metadata": meta("web"),
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5},
    });
    assert_eq!(
        shown("autoscaling", "HorizontalPodAutoscaler", &hpa, "Targets"),
        json!("cpu: <unknown>/80%")
    );
    assert_eq!(
        shown("autoscaling", "HorizontalPodAutoscaler", &hpa, "MinPods"),
        json!("1")
    );
}

#[test]
fn autoscaling_v1_hpa_shows_its_cpu_utilization() {
    let hpa = json!({
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": meta("web"),
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                 "targetCPUUtilizationPercentage": 70},
        "status": {"currentReplicas": 1, "currentCPUUtilizationPercentage": 12},
    });
    assert_eq!(
        shown("autoscaling", "HorizontalPodAutoscaler", &hpa, "Targets"),
        json!("cpu: 12%/70%")
    );
}

#[test]
fn pdb_shows_min_available_max_unavailable_and_allowed_disruptions() {
    let pdb = json!({
        "metadata": meta("web"),
        "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}},
        "status": {"disruptionsAllowed": 1},
    });
    assert_eq!(
        row_cells("policy", "PodDisruptionBudget", &pdb, now()),
        vec![
            json!("web"),
            json!("50%"),
            json!("N/A"),
            json!(1),
            json!("2d3h")
        ]
    );
    let pdb = json!({"metadata": meta("db"), "spec": {"maxUnavailable": 1}});
    assert_eq!(
        row_cells("policy", "PodDisruptionBudget", &pdb, now())[1..4],
        [json!("N/A"), json!("1"), json!(0)]
    );
}

#[test]
fn controller_revision_shows_its_controller_with_group() {
    let rev = json!({
        "metadata": {"name": "web-7b9", "creationTimestamp": ago(30), "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true},
        ]},
        "revision": 4,
    });
    assert_eq!(
        row_cells("apps", "ControllerRevision", &rev, now()),
        vec![
            json!("web-7b9"),
            json!("statefulset.apps/web"),
            json!(4),
            json!("30s")
        ]
    );
    let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
    assert_eq!(
        shown("apps", "ControllerRevision", &orphan, "Controller"),
        json!("<none>")
    );
}
