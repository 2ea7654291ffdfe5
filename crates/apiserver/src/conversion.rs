//! Conversion between a resource's served shape and its stored shape. Only
//! events.k8s.io/v1 Events differ: they are stored as core/v1 Events (as Kubernetes
//! does), so both APIs see the same events and `kubectl describe` shows events that
//! components record through events.k8s.io.

use api::resource::ResourceInfo;
use serde_json::{Map, Value};

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

fn is_events_v1(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io"
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

/// The stored object as the resource serves it.
pub(crate) fn from_storage(info: &ResourceInfo, obj: Value) -> Value {
    if is_events_v1(info) {
        rename(obj, "events.k8s.io/v1", false)
    } else {
        obj
    }
}

/// The served object as it is stored.
pub(crate) fn to_storage(info: &ResourceInfo, obj: &Value) -> Value {
    if is_events_v1(info) {
        rename(obj.clone(), "v1", true)
    } else {
        obj.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_v1_round_trip_through_core_storage() {
        let reg = api::resource::Registry::builtin();
        let info = reg.lookup("events.k8s.io", "v1", "events").expect("served");
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "Pulled", "reason": "Pulled",
            "reportingController": "kubelet", "eventTime": "2024-01-01T00:00:00.000000Z", "type": "Normal"});
        let stored = to_storage(info, &v1);
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "Pulled");
        assert_eq!(stored["reportingComponent"], "kubelet");
        assert_eq!(from_storage(info, stored), v1);
    }
}
