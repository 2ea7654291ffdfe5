//! What the replica logic needs from a ReplicaSet or a ReplicationController: the
//! ReplicationController manager in Kubernetes is the ReplicaSet manager run on
//! another kind, and so is ours.

use std::collections::BTreeMap;
use std::fmt::Debug;

use api::selector::LabelSelector;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::Error;

/// One condition of a replica controller's status (`ReplicaSetCondition` and
/// `ReplicationControllerCondition` have the same shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Condition {
    /// `ReplicaFailure`.
    pub type_: String,
    /// `True`/`False`/`Unknown`.
    pub status: String,
    /// `FailedCreate`/`FailedDelete`.
    pub reason: Option<String>,
    /// The error.
    pub message: Option<String>,
    /// RFC 3339.
    pub last_transition_time: Option<String>,
}

/// The status fields the controller writes, zero for absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Status {
    /// Active pods owned.
    pub replicas: i32,
    /// Of those, pods carrying all template labels.
    pub fully_labeled_replicas: i32,
    /// Ready pods.
    pub ready_replicas: i32,
    /// Pods ready for at least minReadySeconds.
    pub available_replicas: i32,
    /// The generation this status describes.
    pub observed_generation: i64,
    /// Conditions.
    pub conditions: Vec<Condition>,
}

impl Status {
    /// The `status` JSON for a merge patch (absent conditions removed).
    pub(crate) fn to_patch(&self) -> Value {
        let conditions: Vec<Value> = self
            .conditions
            .iter()
            .map(|c| {
                json!({"type": c.type_, "status": c.status, "reason": c.reason,
                       "message": c.message, "lastTransitionTime": c.last_transition_time})
            })
            .collect();
        json!({"status": {
            "replicas": self.replicas,
            "fullyLabeledReplicas": self.fully_labeled_replicas,
            "readyReplicas": self.ready_replicas,
            "availableReplicas": self.available_replicas,
            "observedGeneration": self.observed_generation,
            "conditions": if conditions.is_empty() { Value::Null } else { Value::Array(conditions) },
        }})
    }
}

/// A controller of identical pods.
pub(crate) trait Replicated:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The controller's name in events and logs.
    const COMPONENT: &'static str;
    /// Desired pods.
    fn replicas(&self) -> i32;
    /// Seconds a pod must be ready to count as available.
    fn min_ready_seconds(&self) -> i32;
    /// Which pods belong.
    fn selector(&self) -> Result<LabelSelector, Error>;
    /// The pod template.
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The status as stored.
    fn status(&self) -> Status;
}

fn name_of<K: Resource>(k: &K) -> String {
    k.meta().name.clone().unwrap_or_default()
}

fn time(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<String> {
    t.as_ref().map(|t| t.0.to_string())
}

impl Replicated for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn selector(&self) -> Result<LabelSelector, Error> {
        let sel = self.spec.as_ref().map(|s| &s.selector);
        LabelSelector::from_optional_label_selector(sel).map_err(|e| {
            Error::Invalid(format!(
                "ReplicaSet {}: invalid selector: {e}",
                name_of(self)
            ))
        })
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn status(&self) -> Status {
        let s = self.status.clone().unwrap_or_default();
        Status {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: s
                .conditions
                .unwrap_or_default()
                .into_iter()
                .map(|c| Condition {
                    last_transition_time: time(&c.last_transition_time),
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                })
                .collect(),
        }
    }
}

impl Replicated for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn selector(&self) -> Result<LabelSelector, Error> {
        // The API server defaults an empty selector to the template labels.
        let set: BTreeMap<String, String> = self
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        if set.is_empty() {
            return Ok(LabelSelector::nothing());
        }
        Ok(LabelSelector::from_set(&set))
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn status(&self) -> Status {
        let s = self.status.clone().unwrap_or_default();
        Status {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: s
                .conditions
                .unwrap_or_default()
                .into_iter()
                .map(|c| Condition {
                    last_transition_time: time(&c.last_transition_time),
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                })
                .collect(),
        }
    }
}
