//! Dynamic admission control: MutatingWebhookConfigurations and
//! ValidatingWebhookConfigurations calling HTTPS webhooks with AdmissionReview v1
//! (or v1beta1 when that is all a webhook speaks), as kube-apiserver does.
//!
//! - Mutating webhooks run after the built-in mutating plugins, one after another,
//!   configurations in name order then webhooks in order; a JSONPatch answer is
//!   applied to the object. `reinvocationPolicy: IfNeeded` webhooks are called once
//!   more when a later webhook changed the object.
//! - Validating webhooks run after the built-in validating plugins, all at once;
//!   the first denial (in webhook order) is the answer.
//! - A webhook is called when a rule matches (operation, group, version,
//!   resource/subresource, scope; `matchPolicy: Equivalent` accepts another version
//!   of the same resource), the namespace selector selects the namespace's labels
//!   and the object selector the new or the old object's labels (see [`matching`]).
//!   Writes to the admission configuration kinds never go to webhooks.
//! - A denial reads `admission webhook "<name>" denied the request: <message>` with
//!   the webhook's code (at least 400); a call that fails (unreachable, TLS, timeout
//!   — `timeoutSeconds`, 10 by default —, a malformed answer) fails the request
//!   with 500 `Internal error occurred: failed calling webhook "<name>": <why>` under
//!   `failurePolicy: Fail` and is skipped under `Ignore`.
//! - A dry run reaching a webhook whose `sideEffects` is not `None`/`NoneOnDryRun`
//!   fails with 400. Warnings in answers become `Warning` headers.
//!
//! Not done: `matchConditions` (CEL) are not evaluated — a webhook that has them is
//! called as if they matched — and CONNECT requests are not sent to webhooks.
//!
//! The configurations (with one HTTPS client per webhook), namespace labels and
//! Service endpoints are followed in memory ([`source`]); no request reads the
//! store for them.

mod client;
mod hook;
mod matching;
mod review;
mod source;

use std::collections::BTreeMap;
use std::sync::Arc;

use api::status::ApiError;
use bytes::Bytes;
use serde_json::Value;

use super::Write;
use crate::serve::State;
use client::CallError;
use hook::{FailurePolicy, Hook, Reinvocation};
use matching::{Attributes, NamespaceLabels};
use review::{ObjectKind, Verdict};
use source::Source;

/// What the matchers see of a write, with `object` as the object written.
fn attributes<'a>(w: &'a Write<'a>, object: Option<&'a Value>) -> Attributes<'a> {
    let is_namespace = w.res.group.is_empty() && w.res.plural == "namespaces";
    Attributes {
        operation: w.operation,
        group: &w.res.group,
        version: &w.res.version,
        resource: &w.res.plural,
        subresource: w.subresource,
        // Kubernetes' admission attributes name a namespace as its own namespace.
        namespace: if is_namespace && w.namespace.is_empty() {
            w.name
        } else {
            w.namespace
        },
        name: w.name,
        object,
        old: w.old,
    }
}

/// Whether a write of this kind could go to a webhook (rules only, no selectors):
/// deletes read the object for admission only then.
pub(crate) async fn intercepts(state: &State, w: &Write<'_>) -> Result<bool, ApiError> {
    if matching::is_exempt(&w.res.group, &w.res.plural) {
        return Ok(false);
    }
    let source = source::of(state).await?;
    let a = attributes(w, w.object);
    Ok(source
        .mutating()
        .iter()
        .chain(source.validating().iter())
        .any(|h| matching::rules_match(h, &a)))
}

/// Runs the mutating webhooks that match this write on `object` (the object to be
/// stored; none on delete — `w.object` is not read). Returns whether a webhook
/// changed it (the caller applies defaults again).
pub(crate) async fn mutate(
    state: &State,
    w: &Write<'_>,
    mut object: Option<&mut Value>,
    warnings: &mut Vec<String>,
) -> Result<bool, ApiError> {
    if matching::is_exempt(&w.res.group, &w.res.plural) {
        return Ok(false);
    }
    let source = source::of(state).await?;
    let hooks = source.mutating();
    if hooks.is_empty() {
        return Ok(false);
    }
    let mut changed = false;
    // Changes made so far, and for each IfNeeded webhook called how many there
    // were right after its call: it is called again if more followed.
    let mut changes = 0usize;
    let mut reinvocable: Vec<(Arc<Hook>, usize)> = Vec::new();
    for hook in hooks.iter() {
        let after = admit_one(&source, state, w, hook, &mut object, warnings).await?;
        let Some(hook_changed) = after else {
            continue;
        };
        if hook_changed {
            changes += 1;
            changed = true;
        }
        if hook.reinvocation == Reinvocation::IfNeeded {
            reinvocable.push((hook.clone(), changes));
        }
    }
    for (hook, seen) in reinvocable {
        if changes > seen {
            tracing::debug!(webhook = %hook.name, "reinvoking mutating webhook");
            if admit_one(&source, state, w, &hook, &mut object, warnings).await? == Some(true) {
                changed = true;
            }
        }
    }
    Ok(changed)
}

/// Calls one mutating webhook if it matches; `Some(changed)` when it was called.
async fn admit_one(
    source: &Source,
    state: &State,
    w: &Write<'_>,
    hook: &Arc<Hook>,
    object: &mut Option<&mut Value>,
    warnings: &mut Vec<String>,
) -> Result<Option<bool>, ApiError> {
    let current = object.as_deref();
    let a = attributes(w, current);
    if !should_call(source, state, hook, &a).await? {
        return Ok(None);
    }
    let kind = ObjectKind::of(current.or(w.old), w.res);
    let verdict = match call(source, hook, &a, &kind, w, true).await {
        Ok(v) => v,
        Err(Failure::Refused(e)) => return Err(e),
        Err(Failure::Call(e)) => return failed(hook, &e).map(|()| Some(false)),
    };
    warnings.extend(verdict.warnings.iter().cloned());
    if !verdict.allowed {
        return Err(review::denial(&hook.name, verdict.result.as_ref()));
    }
    let Some(patch) = verdict.patch.filter(|p| !is_empty_patch(p)) else {
        return Ok(Some(false));
    };
    let Some(target) = object.as_deref_mut() else {
        return Err(ApiError::internal(format!(
            "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
            hook.name
        )));
    };
    let patched =
        api::patch::json_patch(target, &patch).map_err(|e| ApiError::internal(e.to_string()))?;
    for field in [
        "/apiVersion",
        "/kind",
        "/metadata/name",
        "/metadata/namespace",
    ] {
        if patched.pointer(field) != target.pointer(field) {
            return Err(ApiError::internal(format!(
                "admission webhook {:?} attempted to change {}, which is not supported",
                hook.name,
                field.trim_start_matches('/').replace('/', ".")
            )));
        }
    }
    let changed = patched != *target;
    *target = patched;
    Ok(Some(changed))
}

fn is_empty_patch(patch: &[u8]) -> bool {
    serde_json::from_slice::<Vec<Value>>(patch).is_ok_and(|ops| ops.is_empty())
}

/// Runs the validating webhooks that match this write, all at once; warnings from
/// every answer are kept, the first refusal in webhook order is returned.
pub(crate) async fn validate(
    state: &State,
    w: &Write<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if matching::is_exempt(&w.res.group, &w.res.plural) {
        return Ok(());
    }
    let source = source::of(state).await?;
    let hooks = source.validating();
    if hooks.is_empty() {
        return Ok(());
    }
    let a = attributes(w, w.object);
    let mut relevant = Vec::new();
    for hook in hooks.iter() {
        if should_call(&source, state, hook, &a).await? {
            relevant.push(hook.clone());
        }
    }
    if relevant.is_empty() {
        return Ok(());
    }
    let kind = ObjectKind::of(w.object.or(w.old), w.res);
    let outcomes = futures::future::join_all(
        relevant
            .iter()
            .map(|hook| call(&source, hook, &a, &kind, w, false)),
    )
    .await;
    let mut refusal = None;
    for (hook, outcome) in relevant.iter().zip(outcomes) {
        let result = match outcome {
            Ok(verdict) => {
                warnings.extend(verdict.warnings.iter().cloned());
                if verdict.allowed {
                    Ok(())
                } else {
                    Err(review::denial(&hook.name, verdict.result.as_ref()))
                }
            }
            Err(Failure::Refused(e)) => Err(e),
            Err(Failure::Call(e)) => failed(hook, &e),
        };
        if let Err(e) = result {
            refusal.get_or_insert(e);
        }
    }
    refusal.map_or(Ok(()), Err)
}

/// A failed call under the hook's failure policy: an error under `Fail`, skipped
/// under `Ignore`.
fn failed(hook: &Hook, e: &CallError) -> Result<(), ApiError> {
    match hook.failure_policy {
        FailurePolicy::Fail => {
            tracing::warn!(webhook = %hook.name, error = %e, "failed calling webhook, failing closed");
            Err(review::call_failed(&hook.name, e))
        }
        FailurePolicy::Ignore => {
            tracing::warn!(webhook = %hook.name, error = %e, "failed calling webhook, failing open");
            Ok(())
        }
    }
}

/// Kubernetes' `ShouldCallHook`: rules, then the namespace and object selectors.
async fn should_call(
    source: &Source,
    state: &State,
    hook: &Hook,
    a: &Attributes<'_>,
) -> Result<bool, ApiError> {
    if !matching::rules_match(hook, a) {
        return Ok(false);
    }
    let unparsable = |matching::SelectorError::Unparsable(e)| ApiError::internal(e);
    let in_namespace = match matching::namespace_labels(hook, a).map_err(unparsable)? {
        NamespaceLabels::NotNeeded(selected) => selected,
        NamespaceLabels::Object(labels) => matching::namespace_selected(hook, &labels),
        NamespaceLabels::Lookup(ns) => {
            let labels = match source.namespace_labels(&ns) {
                Some(labels) => labels,
                None => stored_namespace_labels(state, &ns).await?,
            };
            matching::namespace_selected(hook, &labels)
        }
    };
    if !in_namespace {
        return Ok(false);
    }
    if hook.has_match_conditions {
        tracing::debug!(webhook = %hook.name, "matchConditions are not evaluated; calling the webhook");
    }
    matching::object_selected(hook, a).map_err(unparsable)
}

/// A namespace's labels from the store, when the followed view has not seen the
/// namespace yet (404 when it does not exist).
async fn stored_namespace_labels(
    state: &State,
    name: &str,
) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(res) = state.registry.lookup("", "v1", "namespaces") else {
        return Ok(BTreeMap::new());
    };
    let ns = state.storage.get(res, None, name).await?;
    Ok(crate::object::labels(&ns))
}

/// Why a call produced no verdict.
enum Failure {
    /// The request is refused whatever the failure policy (a dry run the webhook
    /// may have side effects on).
    Refused(ApiError),
    /// The call failed; the failure policy decides.
    Call(CallError),
}

/// Whether a dry run may reach `hook`: only webhooks declaring no side effects
/// (`None`, `NoneOnDryRun`); others refuse the request with 400.
fn dry_run_allowed(hook: &Hook) -> Result<(), Failure> {
    match hook.safe_on_dry_run() {
        None => Err(Failure::Call(CallError::SideEffectsUnknown)),
        Some(false) => Err(Failure::Refused(review::dry_run_unsupported(&hook.name))),
        Some(true) => Ok(()),
    }
}

/// Sends one AdmissionReview and checks the answer.
async fn call(
    source: &Source,
    hook: &Hook,
    a: &Attributes<'_>,
    kind: &ObjectKind,
    w: &Write<'_>,
    mutating: bool,
) -> Result<Verdict, Failure> {
    if w.dry_run {
        dry_run_allowed(hook)?;
    }
    let version = hook.review_version.ok_or_else(|| {
        Failure::Call(CallError::Request(
            "webhook does not accept known AdmissionReview versions (v1, v1beta1)".into(),
        ))
    })?;
    let target = hook.client.target().map_err(Failure::Call)?;
    let uid = uuid::Uuid::new_v4().to_string();
    let body = review::build(
        &uid,
        version,
        &review::Request {
            attrs: a,
            kind,
            who: w.who,
            dry_run: w.dry_run,
        },
    );
    let body =
        serde_json::to_vec(&body).map_err(|e| Failure::Call(CallError::Request(e.to_string())))?;
    tracing::debug!(
        webhook = %hook.name,
        configuration = %hook.configuration,
        operation = a.operation.as_str(),
        resource = a.resource,
        "calling admission webhook"
    );
    let answer = hook
        .client
        .post(source.destination(target), Bytes::from(body), hook.timeout)
        .await
        .map_err(Failure::Call)?;
    review::verify(&uid, version, mutating, &answer).map_err(Failure::Call)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::node_restriction::Operation;
    use serde_json::json;

    fn hook(side_effects: Option<&str>) -> Arc<Hook> {
        let mut w = json!({
            "name": "s.example.com",
            "clientConfig": {"url": "https://127.0.0.1:1/"},
            "admissionReviewVersions": ["v1"],
        });
        if let Some(s) = side_effects {
            w["sideEffects"] = json!(s);
        }
        hook::parse("c", &json!({"webhooks": [w]})).remove(0)
    }

    #[test]
    fn dry_runs_reach_only_webhooks_without_side_effects() {
        assert!(dry_run_allowed(&hook(Some("None"))).is_ok());
        assert!(dry_run_allowed(&hook(Some("NoneOnDryRun"))).is_ok());
        match dry_run_allowed(&hook(Some("Some"))) {
            Err(Failure::Refused(e)) => {
                assert_eq!(e.code, 400);
                assert_eq!(
                    e.message,
                    "admission webhook \"s.example.com\" does not support dry run"
                );
            }
            _ => panic!("a webhook with side effects must refuse a dry run"),
        }
        match dry_run_allowed(&hook(None)) {
            Err(Failure::Call(e)) => assert_eq!(e.to_string(), "Webhook SideEffects is nil"),
            _ => panic!("unknown side effects fail the call"),
        }
    }

    #[test]
    fn a_namespace_is_its_own_namespace_in_admission() {
        let who = crate::authn::Identity::anonymous();
        let registry = api::resource::Registry::builtin();
        let res = registry.lookup("", "v1", "namespaces").expect("namespaces");
        let w = Write {
            who: &who,
            operation: Operation::Delete,
            res,
            subresource: "",
            namespace: "",
            name: "team-a",
            object: None,
            old: None,
            dry_run: false,
        };
        let a = attributes(&w, None);
        assert_eq!(a.namespace, "team-a");
        assert_eq!(a.operation, Operation::Delete);
    }
}
