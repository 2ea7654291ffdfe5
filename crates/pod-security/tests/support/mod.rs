//! Pods for the check tables and a one-call evaluation returning the messages.

#![allow(dead_code)]

use pod_security::{Evaluator, LevelVersion};
use serde_json::{Value, json};

/// A pod named `p` with `spec`.
pub fn pod(spec: Value) -> Value {
    json!({"metadata": {"name": "p"}, "spec": spec})
}

/// A pod named `p` with `annotations` and `spec`.
pub fn annotated_pod(annotations: Value, spec: Value) -> Value {
    json!({"metadata": {"name": "p", "annotations": annotations}, "spec": spec})
}

/// The default pod a user writes first: one container, nothing set. Passes
/// baseline, fails restricted.
pub fn default_pod() -> Value {
    pod(json!({"containers": [{"name": "c", "image": "busybox"}]}))
}

/// A container that passes every restricted container-level check by itself.
pub fn restricted_container(name: &str) -> Value {
    json!({
        "name": name,
        "image": "busybox",
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]}
        }
    })
}

/// A pod that passes restricted (pod-level runAsNonRoot and seccomp).
pub fn restricted_pod() -> Value {
    pod(json!({
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [restricted_container("c")]
    }))
}

/// Sets `value` at the JSON pointer `path` of `obj` (creating objects on the way).
pub fn set(mut obj: Value, path: &str, value: Value) -> Value {
    let mut cur = &mut obj;
    for part in path.trim_start_matches('/').split('/') {
        cur = match cur {
            Value::Array(a) => &mut a[part.parse::<usize>().expect("array index")],
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                other
                    .as_object_mut()
                    .expect("object")
                    .entry(part)
                    .or_insert(Value::Null)
            }
        };
    }
    *cur = value;
    obj
}

/// The violations of `pod` at `level` (`"restricted:latest"`, `"baseline:v1.30"`),
/// each as `reason (detail)`, with every check this library knows.
pub fn violations(level: &str, pod: &Value) -> Vec<String> {
    violations_with(&Evaluator::new(), level, pod)
}

/// [`violations`] with a given evaluator.
pub fn violations_with(evaluator: &Evaluator, level: &str, pod: &Value) -> Vec<String> {
    let (l, v) = level.split_once(':').expect("level:version");
    let lv = LevelVersion::new(l.parse().expect("level"), v.parse().expect("version"));
    evaluator
        .check_pod_value(&lv, &pod["metadata"], &pod["spec"])
        .expect("pod decodes")
        .iter()
        .map(ToString::to_string)
        .collect()
}
