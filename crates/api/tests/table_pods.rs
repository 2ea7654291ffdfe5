//! `kubectl get pods`: READY, STATUS, RESTARTS and the wide columns as kube-apiserver prints them.

use api::k8s_openapi::jiff::{SignedDuration, Timestamp};
use api::table::{column_definitions, row_cells, row_conditions};
use serde_json::{Value, json};

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

/// The RFC 3339 instant `seconds` before [`now`].
fn ago(seconds: i64) -> String {
    (now() - SignedDuration::from_secs(seconds)).to_string()
}

/// The cell a user sees under `column` for `pod`.
fn shown(pod: &Value, column: &str) -> Value {
    let columns = column_definitions("", "Pod");
    let index = columns
        .iter()
        .position(|c| c.name == column)
        .unwrap_or_else(|| panic!("no column {column}"));
    row_cells("", "Pod", pod, now())[index].clone()
}

fn container(name: &str) -> Value {
    json!({"name": name, "image": format!("{name}:1")})
}

fn running(name: &str, ready: bool) -> Value {
    json!({"name": name, "ready": ready, "restartCount": 0, "state": {"running": {"startedAt": ago(600)}}})
}

fn pod(spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": ago(3 * 3600 + 5 * 60)},
        "spec": spec,
        "status": status,
    })
}

#[test]
fn pod_columns_are_kubectls_headers_with_four_wide_ones() {
    let columns = column_definitions("", "Pod");
    let headers: Vec<(&str, i32)> = columns
        .iter()
        .map(|c| (c.name.as_str(), c.priority))
        .collect();
    assert_eq!(
        headers,
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1),
        ]
    );
    assert_eq!(columns[0].format, "name");
    assert_eq!(columns[3].value_type, "string");
}

#[test]
fn running_pod_shows_ready_count_phase_and_age() {
    let p = pod(
        json!({"containers": [container("app")], "nodeName": "node-1"}),
        json!({"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [running("app", true)]}),
    );
    let cells = row_cells("", "Pod", &p, now());
    assert_eq!(
        cells,
        vec![
            json!("web-0"),
            json!("1/1"),
            json!("Running"),
            json!("0"),
            json!("3h5m"),
            json!("10.0.0.5"),
            json!("node-1"),
            json!("<none>"),
            json!("<none>"),
        ]
    );
}

#[test]
fn one_of_two_containers_in_crash_loop_shows_1_of_2_and_crash_loop_back_off() {
    let p = pod(
        json!({"containers": [container("app"), container("sidecar")]}),
        json!({
            "phase": "Running",
            "containerStatuses": [
                running("app", true),
                {
                    "name": "sidecar",
                    "ready": false,
                    "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}},
                },
            ],
        }),
    );
    assert_eq!(shown(&p, "Ready"), json!("1/2"));
    assert_eq!(shown(&p, "Status"), json!("CrashLoopBackOff"));
    assert_eq!(shown(&p, "Restarts"), json!("5 (5m ago)"));
}

#[test]
fn pod_being_deleted_shows_terminating() {
    let mut p = pod(
        json!({"containers": [container("app")]}),
        json!({"phase": "Running", "containerStatuses": [running("app", true)]}),
    );
    p["metadata"]["deletionTimestamp"] = json!(ago(10));
    assert_eq!(shown(&p, "Status"), json!("Terminating"));
}

#[test]
fn finished_pod_being_deleted_keeps_its_final_status() {
    let mut p = pod(
        json!({"containers": [container("app")]}),
        json!({
            "phase": "Succeeded",
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
        }),
    );
    p["metadata"]["deletionTimestamp"] = json!(ago(10));
    assert_eq!(shown(&p, "Status"), json!("Completed"));
    assert_eq!(shown(&p, "Ready"), json!("0/1"));
}

#[test]
fn pod_on_lost_node_being_deleted_shows_unknown() {
    let mut p = pod(
        json!({"containers": [container("app")]}),
        json!({"phase": "Running", "reason": "NodeLost", "containerStatuses": [running("app", true)]}),
    );
    assert_eq!(shown(&p, "Status"), json!("NodeLost"));
    p["metadata"]["deletionTimestamp"] = json!(ago(10));
    assert_eq!(shown(&p, "Status"), json!("Unknown"));
}

#[test]
fn waiting_init_container_shows_init_progress() {
    let p = pod(
        json!({
            "initContainers": [container("migrate"), container("warm")],
            "containers": [container("app")],
        }),
        json!({
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "migrate", "ready": true, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "warm", "ready": false, "restartCount": 0,
                 "state": {"running": {"startedAt": ago(20)}}},
            ],
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}}],
        }),
    );
    assert_eq!(shown(&p, "Status"), json!("Init:1/2"));
    assert_eq!(shown(&p, "Ready"), json!("0/1"));
}

#[test]
fn crash_looping_init_container_shows_init_crash_loop_back_off_and_its_restarts() {
    let p = pod(
        json!({"initContainers": [container("migrate")], "containers": [container("app")]}),
        json!({
            "phase": "Pending",
            "conditions": [{"type": "Initialized", "status": "False"}],
            "initContainerStatuses": [{
                "name": "migrate", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 2, "finishedAt": ago(90)}},
            }],
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}}],
        }),
    );
    assert_eq!(shown(&p, "Status"), json!("Init:CrashLoopBackOff"));
    assert_eq!(shown(&p, "Restarts"), json!("3 (90s ago)"));
}

#[test]
fn failed_init_container_without_reason_shows_its_exit_code_or_signal() {
    let failed = |terminated: Value| {
        pod(
            json!({"initContainers": [container("migrate")], "containers": [container("app")]}),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "migrate", "ready": false, "restartCount": 0, "state": {"terminated": terminated}}
            ]}),
        )
    };
    assert_eq!(
        shown(&failed(json!({"exitCode": 3})), "Status"),
        json!("Init:ExitCode:3")
    );
    assert_eq!(
        shown(&failed(json!({"exitCode": 137, "signal": 9})), "Status"),
        json!("Init:Signal:9")
    );
    assert_eq!(
        shown(&failed(json!({"exitCode": 1, "reason": "Error"})), "Status"),
        json!("Init:Error")
    );
}

#[test]
fn started_sidecar_counts_towards_ready_and_total() {
    let p = pod(
        json!({
            "initContainers": [{"name": "proxy", "image": "proxy:1", "restartPolicy": "Always"}],
            "containers": [container("app")],
        }),
        json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1,
                "state": {"running": {"startedAt": ago(100)}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(120)}}}],
            "containerStatuses": [running("app", true)],
        }),
    );
    assert_eq!(shown(&p, "Ready"), json!("2/2"));
    assert_eq!(shown(&p, "Status"), json!("Running"));
    assert_eq!(shown(&p, "Restarts"), json!("1 (2m ago)"));
}

#[test]
fn container_terminated_without_reason_shows_exit_code() {
    let p = pod(
        json!({"containers": [container("app")]}),
        json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 2}}}]}),
    );
    assert_eq!(shown(&p, "Status"), json!("ExitCode:2"));
}

#[test]
fn completed_container_next_to_a_running_one_shows_running_or_not_ready() {
    let status = |ready_condition: &str| {
        json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": ready_condition}],
            "containerStatuses": [
                {"name": "job", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                running("app", true),
            ],
        })
    };
    let spec = json!({"containers": [container("job"), container("app")]});
    assert_eq!(
        shown(&pod(spec.clone(), status("True")), "Status"),
        json!("Running")
    );
    assert_eq!(
        shown(&pod(spec, status("False")), "Status"),
        json!("NotReady")
    );
}

#[test]
fn scheduling_gated_pod_shows_scheduling_gated() {
    let p = pod(
        json!({"containers": [container("app")], "schedulingGates": [{"name": "wait"}]}),
        json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
        ]}),
    );
    assert_eq!(shown(&p, "Status"), json!("SchedulingGated"));
    assert_eq!(shown(&p, "Node"), json!("<none>"));
}

#[test]
fn evicted_pod_shows_the_status_reason() {
    let p = pod(
        json!({"containers": [container("app")]}),
        json!({"phase": "Failed", "reason": "Evicted"}),
    );
    assert_eq!(shown(&p, "Status"), json!("Evicted"));
}

#[test]
fn pod_without_status_reads_as_pending() {
    let p = json!({"metadata": {"name": "new"}, "spec": {"containers": [container("app")]}});
    let cells = row_cells("", "Pod", &p, now());
    assert_eq!(cells[1], json!("0/1"));
    assert_eq!(cells[2], json!("Pending"));
    assert_eq!(cells[4], json!("<unknown>"));
}

#[test]
fn wide_columns_show_ip_nominated_node_and_passing_readiness_gates() {
    let p = pod(
        json!({
            "containers": [container("app")],
            "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}],
        }),
        json!({
            "phase": "Pending",
            "podIPs": [{"ip": "fd00::5"}, {"ip": "10.0.0.5"}],
            "nominatedNodeName": "node-2",
            "conditions": [{"type": "example.com/lb", "status": "True"}, {"type": "example.com/dns", "status": "False"}],
        }),
    );
    assert_eq!(shown(&p, "IP"), json!("fd00::5"));
    assert_eq!(shown(&p, "Nominated Node"), json!("node-2"));
    assert_eq!(shown(&p, "Readiness Gates"), json!("1/2"));
}

#[test]
fn succeeded_and_failed_pods_carry_a_completed_row_condition() {
    let succeeded = pod(json!({}), json!({"phase": "Succeeded"}));
    assert_eq!(
        row_conditions("", "Pod", &succeeded),
        vec![json!({
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully."
        })]
    );
    let failed = pod(json!({}), json!({"phase": "Failed"}));
    assert_eq!(
        row_conditions("", "Pod", &failed)[0]["message"],
        json!("The pod failed.")
    );
    let running = pod(json!({}), json!({"phase": "Running"}));
    assert!(row_conditions("", "Pod", &running).is_empty());
}
