//! One reconcile of a ReplicaSet or ReplicationController (Kubernetes'
//! `syncReplicaSet`): claim matching pods (adopt orphans, release pods that no longer
//! match), create or delete pods towards `spec.replicas` once earlier writes have been
//! observed, and write the status.

use std::sync::Arc;
use std::time::Duration;

use events::EventType;
use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use super::events::EventSink;
use super::informer::Backoff;
use super::owner::{Condition, Replicated, Status};
use super::pods;
use crate::Error;
use crate::expectations::{Expectations, Seen};

/// At most this many pods are created or deleted in one sync (`BurstReplicas`).
const BURST_REPLICAS: usize = 500;

/// What a replica controller reconcile needs.
pub(crate) struct Ctx<K: Replicated> {
    /// API client.
    pub client: kube::Client,
    /// Pod cache.
    pub pods: Store<Pod>,
    /// Cache of the controllers themselves (for sibling pods when ranking).
    pub owners: Store<K>,
    /// Outstanding creations/deletions.
    pub expectations: Arc<Expectations>,
    /// Event recorder.
    pub recorder: EventSink,
    /// Retry delays.
    pub backoff: Backoff,
}

impl<K: Replicated> Ctx<K> {
    /// A context for controllers of kind `K`.
    pub(crate) fn new(
        client: kube::Client,
        pods: Store<Pod>,
        owners: Store<K>,
        expectations: Arc<Expectations>,
    ) -> Self {
        let recorder = EventSink::new(client.clone(), K::COMPONENT);
        Self {
            client,
            pods,
            owners,
            expectations,
            recorder,
            backoff: Backoff::default(),
        }
    }
}

/// `namespace/name`, the key of expectations and backoff.
pub(crate) fn key_of<K: Resource>(k: &K) -> String {
    format!(
        "{}/{}",
        k.meta().namespace.as_deref().unwrap_or(""),
        k.meta().name.as_deref().unwrap_or("")
    )
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn api_err(context: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Api { context, source }
}

/// An owner reference making `k` the controller of a pod.
pub(crate) fn controller_ref<K: Resource<DynamicType = ()>>(k: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: k.meta().name.clone().unwrap_or_default(),
        uid: k.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The error policy: log and retry with per-object backoff.
pub(crate) fn error_policy<K: Replicated>(obj: Arc<K>, err: &Error, ctx: Arc<Ctx<K>>) -> Action {
    let key = key_of(&*obj);
    tracing::debug!(object = %key, error = %err, "sync failed; retrying");
    Action::requeue(ctx.backoff.failed(&key))
}

/// Reconciles one replica controller.
pub(crate) async fn reconcile<K: Replicated>(
    obj: Arc<K>,
    ctx: Arc<Ctx<K>>,
) -> Result<Action, Error> {
    let key = key_of(&*obj);
    let span = tracing::debug_span!("sync", kind = %K::kind(&()), object = %key);
    let res = sync(&*obj, &*ctx, &key).instrument(span).await;
    if res.is_ok() {
        ctx.backoff.succeeded(&key);
    }
    res
}

async fn sync<K: Replicated>(obj: &K, ctx: &Ctx<K>, key: &str) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let selector = obj.selector()?;
    let deleting = obj.meta().deletion_timestamp.is_some();
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let all: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    // Claim: keep ours that match, release ours that do not, adopt matching orphans.
    let mut owned: Vec<Arc<Pod>> = Vec::new();
    let mut can_adopt: Option<bool> = None;
    for pod in all.iter().filter(|p| pods::is_active(p)) {
        let matches = selector.matches(&pods::labels(&pod.metadata));
        match pods::controller_of(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(pod.clone());
                } else if !deleting {
                    release(&pods_api, pod, &uid).await?;
                }
            }
            Some(_) => {}
            None => {
                if deleting || !matches {
                    continue;
                }
                if can_adopt.is_none() {
                    can_adopt = Some(fresh_and_alive(obj, ctx).await?);
                }
                if can_adopt == Some(true) && adopt(&pods_api, pod, obj).await? {
                    owned.push(pod.clone());
                }
            }
        }
    }

    let satisfied = {
        let by_name: std::collections::HashMap<&str, &Pod> = all
            .iter()
            .filter_map(|p| Some((p.metadata.name.as_deref()?, &**p)))
            .collect();
        ctx.expectations
            .satisfied(key, |name| Seen::of(by_name.get(name).copied()))
    };
    let manage_err = if satisfied && !deleting {
        manage_replicas(obj, ctx, key, &ns, &owned, &all)
            .await
            .err()
    } else {
        None
    };

    let now = Timestamp::now();
    let status = calculate_status(obj, &owned, manage_err.as_deref(), now);
    if status != obj.status() {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        let name = obj.name_any();
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(status.to_patch()),
        )
        .await
        .map_err(api_err(format!(
            "updating status of {} {key}",
            K::kind(&())
        )))?;
    }
    if let Some(e) = manage_err {
        return Err(Error::Invalid(e));
    }
    if !satisfied {
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    // Pods that are ready but not yet available become available later.
    let min_ready = obj.min_ready_seconds();
    let next = owned
        .iter()
        .filter_map(|p| pods::until_available(p, min_ready, now))
        .min();
    Ok(match next {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// A quorum read of the controller: adoption only by a live controller with the
/// same UID (`RecheckDeletionTimestamp`).
async fn fresh_and_alive<K: Replicated>(obj: &K, ctx: &Ctx<K>) -> Result<bool, Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    match api.get_opt(&obj.name_any()).await {
        Ok(Some(fresh)) => {
            Ok(fresh.meta().uid == obj.meta().uid && fresh.meta().deletion_timestamp.is_none())
        }
        Ok(None) => Ok(false),
        Err(e) => Err(Error::Api {
            context: format!("re-reading {} {}", K::kind(&()), key_of(obj)),
            source: e,
        }),
    }
}

async fn adopt<K: Replicated>(api: &Api<Pod>, pod: &Pod, owner: &K) -> Result<bool, Error> {
    let owner_uid = owner.meta().uid.clone().unwrap_or_default();
    let mut refs: Vec<OwnerReference> = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_uid);
    refs.push(controller_ref(owner));
    let name = pod.name_any();
    tracing::debug!(pod = %name, "adopting pod");
    match set_owner_refs(api, pod, Some(refs)).await {
        Ok(()) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(Error::Api {
            context: format!("adopting pod {name}"),
            source: e,
        }),
    }
}

async fn release(api: &Api<Pod>, pod: &Pod, owner_uid: &str) -> Result<(), Error> {
    let mut refs: Vec<OwnerReference> = pod.metadata.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_uid);
    let name = pod.name_any();
    tracing::debug!(pod = %name, "releasing pod that no longer matches");
    match set_owner_refs(api, pod, (!refs.is_empty()).then_some(refs)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::Api {
            context: format!("releasing pod {name}"),
            source: e,
        }),
    }
}

/// Replaces the owner references of `pod`, if it is still the version we saw.
async fn set_owner_refs(
    api: &Api<Pod>,
    pod: &Pod,
    refs: Option<Vec<OwnerReference>>,
) -> Result<(), kube::Error> {
    let patch = json!({"metadata": {
        "resourceVersion": pod.metadata.resource_version,
        "ownerReferences": refs,
    }});
    api.patch(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    Ok(())
}

async fn record<K: Replicated>(
    ctx: &Ctx<K>,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    ctx.recorder
        .record(&obj.object_ref(&()), type_, reason, note)
        .await;
}

/// Creates or deletes pods so `owned` moves to `spec.replicas`; errors are
/// Kubernetes' messages for the ReplicaFailure condition.
async fn manage_replicas<K: Replicated>(
    obj: &K,
    ctx: &Ctx<K>,
    key: &str,
    ns: &str,
    owned: &[Arc<Pod>],
    all: &[Arc<Pod>],
) -> Result<(), String> {
    let diff = owned.len() as i64 - i64::from(obj.replicas());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    if diff < 0 {
        let n = ((-diff) as usize).min(BURST_REPLICAS);
        let Some(template) = obj.template() else {
            return Err("spec.template is missing".into());
        };
        tracing::debug!(
            want = obj.replicas(),
            have = owned.len(),
            creating = n,
            "too few replicas"
        );
        let pod = pods::from_template(template, ns, &obj.name_any(), controller_ref(obj));
        // Slow start: batches of 1, 2, 4, ... stop at the first failing batch.
        let (mut remaining, mut batch) = (n, 1usize);
        while remaining > 0 {
            let size = batch.min(remaining);
            let pp = PostParams::default();
            let results = join_all((0..size).map(|_| api.create(&pp, &pod))).await;
            let mut first_err = None;
            for r in results {
                match r {
                    Ok(p) => {
                        ctx.expectations.created(key, &p.name_any());
                        record(
                            ctx,
                            obj,
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("Created pod: {}", p.name_any()),
                        )
                        .await;
                    }
                    Err(e) => {
                        let msg = api_message(&e);
                        record(
                            ctx,
                            obj,
                            EventType::Warning,
                            "FailedCreate",
                            format!("Error creating: {msg}"),
                        )
                        .await;
                        first_err.get_or_insert(msg);
                    }
                }
            }
            remaining -= size;
            if let Some(e) = first_err {
                return Err(e);
            }
            batch *= 2;
        }
    } else if diff > 0 {
        let n = (diff as usize).min(BURST_REPLICAS);
        tracing::debug!(
            want = obj.replicas(),
            have = owned.len(),
            deleting = n,
            "too many replicas"
        );
        let related = related_pods(obj, ctx, all);
        let mut victims: Vec<&Pod> = owned.iter().map(|p| &**p).collect();
        pods::sort_for_deletion(&mut victims, &related, Timestamp::now());
        victims.truncate(n);
        let names: Vec<String> = victims.iter().map(|p| p.name_any()).collect();
        let dp = DeleteParams::default();
        let results = join_all(names.iter().map(|n| api.delete(n, &dp))).await;
        let mut first_err = None;
        for (name, r) in names.iter().zip(results) {
            match r {
                Ok(_) => {
                    ctx.expectations.deleted(key, name);
                    record(
                        ctx,
                        obj,
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    )
                    .await;
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    let msg = api_message(&e);
                    record(
                        ctx,
                        obj,
                        EventType::Warning,
                        "FailedDelete",
                        format!("Error deleting: {msg}"),
                    )
                    .await;
                    first_err.get_or_insert(msg);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    Ok(())
}

/// Pods of every controller that shares this one's controlling owner (the
/// ReplicaSets of one Deployment), used to spread deletions across nodes.
fn related_pods<'a, K: Replicated>(obj: &K, ctx: &Ctx<K>, all: &'a [Arc<Pod>]) -> Vec<&'a Pod> {
    let own_uid = obj.meta().uid.clone().unwrap_or_default();
    let mut uids = vec![own_uid];
    if let Some(owner) = pods::controller_of(obj.meta()) {
        let ns = obj.meta().namespace.clone();
        for sib in ctx.owners.state() {
            if sib.meta().namespace == ns
                && pods::controller_of(sib.meta()).is_some_and(|r| r.uid == owner.uid)
            {
                uids.push(sib.meta().uid.clone().unwrap_or_default());
            }
        }
    }
    all.iter()
        .filter(|p| pods::controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid)))
        .map(|p| &**p)
        .collect()
}

/// The status for `owned` pods (`calculateStatus`), keeping the ReplicaFailure
/// condition while creating or deleting fails.
pub(crate) fn calculate_status<K: Replicated>(
    obj: &K,
    owned: &[Arc<Pod>],
    manage_err: Option<&str>,
    now: Timestamp,
) -> Status {
    let old = obj.status();
    let template_labels = obj
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut status = Status {
        replicas: owned.len() as i32,
        observed_generation: obj.meta().generation.unwrap_or(old.observed_generation),
        conditions: old.conditions.clone(),
        ..Status::default()
    };
    for p in owned {
        let labels = pods::labels(&p.metadata);
        if template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            status.fully_labeled_replicas += 1;
        }
        if pods::is_ready(p) {
            status.ready_replicas += 1;
            if pods::is_available(p, obj.min_ready_seconds(), now) {
                status.available_replicas += 1;
            }
        }
    }
    let has_failure = status
        .conditions
        .iter()
        .any(|c| c.type_ == "ReplicaFailure");
    match manage_err {
        Some(msg) if !has_failure => {
            let diff = owned.len() as i64 - i64::from(obj.replicas());
            let reason = if diff < 0 {
                "FailedCreate"
            } else if diff > 0 {
                "FailedDelete"
            } else {
                ""
            };
            status.conditions.push(Condition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(msg.into()),
                last_transition_time: Some(
                    Timestamp::from_second(now.as_second())
                        .unwrap_or(now)
                        .to_string(),
                ),
            });
        }
        None if has_failure => status.conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    status
}
