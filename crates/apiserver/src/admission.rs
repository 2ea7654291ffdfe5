//! Admission on create, between defaulting and storage (kube-apiserver's admission
//! chain): NamespaceLifecycle (no objects in missing or terminating namespaces),
//! LimitRanger (container defaults and min/max), ServiceAccount (the pod's account
//! exists; its token, the cluster CA and the namespace are mounted), Priority (a pod's
//! `priorityClassName` resolved to `spec.priority`) and DefaultStorageClass (a
//! claim without a class gets the default StorageClass). RBAC-era
//! plugins (LimitRanger, ResourceQuota, PodSecurity, webhooks) slot in here later.

use api::resource::ResourceInfo;
use api::status::{ApiError, StatusDetails};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::serve::State;

pub(crate) mod node_restriction;
pub(crate) mod objects;
mod per_server;
pub(crate) mod policy;
mod service_account;
pub(crate) mod webhook;

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
        limit_ranger(state, obj).await?;
        service_account(state, obj).await?;
        priority(state, obj).await?;
    }
    if res.group.is_empty() && res.plural == "persistentvolumeclaims" {
        default_storage_class(state, obj).await?;
        add_finalizer(obj, "kubernetes.io/pvc-protection");
    }
    if res.group.is_empty() && res.plural == "persistentvolumes" {
        add_finalizer(obj, "kubernetes.io/pv-protection");
    }
    Ok(())
}

/// What a write is, for the validating plugins (NodeRestriction, PodSecurity), which
/// run after the object was defaulted, admitted and validated.
pub(crate) struct Write<'a> {
    pub who: &'a crate::authn::Identity,
    pub operation: node_restriction::Operation,
    pub res: &'a ResourceInfo,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The object to be stored (create, update) or the request body (eviction,
    /// token request); none on delete.
    pub object: Option<&'a Value>,
    /// The stored object (update, delete).
    pub old: Option<&'a Value>,
    /// `?dryRun=All`: nothing is stored (webhooks without side effects only).
    pub dry_run: bool,
}

/// Runs the validating plugins on a write; `warnings` collects PodSecurity's.
pub(crate) async fn validate(
    state: &State,
    w: &Write<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    node_restriction(state, w).await?;
    pod_security(state, w, warnings).await?;
    policy::validate(state, w, warnings).await?;
    webhook::validate(state, w, warnings).await
}

/// `<resource> "<name>" is forbidden: <why>` (Kubernetes' `admission.NewForbidden`).
fn forbidden_write(w: &Write<'_>, why: &str) -> ApiError {
    let name = if w.name.is_empty() {
        w.object.and_then(crate::object::name).unwrap_or_default()
    } else {
        w.name
    };
    let resource = if w.res.group.is_empty() {
        w.res.plural.clone()
    } else {
        format!("{}.{}", w.res.plural, w.res.group)
    };
    let mut e = ApiError::forbidden(format!("{resource} {name:?} is forbidden: {why}"));
    e.details = Some(StatusDetails {
        name: Some(name.to_string()),
        group: (!w.res.group.is_empty()).then(|| w.res.group.clone()),
        kind: Some(w.res.plural.clone()),
        ..Default::default()
    });
    e
}

async fn stored(state: &State, plural: &str, ns: Option<&str>, name: &str) -> Option<Value> {
    let res = state.registry.lookup("", "v1", plural)?;
    state.storage.get(res, ns, name).await.ok()
}

/// The namespace `name` as of now (`None`: it does not exist), from the in-memory
/// index, or from storage when the index is behind.
async fn namespace(state: &State, name: &str) -> Result<Option<Arc<Value>>, ApiError> {
    if let Some(found) = state.admission_objects.namespace(name).await {
        return Ok(found);
    }
    let Some(res) = state.registry.lookup("", "v1", "namespaces") else {
        return Ok(None);
    };
    match state.storage.get(res, None, name).await {
        Ok(o) => Ok(Some(Arc::new(o))),
        Err(e) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// NodeRestriction for writes by node identities (see [`node_restriction`]).
async fn node_restriction(state: &State, w: &Write<'_>) -> Result<(), ApiError> {
    let Some(node) = node_restriction::node_name(w.who) else {
        return Ok(());
    };
    if !node_restriction::watches(&w.res.group, &w.res.plural) {
        return Ok(());
    }
    let ns = (!w.namespace.is_empty()).then_some(w.namespace);
    // The pod an eviction or a token request is about, and the node a mirror pod
    // names as its owner.
    let pod_name = match (w.res.plural.as_str(), w.subresource) {
        ("pods", "eviction") => Some(w.name.to_string()),
        ("serviceaccounts", "token") => w
            .object
            .and_then(|o| o.pointer("/spec/boundObjectRef/name"))
            .and_then(Value::as_str)
            .map(String::from),
        _ => None,
    };
    let pod = match pod_name {
        Some(p) => match stored(state, "pods", ns, &p).await {
            Some(pod) => Some(pod),
            None => return Err(ApiError::not_found("", "pods", &p)),
        },
        None => None,
    };
    let node_obj = if w.res.plural == "pods" && w.subresource.is_empty() {
        stored(state, "nodes", None, node).await
    } else {
        None
    };
    let request = node_restriction::Request {
        operation: w.operation,
        group: &w.res.group,
        resource: &w.res.plural,
        subresource: w.subresource,
        namespace: w.namespace,
        name: w.name,
        object: w.object,
        old: w.old,
        pod: pod.as_ref(),
        node: node_obj.as_ref(),
    };
    node_restriction::admit(node, &request).map_err(|why| forbidden_write(w, &why))
}

/// The PodSecurity plugin, built once: Kubernetes' defaults (privileged unless a
/// namespace says otherwise), checks as of the Kubernetes version Skiff serves.
fn pod_security_admission() -> &'static pod_security::Admission {
    static ADMISSION: std::sync::OnceLock<pod_security::Admission> = std::sync::OnceLock::new();
    ADMISSION.get_or_init(|| {
        let minor = crate::discovery::KUBE_VERSION.1.parse().unwrap_or(33);
        pod_security::Admission::new(
            pod_security::Config::default(),
            pod_security::Evaluator::emulating(pod_security::Version::V1(minor)),
        )
    })
}

/// PodSecurity: enforce (403), warn (warnings) and audit from the namespace's
/// `pod-security.kubernetes.io/*` labels, for pods, pod-bearing workloads (warn
/// only) and namespaces (label checks, warnings about existing pods).
async fn pod_security(
    state: &State,
    w: &Write<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let operation = match w.operation {
        node_restriction::Operation::Create => pod_security::Operation::Create,
        node_restriction::Operation::Update => pod_security::Operation::Update,
        node_restriction::Operation::Delete => return Ok(()),
    };
    if !pod_security::Admission::handles(&w.res.group, &w.res.plural) {
        return Ok(());
    }
    let Some(object) = w.object else {
        return Ok(());
    };
    let namespace_name = if w.res.group.is_empty() && w.res.plural == "namespaces" {
        w.name
    } else {
        w.namespace
    };
    let ns_obj = namespace(state, namespace_name).await.ok().flatten();
    let request = pod_security::Request {
        operation,
        group: &w.res.group,
        resource: &w.res.plural,
        subresource: w.subresource,
        namespace: w.namespace,
        name: w.name,
        username: &w.who.user,
        object,
        old_object: w.old,
    };
    let admission = pod_security_admission();
    let decision = admission.validate(&request, ns_obj.as_deref());
    warnings.extend(decision.warnings.iter().cloned());
    if let Some(denial) = decision.denial {
        return Err(match denial {
            pod_security::Denial::Forbidden { message } => {
                let name = if w.name.is_empty() {
                    crate::object::name(object).unwrap_or_default()
                } else {
                    w.name
                };
                let mut e = ApiError::forbidden(message);
                e.details = Some(StatusDetails {
                    name: Some(name.to_string()),
                    kind: Some(w.res.plural.clone()),
                    ..Default::default()
                });
                e
            }
            pod_security::Denial::Invalid { name, errors } => ApiError::invalid(
                "",
                "Namespace",
                &name,
                errors
                    .iter()
                    .map(|e| api::status::FieldError::invalid(e.field(), e.value.clone(), e.detail))
                    .collect(),
            ),
            pod_security::Denial::BadRequest { message } => ApiError::bad_request(message),
            pod_security::Denial::Internal { message } => ApiError::internal(message),
        });
    }
    if let Some(enforce) = decision.check_existing_pods {
        let pods = match state.registry.lookup("", "v1", "pods") {
            Some(res) => state
                .storage
                .list(res, &res.namespace_prefix(w.name), None, None, 0, &|_| true)
                .await
                .map(|page| page.items)
                .ok(),
            None => None,
        };
        match pods {
            Some(pods) => {
                warnings.extend(admission.existing_pods_warnings(w.name, &enforce, &pods))
            }
            None => warnings.push(pod_security::LIST_PODS_FAILED_WARNING.to_string()),
        }
    }
    Ok(())
}

/// StorageObjectInUseProtection: claims and volumes carry a finalizer the
/// persistentvolume-protection controller removes once they are no longer in use.
fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let list = meta
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    if let Some(items) = list.as_array_mut()
        && !items.iter().any(|f| f.as_str() == Some(finalizer))
    {
        items.push(Value::String(finalizer.to_owned()));
    }
}

/// The annotations that mark the default StorageClass (GA and beta).
const DEFAULT_CLASS_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

/// The default StorageClass among `classes`: of those marked default (annotation
/// `"true"`), the newest, then the first by name — as Kubernetes 1.28+ chooses
/// when several are marked.
pub(crate) fn default_class(classes: &[Value]) -> Option<&Value> {
    let is_default = |c: &Value| {
        DEFAULT_CLASS_ANNOTATIONS.iter().any(|k| {
            c.pointer("/metadata/annotations")
                .and_then(|a| a.get(*k))
                .and_then(Value::as_str)
                == Some("true")
        })
    };
    let created = |c: &Value| {
        crate::object::meta_str(c, "creationTimestamp")
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    };
    classes.iter().filter(|c| is_default(c)).min_by(|a, b| {
        created(b)
            .cmp(&created(a))
            .then_with(|| crate::object::name(a).cmp(&crate::object::name(b)))
    })
}

/// DefaultStorageClass: a claim that names no class (no `spec.storageClassName`,
/// no beta class annotation) gets the default class; an explicit `""` stays (it
/// asks for no class). Without a default class the claim is left as it is.
async fn default_storage_class(state: &State, obj: &mut Value) -> Result<(), ApiError> {
    let has_class = obj
        .pointer("/spec/storageClassName")
        .is_some_and(|v| !v.is_null())
        || obj
            .pointer("/metadata/annotations")
            .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
            .is_some();
    if has_class {
        return Ok(());
    }
    let Some(sc_res) = state
        .registry
        .lookup("storage.k8s.io", "v1", "storageclasses")
    else {
        return Ok(());
    };
    let page = state
        .storage
        .list(sc_res, &sc_res.key_prefix(), None, None, 0, &|_| true)
        .await?;
    if let Some(name) = default_class(&page.items).and_then(crate::object::name) {
        crate::object::set(obj, "spec.storageClassName", json!(name));
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
    let Some(ns_obj) = namespace(state, ns).await? else {
        return Err(ApiError::not_found("", "namespaces", ns));
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

/// ServiceAccount: the pod's account must exist; its token, the cluster CA and the
/// namespace are mounted unless opted out (see [`service_account`]).
async fn service_account(state: &State, obj: &mut Value) -> Result<(), ApiError> {
    if !service_account::applies(obj) {
        return Ok(());
    }
    let Some(sa_res) = state.registry.lookup("", "v1", "serviceaccounts") else {
        return Ok(());
    };
    let ns = crate::object::namespace(obj)
        .unwrap_or_default()
        .to_string();
    let name = service_account::account_name(obj);
    // The serviceaccount controller creates `default` right after the namespace:
    // like Kubernetes, wait a little for it (ten tries, 100–200 ms apart).
    let attempts = if name == "default" { 10 } else { 1 };
    let pause = std::time::Duration::from_millis(100 + rand::random_range(0..100));
    let mut account = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(pause).await;
        }
        if let Some(found) = state.admission_objects.service_account(&ns, &name).await {
            if found.is_some() {
                account = found;
                break;
            }
            continue;
        }
        match state.storage.get(sa_res, Some(&ns), &name).await {
            Ok(a) => {
                account = Some(Arc::new(a));
                break;
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let Some(account) = account else {
        return Err(forbidden_pod(
            obj,
            format!(
                "error looking up service account {ns}/{name}: serviceaccount {name:?} not found"
            ),
        ));
    };
    let suffix = crate::rest::meta::generate_name("");
    service_account::admit(obj, &account, &suffix);
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

/// LimitRanger: containers without requests/limits get the `default` (limits) and
/// `defaultRequest` (requests) of the namespace's LimitRanges of type Container, and
/// containers outside a range's min/max are refused with Kubernetes' message.
async fn limit_ranger(state: &State, obj: &mut Value) -> Result<(), ApiError> {
    let Some(lr_res) = state.registry.lookup("", "v1", "limitranges") else {
        return Ok(());
    };
    let Some(ns) = crate::object::namespace(obj).map(String::from) else {
        return Ok(());
    };
    let page = state
        .storage
        .list(
            lr_res,
            &lr_res.namespace_prefix(&ns),
            None,
            None,
            0,
            &|_| true,
        )
        .await?;
    let mut violations = Vec::new();
    for item in page
        .items
        .iter()
        .filter_map(|lr| lr.pointer("/spec/limits").and_then(Value::as_array))
        .flatten()
        .filter(|l| l.get("type").and_then(Value::as_str) == Some("Container"))
    {
        for list in ["containers", "initContainers"] {
            let Some(cs) = obj
                .pointer_mut(&format!("/spec/{list}"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for c in cs.iter_mut() {
                apply_container_defaults(c, item);
                violations.extend(container_violations(c, item));
            }
        }
    }
    match violations.into_iter().next() {
        Some(v) => Err(forbidden_pod(obj, v)),
        None => Ok(()),
    }
}

fn merge_missing(c: &mut Value, dotted: &str, from: &serde_json::Map<String, Value>) {
    let target = crate::object::path_mut(c, dotted);
    if !target.is_object() {
        *target = json!({});
    }
    if let Some(m) = target.as_object_mut() {
        for (k, v) in from {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

fn apply_container_defaults(c: &mut Value, item: &Value) {
    if let Some(d) = item.get("default").and_then(Value::as_object) {
        merge_missing(c, "resources.limits", d);
    }
    if let Some(d) = item.get("defaultRequest").and_then(Value::as_object) {
        merge_missing(c, "resources.requests", d);
    }
    // Requests default to limits when only limits are known.
    if let Some(lim) = c
        .pointer("/resources/limits")
        .and_then(Value::as_object)
        .cloned()
    {
        merge_missing(c, "resources.requests", &lim);
    }
}

/// Kubernetes' wording: `minimum cpu usage per Container is 100m, but request is 50m`.
fn container_violations(c: &Value, item: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (bound, is_min) in [("min", true), ("max", false)] {
        let Some(b) = item.get(bound).and_then(Value::as_object) else {
            continue;
        };
        for (res, q) in b {
            let q = q.as_str().unwrap_or_default();
            let field = if is_min { "requests" } else { "limits" };
            let have = c
                .pointer(&format!("/resources/{field}/{res}"))
                .and_then(Value::as_str);
            let what = if is_min { "minimum" } else { "maximum" };
            match (
                have.and_then(api::quantity::milli_value),
                api::quantity::milli_value(q),
            ) {
                (Some(h), Some(l)) if (is_min && h < l) || (!is_min && h > l) => out.push(format!(
                    "{what} {res} usage per Container is {q}, but {} is {}",
                    if is_min { "request" } else { "limit" },
                    have.unwrap_or_default()
                )),
                (None, Some(_)) => out.push(format!(
                    "{what} {res} usage per Container is {q}.  No {} is specified",
                    if is_min { "request" } else { "limit" }
                )),
                _ => {}
            }
        }
    }
    out
}

/// ResourceQuota: refuses a create that would take a namespace over any of its
/// quotas (Kubernetes' message: `exceeded quota: q, requested: pods=1, used: pods=2,
/// limited: pods=2`), and otherwise reserves the usage in the quota's status (CAS;
/// the resourcequota controller recomputes it from the objects).
pub(crate) async fn reserve_quota(
    state: &State,
    res: &ResourceInfo,
    obj: &Value,
) -> Result<(), ApiError> {
    if !res.namespaced {
        return Ok(());
    }
    let Some(q_res) = state.registry.lookup("", "v1", "resourcequotas") else {
        return Ok(());
    };
    let Some(ns) = crate::object::namespace(obj).map(String::from) else {
        return Ok(());
    };
    let name = crate::object::name(obj).unwrap_or_default().to_string();
    for _attempt in 0..5 {
        let page = state
            .storage
            .list(q_res, &q_res.namespace_prefix(&ns), None, None, 0, &|_| {
                true
            })
            .await?;
        let mut conflict = false;
        for quota in &page.items {
            let qname = crate::object::name(quota).unwrap_or_default().to_string();
            let spec = quota.get("spec").cloned().unwrap_or_default();
            if !api::quota::in_scope(&spec, &res.group, &res.plural, obj) {
                continue;
            }
            let hard = quota
                .pointer("/spec/hard")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let costs: Vec<(String, i64, String)> = hard
                .iter()
                .filter_map(|(n, limit)| {
                    let inc = api::quota::usage(&res.group, &res.plural, obj, n)?;
                    (inc > 0).then(|| {
                        (
                            n.clone(),
                            inc,
                            limit.as_str().unwrap_or_default().to_string(),
                        )
                    })
                })
                .collect();
            if costs.is_empty() {
                continue;
            }
            let Some(used) = quota
                .pointer("/status/used")
                .and_then(Value::as_object)
                .cloned()
            else {
                let names: Vec<&str> = costs.iter().map(|(n, _, _)| n.as_str()).collect();
                return Err(forbidden_object(
                    res,
                    &name,
                    format!(
                        "status unknown for quota: {qname}, resource: {}",
                        names.join(",")
                    ),
                ));
            };
            let used_of = |n: &str| {
                used.get(n)
                    .and_then(Value::as_str)
                    .and_then(api::quantity::milli_value)
                    .unwrap_or(0)
            };
            let fmt = |n: &str, m: i64| api::quantity::format_milli(m, api::quota::is_bytes(n));
            let exceeded: Vec<&(String, i64, String)> = costs
                .iter()
                .filter(|(n, inc, limit)| {
                    api::quantity::milli_value(limit)
                        .is_some_and(|l| used_of(n).saturating_add(*inc) > l)
                })
                .collect();
            if !exceeded.is_empty() {
                let join = |f: &dyn Fn(&(String, i64, String)) -> String| {
                    exceeded.iter().map(|c| f(c)).collect::<Vec<_>>().join(",")
                };
                return Err(forbidden_object(
                    res,
                    &name,
                    format!(
                        "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                        join(&|(n, inc, _)| format!("{n}={}", fmt(n, *inc))),
                        join(&|(n, _, _)| format!("{n}={}", fmt(n, used_of(n)))),
                        join(&|(n, _, l)| format!("{n}={l}")),
                    ),
                ));
            }
            let mut updated = quota.clone();
            // Quota resource names contain dots, so set them in the map directly.
            if let Some(m) = updated
                .pointer_mut("/status/used")
                .and_then(Value::as_object_mut)
            {
                for (n, inc, _) in &costs {
                    m.insert(n.clone(), json!(fmt(n, used_of(n).saturating_add(*inc))));
                }
            }
            let rv = crate::storage::parse_rv(
                crate::object::meta_str(quota, "resourceVersion").unwrap_or("0"),
            )?;
            match state
                .storage
                .update(q_res, Some(&ns), &qname, &updated, rv)
                .await
            {
                Ok(_) => {}
                Err(e) if e.reason == "Conflict" => {
                    conflict = true;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if !conflict {
            return Ok(());
        }
    }
    Err(ApiError::conflict("", "resourcequotas", &name))
}

fn forbidden_object(res: &ResourceInfo, name: &str, why: String) -> ApiError {
    let mut e = ApiError::forbidden(format!(
        "{} {name:?} is forbidden: {why}",
        api::status::qualified_resource(&res.group, &res.plural)
    ));
    e.details = Some(StatusDetails {
        name: Some(name.to_string()),
        kind: Some(res.plural.clone()),
        ..Default::default()
    });
    e
}

#[cfg(test)]
mod default_storage_class_tests {
    use super::*;

    fn class(name: &str, default: Option<&str>, created: &str) -> Value {
        let annotations = match default {
            Some(v) => json!({"storageclass.kubernetes.io/is-default-class": v}),
            None => json!({}),
        };
        json!({"metadata": {"name": name, "annotations": annotations, "creationTimestamp": created}})
    }

    #[test]
    fn the_newest_class_marked_default_is_the_default() {
        let classes = [
            class("local-path", Some("true"), "2026-01-01T00:00:00Z"),
            class("fast", Some("true"), "2026-02-01T00:00:00Z"),
            class("off", Some("false"), "2026-03-01T00:00:00Z"),
            class("plain", None, "2026-04-01T00:00:00Z"),
        ];
        assert_eq!(
            default_class(&classes).and_then(crate::object::name),
            Some("fast")
        );
        assert_eq!(default_class(&classes[2..]), None);
        let beta = json!({"metadata": {"name": "old",
            "annotations": {"storageclass.beta.kubernetes.io/is-default-class": "true"}}});
        assert_eq!(
            default_class(&[beta]).and_then(crate::object::name),
            Some("old")
        );
    }

    #[test]
    fn classes_created_in_the_same_second_are_ordered_by_name() {
        let classes = [
            class("b", Some("true"), "2026-01-01T00:00:00Z"),
            class("a", Some("true"), "2026-01-01T00:00:00Z"),
        ];
        assert_eq!(
            default_class(&classes).and_then(crate::object::name),
            Some("a")
        );
    }
}
