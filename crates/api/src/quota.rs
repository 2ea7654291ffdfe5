//! ResourceQuota accounting shared by the admission plugin (which checks and reserves
//! on create) and the controller (which recomputes `status.used`): what one object
//! costs against each quota resource name Kubernetes knows.

use serde_json::Value;

/// What creating `obj` (of `group`/`plural`) adds to quota resource `name`, in
/// millis (counts are 1000 per object). `None` when the name does not cover it.
pub fn usage(group: &str, plural: &str, obj: &Value, name: &str) -> Option<i64> {
    if let Some(rest) = name.strip_prefix("count/") {
        let (r, g) = rest.split_once('.').unwrap_or((rest, ""));
        return (r == plural && g == group).then_some(1000);
    }
    match (group, plural, name) {
        ("", "pods", "pods") => (!terminal(obj)).then_some(1000),
        ("", "pods", n) => pod_compute(obj, n),
        ("", "services", "services") => Some(1000),
        ("", "services", "services.nodeports") => {
            let ty = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map_or(0, Vec::len) as i64;
            Some(if ty == "NodePort" || ty == "LoadBalancer" {
                ports * 1000
            } else {
                0
            })
        }
        ("", "services", "services.loadbalancers") => Some(
            if obj.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer") {
                1000
            } else {
                0
            },
        ),
        ("", "configmaps", "configmaps")
        | ("", "secrets", "secrets")
        | ("", "persistentvolumeclaims", "persistentvolumeclaims")
        | ("", "replicationcontrollers", "replicationcontrollers")
        | ("", "resourcequotas", "resourcequotas") => Some(1000),
        ("", "persistentvolumeclaims", "requests.storage") => obj
            .pointer("/spec/resources/requests/storage")
            .and_then(Value::as_str)
            .and_then(crate::quantity::milli_value),
        _ => None,
    }
}

fn terminal(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// `requests.cpu` (or `cpu`), `requests.memory` (`memory`), `limits.cpu`,
/// `limits.memory`: the sum over containers, or the largest init container if larger.
fn pod_compute(pod: &Value, name: &str) -> Option<i64> {
    let (kind, res) = match name {
        "cpu" | "requests.cpu" => ("requests", "cpu"),
        "memory" | "requests.memory" => ("requests", "memory"),
        "limits.cpu" => ("limits", "cpu"),
        "limits.memory" => ("limits", "memory"),
        "requests.ephemeral-storage" | "ephemeral-storage" => ("requests", "ephemeral-storage"),
        "limits.ephemeral-storage" => ("limits", "ephemeral-storage"),
        _ => return None,
    };
    if terminal(pod) {
        return Some(0);
    }
    let get = |c: &Value| {
        c.pointer(&format!("/resources/{kind}/{res}"))
            .and_then(Value::as_str)
            .and_then(crate::quantity::milli_value)
            .unwrap_or(0)
    };
    let list = |l: &str| {
        pod.pointer(&format!("/spec/{l}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let sum: i64 = list("containers").iter().map(get).sum();
    let init = list("initContainers").iter().map(get).max().unwrap_or(0);
    Some(sum.max(init))
}

/// Whether a quota resource name holds bytes (formatted with binary suffixes).
pub fn is_bytes(name: &str) -> bool {
    name.contains("memory") || name.contains("storage")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_costs_one_pod_and_its_container_requests() {
        let pod = json!({"spec": {"containers": [
            {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
            {"resources": {"requests": {"cpu": "250m"}}}
        ]}});
        assert_eq!(usage("", "pods", &pod, "pods"), Some(1000));
        assert_eq!(usage("", "pods", &pod, "requests.cpu"), Some(500));
        assert_eq!(
            usage("", "pods", &pod, "memory"),
            Some(64 * 1024 * 1024 * 1000)
        );
        assert_eq!(usage("", "pods", &pod, "limits.cpu"), Some(1000));
        assert_eq!(usage("", "pods", &pod, "services"), None);
        assert_eq!(
            usage("", "configmaps", &json!({}), "count/configmaps"),
            Some(1000)
        );
        assert_eq!(
            usage("apps", "deployments", &json!({}), "count/deployments.apps"),
            Some(1000)
        );
        let done = json!({"status": {"phase": "Succeeded"}});
        assert_eq!(usage("", "pods", &done, "pods"), None);
    }
}
