//! One scheduling attempt (pkg/scheduler/schedule_one.go): PreFilter, Filter over
//! enough nodes (starting where the last attempt stopped), PreScore, Score,
//! normalize, weigh, and pick the best node (ties broken at random). Pure: reads the
//! cache, writes nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rand::Rng;

use crate::cache::{Cache, NodeInfo};
use crate::framework::{Code, CycleState, Status};
use crate::plugins::Enabled;
use crate::pod_info::PodInfo;

/// Nodes below this count are all evaluated (`minFeasibleNodesToFind`).
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Lowest adaptive percentage of nodes to evaluate.
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// Message when the cluster has no nodes (`ErrNoNodesAvailable`).
pub const NO_NODES: &str = "no nodes available to schedule pods";

/// Why nodes were rejected (`framework.Diagnosis`).
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    /// Per rejected node, the first failing plugin's status.
    pub node_status: HashMap<String, Status>,
    /// A PreFilter rejection (then no node was filtered).
    pub pre_filter_msg: Option<String>,
    /// Plugins that rejected the pod somewhere.
    pub unschedulable_plugins: BTreeSet<&'static str>,
}

/// The pod fits on no node (`framework.FitError`).
#[derive(Debug, Clone)]
pub struct FitError {
    /// Nodes in the cluster.
    pub num_all_nodes: usize,
    /// Why.
    pub diagnosis: Diagnosis,
    /// What preemption said.
    pub post_filter_msg: Option<String>,
}

/// Counts of identical reasons, sorted as strings (`sortReasonsHistogram`).
pub fn histogram<'a>(statuses: impl Iterator<Item = &'a Status>) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for s in statuses {
        for r in &s.reasons {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

impl FitError {
    /// Kubernetes' message: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s)
    /// had untolerated taint {k: v}. preemption: 0/3 nodes are available: 3
    /// Preemption is not helpful for scheduling.`
    pub fn message(&self) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        match &self.diagnosis.pre_filter_msg {
            Some(pre) => msg.push_str(&format!(" {pre}.")),
            None => {
                let h = histogram(self.diagnosis.node_status.values());
                if !h.is_empty() {
                    msg.push_str(&format!(" {h}."));
                }
            }
        }
        if let Some(post) = &self.post_filter_msg {
            msg.push_str(&format!(" {post}."));
        }
        msg
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone)]
pub enum ScheduleError {
    /// The cluster has no nodes.
    NoNodes,
    /// No node fits.
    Fit(FitError),
}

/// A node chosen for the pod.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The node.
    pub node: String,
    /// Nodes filtered.
    pub evaluated: usize,
    /// Nodes that fit.
    pub feasible: usize,
}

/// Pods nominated to nodes by preemption, reserved against lower-priority pods.
pub type Nominated = HashMap<String, Vec<Arc<PodInfo>>>;

/// The plugins of a profile and where the last attempt stopped.
pub struct Framework {
    /// Plugins with weights.
    pub plugins: Vec<Enabled>,
    next_start: usize,
}

/// How many feasible nodes to look for (`numFeasibleNodesToFind`, adaptive).
pub fn num_feasible_nodes_to_find(all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND {
        return all;
    }
    let pct = 50usize
        .saturating_sub(all / 125)
        .max(MIN_FEASIBLE_NODES_PERCENTAGE);
    (all * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

impl Framework {
    /// A framework running `plugins`.
    pub fn new(plugins: Vec<Enabled>) -> Framework {
        Framework {
            plugins,
            next_start: 0,
        }
    }

    /// Runs PreFilter; a rejection ends the attempt.
    pub fn pre_filter(&self, pod: &PodInfo, cache: &Cache) -> Result<CycleState, Status> {
        let mut state = CycleState::default();
        let mut active = Vec::new();
        for (i, e) in self.plugins.iter().enumerate() {
            if !e.plugin.filters() {
                continue;
            }
            let mut s = e.plugin.pre_filter(&mut state, pod, cache);
            match s.code {
                Code::Success => active.push(i),
                Code::Skip => state.skip_filter.push(e.plugin.name()),
                _ => {
                    s.plugin = e.plugin.name();
                    return Err(s);
                }
            }
        }
        state.active_filters = Some(active);
        Ok(state)
    }

    /// Runs every Filter plugin on one node; the first failure wins.
    pub fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if let Some(active) = &state.active_filters {
            for e in active.iter().filter_map(|i| self.plugins.get(*i)) {
                let mut s = e.plugin.filter(state, pod, node);
                if !s.is_success() {
                    s.plugin = e.plugin.name();
                    return s;
                }
            }
            return Status::success();
        }
        for e in self.plugins.iter().filter(|e| e.plugin.filters()) {
            if state.skips_filter(e.plugin.name()) {
                continue;
            }
            let mut s = e.plugin.filter(state, pod, node);
            if !s.is_success() {
                s.plugin = e.plugin.name();
                return s;
            }
        }
        Status::success()
    }

    /// Filter with the pods nominated to the node at equal or higher priority
    /// counted as if they ran there.
    pub fn filter_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        nominated: &Nominated,
    ) -> Status {
        if nominated.is_empty() {
            return self.filter(state, pod, node);
        }
        let extra: Vec<&Arc<PodInfo>> = nominated
            .get(&node.name)
            .into_iter()
            .flatten()
            .filter(|p| p.key != pod.key && p.priority >= pod.priority)
            .collect();
        if extra.is_empty() {
            return self.filter(state, pod, node);
        }
        let mut with = node.clone();
        for p in extra {
            with.add_pod(p.clone());
        }
        self.filter(state, pod, &with)
    }

    /// One attempt: the best node for `pod`, or why there is none.
    pub fn schedule(
        &mut self,
        cache: &Cache,
        pod: &PodInfo,
        nominated: &Nominated,
        rng: &mut impl Rng,
    ) -> Result<(Decision, CycleState), (ScheduleError, Option<CycleState>)> {
        let all = cache.num_nodes();
        if all == 0 {
            return Err((ScheduleError::NoNodes, None));
        }
        let mut diagnosis = Diagnosis::default();
        let state = match self.pre_filter(pod, cache) {
            Ok(s) => s,
            Err(s) => {
                diagnosis.pre_filter_msg = Some(s.message());
                diagnosis.unschedulable_plugins.insert(s.plugin);
                for n in cache.node_names() {
                    diagnosis.node_status.insert(n.clone(), s.clone());
                }
                let fe = FitError {
                    num_all_nodes: all,
                    diagnosis,
                    post_filter_msg: None,
                };
                return Err((ScheduleError::Fit(fe), None));
            }
        };
        let want = num_feasible_nodes_to_find(all);
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want);
        let mut processed = 0;
        for i in 0..all {
            if feasible.len() >= want {
                break;
            }
            processed += 1;
            let Some(node) = cache.node_at((self.next_start + i) % all) else {
                continue;
            };
            let s = self.filter_with_nominated(&state, pod, node, nominated);
            if s.is_success() {
                feasible.push(node);
            } else {
                diagnosis.unschedulable_plugins.insert(s.plugin);
                diagnosis.node_status.insert(node.name.clone(), s);
            }
        }
        self.next_start = (self.next_start + processed) % all;
        if feasible.is_empty() {
            let fe = FitError {
                num_all_nodes: all,
                diagnosis,
                post_filter_msg: None,
            };
            return Err((ScheduleError::Fit(fe), Some(state)));
        }
        let decision = |node: &NodeInfo| Decision {
            node: node.name.clone(),
            evaluated: processed,
            feasible: feasible.len(),
        };
        if feasible.len() == 1 {
            let d = decision(feasible[0]);
            return Ok((d, state));
        }
        let mut state = state;
        let totals = self.score(&mut state, pod, cache, &feasible);
        let mut best = 0usize;
        let mut ties = 0u32;
        for (i, t) in totals.iter().enumerate() {
            if *t > totals[best] {
                best = i;
                ties = 1;
            } else if *t == totals[best] {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = i;
                }
            }
        }
        let d = decision(feasible[best]);
        Ok((d, state))
    }

    /// PreScore, Score, NormalizeScore and weights: the total score per node.
    pub fn score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cache: &Cache,
        nodes: &[&NodeInfo],
    ) -> Vec<i64> {
        let mut totals = vec![0i64; nodes.len()];
        for e in self.plugins.iter().filter(|e| e.plugin.scores()) {
            let s = e.plugin.pre_score(state, pod, cache, nodes);
            if s.code == Code::Skip || !s.is_success() {
                continue;
            }
            let mut scores: Vec<i64> = nodes
                .iter()
                .map(|n| e.plugin.score(state, pod, n))
                .collect();
            e.plugin.normalize(state, &mut scores);
            for (t, s) in totals.iter_mut().zip(scores) {
                *t += s * e.weight;
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::default_profile;
    use serde_json::json;

    fn cache() -> Cache {
        let mut c = Cache::default();
        let nodes = [
            json!({"metadata": {"name": "cp", "labels": {"kubernetes.io/hostname": "cp"}},
                   "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
                   "status": {"allocatable": {"cpu": "8", "memory": "8Gi", "pods": "110"}}}),
            json!({"metadata": {"name": "w1", "labels": {"kubernetes.io/hostname": "w1"}},
                   "status": {"allocatable": {"cpu": "1", "memory": "8Gi", "pods": "110"}}}),
            json!({"metadata": {"name": "w2", "labels": {"kubernetes.io/hostname": "w2"}},
                   "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
        ];
        for n in nodes {
            c.apply_node(Arc::new(serde_json::from_value(n).expect("node")));
        }
        c
    }

    fn pod(name: &str, cpu: &str) -> Arc<PodInfo> {
        let p = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
        .expect("pod");
        Arc::new(PodInfo::new(Arc::new(p), 0))
    }

    #[test]
    fn the_failure_message_counts_reasons_like_kubernetes() {
        let c = cache();
        let mut fw = Framework::new(default_profile());
        let (err, _) = fw
            .schedule(&c, &pod("big", "6"), &Nominated::new(), &mut rand::rng())
            .expect_err("does not fit");
        let ScheduleError::Fit(mut fe) = err else {
            panic!("fit error")
        };
        fe.post_filter_msg = Some(
            "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling"
                .into(),
        );
        assert_eq!(
            fe.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
             2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn the_only_feasible_node_is_chosen() {
        let c = cache();
        let mut fw = Framework::new(default_profile());
        let (d, _) = fw
            .schedule(&c, &pod("p", "2"), &Nominated::new(), &mut rand::rng())
            .expect("fits");
        assert_eq!(d.node, "w2");
    }

    #[test]
    fn the_least_allocated_node_wins() {
        let mut c = cache();
        c.apply_pod(pod("busy", "500m"), "w1");
        let mut fw = Framework::new(default_profile());
        let mut rng = rand::rng();
        for _ in 0..10 {
            let (d, _) = fw
                .schedule(&c, &pod("p", "100m"), &Nominated::new(), &mut rng)
                .expect("fits");
            assert_eq!(
                d.node, "w2",
                "an idle 4-cpu node beats a half-used 1-cpu node"
            );
        }
    }

    #[test]
    fn large_clusters_evaluate_an_adaptive_share_of_nodes() {
        assert_eq!(num_feasible_nodes_to_find(50), 50);
        assert_eq!(num_feasible_nodes_to_find(1000), 420);
        assert_eq!(num_feasible_nodes_to_find(5000), 500);
    }
}
