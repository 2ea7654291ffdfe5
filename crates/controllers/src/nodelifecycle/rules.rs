//! Pure rules of node lifecycle: the taints a node's Ready condition calls for, the
//! conditions of a node that stopped reporting, and when a pod on a `NoExecute`
//! tainted node is evicted (Kubernetes' `pkg/controller/nodelifecycle` and
//! `pkg/controller/tainteviction`).

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{self as jiff, Timestamp};

/// Taint key of a node whose Ready condition is Unknown.
pub(crate) const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint key of a node whose Ready condition is False.
pub(crate) const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// The status of the node's Ready condition (`None` when it has none).
pub(crate) fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// The lifecycle taints (`NoSchedule` and `NoExecute`) a Ready status calls for.
pub(crate) fn wanted_taint_key(ready: Option<&str>) -> Option<&'static str> {
    match ready {
        Some("True") => None,
        Some("False") => Some(NOT_READY),
        _ => Some(UNREACHABLE),
    }
}

/// The node's taints with the lifecycle taints set for `ready`: others kept as they
/// are, ours kept (with their `timeAdded`) when still wanted. `None` when nothing changes.
pub(crate) fn taints_for(node: &Node, ready: Option<&str>, now: Timestamp) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let want = wanted_taint_key(ready);
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| {
            let ours = t.key == UNREACHABLE || t.key == NOT_READY;
            !ours
                || (Some(t.key.as_str()) == want
                    && matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
        })
        .cloned()
        .collect();
    if let Some(key) = want {
        for effect in ["NoSchedule", "NoExecute"] {
            if !out.iter().any(|t| t.key == key && t.effect == effect) {
                out.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    value: None,
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                });
            }
        }
    }
    (out != current).then_some(out)
}

/// The same taints without a NoExecute lifecycle taint the node does not carry yet
/// (its addition waits for the zone's eviction rate limiter), and without any
/// NoExecute lifecycle taint at all when `none` (every zone fully disrupted).
pub(crate) fn hold_no_execute(node: &Node, taints: Vec<Taint>, none: bool) -> Vec<Taint> {
    let current = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    let has = |t: &Taint| {
        current.is_some_and(|c| c.iter().any(|o| o.key == t.key && o.effect == t.effect))
    };
    taints
        .into_iter()
        .filter(|t| {
            let lifecycle_no_execute =
                t.effect == "NoExecute" && (t.key == UNREACHABLE || t.key == NOT_READY);
            !lifecycle_no_execute || (!none && has(t))
        })
        .collect()
}

/// Whether `taints` add a NoExecute lifecycle taint the node does not carry.
pub(crate) fn adds_no_execute(node: &Node, taints: &[Taint]) -> bool {
    let current = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    taints.iter().any(|t| {
        t.effect == "NoExecute"
            && (t.key == UNREACHABLE || t.key == NOT_READY)
            && !current.is_some_and(|c| c.iter().any(|o| o.key == t.key && o.effect == t.effect))
    })
}

/// A zone's health (`ComputeZoneState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZoneState {
    /// Evictions at the normal rate.
    Normal,
    /// Many nodes down: evictions slowed (large zones) or stopped (small ones).
    PartialDisruption,
    /// No node Ready.
    FullDisruption,
}

/// The state of a zone with `ready` and `not_ready` nodes: fully disrupted when none
/// is Ready, partially when more than two and at least `threshold` of them are not.
pub(crate) fn zone_state(ready: usize, not_ready: usize, threshold: f64) -> ZoneState {
    let total = ready + not_ready;
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && total > 0 && not_ready as f64 / total as f64 >= threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// Evictions (NoExecute taints added) per second in a zone of `size` nodes.
pub(crate) fn eviction_rate(state: ZoneState, size: usize, limits: &EvictionLimits) -> f64 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => limits.rate,
        ZoneState::PartialDisruption if size > limits.large_cluster_size => limits.secondary_rate,
        ZoneState::PartialDisruption => 0.0,
    }
}

/// The node lifecycle controller's eviction rate settings (kube-controller-manager's
/// `--node-eviction-rate`, `--secondary-node-eviction-rate`,
/// `--unhealthy-zone-threshold`, `--large-cluster-size-threshold`).
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionLimits {
    /// Nodes per second whose pods may be evicted in a healthy zone (0.1).
    pub rate: f64,
    /// The same in a partially disrupted large zone (0.01).
    pub secondary_rate: f64,
    /// Share of not-Ready nodes that makes a zone partially disrupted (0.55).
    pub unhealthy_zone_threshold: f64,
    /// Zones up to this many nodes stop evicting when partially disrupted (50).
    pub large_cluster_size: usize,
}

impl Default for EvictionLimits {
    fn default() -> Self {
        EvictionLimits {
            rate: 0.1,
            secondary_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_size: 50,
        }
    }
}

/// The zone of a node: its region and zone labels.
pub(crate) fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).cloned().unwrap_or_default();
    format!(
        "{}:\0:{}",
        get("topology.kubernetes.io/region"),
        get("topology.kubernetes.io/zone")
    )
}

/// Condition types the node agent reports and that turn Unknown when it stops.
const REPORTED: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The conditions of a node whose agent stopped reporting: every reported condition
/// Unknown (`NodeStatusUnknown`), a missing one added (`NodeStatusNeverUpdated`).
/// `None` when Ready is already Unknown.
pub(crate) fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    if ready_status(node) == Some("Unknown") {
        return None;
    }
    let mut conds: Vec<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for ty in REPORTED {
        match conds.iter_mut().find(|c| c.type_ == *ty) {
            Some(c) => {
                if c.status != "Unknown" {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(Time(now));
                }
            }
            None => conds.push(NodeCondition {
                type_: (*ty).into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                last_transition_time: Some(Time(now)),
            }),
        }
    }
    Some(conds)
}

/// Whether `toleration` tolerates `taint` (Kubernetes' `ToleratesTaint`).
pub(crate) fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && e != taint.effect
    {
        return false;
    }
    if let Some(k) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && k != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// When a pod with `tolerations` goes from a node with `taints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// Every NoExecute taint is tolerated forever.
    Never,
    /// Some NoExecute taint is not tolerated.
    Now,
    /// The first toleration with `tolerationSeconds` runs out at this time.
    At(Timestamp),
}

/// The eviction of a pod given the node's taints (only `NoExecute` ones count).
pub(crate) fn eviction(tolerations: &[Toleration], taints: &[Taint], now: Timestamp) -> Eviction {
    let mut at: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let Some(tol) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Eviction::Now;
        };
        if let Some(secs) = tol.toleration_seconds {
            let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
            let when = added
                .checked_add(jiff::SignedDuration::from_secs(secs.max(0)))
                .unwrap_or(added);
            at = Some(at.map_or(when, |a| a.min(when)));
        }
    }
    match at {
        Some(t) if t <= now => Eviction::Now,
        Some(t) => Eviction::At(t),
        None => Eviction::Never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(ready: &str, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}
        }))
        .expect("node")
    }

    fn taint(key: &str, added: Timestamp) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(Time(added)),
        }
    }

    #[test]
    fn an_unknown_node_gets_both_unreachable_taints_and_keeps_others() {
        let now = Timestamp::now();
        let n = node(
            "True",
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        );
        let t = taints_for(&n, Some("Unknown"), now).expect("changes");
        let keys: Vec<_> = t
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("dedicated", "NoSchedule"),
                (UNREACHABLE, "NoSchedule"),
                (UNREACHABLE, "NoExecute")
            ]
        );
        let mut tainted = n.clone();
        tainted.spec.as_mut().expect("spec").taints = Some(t);
        assert_eq!(taints_for(&tainted, Some("Unknown"), now), None);
        let healed = taints_for(&tainted, Some("True"), now).expect("changes");
        assert_eq!(healed.len(), 1);
    }

    #[test]
    fn a_not_ready_node_gets_not_ready_taints() {
        let t = taints_for(&node("False", json!([])), Some("False"), Timestamp::now())
            .expect("changes");
        assert!(t.iter().all(|t| t.key == NOT_READY));
    }

    #[test]
    fn conditions_turn_unknown_once() {
        let now = Timestamp::now();
        let n = node("True", json!([]));
        let conds = unknown_conditions(&n, now).expect("changes");
        let ready = conds.iter().find(|c| c.type_ == "Ready").expect("ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(conds.len(), 4);
        assert_eq!(unknown_conditions(&node("Unknown", json!([])), now), None);
    }

    #[test]
    fn zones_are_disrupted_as_kubernetes_computes_it() {
        assert_eq!(zone_state(0, 1, 0.55), ZoneState::FullDisruption);
        assert_eq!(
            zone_state(1, 2, 0.55),
            ZoneState::Normal,
            "two down is normal"
        );
        assert_eq!(zone_state(2, 3, 0.55), ZoneState::PartialDisruption);
        assert_eq!(zone_state(3, 3, 0.55), ZoneState::Normal, "50% < 55%");
        assert_eq!(zone_state(0, 0, 0.55), ZoneState::Normal);
        let l = EvictionLimits::default();
        assert_eq!(eviction_rate(ZoneState::Normal, 3, &l), 0.1);
        assert_eq!(eviction_rate(ZoneState::PartialDisruption, 10, &l), 0.0);
        assert_eq!(eviction_rate(ZoneState::PartialDisruption, 51, &l), 0.01);
        assert_eq!(eviction_rate(ZoneState::FullDisruption, 3, &l), 0.1);
    }

    #[test]
    fn a_new_no_execute_taint_can_be_held_back() {
        let fresh = node("Unknown", json!([]));
        let wanted = taints_for(&fresh, Some("Unknown"), Timestamp::now()).expect("taints");
        assert!(adds_no_execute(&fresh, &wanted));
        let held = hold_no_execute(&fresh, wanted.clone(), false);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].effect, "NoSchedule");
        let tainted = node(
            "Unknown",
            json!([{"key": UNREACHABLE, "effect": "NoExecute"}, {"key": UNREACHABLE, "effect": "NoSchedule"}]),
        );
        assert!(!adds_no_execute(&tainted, &wanted));
        assert_eq!(
            hold_no_execute(&tainted, wanted.clone(), false).len(),
            2,
            "kept"
        );
        assert_eq!(
            hold_no_execute(&tainted, wanted, true).len(),
            1,
            "removed in disruption mode"
        );
    }

    #[test]
    fn eviction_follows_the_shortest_toleration() {
        let now = Timestamp::now();
        let taints = [taint(UNREACHABLE, now)];
        assert_eq!(eviction(&[], &taints, now), Eviction::Now);
        let tol: Toleration = serde_json::from_value(json!({
            "key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2
        }))
        .expect("toleration");
        let later = now + jiff::SignedDuration::from_secs(2);
        assert_eq!(
            eviction(std::slice::from_ref(&tol), &taints, now),
            Eviction::At(later)
        );
        assert_eq!(
            eviction(std::slice::from_ref(&tol), &taints, later),
            Eviction::Now
        );
        let forever: Toleration =
            serde_json::from_value(json!({"operator": "Exists"})).expect("toleration");
        assert_eq!(eviction(&[forever], &taints, now), Eviction::Never);
    }
}
