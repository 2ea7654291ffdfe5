//! DefaultPreemption (pkg/scheduler/framework/preemption): for a pod that fits
//! nowhere, find nodes where evicting lower-priority pods makes it fit, keeping as
//! many of them as possible (PodDisruptionBudget-protected pods first), and pick the
//! node with the fewest and least important victims.

use std::collections::BTreeSet;
use std::sync::Arc;

use api::selector::LabelSelector;
use rand::Rng;

use crate::cache::{Cache, NodeInfo};
use crate::framework::{Code, CycleState, Status};
use crate::pod_info::PodInfo;
use crate::schedule_one::{Framework, Nominated, histogram};

/// Status for nodes where removing pods cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Status for nodes without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// A PodDisruptionBudget as preemption sees it.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Namespace.
    pub namespace: String,
    /// Selected pods.
    pub selector: LabelSelector,
    /// `status.disruptionsAllowed`.
    pub allowed: i32,
    /// `status.disruptedPods` names.
    pub disrupted: BTreeSet<String>,
}

/// A node and the pods to evict there.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node.
    pub node: String,
    /// Pods to evict.
    pub victims: Vec<Arc<PodInfo>>,
    /// Victims whose eviction violates a budget.
    pub pdb_violations: usize,
}

fn start_secs(p: &PodInfo) -> i64 {
    p.pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.as_second())
        .or_else(|| {
            p.pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
        })
        .unwrap_or(0)
}

/// Splits pods into (violating, not violating) their budgets.
fn split_by_budget(
    pods: Vec<Arc<PodInfo>>,
    budgets: &[Budget],
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = budgets.iter().map(|b| b.allowed).collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for p in pods {
        let name = p.pod.metadata.name.clone().unwrap_or_default();
        let mut violates = false;
        for (i, b) in budgets.iter().enumerate() {
            if b.namespace != p.namespace()
                || b.selector.is_empty()
                || !b.selector.matches(p.labels())
                || b.disrupted.contains(&name)
            {
                continue;
            }
            allowed[i] -= 1;
            if allowed[i] < 0 {
                violates = true;
            }
        }
        if violates {
            violating.push(p);
        } else {
            fine.push(p);
        }
    }
    (violating, fine)
}

fn select_victims(
    fw: &Framework,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    nominated: &Nominated,
    budgets: &[Budget],
) -> Result<Candidate, Status> {
    let mut trial = node.clone();
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .values()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::new(Code::UnschedulableAndUnresolvable, NO_VICTIMS));
    }
    for p in &potential {
        trial.remove_pod(&p.key);
    }
    let s = fw.filter_with_nominated(state, pod, &trial, nominated);
    if !s.is_success() {
        return Err(s);
    }
    // Most important first: higher priority, then earlier start.
    potential.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(start_secs(a).cmp(&start_secs(b)))
    });
    let (violating, fine) = split_by_budget(potential, budgets);
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (p, violates) in violating
        .into_iter()
        .map(|p| (p, true))
        .chain(fine.into_iter().map(|p| (p, false)))
    {
        trial.add_pod(p.clone());
        if !fw
            .filter_with_nominated(state, pod, &trial, nominated)
            .is_success()
        {
            trial.remove_pod(&p.key);
            if violates {
                pdb_violations += 1;
            }
            victims.push(p);
        }
    }
    Ok(Candidate {
        node: node.name.clone(),
        victims,
        pdb_violations,
    })
}

/// Picks the best candidate (`pickOneNodeForPreemption`): fewest budget
/// violations, lowest highest-victim priority, lowest priority sum, fewest victims,
/// latest start of the most important victim.
fn pick(mut candidates: Vec<Candidate>) -> Option<Candidate> {
    let key = |c: &Candidate| {
        let top = c
            .victims
            .iter()
            .map(|v| v.priority)
            .max()
            .unwrap_or(i32::MIN);
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum();
        let latest_start = c
            .victims
            .iter()
            .filter(|v| v.priority == top)
            .map(|v| start_secs(v))
            .min()
            .unwrap_or(0);
        (c.pdb_violations, top, sum, c.victims.len(), -latest_start)
    };
    candidates.sort_by_key(key);
    candidates.into_iter().next()
}

/// What preemption looks at for one pod.
pub struct Input<'a> {
    /// The plugins.
    pub fw: &'a Framework,
    /// The failed attempt's state (None when PreFilter rejected the pod).
    pub state: Option<&'a CycleState>,
    /// The cluster.
    pub cache: &'a Cache,
    /// The pod that fits nowhere.
    pub pod: &'a PodInfo,
    /// Why each node rejected it.
    pub node_status: &'a std::collections::HashMap<String, Status>,
    /// Pods nominated to nodes.
    pub nominated: &'a Nominated,
    /// PodDisruptionBudgets.
    pub budgets: &'a [Budget],
}

/// Finds the node to preempt on, or the message explaining why preemption cannot
/// help (`0/3 nodes are available: 3 Preemption is not helpful for scheduling`).
pub fn preempt(input: Input<'_>, rng: &mut impl Rng) -> Result<Candidate, String> {
    let Input {
        fw,
        state,
        cache,
        pod,
        node_status,
        nominated,
        budgets,
    } = input;
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("not eligible due to preemptionPolicy=Never".to_string());
    }
    let all = cache.num_nodes();
    let mut statuses: Vec<Status> = Vec::new();
    let Some(state) = state else {
        let s = Status::new(Code::UnschedulableAndUnresolvable, NOT_HELPFUL);
        return Err(format!(
            "0/{all} nodes are available: {}",
            histogram(std::iter::repeat_n(&s, all))
        ));
    };
    // Dry-run on a bounded number of candidates from a random offset.
    let max_candidates = (all / 10).max(100);
    let offset = if all > 0 { rng.random_range(0..all) } else { 0 };
    let mut candidates = Vec::new();
    for i in 0..all {
        let Some(node) = cache.node_at((offset + i) % all) else {
            continue;
        };
        let name = &node.name;
        let helpful = node_status
            .get(name)
            .is_none_or(|s| s.code == Code::Unschedulable);
        if !helpful {
            statuses.push(Status::new(Code::UnschedulableAndUnresolvable, NOT_HELPFUL));
            continue;
        }
        if candidates.len() >= max_candidates {
            continue;
        }
        match select_victims(fw, state, pod, node, nominated, budgets) {
            Ok(c) => candidates.push(c),
            Err(s) => statuses.push(s),
        }
    }
    match pick(candidates) {
        Some(c) => Ok(c),
        None => Err(format!(
            "0/{all} nodes are available: {}",
            histogram(statuses.iter())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::default_profile;
    use serde_json::json;

    fn pod(name: &str, cpu: &str, priority: i32) -> Arc<PodInfo> {
        let p = serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "ns", "labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}),
        )
        .expect("pod");
        Arc::new(PodInfo::new(Arc::new(p), priority))
    }

    fn cache() -> Cache {
        let mut c = Cache::default();
        for n in ["n1", "n2"] {
            let node = serde_json::from_value(
                json!({"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}},
                "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "10"}}}),
            )
            .expect("node");
            c.apply_node(Arc::new(node));
        }
        c.apply_pod(pod("low-a", "1", 0), "n1");
        c.apply_pod(pod("low-b", "1", 0), "n1");
        c.apply_pod(pod("mid", "2", 50), "n2");
        c
    }

    #[test]
    fn preemption_evicts_the_fewest_lowest_priority_pods() {
        let c = cache();
        let mut fw = Framework::new(default_profile());
        let mut rng = rand::rng();
        let high = pod("high", "1", 100);
        let (err, state) = fw
            .schedule(&c, &high, &Nominated::new(), &mut rng)
            .expect_err("nothing fits");
        let crate::schedule_one::ScheduleError::Fit(fe) = err else {
            panic!("fit error");
        };
        let cand = preempt(
            Input {
                fw: &fw,
                state: state.as_ref(),
                cache: &c,
                pod: &high,
                node_status: &fe.diagnosis.node_status,
                nominated: &Nominated::new(),
                budgets: &[],
            },
            &mut rng,
        )
        .expect("a candidate");
        assert_eq!(cand.node, "n1");
        assert_eq!(cand.victims.len(), 1, "one 1-cpu pod is enough");
    }

    #[test]
    fn pods_without_lower_priority_victims_are_told_so() {
        let c = cache();
        let mut fw = Framework::new(default_profile());
        let mut rng = rand::rng();
        let low = pod("equal", "1", 0);
        let (err, state) = fw
            .schedule(&c, &low, &Nominated::new(), &mut rng)
            .expect_err("nothing fits");
        let crate::schedule_one::ScheduleError::Fit(mut fe) = err else {
            panic!("fit error");
        };
        let msg = preempt(
            Input {
                fw: &fw,
                state: state.as_ref(),
                cache: &c,
                pod: &low,
                node_status: &fe.diagnosis.node_status,
                nominated: &Nominated::new(),
                budgets: &[],
            },
            &mut rng,
        )
        .expect_err("no victims");
        assert_eq!(
            msg,
            "0/2 nodes are available: 2 No preemption victims found for incoming pod"
        );
        fe.post_filter_msg = Some(format!("preemption: {msg}"));
        assert_eq!(
            fe.message(),
            "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn budget_protected_pods_are_evicted_last() {
        let a = pod("a", "1", 0);
        let b = pod("b", "1", 0);
        let budgets = vec![Budget {
            namespace: "ns".into(),
            selector: LabelSelector::parse("app=a").expect("selector"),
            allowed: 0,
            disrupted: BTreeSet::new(),
        }];
        let (violating, fine) = split_by_budget(vec![a, b], &budgets);
        assert_eq!(violating.len(), 1);
        assert_eq!(violating[0].key, "ns/a");
        assert_eq!(fine[0].key, "ns/b");
    }
}
