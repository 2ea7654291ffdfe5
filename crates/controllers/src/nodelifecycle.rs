//! The nodelifecycle controller (Kubernetes' `pkg/controller/nodelifecycle` with its
//! taint-eviction manager). A node whose Lease in `kube-node-lease` and whose Ready
//! heartbeat have not changed for `node_monitor_grace_period` (as observed here, so
//! clocks need not agree) gets its reported conditions set to Unknown; every node
//! carries the `node.kubernetes.io/unreachable` or `not-ready` taints (NoSchedule and
//! NoExecute) matching its Ready condition, removed when it recovers. Pods on a node
//! with NoExecute taints they do not tolerate are deleted at once, those tolerating
//! them for `tolerationSeconds` after that long. Evicted pods are deleted with grace
//! 0: the node's agent is not there to finish them.
//!
//! NoExecute taints are added at a rate per zone (region and zone labels): 0.1 nodes
//! per second in a healthy zone, 0.01 in a large partially disrupted one (more than
//! two and 55% of its nodes not Ready), none in a small one. When no node of any zone
//! is Ready, the controller assumes the trouble is its own (or the network's) and
//! evicts nothing: it removes the NoExecute lifecycle taints until a node is back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use events::{Event, EventType, Recorder, Reporter};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::{Context, Error};

mod rules;

pub use rules::EvictionLimits;
use rules::{Eviction, ZoneState, ready_status};

/// How often nodes and evictions are checked.
const PERIOD: Duration = Duration::from_secs(1);

/// What was last seen of a node's liveness, and when it last changed.
struct Probe {
    heartbeat: Option<Timestamp>,
    renew: Option<Timestamp>,
    changed: Instant,
}

struct Monitor {
    ctx: Arc<Context>,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    probes: HashMap<String, Probe>,
    /// Pods (by uid) already evicted.
    evicted: HashSet<String>,
    recorder: Recorder,
    /// Per zone: its last state and when it may next get a NoExecute taint.
    zones: HashMap<String, Zone>,
    /// Every zone was fully disrupted at the last pass.
    all_disrupted: bool,
}

/// One zone's rate limiter (a token bucket of one) and state.
struct Zone {
    state: ZoneState,
    /// NoExecute taints per second.
    rate: f64,
    next: Instant,
}

impl Zone {
    /// Takes the token if there is one.
    fn try_take(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 || now < self.next {
            return false;
        }
        self.next = now + Duration::from_secs_f64(1.0 / self.rate);
        true
    }
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let client = ctx.client.clone();
    let nodes = ctx.informers.get::<Node>().await.store();
    // Every Lease is cached (one shared watch); node leases are in kube-node-lease.
    let leases = ctx.informers.get::<Lease>().await.store();
    let pods = ctx.informers.get::<Pod>().await.store();
    let mut m = Monitor {
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "node-controller".into(),
                instance: None,
            },
        ),
        ctx,
        nodes,
        leases,
        pods,
        probes: HashMap::new(),
        evicted: HashSet::new(),
        zones: HashMap::new(),
        all_disrupted: false,
    };
    loop {
        m.tick().await;
        tokio::time::sleep(PERIOD).await;
    }
}

impl Monitor {
    async fn tick(&mut self) {
        let nodes = self.nodes.state();
        let names: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        self.probes.retain(|n, _| names.contains(n));
        self.update_zones(&nodes);
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            if let Err(e) = self.monitor(&node).await {
                tracing::debug!(node = %name, error = %e, "node monitoring failed");
            }
            if let Err(e) = self.evict(&node).await {
                tracing::debug!(node = %name, error = %e, "taint eviction failed");
            }
        }
    }

    /// Recomputes every zone's state from the nodes' Ready conditions.
    fn update_zones(&mut self, nodes: &[Arc<Node>]) {
        let limits = &self.ctx.config.node_eviction;
        let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
        for node in nodes {
            let c = counts.entry(rules::zone_of(node)).or_default();
            if ready_status(node) == Some("True") {
                c.0 += 1;
            } else {
                c.1 += 1;
            }
        }
        self.zones.retain(|z, _| counts.contains_key(z));
        let now = Instant::now();
        let mut all_disrupted = !counts.is_empty();
        for (zone, (ready, not_ready)) in counts {
            let state = rules::zone_state(ready, not_ready, limits.unhealthy_zone_threshold);
            all_disrupted &= state == ZoneState::FullDisruption;
            let rate = rules::eviction_rate(state, ready + not_ready, limits);
            let entry = self.zones.entry(zone.clone()).or_insert(Zone {
                state,
                rate,
                next: now,
            });
            if entry.state != state {
                tracing::info!(zone = %zone.replace('\0', ""), from = ?entry.state, to = ?state, "zone state changed");
                entry.state = state;
            }
            entry.rate = rate;
        }
        if all_disrupted != self.all_disrupted {
            if all_disrupted {
                tracing::warn!(
                    "no node is Ready: entering disruption mode, evicting nothing until one is back"
                );
            } else {
                tracing::info!("a node is Ready again: leaving disruption mode");
                for z in self.zones.values_mut() {
                    z.next = now;
                }
            }
            self.all_disrupted = all_disrupted;
        }
    }

    /// Marks a silent node Unknown and keeps its lifecycle taints in line.
    #[tracing::instrument(skip_all, fields(object = node.metadata.name.as_deref().unwrap_or_default()))]
    async fn monitor(&mut self, node: &Node) -> Result<(), Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let heartbeat = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0);
        let renew = self
            .leases
            .get(&ObjectRef::new(&name).within("kube-node-lease"))
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        let now = Instant::now();
        let probe = self.probes.entry(name.clone()).or_insert(Probe {
            heartbeat,
            renew,
            changed: now,
        });
        if probe.heartbeat != heartbeat || probe.renew != renew {
            probe.heartbeat = heartbeat;
            probe.renew = renew;
            probe.changed = now;
        }
        let silent = now.duration_since(probe.changed) > self.ctx.config.node_monitor_grace_period;
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        if silent && let Some(conds) = rules::unknown_conditions(node, Timestamp::now()) {
            let was_ready = ready_status(node) == Some("True");
            let mut new = node.clone();
            new.status.get_or_insert_with(Default::default).conditions = Some(conds);
            tracing::debug!("node stopped posting status; marking it Unknown");
            api.replace_status(&name, &PostParams::default(), &new)
                .await
                .map_err(|e| Error::api("setting node conditions Unknown", e))?;
            if was_ready {
                self.node_not_ready(node).await;
            }
            // Taints follow on the next pass, from the updated object.
            return Ok(());
        }
        let wanted =
            rules::taints_for(node, ready_status(node), Timestamp::now()).unwrap_or_else(|| {
                node.spec
                    .as_ref()
                    .and_then(|s| s.taints.clone())
                    .unwrap_or_default()
            });
        let allowed = if self.all_disrupted {
            rules::hold_no_execute(node, wanted, true)
        } else if rules::adds_no_execute(node, &wanted) {
            let zone = self.zones.get_mut(&rules::zone_of(node));
            if zone.is_some_and(|z| z.try_take(now)) {
                wanted
            } else {
                rules::hold_no_execute(node, wanted, false)
            }
        } else {
            wanted
        };
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if allowed != current {
            let taints = allowed;
            let mut new = node.clone();
            new.spec.get_or_insert_with(Default::default).taints = Some(taints);
            tracing::debug!(ready = ?ready_status(node), "updating lifecycle taints");
            api.replace(&name, &PostParams::default(), &new)
                .await
                .map_err(|e| Error::api("updating node taints", e))?;
        }
        Ok(())
    }

    /// Records NodeNotReady and marks the node's pods not ready.
    async fn node_not_ready(&self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.record(
            &node.object_ref(&()),
            "NodeNotReady",
            format!("Node {name} status is now: NodeNotReady"),
        )
        .await;
        let now = Timestamp::now().to_string();
        for pod in self.pods_on(&name) {
            if !crate::endpoints::pods::is_ready(&pod) {
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let pname = pod.metadata.name.clone().unwrap_or_default();
            let patch = json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": now}
            ]}});
            let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
            if let Err(e) = pods
                .patch_status(&pname, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                tracing::debug!(pod = %pname, error = %e, "marking pod not ready failed");
            }
            self.record(
                &pod.object_ref(&()),
                "NodeNotReady",
                "Node is not ready".into(),
            )
            .await;
        }
    }

    fn pods_on(&self, node: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
    }

    /// Deletes pods that do not tolerate the node's NoExecute taints (any longer).
    async fn evict(&mut self, node: &Node) -> Result<(), Error> {
        let taints: Vec<_> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.effect == "NoExecute")
            .collect();
        if taints.is_empty() {
            return Ok(());
        }
        let name = node.metadata.name.clone().unwrap_or_default();
        let now = Timestamp::now();
        for pod in self.pods_on(&name) {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if self.evicted.contains(&uid) {
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            if rules::eviction(&tolerations, &taints, now) != Eviction::Now {
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let pname = pod.metadata.name.clone().unwrap_or_default();
            tracing::debug!(pod = %format!("{ns}/{pname}"), node = %name, "evicting pod from tainted node");
            self.record(
                &pod.object_ref(&()),
                "TaintManagerEviction",
                format!("Marking for deletion Pod {ns}/{pname}"),
            )
            .await;
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match Api::<Pod>::namespaced(self.ctx.client.clone(), &ns)
                .delete(&pname, &dp)
                .await
            {
                Ok(_) => {
                    self.evicted.insert(uid);
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                    self.evicted.insert(uid);
                }
                Err(e) => return Err(Error::api("evicting pod", e)),
            }
        }
        let live: HashSet<String> = self
            .pods
            .state()
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        self.evicted.retain(|u| live.contains(u));
        Ok(())
    }

    async fn record(
        &self,
        object: &k8s_openapi::api::core::v1::ObjectReference,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, object).await {
            tracing::debug!(error = %e, reason, "recording event failed");
        }
    }
}
