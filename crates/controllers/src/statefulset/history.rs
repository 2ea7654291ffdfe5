//! ControllerRevisions (Kubernetes' `pkg/controller/history`): snapshots of a pod
//! template, named `<owner>-<hash>`, numbered in order, so StatefulSets and
//! DaemonSets can tell current pods from updated ones and roll back. Shared by the
//! StatefulSet and DaemonSet controllers.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::Error;

/// ControllerRevisions in `ns` whose controller owner has `uid`, from the cache.
pub(crate) fn owned_revisions(
    revisions: &kube::runtime::reflector::Store<ControllerRevision>,
    ns: &str,
    uid: &str,
) -> Vec<ControllerRevision> {
    revisions
        .state()
        .into_iter()
        .filter(|r| {
            r.namespace().as_deref() == Some(ns)
                && r.owner_references()
                    .iter()
                    .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .map(|r| (*r).clone())
        .collect()
}

/// Label with the template hash on ControllerRevisions.
pub(crate) const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// The revisions an owner works with after a sync.
#[derive(Debug, Clone)]
pub(crate) struct Revisions {
    /// What existing pods are meant to run.
    pub current: ControllerRevision,
    /// What the spec asks for now.
    pub update: ControllerRevision,
    /// `status.collisionCount` after resolving name collisions.
    pub collision_count: i32,
}

/// The revision payload: a patch replacing `spec.template`.
pub(crate) fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template stored in a revision.
pub(crate) fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// FNV-1a (32 bit) of the data and the collision count, written with Kubernetes'
/// "safe" alphabet (`rand.SafeEncodeString`), as `history.HashControllerRevision`.
pub(crate) fn hash(data: &Value, collision_count: i32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(data.to_string().as_bytes());
    if collision_count > 0 {
        feed(collision_count.to_string().as_bytes());
    }
    safe_encode(&h.to_string())
}

/// `rand.SafeEncodeString`: each byte mapped into an alphabet without vowels and
/// confusable characters.
pub(crate) fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

fn same_template(rev: &ControllerRevision, template: &PodTemplateSpec) -> bool {
    template_of(rev).as_ref() == Some(template)
}

/// Finds or creates the revision for `template` and picks the current one.
/// `existing` are the owner's revisions; `current_name` is `status.currentRevision`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn sync_revisions(
    client: &kube::Client,
    ns: &str,
    owner: &OwnerReference,
    template: &PodTemplateSpec,
    labels: BTreeMap<String, String>,
    mut existing: Vec<ControllerRevision>,
    current_name: Option<&str>,
    mut collision_count: i32,
) -> Result<Revisions, Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    existing.sort_by_key(|r| (r.revision, r.name_any()));
    let next_number = existing.last().map(|r| r.revision).unwrap_or(0) + 1;
    let equal: Vec<&ControllerRevision> = existing
        .iter()
        .filter(|r| same_template(r, template))
        .collect();
    let update = match equal.last() {
        Some(r) if existing.last().map(|l| l.name_any()) == Some(r.name_any()) => (*r).clone(),
        Some(r) => {
            // A rollback to an older template: renumber that revision.
            let patch = json!({"revision": next_number});
            api.patch(
                &r.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|source| Error::Api {
                context: format!("renumbering controllerrevision {ns}/{}", r.name_any()),
                source,
            })?
        }
        None => {
            let data = revision_data(template);
            loop {
                let h = hash(&data, collision_count);
                let mut l = labels.clone();
                l.insert(HASH_LABEL.into(), h.clone());
                let rev = ControllerRevision {
                    metadata: ObjectMeta {
                        name: Some(format!("{}-{h}", owner.name)),
                        namespace: Some(ns.to_string()),
                        labels: Some(l),
                        owner_references: Some(vec![owner.clone()]),
                        ..Default::default()
                    },
                    data: Some(RawExtension(data.clone())),
                    revision: next_number,
                };
                match api.create(&PostParams::default(), &rev).await {
                    Ok(r) => break r,
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        let found =
                            api.get(&rev.name_any())
                                .await
                                .map_err(|source| Error::Api {
                                    context: format!(
                                        "getting controllerrevision {ns}/{}",
                                        rev.name_any()
                                    ),
                                    source,
                                })?;
                        let ours = found.owner_references().iter().any(|o| o.uid == owner.uid);
                        if ours && same_template(&found, template) {
                            break found;
                        }
                        collision_count += 1;
                    }
                    Err(source) => {
                        return Err(Error::Api {
                            context: format!("creating controllerrevision {ns}/{}", rev.name_any()),
                            source,
                        });
                    }
                }
            }
        }
    };
    let current = current_name
        .and_then(|n| existing.iter().find(|r| r.name_any() == n))
        .cloned()
        .unwrap_or_else(|| update.clone());
    Ok(Revisions {
        current,
        update,
        collision_count,
    })
}

/// Deletes the oldest revisions not in `live` beyond `limit`.
pub(crate) async fn truncate(
    client: &kube::Client,
    ns: &str,
    mut existing: Vec<ControllerRevision>,
    live: &[String],
    limit: i32,
) -> Result<(), Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    existing.retain(|r| !live.contains(&r.name_any()));
    existing.sort_by_key(|r| r.revision);
    let extra = existing.len().saturating_sub(limit.max(0) as usize);
    for r in existing.iter().take(extra) {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::Api {
                    context: format!("deleting controllerrevision {ns}/{}", r.name_any()),
                    source,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_use_the_safe_alphabet_and_change_with_collisions() {
        let t: PodTemplateSpec =
            serde_json::from_value(json!({"metadata": {"labels": {"a": "b"}}})).expect("t");
        let d = revision_data(&t);
        let h = hash(&d, 0);
        assert!(
            h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{h}"
        );
        assert_eq!(h, hash(&d, 0));
        assert_ne!(h, hash(&d, 1));
    }

    #[test]
    fn the_template_round_trips_through_a_revision() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}
        }))
        .expect("t");
        let rev = ControllerRevision {
            data: Some(RawExtension(revision_data(&t))),
            ..Default::default()
        };
        assert_eq!(template_of(&rev), Some(t));
    }
}
