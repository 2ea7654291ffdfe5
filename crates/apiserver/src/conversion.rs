//! Conversion between a resource's served shape and its stored shape:
//! - events.k8s.io/v1 Events are stored as core/v1 Events (as Kubernetes does), so
//!   both APIs see the same events and `kubectl describe` shows events that
//!   components record through events.k8s.io;
//! - custom resources are stored in their CRD's storage version and served in the
//!   requested one (the None strategy: only `apiVersion` changes), pruned and
//!   defaulted with the served version's schema.

use std::sync::Arc;

use api::resource::ResourceInfo;
use api::status::ApiError;
use serde_json::{Map, Value};
use store::KeyValue;

use crate::crd::{CustomResource, ServedResources};

/// (events.k8s.io/v1 field, core/v1 field) pairs; the rest keep their names.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// How objects of one resource look in storage and as served.
#[derive(Clone)]
pub(crate) enum View {
    /// Stored as served.
    Plain,
    /// events.k8s.io/v1 over core/v1 storage.
    EventsV1,
    /// A custom resource version.
    Custom(Arc<CustomResource>),
}

fn rename(obj: Value, api_version: &str, from_new: bool) -> Value {
    let Value::Object(map) = obj else { return obj };
    let mut out = Map::with_capacity(map.len());
    for (k, v) in map {
        let key = EVENT_FIELDS
            .iter()
            .find(|(new, old)| if from_new { new == &k } else { old == &k })
            .map(|(new, old)| {
                if from_new {
                    old.to_string()
                } else {
                    new.to_string()
                }
            })
            .unwrap_or(k);
        out.insert(key, v);
    }
    out.insert("apiVersion".into(), api_version.into());
    Value::Object(out)
}

impl View {
    /// The view of `info`.
    pub(crate) fn of(served: &ServedResources, info: &ResourceInfo) -> View {
        if info.group == "events.k8s.io" {
            return View::EventsV1;
        }
        match served.custom(info) {
            Some(c) => View::Custom(c),
            None => View::Plain,
        }
    }

    /// Whether served objects differ from stored ones.
    pub(crate) fn converts(&self) -> bool {
        !matches!(self, View::Plain)
    }

    /// The stored object as the resource serves it.
    pub(crate) fn to_served(&self, obj: Value) -> Value {
        match self {
            View::Plain => obj,
            View::EventsV1 => rename(obj, "events.k8s.io/v1", false),
            View::Custom(c) => c.to_served(obj),
        }
    }

    /// The served object as it is stored.
    pub(crate) fn to_storage(&self, obj: &Value) -> Value {
        match self {
            View::Plain => obj.clone(),
            View::EventsV1 => rename(obj.clone(), "v1", true),
            View::Custom(c) => c.to_storage(obj),
        }
    }

    /// Decodes a stored object (with its `resourceVersion`) as served.
    pub(crate) fn decode(&self, kv: &KeyValue) -> Result<Value, ApiError> {
        crate::storage::decode(kv).map(|v| self.to_served(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_v1_round_trip_through_core_storage() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "Pulled", "reason": "Pulled",
            "reportingController": "kubelet", "eventTime": "2024-01-01T00:00:00.000000Z", "type": "Normal"});
        let view = View::EventsV1;
        let stored = view.to_storage(&v1);
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "Pulled");
        assert_eq!(stored["reportingComponent"], "kubelet");
        assert_eq!(view.to_served(stored), v1);
    }
}
