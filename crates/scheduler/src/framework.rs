//! The plugin framework (pkg/scheduler/framework): statuses, per-cycle state and
//! the extension points a plugin may implement.

use std::any::Any;

use crate::cache::{Cache, NodeInfo};
use crate::pod_info::PodInfo;

/// Highest score a plugin gives a node after normalizing.
pub const MAX_NODE_SCORE: i64 = 100;

/// How a plugin judged a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Fits.
    Success,
    /// Does not fit now; preempting pods may help.
    Unschedulable,
    /// Does not fit and preemption cannot change that.
    UnschedulableAndUnresolvable,
    /// The plugin does not apply to this pod (PreFilter/PreScore only).
    Skip,
}

/// A plugin's verdict with its reasons (`framework.Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The verdict.
    pub code: Code,
    /// Human-readable reasons (`Insufficient cpu`).
    pub reasons: Vec<String>,
    /// The plugin that failed.
    pub plugin: &'static str,
}

impl Status {
    /// Success.
    pub fn success() -> Status {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    /// Skip this plugin for this pod.
    pub fn skip() -> Status {
        Status {
            code: Code::Skip,
            ..Status::success()
        }
    }

    /// A failure with one reason.
    pub fn new(code: Code, reason: impl Into<String>) -> Status {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }

    /// Whether the pod passed.
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Whether the pod was rejected.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }

    /// The reasons joined with ", ".
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

/// Data plugins compute once per cycle (in PreFilter/PreScore) and read per node.
#[derive(Default)]
pub struct CycleState {
    /// Plugin data by key: a handful of entries, read per node, so a short list
    /// compared by length and address beats hashing.
    data: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
    /// Plugins whose PreFilter returned Skip.
    pub skip_filter: Vec<&'static str>,
    /// Plugins whose PreScore returned Skip.
    pub skip_score: Vec<&'static str>,
    /// Positions (in the profile) of the Filter plugins to run on each node, set by
    /// PreFilter so the per-node loop does not ask every plugin again.
    pub active_filters: Option<Vec<usize>>,
}

impl std::fmt::Debug for CycleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CycleState")
            .field(
                "data",
                &self.data.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("skip_filter", &self.skip_filter)
            .finish()
    }
}

/// Plugin names and state keys are `&'static str` literals: equal ones nearly always
/// share an address, so compare lengths and addresses before bytes.
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
}

impl CycleState {
    /// Stores a plugin's data.
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, v: T) {
        match self.data.iter_mut().find(|(k, _)| same_key(k, key)) {
            Some((_, old)) => *old = Box::new(v),
            None => self.data.push((key, Box::new(v))),
        }
    }

    /// Reads a plugin's data.
    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.data
            .iter()
            .find(|(k, _)| same_key(k, key))
            .and_then(|(_, b)| b.downcast_ref())
    }

    /// Whether the plugin named `name` skipped filtering in this cycle.
    pub fn skips_filter(&self, name: &str) -> bool {
        self.skip_filter.iter().any(|s| same_key(s, name))
    }
}

/// A scheduling plugin. Every extension point has a no-op default.
pub trait Plugin: Send + Sync {
    /// The plugin's name as in Kubernetes (`NodeResourcesFit`).
    fn name(&self) -> &'static str;

    /// Whether the plugin filters nodes.
    fn filters(&self) -> bool {
        false
    }

    /// Whether the plugin scores nodes.
    fn scores(&self) -> bool {
        false
    }

    /// Computes per-cycle data; may reject the pod outright or ask to be skipped.
    fn pre_filter(&self, _state: &mut CycleState, _pod: &PodInfo, _cache: &Cache) -> Status {
        Status::success()
    }

    /// Whether the pod fits on the node.
    fn filter(&self, _state: &CycleState, _pod: &PodInfo, _node: &NodeInfo) -> Status {
        Status::success()
    }

    /// Computes per-cycle data for scoring the feasible nodes.
    fn pre_score(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _cache: &Cache,
        _nodes: &[&NodeInfo],
    ) -> Status {
        Status::success()
    }

    /// The node's raw score.
    fn score(&self, _state: &CycleState, _pod: &PodInfo, _node: &NodeInfo) -> i64 {
        0
    }

    /// Scales raw scores into 0..=100.
    fn normalize(&self, _state: &CycleState, _scores: &mut [i64]) {}
}

/// `DefaultNormalizeScore`: scales into 0..=max, reversed when `reverse`.
pub fn default_normalize(max: i64, reverse: bool, scores: &mut [i64]) {
    let highest = scores.iter().copied().max().unwrap_or(0);
    if highest == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = max * *s / highest;
        if reverse {
            *s = max - *s;
        }
    }
}
