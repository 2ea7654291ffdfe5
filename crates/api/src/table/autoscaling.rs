//! HorizontalPodAutoscaler: `REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE`.
//!
//! kube-apiserver prints the internal (autoscaling/v2-shaped) object, so `autoscaling/v1`
//! objects are read through the v1 conversion: `targetCPUUtilizationPercentage` becomes a CPU
//! utilization metric. Without metrics the server's default, 80% CPU utilization, applies.

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::fields::{at, int_at, items, name, opt_int_at, str_at};
use super::{ColumnDefinition, docs, duration, quantity};

pub(super) fn hpa_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Reference", docs::HPA_SCALE_TARGET_REF),
        ColumnDefinition::text("Targets", docs::HPA_METRICS),
        ColumnDefinition::text("MinPods", docs::HPA_MIN_REPLICAS),
        ColumnDefinition::text("MaxPods", docs::HPA_MAX_REPLICAS),
        ColumnDefinition::text("Replicas", docs::HPA_CURRENT_REPLICAS),
        ColumnDefinition::age(),
    ]
}

pub(super) fn hpa_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(obj, &["spec", "scaleTargetRef", "kind"]),
        str_at(obj, &["spec", "scaleTargetRef", "name"]),
    );
    let (specs, statuses) = metrics(obj);
    // The server defaults `minReplicas` to 1.
    let min_pods = opt_int_at(obj, &["spec", "minReplicas"]).unwrap_or(1);
    vec![
        Value::from(name(obj)),
        Value::from(reference),
        Value::from(format_metrics(&specs, &statuses)),
        Value::from(min_pods.to_string()),
        Value::from(int_at(obj, &["spec", "maxReplicas"])),
        Value::from(int_at(obj, &["status", "currentReplicas"])),
        Value::from(duration::age(obj, now)),
    ]
}

/// The metric specs and statuses in autoscaling/v2 shape.
fn metrics(obj: &Value) -> (Vec<Value>, Vec<Value>) {
    let cpu_target = opt_int_at(obj, &["spec", "targetCPUUtilizationPercentage"]);
    let v1 = str_at(obj, &["apiVersion"]) == "autoscaling/v1" || cpu_target.is_some();
    let (mut specs, statuses) = if v1 {
        let specs = cpu_target.map(cpu_utilization_spec).into_iter().collect();
        let statuses = opt_int_at(obj, &["status", "currentCPUUtilizationPercentage"])
            .map(|current| {
                json!({
                    "type": "Resource",
                    "resource": {"name": "cpu", "current": {"averageUtilization": current}},
                })
            })
            .into_iter()
            .collect();
        (specs, statuses)
    } else {
        (
            items(obj, &["spec", "metrics"]).to_vec(),
            items(obj, &["status", "currentMetrics"]).to_vec(),
        )
    };
    if specs.is_empty() {
        specs.push(cpu_utilization_spec(80));
    }
    (specs, statuses)
}

/// A CPU utilization metric spec.
fn cpu_utilization_spec(percent: i64) -> Value {
    json!({
        "type": "Resource",
        "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": percent},
        },
    })
}

/// `current/target` per metric, two at most then ` + N more...` (`formatHPAMetrics`).
fn format_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const MAX: usize = 2;
    if specs.is_empty() {
        return "<none>".to_owned();
    }
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| format_metric(spec, statuses.get(i)))
        .collect();
    let shown = list[..list.len().min(MAX)].join(", ");
    if list.len() > MAX {
        format!("{shown} + {} more...", list.len() - MAX)
    } else {
        shown
    }
}

/// A quantity that may be unset, printed as Go prints a nil `*Quantity`.
fn quantity_or_nil(v: &Value, path: &[&str]) -> String {
    quantity::opt_at(v, path).unwrap_or_else(|| "<nil>".to_owned())
}

/// One metric's `current/target`.
fn format_metric(spec: &Value, status: Option<&Value>) -> String {
    // The status entry for the same index, if it describes this source.
    let source_status = |source: &str| status.and_then(|s| at(s, &[source]));
    match str_at(spec, &["type"]) {
        source_type @ ("External" | "Object") => {
            let source = if source_type == "External" {
                "external"
            } else {
                "object"
            };
            let target = at(spec, &[source, "target"]).unwrap_or(&Value::Null);
            let current = source_status(source);
            if at(target, &["averageValue"]).is_some() {
                let current = current
                    .and_then(|c| quantity::opt_at(c, &["current", "averageValue"]))
                    .unwrap_or_else(|| "<unknown>".to_owned());
                format!(
                    "{current}/{} (avg)",
                    quantity_or_nil(target, &["averageValue"])
                )
            } else {
                let current = current.map_or_else(
                    || "<unknown>".to_owned(),
                    |c| quantity_or_nil(c, &["current", "value"]),
                );
                format!("{current}/{}", quantity_or_nil(target, &["value"]))
            }
        }
        "Pods" => {
            let current = source_status("pods").map_or_else(
                || "<unknown>".to_owned(),
                |c| quantity_or_nil(c, &["current", "averageValue"]),
            );
            format!(
                "{current}/{}",
                quantity_or_nil(spec, &["pods", "target", "averageValue"])
            )
        }
        source_type @ ("Resource" | "ContainerResource") => {
            let source = if source_type == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let resource = str_at(spec, &[source, "name"]);
            let target = at(spec, &[source, "target"]).unwrap_or(&Value::Null);
            let current = source_status(source);
            if at(target, &["averageValue"]).is_some() {
                let current = current.map_or_else(
                    || "<unknown>".to_owned(),
                    |c| quantity_or_nil(c, &["current", "averageValue"]),
                );
                format!(
                    "{resource}: {current}/{}",
                    quantity_or_nil(target, &["averageValue"])
                )
            } else {
                let current = current
                    .and_then(|c| opt_int_at(c, &["current", "averageUtilization"]))
                    .map_or_else(|| "<unknown>".to_owned(), |u| format!("{u}%"));
                let target = opt_int_at(target, &["averageUtilization"])
                    .map_or_else(|| "<auto>".to_owned(), |u| format!("{u}%"));
                format!("{resource}: {current}/{target}")
            }
        }
        _ => "<unknown type>".to_owned(),
    }
}
