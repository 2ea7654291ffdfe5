//! The CRD controller inside the API server (apiextensions-apiserver's naming,
//! establishing and finalizer controllers in one level-triggered loop). It lists the
//! CRDs once, then follows the server's watch cache (no polling) and, for every
//! change, reconciles all CRDs:
//!
//! - names: `status.acceptedNames` and `NamesAccepted` (a name another CRD of the
//!   group already accepted is a conflict: `PluralConflict`, `KindConflict`, ...,
//!   `"foo" is already in use`), then `Established`;
//! - what is served: every established CRD's served versions are published (before
//!   `Established` is written, so a client that waited for it finds the resource);
//! - deletion: `Terminating`, every custom resource deleted, then the
//!   `customresourcecleanup.apiextensions.k8s.io` finalizer removed (the CRD goes).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use api::resource::{APIEXTENSIONS, ResourceInfo};
use serde_json::{Value, json};
use store::{EventKind, ListOptions, Revision};
use tokio::sync::broadcast::error::RecvError;

use super::definition::{self, CLEANUP_FINALIZER, ESTABLISHED, NAMES_ACCEPTED, Names, TERMINATING};
use crate::rest::delete::{DeleteOptions, delete_object};
use crate::serve::State;

/// Store key prefix of CRDs.
const PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";
/// How soon a CRD whose custom resources are still going is looked at again.
const CLEANUP_RETRY: Duration = Duration::from_millis(500);

/// Whether `res` is the CRD resource.
pub(crate) fn is_crd(res: &ResourceInfo) -> bool {
    res.group == APIEXTENSIONS && res.plural == "customresourcedefinitions"
}

/// What a first delete of a CRD does besides setting `deletionTimestamp`: the
/// cleanup finalizer and the `Terminating` condition (Kubernetes' CRD storage).
pub(crate) fn mark_for_deletion(crd: &mut Value, finalizers: &mut Vec<String>) {
    if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
        finalizers.push(CLEANUP_FINALIZER.into());
        crate::object::meta_mut(crd).insert("finalizers".into(), json!(finalizers));
    }
    definition::set_condition(
        crd,
        TERMINATING,
        "True",
        "InstanceDeletionPending",
        "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
    );
}

/// The CRDs by name, as last seen.
type Crds = BTreeMap<String, Value>;

/// Runs until the server stops.
pub(crate) async fn run(state: Arc<State>) {
    let Some(res) = state
        .registry
        .lookup(APIEXTENSIONS, "v1", "customresourcedefinitions")
        .cloned()
    else {
        tracing::error!("the CustomResourceDefinition resource is not registered");
        return;
    };
    loop {
        let (mut crds, mut applied) = match list(&state).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "listing CustomResourceDefinitions failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut published = None;
        let mut retry = reconcile(&state, &res, &mut crds, &mut published).await;
        state.registry.mark_synced();
        let Some(sub) = state.watch_cache.subscribe(applied) else {
            continue;
        };
        let mut dirty = false;
        for change in &sub.backlog {
            dirty |= take(&mut crds, &mut applied, change);
        }
        let mut live = sub.live;
        loop {
            if dirty {
                retry = reconcile(&state, &res, &mut crds, &mut published).await;
                dirty = false;
            }
            let wait = async {
                match retry {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = live.recv() => match r {
                    Ok(change) => {
                        dirty |= take(&mut crds, &mut applied, &change);
                        // Take whatever else is already there before acting.
                        while let Ok(c) = live.try_recv() {
                            dirty |= take(&mut crds, &mut applied, &c);
                        }
                    }
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
                },
                _ = wait => dirty = true,
            }
        }
        tracing::debug!("CRD controller fell behind the watch cache; relisting");
    }
}

/// Applies one watch cache change; whether it was about a CRD.
fn take(crds: &mut Crds, applied: &mut Revision, change: &crate::watch_cache::Change) -> bool {
    if change.revision <= *applied {
        return false;
    }
    *applied = change.revision;
    let Some(name) = change.key.strip_prefix(PREFIX) else {
        return false;
    };
    if change.kind == EventKind::Deleted {
        crds.remove(name);
    } else {
        crds.insert(name.to_string(), change.object.clone());
    }
    true
}

async fn list(state: &State) -> Result<(Crds, Revision), store::StoreError> {
    let res = state
        .storage
        .store
        .list(&ListOptions {
            prefix: PREFIX.into(),
            ..Default::default()
        })
        .await?;
    let mut crds = Crds::new();
    for kv in &res.items {
        if let Ok(obj) = crate::storage::decode(kv) {
            crds.insert(kv.key.trim_start_matches(PREFIX).to_string(), obj);
        }
    }
    Ok((crds, res.revision))
}

/// Names a CRD would accept given what the other CRDs of its group hold
/// (Kubernetes' `calculateNamesAndConditions`): the accepted names and the
/// `NamesAccepted` condition's (status, reason, message).
fn accepted_names(crd: &Value, others: &[&Value]) -> (Names, (String, String, String)) {
    let group = definition::group(crd);
    let mut resources = HashSet::new();
    let mut kinds = HashSet::new();
    for o in others.iter().filter(|o| definition::group(o) == group) {
        let n = Names::at(o, "/status/acceptedNames");
        resources.insert(n.plural);
        resources.insert(n.singular);
        resources.extend(n.short_names);
        kinds.insert(n.kind);
        kinds.insert(n.list_kind);
    }
    resources.remove("");
    kinds.remove("");
    let requested = Names::at(crd, "/spec/names");
    let accepted = Names::at(crd, "/status/acceptedNames");
    let mut names = accepted.clone();
    let mut cond: Option<(String, String)> = None;
    let fresh = |req: &str, acc: &str, used: &HashSet<String>| -> Result<(), String> {
        if req == acc || !used.contains(req) {
            Ok(())
        } else {
            Err(format!("{req:?} is already in use"))
        }
    };
    match fresh(&requested.plural, &accepted.plural, &resources) {
        Ok(()) => names.plural = requested.plural.clone(),
        Err(e) => cond = Some(("PluralConflict".into(), e)),
    }
    match fresh(&requested.singular, &accepted.singular, &resources) {
        Ok(()) => names.singular = requested.singular.clone(),
        Err(e) => cond = Some(("SingularConflict".into(), e)),
    }
    if requested.short_names != accepted.short_names {
        let errs: Vec<String> = requested
            .short_names
            .iter()
            .filter(|s| !accepted.short_names.contains(s))
            .filter_map(|s| fresh(s, "", &resources).err())
            .collect();
        match errs.len() {
            0 => names.short_names = requested.short_names.clone(),
            1 => cond = Some(("ShortNamesConflict".into(), errs[0].clone())),
            _ => {
                cond = Some((
                    "ShortNamesConflict".into(),
                    format!("[{}]", errs.join(", ")),
                ))
            }
        }
    }
    match fresh(&requested.kind, &accepted.kind, &kinds) {
        Ok(()) => names.kind = requested.kind.clone(),
        Err(e) => cond = Some(("KindConflict".into(), e)),
    }
    match fresh(&requested.list_kind, &accepted.list_kind, &kinds) {
        Ok(()) => names.list_kind = requested.list_kind.clone(),
        Err(e) => cond = Some(("ListKindConflict".into(), e)),
    }
    names.categories = requested.categories.clone();
    let cond = match cond {
        Some((reason, message)) => ("False".to_string(), reason, message),
        None => (
            "True".to_string(),
            "NoConflicts".to_string(),
            "no conflicts found".to_string(),
        ),
    };
    (names, cond)
}

/// The status a live CRD should have.
fn desired(crd: &Value, others: &[&Value]) -> Value {
    let mut out = crd.clone();
    let (names, (status, reason, message)) = accepted_names(crd, others);
    crate::object::set(&mut out, "status.acceptedNames", names.to_json());
    definition::set_condition(&mut out, NAMES_ACCEPTED, &status, &reason, &message);
    let established = definition::is_true(crd, ESTABLISHED);
    if !established {
        if status == "True" {
            definition::set_condition(
                &mut out,
                ESTABLISHED,
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            );
        } else {
            definition::set_condition(
                &mut out,
                ESTABLISHED,
                "False",
                "NotAccepted",
                "not all names are accepted",
            );
        }
    }
    out
}

fn creation_order(crds: &Crds) -> Vec<String> {
    let mut names: Vec<(String, String)> = crds
        .iter()
        .map(|(n, c)| {
            (
                crate::object::meta_str(c, "creationTimestamp")
                    .unwrap_or_default()
                    .to_string(),
                n.clone(),
            )
        })
        .collect();
    names.sort();
    names.into_iter().map(|(_, n)| n).collect()
}

/// Reconciles every CRD; returns when to look again (custom resources still going).
async fn reconcile(
    state: &State,
    res: &ResourceInfo,
    crds: &mut Crds,
    published: &mut Option<Vec<Value>>,
) -> Option<Duration> {
    // 1. Names and conditions, oldest first, each against the others' accepted names.
    let mut writes = Vec::new();
    for name in creation_order(crds) {
        let Some(crd) = crds.get(&name) else { continue };
        if definition::deleting(crd) {
            continue;
        }
        let others: Vec<&Value> = crds
            .iter()
            .filter(|(n, _)| **n != name)
            .map(|(_, c)| c)
            .collect();
        let want = desired(crd, &others);
        if want.get("status") != crd.get("status") {
            writes.push((name.clone(), crd.clone()));
            crds.insert(name, want);
        }
    }
    // 2. Serve what is (about to be) established.
    publish(state, crds, published);
    // 3. Write the new statuses.
    let mut retry = None;
    for (name, old) in writes {
        let Some(want) = crds.get(&name).cloned() else {
            continue;
        };
        if let Err(e) = write_status(state, res, &old, &want).await {
            tracing::debug!(crd = %name, error = %e.message, "updating CRD status failed; retrying");
            crds.insert(name, old);
            retry = Some(CLEANUP_RETRY);
        }
    }
    // 4. Deletions.
    let deleting: Vec<String> = crds
        .iter()
        .filter(|(_, c)| definition::deleting(c))
        .filter(|(_, c)| {
            crate::object::finalizers(c)
                .iter()
                .any(|f| f == CLEANUP_FINALIZER)
        })
        .map(|(n, _)| n.clone())
        .collect();
    for name in deleting {
        let Some(crd) = crds.get(&name).cloned() else {
            continue;
        };
        match cleanup(state, res, crd).await {
            Ok(true) => {}
            Ok(false) => retry = Some(CLEANUP_RETRY),
            // Gone meanwhile (the watch cache has not told us yet).
            Err(e) if e.code == 404 => {}
            Err(e) => {
                tracing::debug!(crd = %name, error = %e.message, "cleaning up custom resources failed; retrying");
                retry = Some(CLEANUP_RETRY);
            }
        }
    }
    retry
}

/// What decides the served resources of the CRDs (a status-only change such as a
/// condition's message does not; names, spec, deletion do).
fn fingerprint(crds: &Crds) -> Vec<Value> {
    crds.values()
        .filter(|c| definition::is_true(c, ESTABLISHED))
        .map(|c| {
            json!([
                crate::object::name(c),
                c.get("spec"),
                c.pointer("/status/acceptedNames"),
                definition::deleting(c),
            ])
        })
        .collect()
}

/// Publishes the established CRDs' resources, unless nothing that matters changed
/// (a new snapshot means new OpenAPI documents to build).
fn publish(state: &State, crds: &Crds, published: &mut Option<Vec<Value>>) {
    let print = fingerprint(crds);
    if published.as_ref() == Some(&print) {
        return;
    }
    *published = Some(print);
    let mut served = Vec::new();
    for crd in crds.values() {
        if !definition::is_true(crd, ESTABLISHED) {
            continue;
        }
        for c in definition::resources(crd) {
            if state.registry.is_builtin(&c.info.group, &c.info.plural) {
                tracing::warn!(crd = %c.crd, "a CRD may not redefine a built-in resource; not serving it");
                continue;
            }
            served.push(Arc::new(c));
        }
    }
    state.registry.publish(served);
}

/// Writes `want`'s status over the stored `old` (compare-and-swap).
async fn write_status(
    state: &State,
    res: &ResourceInfo,
    old: &Value,
    want: &Value,
) -> Result<Value, api::status::ApiError> {
    let name = crate::object::name(old).unwrap_or_default();
    let rv =
        crate::storage::parse_rv(crate::object::meta_str(old, "resourceVersion").unwrap_or("0"))?;
    let mut new = old.clone();
    crate::object::set(
        &mut new,
        "status",
        want.get("status").cloned().unwrap_or(json!({})),
    );
    state.storage.update(res, None, name, &new, rv).await
}

/// One step of deleting a CRD's custom resources; true when the CRD is released.
async fn cleanup(
    state: &State,
    res: &ResourceInfo,
    crd: Value,
) -> Result<bool, api::status::ApiError> {
    let in_progress = definition::condition(&crd, TERMINATING)
        .and_then(|c| c.get("reason"))
        .and_then(Value::as_str)
        == Some("InstanceDeletionInProgress");
    let mut crd = crd;
    if !in_progress {
        let mut want = crd.clone();
        definition::set_condition(
            &mut want,
            TERMINATING,
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        );
        crd = write_status(state, res, &crd, &want).await?;
    }
    let resources = definition::resources(&crd);
    let storage = definition::storage_version(&crd)
        .unwrap_or_default()
        .to_string();
    let instances = resources
        .iter()
        .find(|c| c.info.version == storage)
        .or(resources.first());
    let (reason, message) = match instances {
        Some(c) if definition::is_true(&crd, ESTABLISHED) => {
            let info = c.info.clone();
            let page = state
                .storage
                .list(&info, &info.key_prefix(), None, None, 0, &|_| true)
                .await?;
            let mut remaining = 0;
            for obj in &page.items {
                let name = crate::object::name(obj).unwrap_or_default().to_string();
                let ns = crate::object::namespace(obj).map(String::from);
                match delete_object(
                    state,
                    &info,
                    ns.as_deref(),
                    &name,
                    &DeleteOptions::default(),
                )
                .await
                {
                    Ok((_, true)) => {}
                    Ok((_, false)) => remaining += 1,
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            if remaining > 0 {
                return Ok(false);
            }
            ("InstanceDeletionCompleted", "removed all instances")
        }
        _ => ("NeverEstablished", "resource was never established"),
    };
    let mut want = crd.clone();
    definition::set_condition(&mut want, TERMINATING, "False", reason, message);
    let crd = write_status(state, res, &crd, &want).await?;
    // Release the CRD: without finalizers a terminating object is deleted.
    let name = crate::object::name(&crd).unwrap_or_default().to_string();
    let rv =
        crate::storage::parse_rv(crate::object::meta_str(&crd, "resourceVersion").unwrap_or("0"))?;
    let rest: Vec<String> = crate::object::finalizers(&crd)
        .into_iter()
        .filter(|f| f != CLEANUP_FINALIZER)
        .collect();
    if rest.is_empty() {
        state.storage.delete(res, None, &name, Some(rv)).await?;
    } else {
        let mut new = crd.clone();
        crate::object::meta_mut(&mut new).insert("finalizers".into(), json!(rest));
        state.storage.update(res, None, &name, &new, rv).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(plural: &str, kind: &str, accepted: bool) -> Value {
        let mut c = json!({
            "metadata": {"name": format!("{plural}.stable.example.com")},
            "spec": {"group": "stable.example.com", "scope": "Namespaced",
                "names": {"plural": plural, "singular": plural.trim_end_matches('s'), "kind": kind, "listKind": format!("{kind}List")}},
        });
        if accepted {
            c["status"]["acceptedNames"] = c["spec"]["names"].clone();
        }
        c
    }

    #[test]
    fn fresh_names_are_accepted_and_the_crd_established() {
        let c = crd("crontabs", "CronTab", false);
        let d = desired(&c, &[]);
        assert_eq!(d["status"]["acceptedNames"]["plural"], "crontabs");
        assert!(definition::is_true(&d, NAMES_ACCEPTED));
        assert!(definition::is_true(&d, ESTABLISHED));
        let e = definition::condition(&d, ESTABLISHED).expect("set");
        assert_eq!(e["reason"], "InitialNamesAccepted");
    }

    #[test]
    fn a_kind_another_crd_of_the_group_holds_is_a_conflict() {
        let first = crd("crontabs", "CronTab", true);
        let mut second = crd("crontabs2", "CronTab", false);
        second["spec"]["names"]["listKind"] = "CronTabs".into();
        let d = desired(&second, &[&first]);
        let c = definition::condition(&d, NAMES_ACCEPTED).expect("set");
        assert_eq!(c["status"], "False");
        assert_eq!(c["reason"], "KindConflict");
        assert_eq!(c["message"], r#""CronTab" is already in use"#);
        assert!(!definition::is_true(&d, ESTABLISHED));
        assert_eq!(
            definition::condition(&d, ESTABLISHED).expect("set")["reason"],
            "NotAccepted"
        );
        assert_eq!(d["status"]["acceptedNames"]["plural"], "crontabs2");
        assert_eq!(d["status"]["acceptedNames"].get("kind"), Some(&json!("")));
    }

    #[test]
    fn a_plural_used_as_another_crds_short_name_is_a_conflict() {
        let mut first = crd("crontabs", "CronTab", true);
        first["status"]["acceptedNames"]["shortNames"] = json!(["jobs2"]);
        let mut second = crd("jobs2", "Job2", false);
        second["spec"]["names"]["singular"] = "job2".into();
        let c = definition::condition(&desired(&second, &[&first]), NAMES_ACCEPTED)
            .expect("set")
            .clone();
        assert_eq!(c["reason"], "PluralConflict");
    }

    #[test]
    fn deletion_adds_the_cleanup_finalizer_and_terminating() {
        let mut c = crd("crontabs", "CronTab", true);
        let mut f = Vec::new();
        mark_for_deletion(&mut c, &mut f);
        assert_eq!(f, vec![CLEANUP_FINALIZER]);
        assert_eq!(c["metadata"]["finalizers"], json!([CLEANUP_FINALIZER]));
        let t = definition::condition(&c, TERMINATING).expect("set");
        assert_eq!(t["reason"], "InstanceDeletionPending");
    }
}
