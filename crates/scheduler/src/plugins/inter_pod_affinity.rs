//! InterPodAffinity: required pod affinity and anti-affinity by topology domain,
//! existing pods' required anti-affinity against the incoming pod, and preferred
//! terms (both ways) for scoring (weight 2).

use std::collections::HashMap;

use crate::cache::{Cache, NodeInfo};
use crate::framework::{Code, CycleState, MAX_NODE_SCORE, Plugin, Status};
use crate::pod_info::PodInfo;

/// The plugin.
pub struct InterPodAffinity;

/// Reason when the pod's required affinity is not met.
pub const AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Reason when the pod's required anti-affinity is violated.
pub const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// Reason when an existing pod's anti-affinity rejects the pod.
pub const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

const KEY: &str = "InterPodAffinity";
const SCORE_KEY: &str = "InterPodAffinity/score";
/// `hardPodAffinityWeight`: existing pods' required affinity counts this much.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

type Counts = HashMap<(String, String), i64>;

#[derive(Default)]
struct FilterState {
    existing_anti: Counts,
    affinity: Counts,
    anti: Counts,
    /// The pod matches all its own required affinity terms.
    matches_own_affinity: bool,
}

fn pair(node: &NodeInfo, key: &str) -> Option<(String, String)> {
    node.labels().get(key).map(|v| (key.to_string(), v.clone()))
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn filters(&self) -> bool {
        true
    }

    fn scores(&self) -> bool {
        true
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, cache: &Cache) -> Status {
        let ns = cache.namespaces();
        let mut s = FilterState {
            matches_own_affinity: pod
                .required_affinity
                .iter()
                .all(|t| t.matches(&pod.pod, ns)),
            ..FilterState::default()
        };
        let own = (!pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty())
            .then_some(());
        let nodes = cache.nodes().take(
            if own.is_none() && cache.pods_with_required_anti_affinity() == 0 {
                0
            } else {
                usize::MAX
            },
        );
        for node in nodes {
            if own.is_none() && node.pods_with_required_anti_affinity == 0 {
                continue;
            }
            for existing in node.pods.values() {
                for t in &existing.required_anti_affinity {
                    if t.matches(&pod.pod, ns)
                        && let Some(p) = pair(node, &t.topology_key)
                    {
                        *s.existing_anti.entry(p).or_default() += 1;
                    }
                }
                if own.is_none() {
                    continue;
                }
                if !pod.required_affinity.is_empty()
                    && pod
                        .required_affinity
                        .iter()
                        .all(|t| t.matches(&existing.pod, ns))
                {
                    for t in &pod.required_affinity {
                        if let Some(p) = pair(node, &t.topology_key) {
                            *s.affinity.entry(p).or_default() += 1;
                        }
                    }
                }
                for t in &pod.required_anti_affinity {
                    if t.matches(&existing.pod, ns)
                        && let Some(p) = pair(node, &t.topology_key)
                    {
                        *s.anti.entry(p).or_default() += 1;
                    }
                }
            }
        }
        if s.existing_anti.is_empty() && own.is_none() {
            return Status::skip();
        }
        state.write(KEY, s);
        Status::success()
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<FilterState>(KEY) else {
            return Status::success();
        };
        let labels = node.labels();
        let positive = |c: &Counts, k: &str| {
            labels
                .get(k)
                .and_then(|v| c.get(&(k.to_string(), v.clone())))
                .is_some_and(|n| *n > 0)
        };
        // Affinity: every term's domain must hold a matching pod, unless no pod
        // matches anywhere and the pod matches its own terms (the first of a group).
        if !pod.required_affinity.is_empty() {
            let all_keys = pod
                .required_affinity
                .iter()
                .all(|t| labels.contains_key(&t.topology_key));
            let satisfied = all_keys
                && pod
                    .required_affinity
                    .iter()
                    .all(|t| positive(&s.affinity, &t.topology_key));
            let first_of_group = all_keys && s.affinity.is_empty() && s.matches_own_affinity;
            if !satisfied && !first_of_group {
                return Status::new(Code::UnschedulableAndUnresolvable, AFFINITY);
            }
        }
        if pod
            .required_anti_affinity
            .iter()
            .any(|t| positive(&s.anti, &t.topology_key))
        {
            return Status::new(Code::Unschedulable, ANTI_AFFINITY);
        }
        if s.existing_anti
            .iter()
            .any(|((k, v), n)| *n > 0 && labels.get(k) == Some(v))
        {
            return Status::new(Code::Unschedulable, EXISTING_ANTI_AFFINITY);
        }
        Status::success()
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cache: &Cache,
        _: &[&NodeInfo],
    ) -> Status {
        let ns = cache.namespaces();
        let has_preferred =
            !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        let mut scores: Counts = HashMap::new();
        let nodes = cache
            .nodes()
            .take(if !has_preferred && cache.pods_with_affinity() == 0 {
                0
            } else {
                usize::MAX
            });
        for node in nodes {
            if !has_preferred && node.pods_with_affinity == 0 {
                continue;
            }
            for existing in node.pods.values() {
                let mut add = |key: &str, w: i64| {
                    if let Some(p) = pair(node, key) {
                        *scores.entry(p).or_default() += w;
                    }
                };
                for (w, t) in &pod.preferred_affinity {
                    if t.matches(&existing.pod, ns) {
                        add(&t.topology_key, i64::from(*w));
                    }
                }
                for (w, t) in &pod.preferred_anti_affinity {
                    if t.matches(&existing.pod, ns) {
                        add(&t.topology_key, -i64::from(*w));
                    }
                }
                for t in &existing.required_affinity {
                    if t.matches(&pod.pod, ns) {
                        add(&t.topology_key, HARD_POD_AFFINITY_WEIGHT);
                    }
                }
                for (w, t) in &existing.preferred_affinity {
                    if t.matches(&pod.pod, ns) {
                        add(&t.topology_key, i64::from(*w));
                    }
                }
                for (w, t) in &existing.preferred_anti_affinity {
                    if t.matches(&pod.pod, ns) {
                        add(&t.topology_key, -i64::from(*w));
                    }
                }
            }
        }
        if scores.is_empty() {
            return Status::skip();
        }
        state.write(SCORE_KEY, scores);
        Status::success()
    }

    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(scores) = state.read::<Counts>(SCORE_KEY) else {
            return 0;
        };
        let labels = node.labels();
        scores
            .iter()
            .filter(|((k, v), _)| labels.get(k) == Some(v))
            .map(|(_, s)| *s)
            .sum()
    }

    fn normalize(&self, _: &CycleState, scores: &mut [i64]) {
        let (Some(min), Some(max)) = (scores.iter().min().copied(), scores.iter().max().copied())
        else {
            return;
        };
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                MAX_NODE_SCORE * (*s - min) / diff
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::cache::Cache;
    use crate::plugins::default_profile;
    use crate::pod_info::PodInfo;
    use crate::schedule_one::{Framework, Nominated};

    fn pod(v: serde_json::Value) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(
            Arc::new(serde_json::from_value(v).expect("pod")),
            0,
        ))
    }

    /// `db` runs on n1 in namespace `team-a` (labelled team=a); n2 is idle.
    fn cluster() -> Cache {
        let mut c = Cache::default();
        for name in ["n1", "n2"] {
            let node = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}});
            c.apply_node(Arc::new(serde_json::from_value(node).expect("node")));
        }
        c.apply_namespace("team-a", [("team".to_owned(), "a".to_owned())].into());
        c.apply_namespace("default", Default::default());
        c.apply_pod(
            pod(
                json!({"metadata": {"name": "db", "namespace": "team-a", "labels": {"app": "db"}},
                "spec": {"containers": [{"name": "c"}]}}),
            ),
            "n1",
        );
        c
    }

    fn near_db(namespace_selector: serde_json::Value) -> Arc<PodInfo> {
        pod(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "c"}], "affinity": {"podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": "db"}},
                    "namespaceSelector": namespace_selector,
                    "topologyKey": "kubernetes.io/hostname"}]}}}}))
    }

    #[test]
    fn a_namespace_selector_finds_pods_in_namespaces_with_those_labels() {
        let c = cluster();
        let mut fw = Framework::new(default_profile());
        let mut rng = rand::rng();
        for _ in 0..10 {
            let (d, _) = fw
                .schedule(
                    &c,
                    &near_db(json!({"matchLabels": {"team": "a"}})),
                    &Nominated::new(),
                    &mut rng,
                )
                .expect("fits next to db");
            assert_eq!(d.node, "n1");
        }
        // No namespace has team=b: nothing matches and the pod does not match its
        // own term, so no node qualifies.
        assert!(
            fw.schedule(
                &c,
                &near_db(json!({"matchLabels": {"team": "b"}})),
                &Nominated::new(),
                &mut rng
            )
            .is_err()
        );
        // Labels change: team-a becomes team=b.
        let mut c = c;
        c.apply_namespace("team-a", [("team".to_owned(), "b".to_owned())].into());
        let (d, _) = fw
            .schedule(
                &c,
                &near_db(json!({"matchLabels": {"team": "b"}})),
                &Nominated::new(),
                &mut rng,
            )
            .expect("fits once the namespace is labelled");
        assert_eq!(d.node, "n1");
    }
}
