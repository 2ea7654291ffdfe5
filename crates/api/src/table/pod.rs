//! Pods: `NAME READY STATUS RESTARTS AGE` and, wide, `IP NODE NOMINATED NODE READINESS GATES`
//! (`printPod`).

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::fields::{at, int_at, items, name, opt_bool_at, str_at};
use super::{ColumnDefinition, docs, duration};

/// The `status.reason` the node lifecycle controller gives pods on an unreachable node.
const NODE_UNREACHABLE_POD_REASON: &str = "NodeLost";

pub(super) fn columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text(
            "Ready",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        ColumnDefinition::text(
            "Status",
            "The aggregate status of the containers in this pod.",
        ),
        ColumnDefinition::text(
            "Restarts",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        ColumnDefinition::age(),
        ColumnDefinition::text("IP", docs::POD_IP).wide(),
        ColumnDefinition::text("Node", docs::POD_NODE_NAME).wide(),
        ColumnDefinition::text("Nominated Node", docs::POD_NOMINATED_NODE_NAME).wide(),
        ColumnDefinition::text("Readiness Gates", docs::POD_READINESS_GATES).wide(),
    ]
}

/// The `Completed` row condition of pods that succeeded or failed.
pub(super) fn conditions(pod: &Value) -> Vec<Value> {
    let (reason, message) = match str_at(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return Vec::new(),
    };
    vec![json!({"type": "Completed", "status": "True", "reason": reason, "message": message})]
}

/// Restart counts and the latest container termination behind them.
#[derive(Debug, Default, Clone, Copy)]
struct Restarts {
    count: i64,
    last: Option<Timestamp>,
}

impl Restarts {
    /// Adds one container status's restarts and last termination.
    fn add(&mut self, status: &Value) {
        self.count += int_at(status, &["restartCount"]);
        let finished = duration::timestamp_at(status, &["lastState", "terminated", "finishedAt"]);
        if finished > self.last {
            self.last = finished;
        }
    }
}

/// Whether a container's state is `key` (`waiting`, `running`, `terminated`).
fn state<'a>(status: &'a Value, key: &str) -> Option<&'a Value> {
    at(status, &["state", key])
}

/// `Signal:9` or `ExitCode:1` for a termination without a reason.
fn termination_text(terminated: &Value) -> String {
    match int_at(terminated, &["signal"]) {
        0 => format!("ExitCode:{}", int_at(terminated, &["exitCode"])),
        signal => format!("Signal:{signal}"),
    }
}

/// Whether the pod has condition `type` and its status is `True` (the first one counts).
fn condition_true(pod: &Value, condition_type: &str) -> Option<bool> {
    items(pod, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == condition_type)
        .map(|c| str_at(c, &["status"]) == "True")
}

pub(super) fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let spec_containers = items(pod, &["spec", "containers"]);
    let init_containers = items(pod, &["spec", "initContainers"]);
    let is_sidecar = |container_name: &str| {
        init_containers.iter().any(|c| {
            str_at(c, &["name"]) == container_name && str_at(c, &["restartPolicy"]) == "Always"
        })
    };
    let sidecars = init_containers
        .iter()
        .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
        .count();
    let total = spec_containers.len() + sidecars;
    let mut ready = 0usize;

    // Pods are created Pending; the phase is only missing before the server defaults it.
    let phase = match str_at(pod, &["status", "phase"]) {
        "" => "Pending",
        phase => phase,
    };
    let mut reason = match str_at(pod, &["status", "reason"]) {
        "" => phase.to_owned(),
        r => r.to_owned(),
    };
    let scheduling_gated = items(pod, &["status", "conditions"]).iter().any(|c| {
        str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
    });
    if scheduling_gated {
        reason = "SchedulingGated".to_owned();
    }

    let mut all_restarts = Restarts::default();
    let mut sidecar_restarts = Restarts::default();
    let mut initializing = false;
    for (i, status) in items(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        all_restarts.add(status);
        let sidecar = is_sidecar(str_at(status, &["name"]));
        if sidecar {
            sidecar_restarts.add(status);
        }
        let terminated = state(status, "terminated");
        if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && opt_bool_at(status, &["started"]) == Some(true) {
            if opt_bool_at(status, &["ready"]) == Some(true) {
                ready += 1;
            }
            continue;
        }
        let waiting_reason = state(status, "waiting").map(|w| str_at(w, &["reason"]));
        reason = match (terminated, waiting_reason) {
            (Some(t), _) => match str_at(t, &["reason"]) {
                "" => format!("Init:{}", termination_text(t)),
                r => format!("Init:{r}"),
            },
            (None, Some(r)) if !r.is_empty() && r != "PodInitializing" => format!("Init:{r}"),
            _ => format!("Init:{i}/{}", init_containers.len()),
        };
        initializing = true;
        break;
    }

    let mut restarts = all_restarts;
    if !initializing || condition_true(pod, "Initialized") == Some(true) {
        restarts = sidecar_restarts;
        let mut has_running = false;
        for status in items(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts.add(status);
            let waiting_reason = state(status, "waiting")
                .map(|w| str_at(w, &["reason"]))
                .filter(|r| !r.is_empty());
            let terminated = state(status, "terminated");
            if let Some(r) = waiting_reason {
                reason = r.to_owned();
            } else if let Some(t) = terminated {
                reason = match str_at(t, &["reason"]) {
                    "" => termination_text(t),
                    r => r.to_owned(),
                };
            } else if opt_bool_at(status, &["ready"]) == Some(true)
                && state(status, "running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose main containers completed but one still runs is Running (or NotReady).
        if reason == "Completed" && has_running {
            let pod_ready = items(pod, &["status", "conditions"])
                .iter()
                .any(|c| str_at(c, &["type"]) == "Ready" && str_at(c, &["status"]) == "True");
            reason = if pod_ready {
                "Running".to_owned()
            } else {
                "NotReady".to_owned()
            };
        }
    }

    let deleting = at(pod, &["metadata", "deletionTimestamp"]).is_some();
    if deleting && str_at(pod, &["status", "reason"]) == NODE_UNREACHABLE_POD_REASON {
        reason = "Unknown".to_owned();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_owned();
    }

    let restarts_text = match restarts.last {
        Some(last) if restarts.count != 0 => {
            format!("{} ({} ago)", restarts.count, duration::between(last, now))
        }
        _ => restarts.count.to_string(),
    };

    vec![
        Value::from(name(pod)),
        Value::from(format!("{ready}/{total}")),
        Value::from(reason),
        Value::from(restarts_text),
        Value::from(duration::age(pod, now)),
        Value::from(pod_ip(pod)),
        Value::from(or_none(str_at(pod, &["spec", "nodeName"]))),
        Value::from(or_none(str_at(pod, &["status", "nominatedNodeName"]))),
        Value::from(readiness_gates(pod)),
    ]
}

/// The pod's first IP: `status.podIP` wins over `status.podIPs` as in v1 conversion.
fn pod_ip(pod: &Value) -> String {
    let ip = match str_at(pod, &["status", "podIP"]) {
        "" => items(pod, &["status", "podIPs"])
            .first()
            .map(|ip| str_at(ip, &["ip"]))
            .unwrap_or(""),
        ip => ip,
    };
    or_none(ip)
}

/// `true/total` readiness gates, `<none>` without gates.
fn readiness_gates(pod: &Value) -> String {
    let gates = items(pod, &["spec", "readinessGates"]);
    if gates.is_empty() {
        return "<none>".to_owned();
    }
    let passing = gates
        .iter()
        .filter(|gate| condition_true(pod, str_at(gate, &["conditionType"])) == Some(true))
        .count();
    format!("{passing}/{}", gates.len())
}

fn or_none(s: &str) -> String {
    if s.is_empty() { "<none>" } else { s }.to_owned()
}
