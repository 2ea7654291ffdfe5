//! A pod's status computed from what the runtime shows, the way the kubelet computes
//! it: container states with last states and restart counts, `started` and `ready`
//! from the probes, the phase, and the PodReadyToStartContainers, Initialized,
//! ContainersReady and Ready conditions.

use std::collections::HashMap;

use cri::v1;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::probes::Snapshot;
use super::sandbox::Qos;
use crate::labels;

/// The runtime's statuses of one container name, newest first.
pub(crate) type History = Vec<v1::ContainerStatus>;

/// A timestamp from CRI's nanoseconds, cut to whole seconds as the API stores it.
pub(crate) fn time(nanos: i64) -> Option<Time> {
    if nanos <= 0 {
        return None;
    }
    jiff::Timestamp::from_second(nanos / 1_000_000_000)
        .ok()
        .map(Time)
}

/// The restart count a container was created with (its annotation).
pub(crate) fn restart_count(status: &v1::ContainerStatus) -> u32 {
    status
        .annotations
        .get(labels::RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The runtime state of a container status.
pub(crate) fn state(status: &v1::ContainerStatus) -> v1::ContainerState {
    v1::ContainerState::try_from(status.state).unwrap_or(v1::ContainerState::ContainerUnknown)
}

/// What the pod's containers are waiting for when the runtime shows nothing newer:
/// a reason and message per container name (ErrImageNeverPull, CrashLoopBackOff…).
pub(crate) type Waiting = HashMap<String, (String, String)>;

/// Everything the status is computed from.
pub(crate) struct Observed<'a> {
    pub(crate) pod: &'a Pod,
    pub(crate) containers: &'a HashMap<String, History>,
    pub(crate) waiting: &'a Waiting,
    /// Termination messages by container ID (read from the termination logs).
    pub(crate) messages: &'a HashMap<String, String>,
    pub(crate) pod_ip: &'a str,
    pub(crate) host_ip: &'a str,
    pub(crate) sandbox_ready: bool,
    pub(crate) start_time: Option<Time>,
    /// What the probes found: `started` and `ready` of running containers.
    pub(crate) probes: &'a Snapshot,
    /// Why the agent failed the pod as a whole (reason, message), e.g. its
    /// activeDeadlineSeconds passed.
    pub(crate) failed: Option<(&'a str, &'a str)>,
}

/// How far the init containers got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Init {
    /// All completed (sidecars started): the regular containers may run.
    Done,
    /// These have not completed yet.
    Pending(Vec<String>),
    /// One failed and will not be restarted (restartPolicy Never).
    Failed(String),
}

/// Where the init containers stand.
pub(crate) fn init_progress(pod: &Pod, containers: &HashMap<String, History>) -> Init {
    let spec = pod.spec.clone().unwrap_or_default();
    let never = spec.restart_policy.as_deref() == Some("Never");
    let mut pending = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        let latest = containers.get(&c.name).and_then(|h| h.first());
        let done = match latest {
            None => false,
            Some(s) if is_sidecar(c) => state(s) == v1::ContainerState::ContainerRunning,
            Some(s) => match state(s) {
                v1::ContainerState::ContainerExited if s.exit_code == 0 => true,
                v1::ContainerState::ContainerExited if never => {
                    return Init::Failed(c.name.clone());
                }
                _ => false,
            },
        };
        if !done {
            pending.push(c.name.clone());
            // Later init containers wait; they are pending too.
        }
    }
    if pending.is_empty() {
        Init::Done
    } else {
        Init::Pending(pending)
    }
}

/// A restartable init container (a sidecar).
pub(crate) fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's status, from what was observed, with transition times kept from
/// `previous` where a condition did not change.
pub(crate) fn compute(observed: &Observed<'_>, previous: Option<&PodStatus>) -> PodStatus {
    let pod = observed.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let init = init_progress(pod, observed.containers);
    let init_done = init == Init::Done;

    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(observed, c, "PodInitializing"))
        .collect();
    let regular_default = if init_done {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(observed, c, regular_default))
        .collect();

    let phase = match observed.failed {
        Some(_) => "Failed",
        None => phase(pod, &init, &statuses, previous),
    };
    let terminal = matches!(phase, "Succeeded" | "Failed");

    let unready: Vec<String> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.clone())
        .collect();
    let mut conditions = Vec::new();
    // The scheduler's condition stays as it is.
    if let Some(scheduled) = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
    {
        conditions.push(scheduled.clone());
    }
    let sandbox_ready = observed.sandbox_ready && !terminal;
    conditions.push(condition(
        "PodReadyToStartContainers",
        sandbox_ready,
        None,
        None,
    ));
    conditions.push(match (&init, terminal) {
        (_, true) if phase == "Succeeded" => {
            condition("Initialized", true, Some("PodCompleted"), None)
        }
        (Init::Done, _) => condition("Initialized", true, None, None),
        (Init::Pending(names), _) => condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                names.join(" ")
            )),
        ),
        (Init::Failed(name), _) => condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!("containers with incomplete status: [{name}]")),
        ),
    });
    let ready = unready.is_empty() && init_done && !terminal;
    let not_ready = |type_: &str| {
        if terminal {
            condition(type_, false, Some("PodCompleted"), None)
        } else {
            condition(
                type_,
                false,
                Some("ContainersNotReady"),
                Some(format!(
                    "containers with unready status: [{}]",
                    unready.join(" ")
                )),
            )
        }
    };
    if ready {
        conditions.push(condition("ContainersReady", true, None, None));
        conditions.push(condition("Ready", true, None, None));
    } else {
        conditions.push(not_ready("ContainersReady"));
        conditions.push(not_ready("Ready"));
    }
    // Transition times: kept while a condition's status does not change.
    let now = Time(
        jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .unwrap_or_else(|_| jiff::Timestamp::now()),
    );
    for c in conditions.iter_mut().filter(|c| c.type_ != "PodScheduled") {
        let before = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|o| o.type_ == c.type_));
        c.last_transition_time = match before {
            Some(b) if b.status == c.status => b.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
    }

    let (pod_ip, pod_ips) = if observed.pod_ip.is_empty() {
        let kept = previous.and_then(|p| p.pod_ip.clone());
        let kept_ips = previous.and_then(|p| p.pod_ips.clone());
        (kept, kept_ips)
    } else {
        (
            Some(observed.pod_ip.to_owned()),
            Some(vec![PodIP {
                ip: observed.pod_ip.to_owned(),
            }]),
        )
    };
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        host_ip: Some(observed.host_ip.to_owned()),
        host_ips: Some(vec![HostIP {
            ip: observed.host_ip.to_owned(),
        }]),
        pod_ip,
        pod_ips,
        start_time: observed.start_time.clone(),
        qos_class: Some(Qos::of(pod).name().to_owned()),
        nominated_node_name: pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.clone()),
        reason: kept_or_failed(observed, previous, terminal, |f| f.0, |s| &s.reason),
        message: kept_or_failed(observed, previous, terminal, |f| f.1, |s| &s.message),
        ..Default::default()
    }
}

/// The pod's reason or message: the agent's failure's, else what a terminal pod
/// already carries (in the API or the last report).
fn kept_or_failed<'a>(
    observed: &Observed<'a>,
    previous: Option<&PodStatus>,
    terminal: bool,
    of_failure: impl Fn((&'a str, &'a str)) -> &'a str,
    of_status: impl Fn(&PodStatus) -> &Option<String>,
) -> Option<String> {
    if let Some(f) = observed.failed {
        return Some(of_failure(f).to_owned());
    }
    if !terminal {
        return None;
    }
    [observed.pod.status.as_ref(), previous]
        .into_iter()
        .flatten()
        .find_map(|s| of_status(s).clone())
}

fn condition(
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        ..Default::default()
    }
}

/// The terminated state of a container the runtime saw exit.
fn terminated(status: &v1::ContainerStatus, messages: &HashMap<String, String>) -> ContainerState {
    let reason = if status.reason.is_empty() {
        if status.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_owned()
    } else {
        status.reason.clone()
    };
    let message = messages
        .get(&status.id)
        .cloned()
        .or_else(|| (!status.message.is_empty()).then(|| status.message.clone()))
        .filter(|m| !m.is_empty());
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(format!("containerd://{}", status.id)),
            exit_code: status.exit_code,
            reason: Some(reason),
            message,
            started_at: time(status.started_at),
            finished_at: time(status.finished_at),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..Default::default()
    }
}

fn container_status(
    observed: &Observed<'_>,
    c: &Container,
    default_waiting: &str,
) -> ContainerStatus {
    let history = observed
        .containers
        .get(&c.name)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let latest = history.first();
    let override_waiting = observed.waiting.get(&c.name);
    let image = c.image.clone().unwrap_or_default();
    let Some(latest) = latest else {
        let (reason, message) = match override_waiting {
            Some((r, m)) => (r.as_str(), Some(m.clone())),
            None => (default_waiting, None),
        };
        return ContainerStatus {
            name: c.name.clone(),
            image,
            state: Some(waiting(reason, message)),
            ready: false,
            started: Some(false),
            restart_count: 0,
            ..Default::default()
        };
    };
    let previous = history.get(1);
    let (current, last) = match state(latest) {
        v1::ContainerState::ContainerRunning => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time(latest.started_at),
                }),
                ..Default::default()
            },
            previous.map(|p| terminated(p, observed.messages)),
        ),
        v1::ContainerState::ContainerCreated => (
            waiting("ContainerCreating", None),
            previous.map(|p| terminated(p, observed.messages)),
        ),
        v1::ContainerState::ContainerExited => match override_waiting {
            Some((reason, message)) => (
                waiting(reason, Some(message.clone())),
                Some(terminated(latest, observed.messages)),
            ),
            None => (
                terminated(latest, observed.messages),
                previous.map(|p| terminated(p, observed.messages)),
            ),
        },
        v1::ContainerState::ContainerUnknown => (
            waiting(
                "ContainerStatusUnknown",
                Some("The container could not be located when the pod was terminated".into()),
            ),
            None,
        ),
    };
    let running = state(latest) == v1::ContainerState::ContainerRunning;
    ContainerStatus {
        name: c.name.clone(),
        image,
        image_id: latest.image_ref.clone(),
        container_id: Some(format!("containerd://{}", latest.id)),
        ready: running && observed.probes.ready(c, &latest.id),
        started: Some(running && observed.probes.started(c, &latest.id)),
        restart_count: restart_count(latest) as i32,
        state: Some(current),
        last_state: Some(last.unwrap_or_default()),
        ..Default::default()
    }
}

/// The pod phase, as the kubelet's getPhase computes it.
fn phase(
    pod: &Pod,
    init: &Init,
    statuses: &[ContainerStatus],
    previous: Option<&PodStatus>,
) -> &'static str {
    // A terminal phase is never left.
    let api_phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let was = previous.and_then(|p| p.phase.as_deref());
    for p in [api_phase, was].into_iter().flatten() {
        match p {
            "Succeeded" => return "Succeeded",
            "Failed" => return "Failed",
            _ => {}
        }
    }
    if let Init::Failed(_) = init {
        return "Failed";
    }
    if let Init::Pending(_) = init {
        return "Pending";
    }
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .is_some()
        {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "u"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": "busybox"}]},
        }))
        .expect("pod")
    }

    fn exited(code: i32, restart: u32) -> v1::ContainerStatus {
        v1::ContainerStatus {
            id: format!("id{restart}"),
            state: v1::ContainerState::ContainerExited as i32,
            exit_code: code,
            started_at: 1_700_000_000_000_000_000,
            finished_at: 1_700_000_001_000_000_000,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            annotations: HashMap::from([(labels::RESTART_COUNT.to_owned(), restart.to_string())]),
            ..Default::default()
        }
    }

    fn status_of(pod: &Pod, history: History, waiting: Waiting) -> PodStatus {
        let containers = HashMap::from([("c".to_owned(), history)]);
        let messages = HashMap::new();
        compute(
            &Observed {
                pod,
                containers: &containers,
                waiting: &waiting,
                messages: &messages,
                pod_ip: "10.42.0.5",
                host_ip: "192.168.1.10",
                sandbox_ready: true,
                start_time: None,
                probes: &Snapshot::default(),
                failed: None,
            },
            None,
        )
    }

    #[test]
    fn a_never_pod_exiting_zero_succeeds_with_completed() {
        let pod = pod("Never");
        let status = status_of(&pod, vec![exited(0, 0)], Waiting::new());
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        let c = &status.container_statuses.expect("statuses")[0];
        let t = c
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("terminated");
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
        let ready = status
            .conditions
            .expect("conditions")
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
    }

    #[test]
    fn a_crashing_always_pod_is_running_in_back_off_with_its_last_state() {
        let pod = pod("Always");
        let waiting = Waiting::from([(
            "c".to_owned(),
            ("CrashLoopBackOff".to_owned(), "back-off 10s".to_owned()),
        )]);
        let status = status_of(&pod, vec![exited(1, 2), exited(1, 1)], waiting);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let c = &status.container_statuses.expect("statuses")[0];
        assert_eq!(c.restart_count, 2);
        assert_eq!(
            c.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref()),
            Some("CrashLoopBackOff")
        );
        assert_eq!(
            c.last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code),
            Some(1)
        );
    }

    #[test]
    fn a_running_container_is_ready_only_once_its_readiness_probe_succeeded() {
        use crate::pods::probes::{Kind, Verdict};
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "readinessProbe": {"exec": {"command": ["true"]}}}]},
        }))
        .expect("pod");
        let running = v1::ContainerStatus {
            id: "id0".into(),
            state: v1::ContainerState::ContainerRunning as i32,
            started_at: 1_700_000_000_000_000_000,
            ..Default::default()
        };
        let containers = HashMap::from([("c".to_owned(), vec![running])]);
        let (waiting, messages) = (Waiting::new(), HashMap::new());
        let compute_with = |probes: &Snapshot| {
            compute(
                &Observed {
                    pod: &pod,
                    containers: &containers,
                    waiting: &waiting,
                    messages: &messages,
                    pod_ip: "10.42.0.5",
                    host_ip: "192.168.1.10",
                    sandbox_ready: true,
                    start_time: None,
                    probes,
                    failed: None,
                },
                None,
            )
        };
        let ready_condition = |status: &PodStatus| {
            status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Ready")
                .map(|c| (c.status.clone(), c.message.clone()))
        };
        let unready = compute_with(&Snapshot::default());
        assert_eq!(unready.phase.as_deref(), Some("Running"));
        let c = &unready.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!((c.ready, c.started), (false, Some(true)));
        assert_eq!(
            ready_condition(&unready),
            Some((
                "False".to_owned(),
                Some("containers with unready status: [c]".to_owned())
            ))
        );
        let ready = compute_with(&Snapshot::with("id0", Kind::Readiness, Verdict::Success));
        assert!(ready.container_statuses.as_ref().expect("statuses")[0].ready);
        assert_eq!(ready_condition(&ready), Some(("True".to_owned(), None)));
    }

    #[test]
    fn a_never_pod_exiting_non_zero_fails() {
        let status = status_of(&pod("Never"), vec![exited(3, 0)], Waiting::new());
        assert_eq!(status.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn a_pod_with_nothing_started_is_pending_and_creating() {
        let status = status_of(&pod("Always"), Vec::new(), Waiting::new());
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let c = &status.container_statuses.expect("statuses")[0];
        assert_eq!(
            c.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref()),
            Some("ContainerCreating")
        );
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    }
}
