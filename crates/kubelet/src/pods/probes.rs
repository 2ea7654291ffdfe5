//! Liveness, readiness and startup probes, as the kubelet's prober runs them.
//!
//! One tokio task per running container and probe kind probes on the probe's period
//! from `initialDelaySeconds` after the container started, and counts results the
//! way the kubelet's prober worker does ([`Counter`]): a result is published only
//! after `successThreshold` successes or `failureThreshold` failures in a row;
//! readiness starts as failed, liveness as succeeded, startup as unknown; the
//! startup probe gates the other two until it succeeds; a published liveness or
//! startup failure holds the prober until the container is replaced. Every failed
//! probe is a Warning `Unhealthy` event in the kubelet's words.
//!
//! The pod worker owns a [`Probes`]: it starts and stops the tasks as containers
//! come and go ([`Probes::sync`]), reads the published results for the status
//! ([`Snapshot`]), kills containers whose liveness or startup probe failed, and is
//! woken when a result changes ([`Probes::changed`]).
//!
//! Probes only ever connect to the pod's IP (for hostNetwork pods: the node, by
//! default through 127.0.0.1), see [`Target`].

mod exec;
mod grpc;
mod http;
mod tcp;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use events::{Event, EventType, Recorder};
use k8s_openapi::api::core::v1::{Container, ObjectReference, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// How often an errored probe is tried again before its result is thrown away (the
/// kubelet's maxProbeRetries).
const MAX_RETRIES: usize = 3;
/// The most of a probe's output (exec output, HTTP body) that is read.
pub(crate) const MAX_OUTPUT: usize = 10 * 1024;
/// The User-Agent of HTTP and gRPC probes.
pub(crate) const USER_AGENT: &str = "kube-probe/1.33";

/// The three kinds of probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// Restarts the container when it fails.
    Liveness,
    /// Decides whether the container is ready.
    Readiness,
    /// Holds the other two back until the container has started.
    Startup,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Startup, Kind::Liveness, Kind::Readiness];

    /// The container's probe of this kind.
    pub(crate) fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
            Kind::Startup => c.startup_probe.as_ref(),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        })
    }
}

/// A probe's numbers, with Kubernetes' defaults for what is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) initial_delay: Duration,
    pub(crate) period: Duration,
    pub(crate) timeout: Duration,
    pub(crate) success_threshold: u32,
    pub(crate) failure_threshold: u32,
}

impl Timing {
    /// The numbers of `probe` as a probe of `kind` (liveness and startup probes
    /// always need a single success).
    pub(crate) fn of(kind: Kind, probe: &Probe) -> Timing {
        let secs = |v: Option<i32>, default: i32, min: i32| {
            Duration::from_secs(v.unwrap_or(default).max(min) as u64)
        };
        let success_threshold = match kind {
            Kind::Readiness => probe.success_threshold.unwrap_or(1).max(1) as u32,
            Kind::Liveness | Kind::Startup => 1,
        };
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            success_threshold,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// A published probe result (the kubelet's results.Result; unknown is `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Healthy, ready or started.
    Success,
    /// Past the failure threshold.
    Failure,
}

/// What a prober does when its period comes round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Not now (initial delay, or waiting for the startup probe).
    Wait,
    /// Run the probe.
    Probe,
    /// Nothing more to do for this container (started; or failed and held until
    /// the container is replaced).
    Done,
}

/// The counting of one prober, as the kubelet's prober worker counts.
#[derive(Debug, Clone)]
pub(crate) struct Counter {
    kind: Kind,
    timing: Timing,
    /// The last probe's result and how many in a row had it.
    last: Option<bool>,
    run: u32,
    published: Option<Verdict>,
    on_hold: bool,
}

impl Counter {
    /// A counter for a new container: readiness starts failed, liveness succeeded,
    /// startup unknown.
    pub(crate) fn new(kind: Kind, timing: Timing) -> Counter {
        let published = match kind {
            Kind::Readiness => Some(Verdict::Failure),
            Kind::Liveness => Some(Verdict::Success),
            Kind::Startup => None,
        };
        Counter {
            kind,
            timing,
            last: None,
            run: 0,
            published,
            on_hold: false,
        }
    }

    /// The result published for the container.
    pub(crate) fn published(&self) -> Option<Verdict> {
        self.published
    }

    /// What to do `since_start` after the container started, `started` telling
    /// whether its startup probe (if any) has succeeded.
    pub(crate) fn step(&self, since_start: Duration, started: bool) -> Step {
        if self.on_hold {
            return Step::Done;
        }
        // The kubelet compares whole seconds.
        if since_start.as_secs() < self.timing.initial_delay.as_secs() {
            return Step::Wait;
        }
        match (self.kind, started) {
            (Kind::Startup, true) => Step::Done,
            (Kind::Startup, false) => Step::Probe,
            (_, false) => Step::Wait,
            (_, true) => Step::Probe,
        }
    }

    /// Counts one probe's result; returns the published result when it changed.
    pub(crate) fn record(&mut self, success: bool) -> Option<Verdict> {
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            self.timing.success_threshold
        } else {
            self.timing.failure_threshold
        };
        if self.run < threshold {
            return None;
        }
        let verdict = if success {
            Verdict::Success
        } else {
            Verdict::Failure
        };
        let changed = self.published != Some(verdict);
        self.published = Some(verdict);
        if !success && self.kind != Kind::Readiness {
            // The container will be killed: stop probing it.
            self.on_hold = true;
            self.run = 0;
        }
        changed.then_some(verdict)
    }
}

/// One probe's outcome with its output (the kubelet's probe.Result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Passed.
    Success,
    /// Passed, with something to say (an HTTP redirect that was not followed).
    Warning(String),
    /// Failed, with the output or the reason.
    Failure(String),
    /// The probe could not be run; its result is thrown away.
    Error(String),
}

/// Where probes may connect: the pod's IP, or for a hostNetwork pod the node (by
/// default through 127.0.0.1). Nothing else, whatever a probe's `host` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) pod_ip: Option<IpAddr>,
    pub(crate) host_network: bool,
    pub(crate) node_ip: IpAddr,
}

impl Target {
    /// The address for a probe's `host` (unset: the pod), or why it is refused.
    pub(crate) fn resolve(&self, host: Option<&str>) -> Result<IpAddr, String> {
        let host = host.map(str::trim).filter(|h| !h.is_empty());
        let Some(host) = host else {
            if self.host_network {
                return Ok(IpAddr::from([127, 0, 0, 1]));
            }
            return self
                .pod_ip
                .ok_or_else(|| "the pod has no IP address yet".to_owned());
        };
        let parsed: Option<IpAddr> = host.trim_matches(['[', ']']).parse().ok();
        let allowed = parsed.filter(|ip| {
            Some(*ip) == self.pod_ip
                || (self.host_network && (ip.is_loopback() || *ip == self.node_ip))
        });
        allowed.ok_or_else(|| {
            format!(
                "probe host {host:?} is not the pod's IP address; probes only connect to the pod"
            )
        })
    }
}

/// A probe's port: a number, or the name of one of the container's ports.
pub(crate) fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("couldn't find port: {name} in {}", c.name))?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

/// A string as Go's `%q` prints it.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A duration as Go prints it (whole seconds here: `1s`, `1m30s`).
pub(crate) fn go_seconds(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The published results of one container.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Results {
    liveness: Option<Verdict>,
    readiness: Option<Verdict>,
    startup: Option<Verdict>,
}

impl Results {
    fn slot(&mut self, kind: Kind) -> &mut Option<Verdict> {
        match kind {
            Kind::Liveness => &mut self.liveness,
            Kind::Readiness => &mut self.readiness,
            Kind::Startup => &mut self.startup,
        }
    }
}

/// What the prober tasks of a pod share with its worker.
#[derive(Default)]
struct Shared {
    /// By container ID.
    results: Mutex<HashMap<String, Results>>,
    changed: Notify,
}

impl Shared {
    fn set(&self, id: &str, kind: Kind, verdict: Option<Verdict>) {
        if let Ok(mut results) = self.results.lock() {
            *results.entry(id.to_owned()).or_default().slot(kind) = verdict;
        }
        self.changed.notify_one();
    }
}

/// The results as the status reads them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Snapshot(HashMap<String, Results>);

impl Snapshot {
    /// Whether running container `c` (ID `id`) has started: it has no startup probe,
    /// or that probe succeeded.
    pub(crate) fn started(&self, c: &Container, id: &str) -> bool {
        c.startup_probe.is_none()
            || self.0.get(id).and_then(|r| r.startup) == Some(Verdict::Success)
    }

    /// Whether running container `c` (ID `id`) is ready: started, and without a
    /// readiness probe or with one that succeeded.
    pub(crate) fn ready(&self, c: &Container, id: &str) -> bool {
        self.started(c, id)
            && (c.readiness_probe.is_none()
                || self.0.get(id).and_then(|r| r.readiness) == Some(Verdict::Success))
    }

    /// The probe whose failure means container `id` must be killed.
    pub(crate) fn failed(&self, id: &str) -> Option<Kind> {
        let results = self.0.get(id)?;
        if results.liveness == Some(Verdict::Failure) {
            Some(Kind::Liveness)
        } else if results.startup == Some(Verdict::Failure) {
            Some(Kind::Startup)
        } else {
            None
        }
    }
}

#[cfg(test)]
impl Snapshot {
    /// A snapshot where container `id` has `verdict` from its `kind` probe.
    pub(crate) fn with(id: &str, kind: Kind, verdict: Verdict) -> Snapshot {
        let mut results = Results::default();
        *results.slot(kind) = Some(verdict);
        Snapshot(HashMap::from([(id.to_owned(), results)]))
    }
}

/// A running container the probes look at.
pub(crate) struct Running<'a> {
    pub(crate) spec: &'a Container,
    pub(crate) id: &'a str,
    /// When it started (CRI nanoseconds).
    pub(crate) started_at: i64,
    /// A restartable init container (events name `spec.initContainers{..}`).
    pub(crate) sidecar: bool,
}

/// What the prober tasks need from the pod worker.
pub(crate) struct Context<'a> {
    pub(crate) runtime: &'a cri::Runtime,
    pub(crate) recorder: &'a Recorder,
    /// The pod (no field path).
    pub(crate) pod: ObjectReference,
    pub(crate) target: Target,
}

struct Task {
    container_id: String,
    handle: JoinHandle<()>,
}

/// The prober tasks of one pod and their results.
#[derive(Default)]
pub(crate) struct Probes {
    shared: Arc<Shared>,
    tasks: HashMap<(String, Kind), Task>,
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Probes {
    /// No probers yet.
    pub(crate) fn new() -> Probes {
        Probes::default()
    }

    /// Completes when a published result changed since the last call.
    pub(crate) async fn changed(&self) {
        self.shared.changed.notified().await;
    }

    /// The published results.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot(
            self.shared
                .results
                .lock()
                .map(|r| r.clone())
                .unwrap_or_default(),
        )
    }

    /// Stops every prober (the pod is terminating).
    pub(crate) fn stop(&mut self) {
        for (_, task) in self.tasks.drain() {
            task.handle.abort();
        }
    }

    /// Runs one prober per probe of each running container: stops those of
    /// containers that stopped or were replaced (forgetting their results) and
    /// starts those of new ones.
    pub(crate) fn sync(&mut self, ctx: &Context<'_>, running: &[Running<'_>]) {
        self.tasks.retain(|(name, _), task| {
            let keep = running
                .iter()
                .any(|r| r.spec.name == *name && r.id == task.container_id);
            if !keep {
                task.handle.abort();
            }
            keep
        });
        if let Ok(mut results) = self.shared.results.lock() {
            results.retain(|id, _| running.iter().any(|r| r.id == id));
        }
        for r in running {
            let kinds: Vec<(Kind, &Probe)> = Kind::ALL
                .iter()
                .filter_map(|k| k.of(r.spec).map(|p| (*k, p)))
                .collect();
            if kinds
                .iter()
                .all(|(k, _)| self.tasks.contains_key(&(r.spec.name.clone(), *k)))
            {
                continue;
            }
            // A new container: all its probers start together, sharing whether the
            // startup probe has succeeded.
            let (started, _) = watch::channel(r.spec.startup_probe.is_none());
            let started = Arc::new(started);
            let mut reference = ctx.pod.clone();
            reference.field_path = Some(if r.sidecar {
                format!("spec.initContainers{{{}}}", r.spec.name)
            } else {
                format!("spec.containers{{{}}}", r.spec.name)
            });
            for (kind, probe) in kinds {
                let timing = Timing::of(kind, probe);
                let counter = Counter::new(kind, timing);
                self.shared.set(r.id, kind, counter.published());
                let prober = Prober {
                    kind,
                    probe: probe.clone(),
                    container: r.spec.clone(),
                    container_id: r.id.to_owned(),
                    target: ctx.target.clone(),
                    runtime: ctx.runtime.clone(),
                };
                let task = Loop {
                    prober,
                    counter,
                    started_at: r.started_at,
                    started: Arc::clone(&started),
                    shared: Arc::clone(&self.shared),
                    recorder: ctx.recorder.clone(),
                    reference: reference.clone(),
                };
                let handle = tokio::spawn(task.run());
                self.tasks.insert(
                    (r.spec.name.clone(), kind),
                    Task {
                        container_id: r.id.to_owned(),
                        handle,
                    },
                );
            }
        }
    }
}

/// Runs one probe of one container.
struct Prober {
    kind: Kind,
    probe: Probe,
    container: Container,
    container_id: String,
    target: Target,
    runtime: cri::Runtime,
}

impl Prober {
    /// One probe, tried again (up to [`MAX_RETRIES`] times) while it errors.
    async fn run(&self) -> Outcome {
        let mut outcome = Outcome::Error("not run".into());
        for _ in 0..MAX_RETRIES {
            outcome = self.once().await;
            if !matches!(outcome, Outcome::Error(_)) {
                break;
            }
        }
        outcome
    }

    async fn once(&self) -> Outcome {
        let timeout = Timing::of(self.kind, &self.probe).timeout;
        let p = &self.probe;
        if let Some(exec) = &p.exec {
            let command = exec::command(exec, &self.container);
            return exec::probe(&self.runtime, &self.container_id, command, timeout).await;
        }
        if let Some(get) = &p.http_get {
            let request = match http::Request::of(get, &self.container, &self.target) {
                Ok(r) => r,
                Err(e) => return Outcome::Error(e),
            };
            return http::probe(&request, timeout).await;
        }
        if let Some(socket) = &p.tcp_socket {
            let ip = match self.target.resolve(socket.host.as_deref()) {
                Ok(ip) => ip,
                Err(e) => return Outcome::Error(e),
            };
            let port = match resolve_port(&socket.port, &self.container) {
                Ok(port) => port,
                Err(e) => return Outcome::Error(e),
            };
            return tcp::probe(ip, port, timeout).await;
        }
        if let Some(g) = &p.grpc {
            let ip = match self.target.resolve(None) {
                Ok(ip) => ip,
                Err(e) => return Outcome::Error(e),
            };
            let port = match u16::try_from(g.port).ok().filter(|p| *p > 0) {
                Some(port) => port,
                None => return Outcome::Error(format!("invalid port number: {}", g.port)),
            };
            let service = g.service.clone().unwrap_or_default();
            return grpc::probe(ip, port, &service, timeout).await;
        }
        Outcome::Error("missing probe handler".into())
    }
}

/// One prober task: probes on the period, counts and publishes.
struct Loop {
    prober: Prober,
    counter: Counter,
    started_at: i64,
    started: Arc<watch::Sender<bool>>,
    shared: Arc<Shared>,
    recorder: Recorder,
    reference: ObjectReference,
}

impl Loop {
    /// How long ago the container started.
    fn since_start(&self) -> Duration {
        let now = jiff::Timestamp::now().as_nanosecond() as i64;
        Duration::from_nanos((now - self.started_at).max(0) as u64)
    }

    async fn run(mut self) {
        let kind = self.prober.kind;
        let timing = Timing::of(kind, &self.prober.probe);
        // The first probe comes initialDelaySeconds after the container started.
        let delay = timing.initial_delay.saturating_sub(self.since_start());
        tokio::time::sleep(delay).await;
        let mut ticker = tokio::time::interval(timing.period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut started = self.started.subscribe();
        loop {
            // Readiness runs at once when the container has just started.
            let waiting_start = kind == Kind::Readiness && !*started.borrow();
            tokio::select! {
                _ = ticker.tick() => {}
                changed = started.changed(), if waiting_start => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            let is_started = *started.borrow_and_update();
            match self.counter.step(self.since_start(), is_started) {
                Step::Wait => continue,
                Step::Done => return,
                Step::Probe => {}
            }
            let outcome = self.prober.run().await;
            let success = match &outcome {
                Outcome::Success => true,
                Outcome::Warning(output) => {
                    self.event("ProbeWarning", format!("{kind} probe warning: {output}"));
                    true
                }
                Outcome::Failure(output) => {
                    self.event("Unhealthy", format!("{kind} probe failed: {output}"));
                    false
                }
                Outcome::Error(error) => {
                    self.event(
                        "Unhealthy",
                        format!("{kind} probe errored and resulted in unknown state: {error}"),
                    );
                    continue;
                }
            };
            tracing::debug!(container = %self.prober.container.name, probe = %kind, success, "probed");
            if let Some(verdict) = self.counter.record(success) {
                tracing::debug!(container = %self.prober.container.name, probe = %kind, ?verdict, "probe result changed");
                self.shared
                    .set(&self.prober.container_id, kind, Some(verdict));
                if kind == Kind::Startup && verdict == Verdict::Success {
                    self.started.send_replace(true);
                }
            }
        }
    }

    /// Records a Warning event about the container, in the background.
    fn event(&self, reason: &str, note: String) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some(note),
            action: reason.to_owned(),
            secondary: None,
        };
        let (recorder, reference) = (self.recorder.clone(), self.reference.clone());
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::debug!(error = %e, "cannot record event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(success: u32, failure: u32, delay: u64) -> Timing {
        Timing {
            initial_delay: Duration::from_secs(delay),
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn readiness_starts_failed_liveness_succeeded_and_startup_unknown() {
        let t = timing(1, 3, 0);
        assert_eq!(
            Counter::new(Kind::Readiness, t).published(),
            Some(Verdict::Failure)
        );
        assert_eq!(
            Counter::new(Kind::Liveness, t).published(),
            Some(Verdict::Success)
        );
        assert_eq!(Counter::new(Kind::Startup, t).published(), None);
    }

    #[test]
    fn liveness_fails_only_after_failure_threshold_failures_in_a_row() {
        let mut c = Counter::new(Kind::Liveness, timing(1, 3, 0));
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(false), None);
        // A success in between starts the count again.
        assert_eq!(c.record(true), None);
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(false), Some(Verdict::Failure));
        // Then it holds: the container is about to be restarted.
        assert_eq!(c.step(Duration::from_secs(60), true), Step::Done);
    }

    #[test]
    fn readiness_needs_success_threshold_successes_and_keeps_probing_after_failing() {
        let mut c = Counter::new(Kind::Readiness, timing(2, 2, 0));
        assert_eq!(c.record(true), None);
        assert_eq!(c.record(true), Some(Verdict::Success));
        assert_eq!(c.record(true), None, "no change, nothing published anew");
        assert_eq!(c.record(false), None);
        assert_eq!(c.record(false), Some(Verdict::Failure));
        assert_eq!(c.step(Duration::from_secs(60), true), Step::Probe);
        assert_eq!(c.record(true), None);
        assert_eq!(c.record(false), None, "one success is not two");
        assert_eq!(c.record(true), None);
        assert_eq!(c.record(true), Some(Verdict::Success));
    }

    #[test]
    fn a_failure_threshold_of_one_fails_on_the_first_failure() {
        let mut c = Counter::new(Kind::Readiness, timing(1, 1, 0));
        assert_eq!(c.record(true), Some(Verdict::Success));
        assert_eq!(c.record(false), Some(Verdict::Failure));
    }

    #[test]
    fn probes_wait_for_the_initial_delay_in_whole_seconds() {
        let c = Counter::new(Kind::Liveness, timing(1, 3, 5));
        assert_eq!(c.step(Duration::from_millis(4_999), true), Step::Wait);
        assert_eq!(c.step(Duration::from_secs(5), true), Step::Probe);
    }

    #[test]
    fn the_startup_probe_gates_liveness_and_readiness_until_it_succeeds() {
        let t = timing(1, 3, 0);
        let since = Duration::from_secs(3);
        let mut startup = Counter::new(Kind::Startup, t);
        let liveness = Counter::new(Kind::Liveness, t);
        let readiness = Counter::new(Kind::Readiness, t);
        assert_eq!(startup.step(since, false), Step::Probe);
        assert_eq!(liveness.step(since, false), Step::Wait);
        assert_eq!(readiness.step(since, false), Step::Wait);
        assert_eq!(startup.record(false), None);
        assert_eq!(startup.record(true), Some(Verdict::Success));
        assert_eq!(startup.step(since, true), Step::Done);
        assert_eq!(liveness.step(since, true), Step::Probe);
        assert_eq!(readiness.step(since, true), Step::Probe);
    }

    #[test]
    fn a_startup_probe_failing_past_its_threshold_fails_and_holds() {
        let mut startup = Counter::new(Kind::Startup, timing(1, 2, 0));
        assert_eq!(startup.record(false), None);
        assert_eq!(startup.record(false), Some(Verdict::Failure));
        assert_eq!(startup.step(Duration::from_secs(9), false), Step::Done);
    }

    #[test]
    fn unset_numbers_take_kubernetes_defaults_and_liveness_needs_one_success() {
        let probe = Probe {
            success_threshold: Some(3),
            ..Default::default()
        };
        let t = Timing::of(Kind::Liveness, &probe);
        assert_eq!(
            (
                t.initial_delay,
                t.period,
                t.timeout,
                t.success_threshold,
                t.failure_threshold
            ),
            (
                Duration::ZERO,
                Duration::from_secs(10),
                Duration::from_secs(1),
                1,
                3
            )
        );
        assert_eq!(Timing::of(Kind::Readiness, &probe).success_threshold, 3);
    }

    #[test]
    fn probes_connect_only_to_the_pod() {
        let pod = Target {
            pod_ip: Some(IpAddr::from([10, 42, 0, 7])),
            host_network: false,
            node_ip: IpAddr::from([192, 168, 1, 10]),
        };
        assert_eq!(pod.resolve(None), Ok(IpAddr::from([10, 42, 0, 7])));
        assert_eq!(
            pod.resolve(Some("10.42.0.7")),
            Ok(IpAddr::from([10, 42, 0, 7]))
        );
        for other in ["10.42.0.8", "127.0.0.1", "example.com", "192.168.1.10"] {
            assert!(pod.resolve(Some(other)).is_err(), "{other} allowed");
        }
        let host = Target {
            pod_ip: Some(IpAddr::from([192, 168, 1, 10])),
            host_network: true,
            node_ip: IpAddr::from([192, 168, 1, 10]),
        };
        assert_eq!(host.resolve(None), Ok(IpAddr::from([127, 0, 0, 1])));
        assert!(host.resolve(Some("192.168.1.10")).is_ok());
        assert!(host.resolve(Some("10.0.0.1")).is_err());
    }

    #[test]
    fn named_ports_resolve_through_the_container_ports() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": 8080}],
        }))
        .expect("container");
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("grpc".into()), &c),
            Err("couldn't find port: grpc in web".into())
        );
        assert!(resolve_port(&IntOrString::Int(70000), &c).is_err());
    }

    #[test]
    fn status_reads_started_and_ready_from_the_results() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "startupProbe": {"exec": {"command": ["true"]}},
            "readinessProbe": {"exec": {"command": ["true"]}},
        }))
        .expect("container");
        let mut snapshot = Snapshot::default();
        assert!(!snapshot.started(&c, "id1") && !snapshot.ready(&c, "id1"));
        snapshot.0.insert(
            "id1".into(),
            Results {
                startup: Some(Verdict::Success),
                readiness: Some(Verdict::Failure),
                liveness: None,
            },
        );
        assert!(snapshot.started(&c, "id1") && !snapshot.ready(&c, "id1"));
        snapshot.0.get_mut("id1").expect("id1").readiness = Some(Verdict::Success);
        assert!(snapshot.ready(&c, "id1"));
        assert!(!snapshot.ready(&c, "id2"), "results are per container ID");
        let plain = Container {
            name: "p".into(),
            ..Default::default()
        };
        assert!(snapshot.started(&plain, "x") && snapshot.ready(&plain, "x"));
        snapshot.0.get_mut("id1").expect("id1").liveness = Some(Verdict::Failure);
        assert_eq!(snapshot.failed("id1"), Some(Kind::Liveness));
    }

    #[test]
    fn go_quoting_escapes_quotes_and_newlines() {
        assert_eq!(go_quote("sh -c \"x\"\n"), "\"sh -c \\\"x\\\"\\n\"");
        assert_eq!(go_seconds(Duration::from_secs(90)), "1m30s");
    }
}
