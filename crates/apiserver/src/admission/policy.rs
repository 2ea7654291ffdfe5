//! ValidatingAdmissionPolicy (k8s.io/apiserver `admission/plugin/policy/validating`):
//! CEL validations bound to requests by ValidatingAdmissionPolicyBindings.
//!
//! For each write, every policy that has a binding is matched against the
//! request (`matchConstraints`), then each of its bindings (`matchResources`);
//! the binding's params are collected (`paramRef`, from the store: Kubernetes
//! reads them from informers, falling back to the API), and the policy is
//! evaluated once per param. A failed validation is refused, warned about or
//! only audited as the binding's `validationActions` say; refusals carry
//! Kubernetes' message, `<resource> "<name>" is forbidden: ValidatingAdmissionPolicy
//! '<policy>' with binding '<binding>' denied request: <message>`, with the
//! validation's reason (`Invalid`, 422, unless it names another).
//!
//! Policies, bindings and namespaces come from an in-memory [`cache`] that
//! follows the watch cache; it is started by the first request a server admits
//! (the server's shared state has no slot for it) and keyed by that server's
//! watch cache. Not implemented: `auditAnnotations` and the `Audit` action
//! (nothing records audit annotations here), the `authorizer` variable, and
//! `matchPolicy: Equivalent` matching of other versions of a resource.

mod cache;
mod compiled;
mod evaluate;
mod matching;

use std::sync::Arc;

use api::resource::ResourceInfo;
use api::status::{ApiError, FieldError, FieldErrorType};
use cel::common::value::Val;
use serde_json::{Map, Value, json};

use self::cache::{PolicyCache, StatusWriter};
use self::compiled::{Action, Binding, FailurePolicy, Policy};
use self::evaluate::{Inputs, evaluate};
use self::matching::Request;
use super::Write;
use super::node_restriction::Operation;
use super::per_server::PerServer;
use crate::serve::State;
use crate::strategy::admission_policy::cel as celx;

const GROUP: &str = "admissionregistration.k8s.io";

/// The cache of each running server.
static CACHES: PerServer<PolicyCache> = PerServer::new();

/// The policy cache of `state`'s server, started on first use.
async fn policy_cache(state: &State) -> Result<Arc<PolicyCache>, cache::CacheError> {
    CACHES
        .get_or_try_init(&state.watch_cache, || async {
            let status = state
                .registry
                .lookup(GROUP, "v1", "validatingadmissionpolicies")
                .map(|resource| StatusWriter {
                    storage: state.storage.clone(),
                    resource: resource.clone(),
                });
            PolicyCache::start(
                state.storage.store.clone(),
                state.watch_cache.clone(),
                status,
                state.shutdown.clone(),
            )
            .await
        })
        .await
}

/// Whether some bound policy could select this delete, looking only at its
/// resource (`w.old` may still be unset): a cheap check before a delete reads
/// the stored object for admission. True when the policies cannot be read.
pub(crate) async fn may_match_delete(state: &State, w: &Write<'_>) -> bool {
    let Ok(cache) = policy_cache(state).await else {
        return true;
    };
    cache.bound().iter().any(|(policy, _)| {
        policy.configuration_error.is_some()
            || policy.match_constraints.may_match(
                "DELETE",
                &w.res.group,
                &w.res.version,
                &w.res.plural,
                w.subresource,
            )
    })
}

/// The first refusal of a request.
struct Refusal {
    policy: String,
    binding: Option<String>,
    message: String,
    reason: &'static str,
}

/// The outcome of a request so far: the first refusal wins (Kubernetes reports
/// the first denied decision).
#[derive(Default)]
struct Verdict {
    refusal: Option<Refusal>,
}

impl Verdict {
    fn refuse(
        &mut self,
        policy: &Policy,
        binding: Option<&Binding>,
        message: String,
        reason: &'static str,
    ) {
        if self.refusal.is_none() {
            self.refusal = Some(Refusal {
                policy: policy.name.clone(),
                binding: binding.map(|b| b.name.clone()),
                message,
                reason,
            });
        }
    }

    /// `addConfigError`: a policy or binding that cannot be used refuses the
    /// request unless the policy's failure policy is Ignore.
    fn misconfigured(&mut self, policy: &Policy, binding: Option<&Binding>, why: &str) {
        if policy.failure_policy == FailurePolicy::Fail {
            let what = if binding.is_some() {
                "binding"
            } else {
                "policy"
            };
            self.refuse(
                policy,
                binding,
                format!("failed to configure {what}: {why}"),
                "Invalid",
            );
        }
    }
}

/// Evaluates the ValidatingAdmissionPolicies bound to this write.
pub(crate) async fn validate(
    state: &State,
    w: &Write<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if w.operation == Operation::Delete && !may_match_delete(state, w).await {
        return Ok(());
    }
    let cache = policy_cache(state).await.map_err(|e| {
        tracing::warn!(error = %e, "admission policies unavailable");
        super::forbidden_write(w, "not yet ready to handle request")
    })?;
    let bound = cache.bound();
    if bound.is_empty() {
        return Ok(());
    }
    let operation = w.operation.as_str();
    let is_namespace = w.res.group.is_empty() && w.res.plural == "namespaces";
    let name = if w.name.is_empty() {
        w.object.and_then(crate::object::name).unwrap_or_default()
    } else {
        w.name
    };
    let req = Request {
        operation,
        group: &w.res.group,
        version: &w.res.version,
        resource: &w.res.plural,
        subresource: w.subresource,
        namespace: if is_namespace && w.operation != Operation::Create {
            name
        } else {
            w.namespace
        },
        name,
        object: w.object,
        old: w.old,
    };
    // The request's namespace, from the cache or, when the cache has not seen a
    // namespace created a moment ago, from the store (Kubernetes' namespace
    // matcher falls back to the API the same way).
    let namespace = match req.namespace {
        "" => None,
        ns => match cache.namespace(ns) {
            Some(n) => Some(n),
            None => super::stored(state, "namespaces", None, ns)
                .await
                .map(Arc::new),
        },
    };
    let namespace_labels = |ns: &str| {
        let found = match &namespace {
            Some(n) if ns == req.namespace => Some(n.clone()),
            _ => cache.namespace(ns),
        };
        found.map(|n| {
            n.pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default()
        })
    };
    let mut inputs = None;
    let mut verdict = Verdict::default();
    for (policy, bindings) in bound.iter() {
        match policy.match_constraints.matches(&req, &namespace_labels) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                verdict.misconfigured(policy, None, &e);
                continue;
            }
        }
        if let Some(e) = &policy.configuration_error {
            verdict.misconfigured(policy, None, e);
            continue;
        }
        let param_resource = match &policy.param_kind {
            None => None,
            Some((api_version, kind)) => match param_resource(state, api_version, kind) {
                Ok(res) => Some(res),
                Err(e) => {
                    verdict.misconfigured(policy, None, &e);
                    continue;
                }
            },
        };
        for binding in bindings {
            if let Some(e) = &binding.configuration_error {
                verdict.misconfigured(policy, Some(binding), e);
                continue;
            }
            if let Some(m) = &binding.match_resources {
                match m.matches(&req, &namespace_labels) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        verdict.misconfigured(policy, Some(binding), &e);
                        continue;
                    }
                }
            }
            let params = match collect_params(state, param_resource.as_deref(), binding, &req).await
            {
                Ok(p) => p,
                Err(e) => {
                    verdict.misconfigured(policy, Some(binding), &e);
                    continue;
                }
            };
            let inputs = inputs.get_or_insert_with(|| {
                inputs_of(
                    w,
                    &req,
                    (!is_namespace).then_some(namespace.as_deref()).flatten(),
                )
            });
            for param in &params {
                for denial in evaluate(policy, inputs, param.as_ref()) {
                    for action in &binding.actions {
                        match action {
                            Action::Deny => verdict.refuse(
                                policy,
                                Some(binding),
                                denial.message.clone(),
                                denial.reason,
                            ),
                            Action::Warn => {
                                let warning = format!(
                                    "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {}",
                                    policy.name, binding.name, denial.message
                                );
                                // Kubernetes' warning recorder drops repeats.
                                if !warnings.contains(&warning) {
                                    warnings.push(warning);
                                }
                            }
                            Action::Audit => tracing::debug!(
                                policy = %policy.name,
                                binding = %binding.name,
                                reason = %denial.message,
                                "validation failure audited"
                            ),
                        }
                    }
                }
            }
        }
    }
    match verdict.refusal {
        Some(r) => Err(refused(w, r)),
        None => Ok(()),
    }
}

/// The resource `paramKind` names, or Kubernetes' configuration error.
fn param_resource(
    state: &State,
    api_version: &str,
    kind: &str,
) -> Result<Arc<ResourceInfo>, String> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    state
        .registry
        .snapshot()
        .registry
        .by_kind(group, version, kind)
        .cloned()
        .ok_or_else(|| {
            format!(
                "failed to find resource referenced by paramKind: '{group}/{version}, Kind={kind}'"
            )
        })
}

/// The params one binding selects (`CollectParams`): one CEL `null` when the
/// policy or the binding uses none; none at all when they are missing and the
/// binding allows that.
async fn collect_params(
    state: &State,
    resource: Option<&ResourceInfo>,
    binding: &Binding,
    req: &Request<'_>,
) -> Result<Vec<Box<dyn Val>>, String> {
    let (Some(res), Some(r)) = (resource, &binding.param_ref) else {
        return Ok(vec![celx::json(&Value::Null)]);
    };
    let namespace = if res.namespaced {
        if !r.namespace.is_empty() {
            Some(r.namespace.as_str())
        } else if !req.namespace.is_empty() {
            Some(req.namespace)
        } else {
            return Err(
                "cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into(),
            );
        }
    } else if !r.namespace.is_empty() {
        return Err(
            "paramRef.namespace must not be provided for a cluster-scoped `paramKind`".into(),
        );
    } else {
        None
    };
    let found = if !r.name.is_empty() {
        match state.storage.get(res, namespace, &r.name).await {
            Ok(o) => vec![o],
            Err(e) if e.code == 404 => Vec::new(),
            Err(e) => return Err(e.message),
        }
    } else if let Some(selector) = &r.selector {
        let prefix = match namespace {
            Some(ns) => res.namespace_prefix(ns),
            None => res.key_prefix(),
        };
        let keep = |o: &Value| {
            let labels = o
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|l| {
                    l.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            selector.matches(&labels)
        };
        state
            .storage
            .list(res, &prefix, None, None, 0, &keep)
            .await
            .map_err(|e| e.message)?
            .items
    } else {
        return Err("one of name or selector must be provided".into());
    };
    if found.is_empty() && r.deny_if_missing {
        return Err(
            "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
        );
    }
    Ok(found
        .into_iter()
        .map(|mut p| {
            // Like Kubernetes' wrappedParam: params carry their type.
            if let Some(m) = p.as_object_mut() {
                m.entry("apiVersion")
                    .or_insert_with(|| json!(res.api_version()));
                m.entry("kind").or_insert_with(|| json!(res.kind));
            }
            celx::json(&p)
        })
        .collect())
}

/// The kind of the object a request carries: a subresource's own kind where it
/// has one.
fn request_kind(w: &Write<'_>) -> Value {
    let (group, version, kind) = match (w.res.plural.as_str(), w.subresource) {
        ("pods", "eviction") => ("policy", "v1", "Eviction"),
        ("pods", "binding") => ("", "v1", "Binding"),
        ("serviceaccounts", "token") => ("authentication.k8s.io", "v1", "TokenRequest"),
        (_, "scale") => ("autoscaling", "v1", "Scale"),
        _ => (
            w.res.group.as_str(),
            w.res.version.as_str(),
            w.res.kind.as_str(),
        ),
    };
    json!({"group": group, "version": version, "kind": kind})
}

/// The `request` variable: Kubernetes' AdmissionRequest without uid, object and
/// oldObject, empty fields left out as its JSON leaves them out.
fn request_value(w: &Write<'_>, req: &Request<'_>) -> Value {
    let kind = request_kind(w);
    let resource =
        json!({"group": w.res.group, "version": w.res.version, "resource": w.res.plural});
    let mut user = Map::new();
    if !w.who.user.is_empty() {
        user.insert("username".into(), json!(w.who.user));
    }
    if !w.who.uid.is_empty() {
        user.insert("uid".into(), json!(w.who.uid));
    }
    if !w.who.groups.is_empty() {
        user.insert("groups".into(), json!(w.who.groups));
    }
    if !w.who.extra.is_empty() {
        user.insert("extra".into(), json!(w.who.extra));
    }
    let options = w.operation.options_kind();
    let mut r = json!({
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "operation": req.operation,
        "userInfo": user,
        "dryRun": w.dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": options},
    });
    for (key, value) in [
        ("subResource", w.subresource),
        ("requestSubResource", w.subresource),
        ("name", req.name),
        ("namespace", req.namespace),
    ] {
        if !value.is_empty() {
            r[key] = json!(value);
        }
    }
    r
}

/// Kubernetes' `CreateNamespaceObject`: the namespace's spec, status and these
/// metadata fields only.
fn namespace_value(ns: &Value) -> Value {
    const KEPT: [&str; 12] = [
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "finalizers",
    ];
    let metadata: Map<String, Value> = ns
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| KEPT.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut out = json!({"metadata": metadata});
    for key in ["spec", "status"] {
        if let Some(v) = ns.get(key) {
            out[key] = v.clone();
        }
    }
    out
}

/// The request's variables; `namespace` is the object's namespace (none for
/// cluster-scoped objects and namespaces themselves).
fn inputs_of(w: &Write<'_>, req: &Request<'_>, namespace: Option<&Value>) -> Inputs {
    let null = Value::Null;
    let namespace = namespace.map(namespace_value).unwrap_or(Value::Null);
    Inputs {
        object: celx::json(w.object.unwrap_or(&null)),
        old_object: celx::json(w.old.unwrap_or(&null)),
        request: celx::json(&request_value(w, req)),
        namespace_object: celx::json(&namespace),
    }
}

/// The HTTP code of a validation's reason (`reasonToCode`).
fn code(reason: &str) -> u16 {
    match reason {
        "Forbidden" => 403,
        "Unauthorized" => 401,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

/// `admission.NewForbidden` with the policy's message, reason and code, and the
/// message repeated as a cause.
fn refused(w: &Write<'_>, r: Refusal) -> ApiError {
    let message = match &r.binding {
        Some(b) => format!(
            "ValidatingAdmissionPolicy '{}' with binding '{b}' denied request: {}",
            r.policy, r.message
        ),
        None => format!(
            "ValidatingAdmissionPolicy '{}' denied request: {}",
            r.policy, r.message
        ),
    };
    let mut e = super::forbidden_write(w, &message);
    e.reason = r.reason;
    e.code = code(r.reason);
    if let Some(d) = e.details.as_mut() {
        d.causes.push(FieldError {
            kind: FieldErrorType::Cause(""),
            field: String::new(),
            value: None,
            detail: message,
        });
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::Identity;

    fn deployments() -> Arc<ResourceInfo> {
        api::resource::Registry::builtin()
            .lookup("apps", "v1", "deployments")
            .cloned()
            .expect("deployments are served")
    }

    fn alice() -> Identity {
        Identity {
            user: "alice".into(),
            uid: String::new(),
            groups: vec!["devs".into()],
            extra: Default::default(),
        }
    }

    fn write<'a>(who: &'a Identity, res: &'a ResourceInfo, object: &'a Value) -> Write<'a> {
        Write {
            who,
            operation: Operation::Create,
            res,
            subresource: "",
            namespace: "team",
            name: "web",
            object: Some(object),
            old: None,
            dry_run: true,
        }
    }

    fn request<'a>(w: &'a Write<'a>) -> Request<'a> {
        Request {
            operation: "CREATE",
            group: &w.res.group,
            version: &w.res.version,
            resource: &w.res.plural,
            subresource: w.subresource,
            namespace: w.namespace,
            name: w.name,
            object: w.object,
            old: w.old,
        }
    }

    #[test]
    fn the_request_variable_is_an_admission_request_without_empty_fields() {
        let (who, res, obj) = (alice(), deployments(), json!({}));
        let w = write(&who, &res, &obj);
        let r = request_value(&w, &request(&w));
        assert_eq!(
            r,
            json!({
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "name": "web",
                "namespace": "team",
                "operation": "CREATE",
                "userInfo": {"username": "alice", "groups": ["devs"]},
                "dryRun": true,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            })
        );
    }

    #[test]
    fn the_namespace_object_keeps_kubernetes_fields_only() {
        let ns = json!({"metadata": {"name": "team", "labels": {"env": "test"},
            "managedFields": [{}], "ownerReferences": []}, "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}});
        assert_eq!(
            namespace_value(&ns),
            json!({"metadata": {"name": "team", "labels": {"env": "test"}},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        );
    }

    #[test]
    fn refusals_carry_the_policy_message_reason_and_code() {
        let (who, res, obj) = (alice(), deployments(), json!({}));
        let w = write(&who, &res, &obj);
        let e = refused(
            &w,
            Refusal {
                policy: "p".into(),
                binding: Some("b".into()),
                message: "failed expression: false".into(),
                reason: "Invalid",
            },
        );
        assert_eq!(e.code, 422);
        assert_eq!(e.reason, "Invalid");
        assert_eq!(
            e.message,
            "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: failed expression: false"
        );
        let status = e.to_status();
        assert_eq!(
            status["details"]["causes"][0]["message"],
            "ValidatingAdmissionPolicy 'p' with binding 'b' denied request: failed expression: false"
        );
        let e = refused(
            &w,
            Refusal {
                policy: "p".into(),
                binding: None,
                message: "m".into(),
                reason: "Forbidden",
            },
        );
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert!(
            e.message
                .ends_with("ValidatingAdmissionPolicy 'p' denied request: m")
        );
    }

    #[test]
    fn a_request_variable_is_usable_from_cel() {
        let (who, res, obj) = (alice(), deployments(), json!({"metadata": {"name": "web"}}));
        let w = write(&who, &res, &obj);
        let inputs = inputs_of(
            &w,
            &request(&w),
            Some(&json!({"metadata": {"name": "team", "labels": {"env": "test"}}})),
        );
        let policy = Policy::compile(
            "p",
            &json!({"spec": {"validations": [{"expression":
                "request.operation == 'CREATE' && request.userInfo.username == 'alice' && !has(request.subResource) && namespaceObject.metadata.labels.env == 'test' && oldObject == null"}]}}),
        );
        let null = celx::json(&Value::Null);
        assert_eq!(evaluate(&policy, &inputs, null.as_ref()), vec![]);
    }
}
