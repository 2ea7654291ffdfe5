//! API Priority and Fairness: every request is classified by the FlowSchemas into
//! a priority level and a flow (usually its user); a limited level shares a part of
//! the server's seats among its flows by fair queuing, so one client flooding the
//! server waits behind itself while others go on. Overload is answered with 429
//! and `Retry-After`. Long-running requests (watches; logs, exec and port-forward
//! go to the node agents) hold no seats and are counted apart. The configuration
//! is the `flowcontrol.apiserver.k8s.io/v1` objects, followed through the watch
//! cache; Kubernetes' defaults are created at the first start.

mod config;
mod queueset;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use api::status::ApiError;
use serde_json::Value;
use store::Revision;

use config::Config;
pub(crate) use config::{AUTO_UPDATE, default_levels, default_schemas};
use queueset::{QueueSet, Rejection, Seats};

use crate::authn::Identity;
use crate::request::RequestInfo;

const SCHEMAS: &str = "/registry/flowcontrol.apiserver.k8s.io/flowschemas/";
const LEVELS: &str = "/registry/flowcontrol.apiserver.k8s.io/prioritylevelconfigurations/";

/// Objects per seat when estimating a list's cost, and the most seats a request
/// takes (kube-apiserver's work estimator).
const OBJECTS_PER_SEAT: usize = 100;
const MAX_SEATS: u32 = 10;
/// How long a request waits in a queue before it is refused (kube-apiserver
/// allows a quarter of its 60 s request timeout).
pub(crate) const QUEUE_WAIT_LIMIT: Duration = Duration::from_secs(15);
/// How long object counts used by the estimator are trusted.
const COUNT_TTL: Duration = Duration::from_secs(10);

/// The outcome of classifying and admitting one request.
pub(crate) struct Admission {
    /// `X-Kubernetes-PF-FlowSchema-UID` and `X-Kubernetes-PF-PriorityLevel-UID`.
    pub schema_uid: String,
    pub level_uid: String,
    /// Seats held while the request executes (none: exempt or long-running).
    pub seats: Option<Seats>,
    /// The long-running gauge, decremented on drop.
    pub long_running: Option<LongRunning>,
}

/// Counts a long-running request while it lasts.
pub(crate) struct LongRunning(Arc<AtomicU64>);

impl Drop for LongRunning {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Objects {
    schemas: BTreeMap<String, Value>,
    levels: BTreeMap<String, Value>,
}

/// Classification and fair queuing for the whole server.
pub(crate) struct FlowControl {
    server_limit: u32,
    wait_limit: Duration,
    objects: Mutex<Objects>,
    config: RwLock<Arc<Config>>,
    sets: Mutex<HashMap<String, Arc<QueueSet>>>,
    rejected: Mutex<BTreeMap<(String, &'static str), u64>>,
    dispatched: Mutex<BTreeMap<String, u64>>,
    long_running: Arc<AtomicU64>,
    counts: Mutex<HashMap<String, (usize, Instant)>>,
    /// Bumped whenever the configuration is rebuilt (status upkeep follows it).
    generation: tokio::sync::watch::Sender<u64>,
}

impl FlowControl {
    /// Flow control sharing `server_limit` seats; requests wait in a queue at most
    /// `wait_limit`.
    pub(crate) fn new(server_limit: u32, wait_limit: Duration) -> Arc<Self> {
        Arc::new(Self {
            server_limit: server_limit.max(1),
            wait_limit,
            objects: Mutex::new(Objects::default()),
            config: RwLock::new(Arc::new(Config::default())),
            sets: Mutex::new(HashMap::new()),
            rejected: Mutex::new(BTreeMap::new()),
            dispatched: Mutex::new(BTreeMap::new()),
            long_running: Arc::new(AtomicU64::new(0)),
            counts: Mutex::new(HashMap::new()),
            generation: tokio::sync::watch::channel(0).0,
        })
    }

    fn rebuild(&self, objects: &Objects) {
        let config = Config::build(objects.schemas.values(), objects.levels.values());
        let limits = config.nominal_limits(self.server_limit);
        {
            let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
            sets.retain(|name, _| limits.contains_key(name));
            for (name, limit) in &limits {
                let Some(limited) = config.levels.get(name).and_then(|l| l.limited.as_ref()) else {
                    continue;
                };
                match sets.get(name) {
                    Some(set) => set.reconfigure(*limit, limited.limit),
                    None => {
                        sets.insert(name.clone(), QueueSet::new(*limit, limited.limit));
                    }
                }
            }
        }
        tracing::debug!(
            schemas = config.schemas.len(),
            levels = config.levels.len(),
            "flow control configuration"
        );
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        self.generation.send_modify(|g| *g += 1);
    }

    /// FlowSchemas whose `Dangling` condition does not say whether their priority
    /// level exists: (name, dangling, level name).
    fn dangling_updates(&self) -> Vec<(String, bool, String)> {
        let o = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        o.schemas
            .iter()
            .filter_map(|(name, fs)| {
                let level = fs
                    .pointer("/spec/priorityLevelConfiguration/name")
                    .and_then(Value::as_str)?;
                let dangling = !o.levels.contains_key(level);
                let want = if dangling { "True" } else { "False" };
                let has = fs
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| {
                        c.iter()
                            .find(|c| c.get("type").and_then(Value::as_str) == Some("Dangling"))
                    })
                    .and_then(|c| c.get("status"))
                    .and_then(Value::as_str);
                (has != Some(want)).then(|| (name.clone(), dangling, level.to_string()))
            })
            .collect()
    }

    /// Classifies a request and waits for its seats; a 429 when its level is
    /// overloaded. `estimate` gives the objects a list would return, if known.
    pub(crate) async fn admit(
        &self,
        who: &Identity,
        info: &RequestInfo,
        long_running: bool,
        estimate: impl FnOnce() -> Option<usize>,
    ) -> Result<Admission, (ApiError, String, String)> {
        let config = self
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some((schema, level)) = config.classify(who, info) else {
            // Nothing matches (the mandatory catch-all was removed): let it through
            // unqueued, as there is nothing to account it to.
            return Ok(Admission {
                schema_uid: String::new(),
                level_uid: String::new(),
                seats: None,
                long_running: None,
            });
        };
        let mut admission = Admission {
            schema_uid: schema.uid.clone(),
            level_uid: level.uid.clone(),
            seats: None,
            long_running: None,
        };
        if long_running {
            self.long_running.fetch_add(1, Ordering::Relaxed);
            admission.long_running = Some(LongRunning(self.long_running.clone()));
            return Ok(admission);
        }
        if level.limited.is_none() {
            return Ok(admission);
        }
        let set = self
            .sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&level.name)
            .cloned();
        let Some(set) = set else {
            return Ok(admission);
        };
        let seats = match info.verb.as_str() {
            "list" => estimate()
                .map(|n| n.div_ceil(OBJECTS_PER_SEAT) as u32)
                .unwrap_or(1)
                .clamp(1, MAX_SEATS),
            _ => 1,
        };
        let flow = queueset::flow_hash(&schema.name, &schema.flow_key(who, info));
        match set.acquire(flow, seats, self.wait_limit).await {
            Ok(s) => {
                *self
                    .dispatched
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(level.name.clone())
                    .or_default() += 1;
                admission.seats = Some(s);
                Ok(admission)
            }
            Err(why) => {
                let reason = match why {
                    Rejection::QueueFull => "queue-full",
                    Rejection::TimedOut => "time-out",
                };
                *self
                    .rejected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry((level.name.clone(), reason))
                    .or_default() += 1;
                tracing::debug!(user = %who.user, schema = %schema.name, level = %level.name, reason, "request rejected by flow control");
                Err((
                    ApiError::too_many_requests(1),
                    admission.schema_uid,
                    admission.level_uid,
                ))
            }
        }
    }

    /// The cached number of objects under `prefix`, refreshed in the background
    /// through `count` when older than a few seconds.
    pub(crate) fn object_count<F, Fut>(self: &Arc<Self>, prefix: &str, count: F) -> Option<usize>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<usize>> + Send + 'static,
    {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = counts.get(prefix).copied();
        let stale = entry.is_none_or(|(_, at)| now.duration_since(at) > COUNT_TTL);
        if stale {
            // Mark as fresh now so that only one refresh runs at a time.
            counts.insert(prefix.to_string(), (entry.map_or(0, |e| e.0), now));
            let this = self.clone();
            let prefix = prefix.to_string();
            let fut = count();
            tokio::spawn(async move {
                if let Some(n) = fut.await {
                    this.counts
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(prefix, (n, Instant::now()));
                }
            });
        }
        entry.map(|(n, _)| n)
    }

    /// Prometheus text: seats, queues, dispatched and rejected requests per level.
    pub(crate) fn metrics_text(&self) -> String {
        let mut out = String::new();
        let sets: Vec<(String, Arc<QueueSet>)> = self
            .sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        // One reading per level, so the three gauges agree with each other.
        let mut levels: Vec<(String, queueset::Occupancy)> = sets
            .into_iter()
            .map(|(name, set)| (name, set.occupancy()))
            .collect();
        levels.sort_by(|a, b| a.0.cmp(&b.0));
        let gauges: [(&str, &str, Reading); 3] = [
            (
                "apiserver_flowcontrol_nominal_limit_seats",
                "Nominal number of execution seats configured for each priority level",
                |o| u64::from(o.limit),
            ),
            (
                "apiserver_flowcontrol_current_executing_seats",
                "Seats occupied by requests executing in each priority level",
                |o| u64::from(o.seats_in_use),
            ),
            (
                "apiserver_flowcontrol_current_inqueue_requests",
                "Requests waiting in the queues of each priority level",
                |o| o.waiting as u64,
            ),
        ];
        for (metric, help, value) in gauges {
            out.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} gauge\n"));
            for (name, o) in &levels {
                out.push_str(&format!(
                    "{metric}{{priority_level=\"{name}\"}} {}\n",
                    value(o)
                ));
            }
        }
        out.push_str("# HELP apiserver_flowcontrol_dispatched_requests_total Requests released for execution by each priority level\n# TYPE apiserver_flowcontrol_dispatched_requests_total counter\n");
        for (name, n) in self
            .dispatched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            out.push_str(&format!(
                "apiserver_flowcontrol_dispatched_requests_total{{priority_level=\"{name}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP apiserver_flowcontrol_rejected_requests_total Requests rejected by each priority level\n# TYPE apiserver_flowcontrol_rejected_requests_total counter\n");
        for ((name, reason), n) in self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            out.push_str(&format!(
                "apiserver_flowcontrol_rejected_requests_total{{priority_level=\"{name}\",reason=\"{reason}\"}} {n}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP apiserver_longrunning_requests Long-running requests (watches) being served, outside the seats\n# TYPE apiserver_longrunning_requests gauge\napiserver_longrunning_requests {}\n",
            self.long_running.load(Ordering::Relaxed)
        ));
        out
    }
}

/// Keeps each FlowSchema's `Dangling` condition true to whether the priority level
/// it names exists, as kube-apiserver's configuration controller does.
pub(crate) async fn keep_status(state: Arc<crate::serve::State>) {
    let Some(fc) = state.flow_control.clone() else {
        return;
    };
    let Some(res) = state
        .registry
        .lookup("flowcontrol.apiserver.k8s.io", "v1", "flowschemas")
        .cloned()
    else {
        return;
    };
    let strategy = crate::strategy::for_resource(&res);
    let mut changes = fc.generation.subscribe();
    loop {
        for (name, dangling, level) in fc.dangling_updates() {
            let Ok(old) = state.storage.get(&res, None, &name).await else {
                continue;
            };
            let condition = if dangling {
                serde_json::json!({"type": "Dangling", "status": "True", "reason": "NotFound",
                    "message": format!("This FlowSchema references the PriorityLevelConfiguration object named {level:?} but there is no such object")})
            } else {
                serde_json::json!({"type": "Dangling", "status": "False", "reason": "Found",
                    "message": format!("This FlowSchema references the PriorityLevelConfiguration object named {level:?} and it exists")})
            };
            let mut condition = condition;
            condition["lastTransitionTime"] = crate::object::now_rfc3339().into();
            let mut new = old.clone();
            crate::object::set(
                &mut new,
                "status",
                serde_json::json!({"conditions": [condition]}),
            );
            if let Err(e) =
                crate::rest::write::update_object(&state, &res, strategy, old, new, true, false)
                    .await
            {
                tracing::debug!(flow_schema = %name, error = %e.message, "updating the Dangling condition failed");
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Reads one gauge's value from a level's occupancy.
type Reading = fn(&queueset::Occupancy) -> u64;

impl crate::feed::Index for FlowControl {
    fn prefixes(&self) -> &'static [&'static str] {
        &[SCHEMAS, LEVELS]
    }

    fn reset(&self, objects: Vec<(String, Value)>, _revision: Revision) {
        let mut o = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        *o = Objects::default();
        for (key, obj) in objects {
            put(&mut o, &key, Some(obj));
        }
        self.rebuild(&o);
    }

    fn apply(&self, changes: &[(&str, Option<&Value>)], _revision: Revision) {
        let mut o = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        for (key, obj) in changes {
            put(&mut o, key, obj.cloned());
        }
        self.rebuild(&o);
    }
}

fn put(objects: &mut Objects, key: &str, obj: Option<Value>) {
    let (map, name) = if let Some(name) = key.strip_prefix(SCHEMAS) {
        (&mut objects.schemas, name)
    } else if let Some(name) = key.strip_prefix(LEVELS) {
        (&mut objects.levels, name)
    } else {
        return;
    };
    match obj {
        Some(o) => map.insert(name.to_string(), o),
        None => map.remove(name),
    };
}
