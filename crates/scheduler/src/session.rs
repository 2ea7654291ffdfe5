//! One leadership term of the scheduler: watches Pods and Nodes into the cache and
//! queue, and schedules one pod at a time while events are drained first. Bindings,
//! status updates and events run as tasks; binding results come back by channel.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use events::{EventType, Recorder, Reporter};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::plugins::volume_binding::{PreBind, VolumeBinding, VolumeStores};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::Resource as _;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event as WEvent};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cache::{Cache, Change};
use crate::effects;
use crate::pod_info::{PodInfo, PodKey, pod_key};
use crate::preemption::{self, Budget};
use crate::queue::{Event, Queue};
use crate::schedule_one::{Framework, NO_NODES, Nominated, ScheduleError};
use crate::{Error, SchedulerConfig};

/// The scheduler name pods must carry (or leave empty).
pub const SCHEDULER_NAME: &str = "default-scheduler";

struct BindResult {
    key: PodKey,
    pod: Arc<Pod>,
    /// Volumes the bind pre-bound (assumed taken until it is done).
    volumes: Vec<String>,
    result: Result<(), String>,
}

/// Aborts spawned helper tasks when the session ends.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

struct Session {
    client: kube::Client,
    /// Scheduled / FailedScheduling events; a changed FailedScheduling message is a
    /// new event, a repeated one counts into its series.
    recorder: Recorder,
    cache: Cache,
    queue: Queue,
    fw: Framework,
    nominated: Nominated,
    nominated_node: HashMap<PodKey, String>,
    priority_classes: Store<PriorityClass>,
    budgets: Store<PodDisruptionBudget>,
    bind_tx: mpsc::UnboundedSender<BindResult>,
    rng: SmallRng,
}

fn spawn_reflector<K>(client: &kube::Client, tasks: &mut Tasks) -> Store<K>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff();
    tasks.0.push(tokio::spawn(async move {
        stream.for_each(|_| async {}).await;
    }));
    reader
}

/// A reflector store of every `K`, sending `changed` after each change it applies.
fn spawn_watched<K>(
    client: &kube::Client,
    tasks: &mut Tasks,
    changed: mpsc::UnboundedSender<()>,
) -> Store<K>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher::watcher(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff();
    tasks.0.push(tokio::spawn(async move {
        stream
            .for_each(|ev| {
                if matches!(ev, Ok(WEvent::Apply(_) | WEvent::Delete(_))) {
                    let _ = changed.send(());
                }
                async {}
            })
            .await;
    }));
    reader
}

/// Runs one session until the watches end (they retry forever).
pub async fn run(client: kube::Client, config: &SchedulerConfig) -> Result<(), Error> {
    let mut tasks = Tasks(Vec::new());
    let priority_classes = spawn_reflector::<PriorityClass>(&client, &mut tasks);
    let budgets = {
        let (reader, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher::watcher(
                Api::<PodDisruptionBudget>::all(client.clone()),
                watcher::Config::default(),
            ),
        )
        .default_backoff();
        tasks.0.push(tokio::spawn(async move {
            stream.for_each(|_| async {}).await;
        }));
        reader
    };
    // Claims, volumes and classes for VolumeBinding; any change may let a pod fit.
    let (volume_tx, mut volume_rx) = mpsc::unbounded_channel::<()>();
    let claims = spawn_watched::<PersistentVolumeClaim>(&client, &mut tasks, volume_tx.clone());
    let volumes = spawn_watched::<PersistentVolume>(&client, &mut tasks, volume_tx.clone());
    let classes = spawn_watched::<StorageClass>(&client, &mut tasks, volume_tx);
    let _ =
        tokio::time::timeout(Duration::from_secs(30), priority_classes.wait_until_ready()).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        let _ = claims.wait_until_ready().await;
        let _ = volumes.wait_until_ready().await;
        let _ = classes.wait_until_ready().await;
    })
    .await;
    let (bind_tx, mut bind_rx) = mpsc::unbounded_channel();
    let reporter = Reporter {
        controller: SCHEDULER_NAME.into(),
        instance: Some(config.identity.clone()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let mut cache = Cache::default();
    cache.set_volume_stores(VolumeStores {
        claims,
        volumes,
        classes,
    });
    let mut s = Session {
        client: client.clone(),
        recorder,
        cache,
        queue: Queue::default(),
        fw: Framework::new(crate::plugins::default_profile()),
        nominated: Nominated::new(),
        nominated_node: HashMap::new(),
        priority_classes,
        budgets,
        bind_tx,
        rng: SmallRng::from_os_rng(),
    };
    let mut pods = watcher::watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut nodes = watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut namespaces = watcher::watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    let (mut pods_synced, mut nodes_synced, mut namespaces_synced) = (false, false, false);
    let mut namespace_relist: Option<HashSet<String>> = None;
    let mut pod_relist: Option<HashSet<PodKey>> = None;
    let mut node_relist: Option<HashSet<String>> = None;
    let mut flush = tokio::time::interval(Duration::from_secs(30));
    loop {
        let now = Instant::now();
        s.queue.flush_backoff(now);
        let ready = pods_synced && nodes_synced && namespaces_synced && s.queue.has_active();
        let wake = s
            .queue
            .next_backoff()
            .unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            biased;
            ev = pods.next() => match ev {
                None => return Ok(()),
                Some(Err(e)) => tracing::debug!(error = %e, "pod watch failed; retrying"),
                Some(Ok(WEvent::Init)) => pod_relist = Some(HashSet::new()),
                Some(Ok(WEvent::InitApply(p))) => {
                    if let Some(seen) = pod_relist.as_mut() {
                        seen.insert(pod_key(&p));
                    }
                    s.apply_pod(p);
                }
                Some(Ok(WEvent::InitDone)) => {
                    if let Some(seen) = pod_relist.take() {
                        let mut known = s.cache.bound_pod_keys();
                        known.extend(s.queue.keys());
                        for k in known.into_iter().filter(|k| !seen.contains(k)) {
                            s.delete_pod(&k);
                        }
                    }
                    pods_synced = true;
                }
                Some(Ok(WEvent::Apply(p))) => s.apply_pod(p),
                Some(Ok(WEvent::Delete(p))) => s.delete_pod(&pod_key(&p)),
            },
            ev = nodes.next() => match ev {
                None => return Ok(()),
                Some(Err(e)) => tracing::debug!(error = %e, "node watch failed; retrying"),
                Some(Ok(WEvent::Init)) => node_relist = Some(HashSet::new()),
                Some(Ok(WEvent::InitApply(n))) => {
                    if let Some(seen) = node_relist.as_mut() {
                        seen.insert(n.metadata.name.clone().unwrap_or_default());
                    }
                    s.apply_node(n);
                }
                Some(Ok(WEvent::InitDone)) => {
                    if let Some(seen) = node_relist.take() {
                        let gone: Vec<String> = s.cache.node_names().filter(|n| !seen.contains(*n)).cloned().collect();
                        for n in gone {
                            s.cache.remove_node(&n);
                        }
                    }
                    nodes_synced = true;
                }
                Some(Ok(WEvent::Apply(n))) => s.apply_node(n),
                Some(Ok(WEvent::Delete(n))) => s.cache.remove_node(n.metadata.name.as_deref().unwrap_or_default()),
            },
            ev = namespaces.next() => match ev {
                None => return Ok(()),
                Some(Err(e)) => tracing::debug!(error = %e, "namespace watch failed; retrying"),
                Some(Ok(WEvent::Init)) => namespace_relist = Some(HashSet::new()),
                Some(Ok(WEvent::InitApply(n))) => {
                    if let Some(seen) = namespace_relist.as_mut() {
                        seen.insert(n.metadata.name.clone().unwrap_or_default());
                    }
                    s.apply_namespace(&n);
                }
                Some(Ok(WEvent::InitDone)) => {
                    if let Some(seen) = namespace_relist.take() {
                        let gone: Vec<String> = s.cache.namespace_names().filter(|n| !seen.contains(*n)).cloned().collect();
                        for n in gone {
                            s.cache.remove_namespace(&n);
                        }
                    }
                    namespaces_synced = true;
                }
                Some(Ok(WEvent::Apply(n))) => s.apply_namespace(&n),
                Some(Ok(WEvent::Delete(n))) => s.cache.remove_namespace(n.metadata.name.as_deref().unwrap_or_default()),
            },
            Some(()) = volume_rx.recv() => {
                while volume_rx.try_recv().is_ok() {}
                s.queue.move_on(Event::NodeChanged, Instant::now());
            }
            Some(r) = bind_rx.recv() => s.bind_done(r),
            _ = flush.tick() => s.queue.flush(Instant::now()),
            _ = std::future::ready(()), if ready => s.schedule_one(),
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Session {
    fn priority(&self, pod: &Pod) -> i32 {
        let spec = pod.spec.as_ref();
        if let Some(p) = spec.and_then(|s| s.priority) {
            return p;
        }
        let classes = self.priority_classes.state();
        match spec
            .and_then(|s| s.priority_class_name.as_deref())
            .filter(|n| !n.is_empty())
        {
            Some(name) => classes
                .iter()
                .find(|c| c.metadata.name.as_deref() == Some(name))
                .map(|c| c.value)
                .unwrap_or(0),
            None => classes
                .iter()
                .find(|c| c.global_default == Some(true))
                .map(|c| c.value)
                .unwrap_or(0),
        }
    }

    fn apply_node(&mut self, node: Node) {
        if self.cache.apply_node(Arc::new(node)) == Change::NodeChanged {
            self.queue.move_on(Event::NodeChanged, Instant::now());
        }
    }

    /// New namespace labels may let pods with a `namespaceSelector` in their pod
    /// (anti-)affinity fit.
    fn apply_namespace(&mut self, ns: &Namespace) {
        let name = ns.metadata.name.as_deref().unwrap_or_default();
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        if self.cache.apply_namespace(name, labels) {
            self.queue.move_on(Event::AssignedPodAdded, Instant::now());
        }
    }

    fn moved(&mut self, change: Change) {
        let ev = match change {
            Change::PodAdded => Event::AssignedPodAdded,
            Change::PodRemoved => Event::AssignedPodRemoved,
            Change::NodeChanged => Event::NodeChanged,
            Change::None => return,
        };
        self.queue.move_on(ev, Instant::now());
    }

    fn apply_pod(&mut self, pod: Pod) {
        let key = pod_key(&pod);
        let pod = Arc::new(pod);
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        if let Some(node) = node {
            self.queue.delete(&key);
            self.unnominate(&key);
            let change = if is_terminal(&pod) {
                self.cache.remove_pod(&key)
            } else {
                let pi = Arc::new(PodInfo::new(pod.clone(), self.priority(&pod)));
                self.cache.apply_pod(pi, &node)
            };
            self.moved(change);
            return;
        }
        if self.cache.is_assumed(&key) {
            return;
        }
        let ours = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|n| n.is_empty() || n == SCHEDULER_NAME);
        let gated = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| !g.is_empty());
        if ours && gated && !is_terminal(&pod) && pod.metadata.deletion_timestamp.is_none() {
            // The SchedulingGates PreEnqueue check: the pod waits outside the queue
            // until its gates are removed (an update brings it back here).
            self.queue.delete(&key);
            self.unnominate(&key);
            let client = self.client.clone();
            tokio::spawn(async move {
                if let Err(e) = effects::set_unschedulable(
                    &client,
                    &pod,
                    "SchedulingGated",
                    "Scheduling is blocked due to non-empty scheduling gates",
                    None,
                )
                .await
                {
                    tracing::debug!(error = %e, "recording SchedulingGated failed");
                }
            });
            return;
        }
        if ours && !is_terminal(&pod) && pod.metadata.deletion_timestamp.is_none() {
            let pi = Arc::new(PodInfo::new(pod.clone(), self.priority(&pod)));
            let nominated = pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty());
            match nominated {
                Some(n) => self.nominate(pi.clone(), &n),
                None => self.unnominate(&key),
            }
            self.queue.add_or_update(pi, Instant::now());
        } else {
            self.queue.delete(&key);
            self.unnominate(&key);
        }
    }

    fn delete_pod(&mut self, key: &str) {
        self.queue.delete(key);
        self.unnominate(key);
        let change = self.cache.remove_pod(key);
        self.moved(change);
    }

    fn nominate(&mut self, pi: Arc<PodInfo>, node: &str) {
        self.unnominate(&pi.key);
        self.nominated_node.insert(pi.key.clone(), node.to_string());
        self.nominated.entry(node.to_string()).or_default().push(pi);
    }

    fn unnominate(&mut self, key: &str) {
        if let Some(node) = self.nominated_node.remove(key)
            && let Some(list) = self.nominated.get_mut(&node)
        {
            list.retain(|p| p.key != key);
            if list.is_empty() {
                self.nominated.remove(&node);
            }
        }
    }

    fn budgets(&self) -> Vec<Budget> {
        self.budgets
            .state()
            .iter()
            .map(|pdb| Budget {
                namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
                selector: pdb
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .and_then(|s| api::selector::LabelSelector::from_label_selector(s).ok())
                    .unwrap_or_else(api::selector::LabelSelector::nothing),
                allowed: pdb
                    .status
                    .as_ref()
                    .map(|s| s.disruptions_allowed)
                    .unwrap_or(0),
                disrupted: pdb
                    .status
                    .as_ref()
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default(),
            })
            .collect()
    }

    fn schedule_one(&mut self) {
        let Some(qp) = self.queue.pop() else {
            return;
        };
        let pi = qp.info.clone();
        let span = tracing::debug_span!("schedule", pod = %pi.key);
        let _e = span.enter();
        match self
            .fw
            .schedule(&self.cache, &pi, &self.nominated, &mut self.rng)
        {
            Ok((d, state)) => {
                tracing::debug!(node = %d.node, evaluated = d.evaluated, feasible = d.feasible, "assuming pod");
                self.unnominate(&pi.key);
                self.cache.assume_pod(pi.clone(), &d.node);
                let (client, recorder, tx) = (
                    self.client.clone(),
                    self.recorder.clone(),
                    self.bind_tx.clone(),
                );
                let pre_bind = self
                    .cache
                    .node(&d.node)
                    .map(|n| VolumeBinding::pre_bind(&state, n))
                    .unwrap_or_default();
                let mut volumes = Vec::new();
                for action in &pre_bind {
                    if let PreBind::BindVolume {
                        volume,
                        resource_version,
                        ..
                    } = action
                    {
                        self.cache.assume_volume(volume, resource_version);
                        volumes.push(volume.clone());
                    }
                }
                let (pod, key, node) = (pi.pod.clone(), pi.key.clone(), d.node);
                tokio::spawn(async move {
                    let result =
                        match effects::pre_bind(&client, &pre_bind, effects::BIND_TIMEOUT).await {
                            Ok(()) => effects::bind(&client, &pod, &node)
                                .await
                                .map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                    if result.is_ok() {
                        let note = format!("Successfully assigned {key} to {node}");
                        effects::event(
                            &recorder,
                            &pod,
                            EventType::Normal,
                            "Scheduled",
                            "Binding",
                            note,
                            None,
                        )
                        .await;
                    }
                    let _ = tx.send(BindResult {
                        key,
                        pod,
                        volumes,
                        result,
                    });
                });
            }
            Err((ScheduleError::NoNodes, _)) => {
                self.fail(&pi, NO_NODES.to_string(), None);
                self.queue
                    .unschedulable(&pi.key, Vec::new(), Instant::now());
            }
            Err((ScheduleError::Fit(mut fe), state)) => {
                let budgets = self.budgets();
                let outcome = preemption::preempt(
                    preemption::Input {
                        fw: &self.fw,
                        state: state.as_ref(),
                        cache: &self.cache,
                        pod: &pi,
                        node_status: &fe.diagnosis.node_status,
                        nominated: &self.nominated,
                        budgets: &budgets,
                    },
                    &mut self.rng,
                );
                let nominated = match outcome {
                    Ok(c) => {
                        tracing::debug!(node = %c.node, victims = c.victims.len(), "preempting");
                        self.preempt(&pi, &c);
                        Some(c.node)
                    }
                    Err(msg) => {
                        fe.post_filter_msg = Some(format!("preemption: {msg}"));
                        None
                    }
                };
                let plugins = fe.diagnosis.unschedulable_plugins.iter().copied().collect();
                tracing::debug!(reason = %fe.message(), "pod is unschedulable");
                self.fail(&pi, fe.message(), nominated);
                self.queue.unschedulable(&pi.key, plugins, Instant::now());
            }
        }
    }

    fn preempt(&mut self, pi: &Arc<PodInfo>, c: &preemption::Candidate) {
        self.nominate(pi.clone(), &c.node);
        let (client, recorder) = (self.client.clone(), self.recorder.clone());
        let preemptor = pi.pod.clone();
        let victims: Vec<Arc<Pod>> = c.victims.iter().map(|v| v.pod.clone()).collect();
        let node = c.node.clone();
        tokio::spawn(async move {
            let uid = preemptor.metadata.uid.clone().unwrap_or_default();
            let related = preemptor.object_ref(&());
            for v in victims {
                match effects::delete_victim(&client, &v).await {
                    Ok(()) => {
                        let note = format!("Preempted by pod {uid} on node {node}");
                        effects::event(
                            &recorder,
                            &v,
                            EventType::Normal,
                            "Preempted",
                            "Preempting",
                            note,
                            Some(related.clone()),
                        )
                        .await;
                    }
                    Err(e) => {
                        tracing::warn!(pod = %pod_key(&v), error = %e, "deleting preemption victim failed")
                    }
                }
            }
        });
    }

    fn fail(&mut self, pi: &PodInfo, message: String, nominated: Option<String>) {
        let recorder = self.recorder.clone();
        let (client, pod) = (self.client.clone(), pi.pod.clone());
        tokio::spawn(async move {
            effects::event(
                &recorder,
                &pod,
                EventType::Warning,
                "FailedScheduling",
                "Scheduling",
                message.clone(),
                None,
            )
            .await;
            if let Err(e) = effects::set_unschedulable(
                &client,
                &pod,
                "Unschedulable",
                &message,
                nominated.as_deref(),
            )
            .await
            {
                tracing::debug!(pod = %pod_key(&pod), error = %e, "updating PodScheduled failed");
            }
        });
    }

    fn bind_done(&mut self, r: BindResult) {
        match r.result {
            Ok(()) => {
                self.queue.delete(&r.key);
            }
            Err(e) => {
                tracing::debug!(pod = %r.key, error = %e, "binding failed");
                for volume in &r.volumes {
                    self.cache.forget_volume(volume);
                }
                if self.cache.is_assumed(&r.key) {
                    let change = self.cache.remove_pod(&r.key);
                    self.moved(change);
                }
                if self.queue.contains(&r.key) {
                    let (client, recorder, pod) =
                        (self.client.clone(), self.recorder.clone(), r.pod.clone());
                    let message = format!("Binding rejected: {e}");
                    tokio::spawn(async move {
                        effects::event(
                            &recorder,
                            &pod,
                            EventType::Warning,
                            "FailedScheduling",
                            "Scheduling",
                            message.clone(),
                            None,
                        )
                        .await;
                        let _ = effects::set_unschedulable(
                            &client,
                            &pod,
                            "SchedulerError",
                            &message,
                            None,
                        )
                        .await;
                    });
                    self.queue.backoff(&r.key, Instant::now());
                }
            }
        }
    }
}
