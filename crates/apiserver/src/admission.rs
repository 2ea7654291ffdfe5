//! Admission on create, between defaulting and storage (kube-apiserver's admission
//! chain): NamespaceLifecycle (no objects in missing or terminating namespaces) and
//! Priority (a pod's `priorityClassName` resolved to `spec.priority`). RBAC-era
//! plugins (LimitRanger, ResourceQuota, PodSecurity, webhooks) slot in here later.

use api::resource::ResourceInfo;
use api::status::{ApiError, StatusDetails};
use serde_json::{Value, json};

use crate::serve::State;

/// Built-in PriorityClasses Kubernetes creates at start.
pub(crate) const SYSTEM_PRIORITY_CLASSES: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// Runs the create-time plugins on `obj` (mutating it where they set fields).
pub(crate) async fn admit_create(
    state: &State,
    res: &ResourceInfo,
    obj: &mut Value,
) -> Result<(), ApiError> {
    namespace_lifecycle(state, res, obj).await?;
    if res.group.is_empty() && res.plural == "pods" {
        priority(state, obj).await?;
    }
    Ok(())
}

async fn namespace_lifecycle(
    state: &State,
    res: &ResourceInfo,
    obj: &Value,
) -> Result<(), ApiError> {
    if !res.namespaced {
        return Ok(());
    }
    let Some(ns) = crate::object::namespace(obj) else {
        return Ok(());
    };
    let Some(ns_res) = state.registry.lookup("", "v1", "namespaces") else {
        return Ok(());
    };
    let ns_obj = match state.storage.get(ns_res, None, ns).await {
        Ok(o) => o,
        Err(e) if e.code == 404 => return Err(ApiError::not_found("", "namespaces", ns)),
        Err(e) => return Err(e),
    };
    if ns_obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        let mut e = ApiError::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        ));
        e.details = Some(StatusDetails {
            name: Some(ns.to_string()),
            kind: Some("namespaces".into()),
            ..Default::default()
        });
        return Err(e);
    }
    Ok(())
}

fn forbidden_pod(obj: &Value, why: String) -> ApiError {
    let name = crate::object::name(obj).unwrap_or_default();
    let mut e = ApiError::forbidden(format!("pods {name:?} is forbidden: {why}"));
    e.details = Some(StatusDetails {
        name: Some(name.to_string()),
        kind: Some("pods".into()),
        ..Default::default()
    });
    e
}

/// Kubernetes' Priority plugin: spec.priority comes from the PriorityClass (or the
/// global default class, or 0) and may not be set by the user to anything else.
async fn priority(state: &State, obj: &mut Value) -> Result<(), ApiError> {
    let Some(pc_res) = state
        .registry
        .lookup("scheduling.k8s.io", "v1", "priorityclasses")
    else {
        return Ok(());
    };
    let class_name = obj
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let class = if class_name.is_empty() {
        let page = state
            .storage
            .list(pc_res, &pc_res.key_prefix(), None, None, 0, &|pc| {
                pc.get("globalDefault") == Some(&json!(true))
            })
            .await?;
        page.items
            .into_iter()
            .max_by_key(|pc| pc.get("value").and_then(Value::as_i64).unwrap_or(0))
    } else {
        match state.storage.get(pc_res, None, &class_name).await {
            Ok(pc) => Some(pc),
            Err(e) if e.code == 404 => {
                return Err(forbidden_pod(
                    obj,
                    format!("no PriorityClass with name {class_name} was found"),
                ));
            }
            Err(e) => return Err(e),
        }
    };
    let value = class
        .as_ref()
        .and_then(|c| c.get("value"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(given) = obj.pointer("/spec/priority").and_then(Value::as_i64)
        && given != value
    {
        return Err(forbidden_pod(
            obj,
            format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            ),
        ));
    }
    crate::object::set(obj, "spec.priority", json!(value));
    if let Some(c) = &class {
        // A pod without a class gets the global default class's name, as in Kubernetes.
        if class_name.is_empty()
            && let Some(n) = crate::object::name(c)
        {
            crate::object::set(obj, "spec.priorityClassName", json!(n));
        }
        let policy = c
            .get("preemptionPolicy")
            .cloned()
            .unwrap_or(json!("PreemptLowerPriority"));
        crate::object::set(obj, "spec.preemptionPolicy", policy);
    }
    Ok(())
}
