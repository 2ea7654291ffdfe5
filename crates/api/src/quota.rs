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
    // Saturating: quantities are not bounded on the way in, and a wrapped sum
    // would come out negative and free quota.
    let sum = list("containers")
        .iter()
        .map(get)
        .fold(0i64, i64::saturating_add);
    let init = list("initContainers").iter().map(get).max().unwrap_or(0);
    Some(sum.max(init))
}

/// Whether a ResourceQuota with `spec` covers `obj` (of `group`/`plural`) by its
/// `scopes` and `scopeSelector`. A quota without scopes covers everything; scopes
/// only ever match pods: Terminating / NotTerminating (`activeDeadlineSeconds` set or
/// not), BestEffort / NotBestEffort (QoS), PriorityClass (the pod's
/// `priorityClassName` by the selector's operator) and CrossNamespacePodAffinity.
pub fn in_scope(spec: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    let mut wanted: Vec<(String, String, Vec<String>)> = spec
        .get("scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_owned(), "Exists".to_owned(), Vec::new()))
        .collect();
    for e in spec
        .pointer("/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        wanted.push((
            e.get("scopeName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            e.get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            values,
        ));
    }
    if wanted.is_empty() {
        return true;
    }
    if (group, plural) != ("", "pods") {
        return false;
    }
    wanted
        .iter()
        .all(|(scope, op, values)| scope_matches(obj, scope, op, values))
}

fn scope_matches(pod: &Value, scope: &str, op: &str, values: &[String]) -> bool {
    let applies = match scope {
        "Terminating" => pod
            .pointer("/spec/activeDeadlineSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|d| d >= 0),
        "NotTerminating" => !scope_matches(pod, "Terminating", "Exists", &[]),
        "BestEffort" => best_effort(pod),
        "NotBestEffort" => !best_effort(pod),
        "CrossNamespacePodAffinity" => cross_namespace_affinity(pod),
        "PriorityClass" => {
            let class = pod
                .pointer("/spec/priorityClassName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return match op {
                "In" => values.iter().any(|v| v == class),
                "NotIn" => !values.iter().any(|v| v == class),
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                _ => false,
            };
        }
        _ => false,
    };
    match op {
        "DoesNotExist" => !applies,
        _ => applies,
    }
}

/// No container (regular or init) asks for or limits any resource.
fn best_effort(pod: &Value) -> bool {
    ["containers", "initContainers"].iter().all(|list| {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .all(|c| {
                ["requests", "limits"].iter().all(|k| {
                    c.pointer(&format!("/resources/{k}"))
                        .and_then(Value::as_object)
                        .is_none_or(|m| m.is_empty())
                })
            })
    })
}

/// A pod (anti-)affinity term names other namespaces or a namespace selector.
fn cross_namespace_affinity(pod: &Value) -> bool {
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(a) = pod.pointer(&format!("/spec/affinity/{kind}")) else {
            return false;
        };
        let required = a
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        let preferred = a
            .get("preferredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|w| w.get("podAffinityTerm"));
        required.chain(preferred).any(|t| {
            t.get("namespaceSelector").is_some_and(|s| !s.is_null())
                || t.get("namespaces")
                    .and_then(Value::as_array)
                    .is_some_and(|n| !n.is_empty())
        })
    })
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

    #[test]
    fn huge_container_requests_saturate_instead_of_wrapping() {
        // Found by fuzzing: two containers of 9e15 cpus overflowed the sum.
        let huge = json!({"resources": {"requests": {"cpu": "9e15"}}});
        let pod = json!({"spec": {"containers": [huge, huge]}});
        assert_eq!(usage("", "pods", &pod, "requests.cpu"), Some(i64::MAX));
    }

    #[test]
    fn scopes_select_pods_like_kubernetes() {
        let best_effort = json!({"spec": {"containers": [{"name": "c"}]}});
        let burstable = json!({"spec": {"activeDeadlineSeconds": 30, "priorityClassName": "high",
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}});
        let scoped = |spec: Value, pod: &Value| in_scope(&spec, "", "pods", pod);
        assert!(scoped(json!({}), &best_effort), "no scopes: everything");
        assert!(scoped(json!({"scopes": ["BestEffort"]}), &best_effort));
        assert!(!scoped(json!({"scopes": ["BestEffort"]}), &burstable));
        assert!(scoped(
            json!({"scopes": ["NotBestEffort", "Terminating"]}),
            &burstable
        ));
        assert!(!scoped(json!({"scopes": ["Terminating"]}), &best_effort));
        assert!(scoped(json!({"scopes": ["NotTerminating"]}), &best_effort));
        let priority = |op: &str, values: Value| {
            json!({"scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": op, "values": values}]}})
        };
        assert!(scoped(priority("In", json!(["high"])), &burstable));
        assert!(!scoped(priority("In", json!(["high"])), &best_effort));
        assert!(scoped(priority("NotIn", json!(["high"])), &best_effort));
        assert!(scoped(priority("Exists", json!(null)), &burstable));
        assert!(scoped(priority("DoesNotExist", json!(null)), &best_effort));
        // Scoped quotas track pods only.
        assert!(!in_scope(
            &json!({"scopes": ["BestEffort"]}),
            "",
            "services",
            &json!({})
        ));
        let cross = json!({"spec": {"containers": [{"name": "c"}], "affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "x", "namespaceSelector": {}}]}}}});
        assert!(scoped(
            json!({"scopes": ["CrossNamespacePodAffinity"]}),
            &cross
        ));
        assert!(!scoped(
            json!({"scopes": ["CrossNamespacePodAffinity"]}),
            &best_effort
        ));
    }
}
