//! Core kinds other than pods, services and volumes: Namespace, Node, ConfigMap, Secret,
//! ServiceAccount, Event (core and `events.k8s.io`), ResourceQuota, ComponentStatus,
//! PodTemplate.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::fields::{self, at, int_at, items, len_at, name, str_at, str_or};
use super::{ColumnDefinition, docs, duration, quantity};

pub(super) fn pod_template_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Containers", "Names of each container in the template."),
        ColumnDefinition::text(
            "Images",
            "Images referenced by each container in the template.",
        ),
        ColumnDefinition::text("Pod Labels", "The labels for the pod template."),
    ]
}

pub(super) fn pod_template_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let (names, images) = fields::container_cells(items(obj, &["template", "spec", "containers"]));
    vec![
        Value::from(name(obj)),
        names,
        images,
        Value::from(fields::format_labels(
            obj,
            &["template", "metadata", "labels"],
        )),
    ]
}

pub(super) fn namespace_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Status", "The status of the namespace"),
        ColumnDefinition::age(),
    ]
}

pub(super) fn namespace_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        Value::from(name(obj)),
        Value::from(str_or(obj, &["status", "phase"], "Active")),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn node_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Status", "The status of the node"),
        ColumnDefinition::text("Roles", "The roles of the node"),
        ColumnDefinition::age(),
        ColumnDefinition::text("Version", docs::NODE_KUBELET_VERSION),
        ColumnDefinition::text("Internal-IP", docs::NODE_ADDRESSES).wide(),
        ColumnDefinition::text("External-IP", docs::NODE_ADDRESSES).wide(),
        ColumnDefinition::text("OS-Image", docs::NODE_OS_IMAGE).wide(),
        ColumnDefinition::text("Kernel-Version", docs::NODE_KERNEL_VERSION).wide(),
        ColumnDefinition::text("Container-Runtime", docs::NODE_CONTAINER_RUNTIME_VERSION).wide(),
    ]
}

pub(super) fn node_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    // Only the Ready condition shows; a later duplicate overrides an earlier one.
    let ready = items(obj, &["status", "conditions"])
        .iter()
        .rfind(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if fields::opt_bool_at(obj, &["spec", "unschedulable"]) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let address = |kind: &str| {
        items(obj, &["status", "addresses"])
            .iter()
            .find(|a| str_at(a, &["type"]) == kind)
            .map_or("<none>", |a| str_at(a, &["address"]))
    };
    let info = |key: &str| str_or(obj, &["status", "nodeInfo", key], "<unknown>");
    vec![
        Value::from(name(obj)),
        Value::from(status.join(",")),
        Value::from(fields::none_if_empty(node_roles(obj).join(","))),
        Value::from(duration::age(obj, now)),
        Value::from(str_at(obj, &["status", "nodeInfo", "kubeletVersion"])),
        Value::from(address("InternalIP")),
        Value::from(address("ExternalIP")),
        Value::from(info("osImage")),
        Value::from(info("kernelVersion")),
        Value::from(info("containerRuntimeVersion")),
    ]
}

/// Roles from `node-role.kubernetes.io/<role>` label keys and `kubernetes.io/role=<role>`,
/// sorted and without duplicates.
fn node_roles(obj: &Value) -> Vec<String> {
    let Some(Value::Object(labels)) = at(obj, &["metadata", "labels"]) else {
        return Vec::new();
    };
    let mut roles = BTreeSet::new();
    for (key, value) in labels {
        if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_owned());
            }
        } else if key == "kubernetes.io/role" {
            match value.as_str() {
                Some(role) if !role.is_empty() => {
                    roles.insert(role.to_owned());
                }
                _ => {}
            }
        }
    }
    roles.into_iter().collect()
}

pub(super) fn config_map_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Data", docs::CONFIG_MAP_DATA),
        ColumnDefinition::age(),
    ]
}

pub(super) fn config_map_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        Value::from(name(obj)),
        Value::from(len_at(obj, &["data"]) + len_at(obj, &["binaryData"])),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn secret_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Type", docs::SECRET_TYPE),
        ColumnDefinition::text("Data", docs::SECRET_DATA),
        ColumnDefinition::age(),
    ]
}

pub(super) fn secret_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    // kube-apiserver folds `stringData` into `data` on write; count the keys of both.
    let keys: BTreeSet<&String> = ["data", "stringData"]
        .iter()
        .filter_map(|field| at(obj, &[field]).and_then(Value::as_object))
        .flat_map(|map| map.keys())
        .collect();
    vec![
        Value::from(name(obj)),
        Value::from(str_or(obj, &["type"], "Opaque")),
        Value::from(keys.len()),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn service_account_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Secrets", docs::SERVICE_ACCOUNT_SECRETS),
        ColumnDefinition::age(),
    ]
}

pub(super) fn service_account_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        Value::from(name(obj)),
        Value::from(len_at(obj, &["secrets"])),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn event_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::text("Last Seen", docs::EVENT_LAST_TIMESTAMP),
        ColumnDefinition::text("Type", docs::EVENT_TYPE),
        ColumnDefinition::text("Reason", docs::EVENT_REASON),
        ColumnDefinition::text("Object", docs::EVENT_INVOLVED_OBJECT),
        ColumnDefinition::text("Subobject", docs::EVENT_FIELD_PATH).wide(),
        ColumnDefinition::text("Source", docs::EVENT_SOURCE).wide(),
        ColumnDefinition::text("Message", docs::EVENT_MESSAGE),
        ColumnDefinition::text("First Seen", docs::EVENT_FIRST_TIMESTAMP).wide(),
        ColumnDefinition::text("Count", docs::EVENT_COUNT).wide(),
        ColumnDefinition::text("Name", docs::NAME)
            .wide()
            .formatted("name"),
    ]
}

/// An event's printed fields under their core/v1 names, whichever API it was written in.
struct EventFields<'a> {
    regarding: Option<&'a Value>,
    message: &'a str,
    first_timestamp: Option<Timestamp>,
    last_timestamp: Option<Timestamp>,
    count: i64,
    source_component: &'a str,
    source_host: &'a str,
    reporting_controller: &'a str,
}

pub(super) fn core_event_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let event = EventFields {
        regarding: at(obj, &["involvedObject"]),
        message: str_at(obj, &["message"]),
        first_timestamp: duration::timestamp_at(obj, &["firstTimestamp"]),
        last_timestamp: duration::timestamp_at(obj, &["lastTimestamp"]),
        count: int_at(obj, &["count"]),
        source_component: str_at(obj, &["source", "component"]),
        source_host: str_at(obj, &["source", "host"]),
        reporting_controller: str_at(obj, &["reportingComponent"]),
    };
    event_cells(obj, &event, now)
}

pub(super) fn events_event_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let event = EventFields {
        regarding: at(obj, &["regarding"]),
        message: str_at(obj, &["note"]),
        first_timestamp: duration::timestamp_at(obj, &["deprecatedFirstTimestamp"]),
        last_timestamp: duration::timestamp_at(obj, &["deprecatedLastTimestamp"]),
        count: int_at(obj, &["deprecatedCount"]),
        source_component: str_at(obj, &["deprecatedSource", "component"]),
        source_host: str_at(obj, &["deprecatedSource", "host"]),
        reporting_controller: str_at(obj, &["reportingController"]),
    };
    event_cells(obj, &event, now)
}

/// `printEvent`; `obj` supplies the fields both APIs name alike.
fn event_cells(obj: &Value, event: &EventFields<'_>, now: Timestamp) -> Vec<Value> {
    let first_seen = match event.first_timestamp {
        Some(t) => duration::between(t, now),
        None => duration::since(duration::timestamp_at(obj, &["eventTime"]), now),
    };
    let mut last_seen = match event.last_timestamp {
        Some(t) => duration::between(t, now),
        None => first_seen.clone(),
    };
    let mut count = event.count;
    if let Some(series) = at(obj, &["series"]) {
        last_seen = duration::since(duration::timestamp_at(series, &["lastObservedTime"]), now);
        count = int_at(series, &["count"]);
    } else if count == 0 {
        // Singleton events have no count in the events.k8s.io API.
        count = 1;
    }

    let (kind, object_name, field_path) = match event.regarding {
        Some(r) => (
            str_at(r, &["kind"]),
            str_at(r, &["name"]),
            str_at(r, &["fieldPath"]),
        ),
        None => ("", "", ""),
    };
    let target = match object_name {
        "" => kind.to_lowercase(),
        n => format!("{}/{n}", kind.to_lowercase()),
    };

    let component = first_non_empty(event.source_component, event.reporting_controller);
    let instance = first_non_empty(event.source_host, str_at(obj, &["reportingInstance"]));
    let source = match instance {
        "" => component.to_owned(),
        instance => format!("{component}, {instance}"),
    };

    vec![
        Value::from(last_seen),
        Value::from(str_at(obj, &["type"])),
        Value::from(str_at(obj, &["reason"])),
        Value::from(target),
        Value::from(field_path),
        Value::from(source),
        Value::from(event.message.trim()),
        Value::from(first_seen),
        Value::from(count),
        Value::from(name(obj)),
    ]
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

pub(super) fn resource_quota_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text(
            "Request",
            "Request represents a minimum amount of cpu/memory that a container may consume.",
        ),
        ColumnDefinition::text(
            "Limit",
            "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        ),
        ColumnDefinition::age(),
    ]
}

pub(super) fn resource_quota_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let hard: BTreeMap<&String, &Value> = match at(obj, &["status", "hard"]) {
        Some(Value::Object(map)) => map.iter().collect(),
        _ => BTreeMap::new(),
    };
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    for (resource, hard_quantity) in hard {
        let used = quantity::at(obj, &["status", "used", resource]);
        let hard = quantity::at(hard_quantity, &[]);
        let entry = format!("{resource}: {used}/{hard}");
        let mut pieces = resource.split('.');
        if pieces.next() == Some("limits") && pieces.next().is_some() {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![
        Value::from(name(obj)),
        Value::from(requests.join(", ")),
        Value::from(limits.join(", ")),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn component_status_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Status", "Status of the component conditions"),
        ColumnDefinition::text("Message", "Message of the component conditions"),
        ColumnDefinition::text("Error", "Error of the component conditions"),
    ]
}

pub(super) fn component_status_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let healthy = items(obj, &["conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == "Healthy");
    let (status, message, error) = match healthy {
        Some(c) => (
            if str_at(c, &["status"]) == "True" {
                "Healthy"
            } else {
                "Unhealthy"
            },
            str_at(c, &["message"]),
            str_at(c, &["error"]),
        ),
        None => ("Unknown", "", ""),
    };
    vec![
        Value::from(name(obj)),
        Value::from(status),
        Value::from(message),
        Value::from(error),
    ]
}
