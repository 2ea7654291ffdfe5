//! One sync of a StatefulSet: revisions, pods in ordinal order, updates, status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::SetController;
use super::history;
use super::pods::{self, REVISION_LABEL};
use crate::Error;
use crate::job::pod_state::{self, is_available, is_finished, is_ready, is_terminating};

const RESYNC: Duration = Duration::from_secs(300);

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.labels().get(REVISION_LABEL).map(String::as_str)
}

/// Running and Ready, not being deleted (`isHealthy`).
fn healthy(pod: &Pod) -> bool {
    pod_state::phase(pod) == "Running" && is_ready(pod) && !is_terminating(pod)
}

pub(super) async fn sync(set: &StatefulSet, sc: &SetController) -> Result<Action, Error> {
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let key = format!("{ns}/{name}");
    let uid = set.uid().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let owned: Vec<Arc<Pod>> = pod_state::owned_pods(&sc.pods, &ns, &uid);
    if !sc.expectations.satisfied(&key, |n| {
        pod_state::seen(owned.iter().map(|p| p.as_ref()), n)
    }) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let revs: Vec<_> = history::owned_revisions(&sc.revisions, &ns, &uid);
    let status = set.status.clone().unwrap_or_default();
    let revisions = history::sync_revisions(
        &sc.client,
        &ns,
        &pods::owner_ref(set),
        &spec.template,
        spec.template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
        revs.clone(),
        status.current_revision.as_deref(),
        status.collision_count.unwrap_or(0),
    )
    .await?;
    let current_name = revisions.current.name_any();
    let update_name = revisions.update.name_any();
    let current_tmpl =
        history::template_of(&revisions.current).unwrap_or_else(|| spec.template.clone());

    let replicas = spec.replicas.unwrap_or(1).max(0);
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let end = start + replicas;
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref() != Some("OnDelete");
    let partition = strategy
        .rolling_update
        .as_ref()
        .and_then(|r| r.partition)
        .unwrap_or(0);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = jiff::Timestamp::now();

    let mut slots: BTreeMap<i32, &Pod> = BTreeMap::new();
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for p in owned.iter().map(|p| p.as_ref()) {
        let Some(o) = pods::ordinal(&name, p) else {
            continue;
        };
        if o >= start && o < end {
            slots.insert(o, p);
        } else {
            condemned.push((o, p));
        }
    }
    condemned.sort_by_key(|(o, _)| std::cmp::Reverse(*o));

    let mut blocked = false;
    let mut requeue = RESYNC;
    for ord in start..end {
        match slots.get(&ord) {
            None => {
                let (tmpl, rev) = if rolling && ord < partition {
                    (&current_tmpl, &current_name)
                } else {
                    (&spec.template, &update_name)
                };
                create_pod(sc, set, &key, tmpl, rev, ord).await?;
                if monotonic {
                    blocked = true;
                    break;
                }
            }
            Some(p) if is_finished(p) && !is_terminating(p) => {
                delete_pod(sc, set, &key, p).await?;
                if monotonic {
                    blocked = true;
                    break;
                }
            }
            Some(p) if monotonic && (is_terminating(p) || !healthy(p)) => {
                tracing::debug!(pod = %p.name_any(), "waiting for pod to be Running and Ready");
                blocked = true;
                break;
            }
            Some(p) if monotonic && !is_available(p, min_ready, now) => {
                requeue = Duration::from_secs(u64::try_from(min_ready).unwrap_or(1).max(1));
                blocked = true;
                break;
            }
            Some(_) => {}
        }
    }
    if !blocked && !condemned.is_empty() {
        let when_scaled_delete = spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_scaled.as_deref())
            == Some("Delete");
        if monotonic && owned.iter().any(|p| is_terminating(p)) {
            blocked = true;
        } else {
            for (o, p) in &condemned {
                if is_terminating(p) {
                    continue;
                }
                if when_scaled_delete {
                    own_claims_by_pod(sc, set, *o, p).await?;
                }
                delete_pod(sc, set, &key, p).await?;
                if monotonic {
                    break;
                }
            }
            blocked = true;
        }
    }
    if !blocked && rolling {
        for ord in (partition.max(start)..end).rev() {
            let Some(p) = slots.get(&ord) else { break };
            if revision_of(p) != Some(update_name.as_str()) && !is_terminating(p) {
                delete_pod(sc, set, &key, p).await?;
                break;
            }
            if !healthy(p) {
                break;
            }
        }
    }

    // Status from what the cache shows.
    let live: Vec<&Pod> = owned
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| !is_terminating(p))
        .collect();
    let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
    let mut st = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: live.len() as i32,
        ready_replicas: Some(count(&|p| healthy(p))),
        available_replicas: Some(count(&|p| healthy(p) && is_available(p, min_ready, now))),
        current_replicas: Some(count(&|p| revision_of(p) == Some(current_name.as_str()))),
        updated_replicas: Some(count(&|p| revision_of(p) == Some(update_name.as_str()))),
        current_revision: Some(current_name.clone()),
        update_revision: Some(update_name.clone()),
        collision_count: Some(revisions.collision_count),
        conditions: status.conditions.clone(),
    };
    if st.updated_replicas == Some(replicas)
        && st.ready_replicas == Some(replicas)
        && st.replicas == replicas
    {
        st.current_revision = Some(update_name.clone());
        st.current_replicas = st.updated_replicas;
    }
    if set.status.as_ref() != Some(&st) {
        let mut next = set.clone();
        next.status = Some(st.clone());
        next.metadata.managed_fields = None;
        Api::<StatefulSet>::namespaced(sc.client.clone(), &ns)
            .replace_status(&name, &PostParams::default(), &next)
            .await
            .map_err(|source| Error::Api {
                context: format!("updating status of statefulset {key}"),
                source,
            })?;
    }

    let mut in_use: Vec<String> = owned
        .iter()
        .filter_map(|p| revision_of(p).map(String::from))
        .collect();
    in_use.push(st.current_revision.clone().unwrap_or_default());
    in_use.push(update_name);
    let mut all = revs;
    if !all
        .iter()
        .any(|r| r.name_any() == revisions.update.name_any())
    {
        all.push(revisions.update.clone());
    }
    history::truncate(
        &sc.client,
        &ns,
        all,
        &in_use,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;
    Ok(Action::requeue(requeue))
}

async fn create_pod(
    sc: &SetController,
    set: &StatefulSet,
    key: &str,
    template: &PodTemplateSpec,
    revision: &str,
    ordinal: i32,
) -> Result<(), Error> {
    let ns = set.namespace().unwrap_or_default();
    let pod = pods::new_pod(set, template, revision, ordinal);
    let pod_name = pod.name_any();
    let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(sc.client.clone(), &ns);
    for claim in pods::claims(set, ordinal) {
        let cname = claim.name_any();
        let cached = sc
            .claims
            .state()
            .iter()
            .any(|c| c.namespace().as_deref() == Some(ns.as_str()) && c.name_any() == cname);
        if cached {
            continue;
        }
        match claim_api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                sc.event(
                    set,
                    false,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {cname} Pod {pod_name} in StatefulSet {} success",
                        set.name_any()
                    ),
                    Some(claim.object_ref(&())),
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(source) => {
                sc.event(
                    set,
                    true,
                    "FailedCreate",
                    format!(
                        "create Claim {cname} for Pod {pod_name} in StatefulSet {} failed error: {source}",
                        set.name_any()
                    ), None)
                .await;
                return Err(Error::Api {
                    context: format!("creating claim {ns}/{cname}"),
                    source,
                });
            }
        }
    }
    match Api::<Pod>::namespaced(sc.client.clone(), &ns)
        .create(&PostParams::default(), &pod)
        .await
    {
        Ok(_) => {
            sc.expectations.created(key, &pod_name);
            sc.event(
                set,
                false,
                "SuccessfulCreate",
                format!(
                    "create Pod {pod_name} in StatefulSet {} successful",
                    set.name_any()
                ),
                Some(pod.object_ref(&())),
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(source) => {
            sc.event(
                set,
                true,
                "FailedCreate",
                format!(
                    "create Pod {pod_name} in StatefulSet {} failed error: {source}",
                    set.name_any()
                ),
                None,
            )
            .await;
            Err(Error::Api {
                context: format!("creating pod {ns}/{pod_name}"),
                source,
            })
        }
    }
}

async fn delete_pod(
    sc: &SetController,
    set: &StatefulSet,
    key: &str,
    pod: &Pod,
) -> Result<(), Error> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    match Api::<Pod>::namespaced(sc.client.clone(), &ns)
        .delete(&name, &pod_state::delete_params(pod))
        .await
    {
        Ok(_) => {
            sc.expectations.deleted(key, &name);
            sc.event(
                set,
                false,
                "SuccessfulDelete",
                format!(
                    "delete Pod {name} in StatefulSet {} successful",
                    set.name_any()
                ),
                Some(pod.object_ref(&())),
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Api {
            context: format!("deleting pod {ns}/{name}"),
            source,
        }),
    }
}

/// `whenScaled: Delete`: the condemned pod becomes an owner of its claims, so they
/// are garbage-collected with it.
async fn own_claims_by_pod(
    sc: &SetController,
    set: &StatefulSet,
    ordinal: i32,
    pod: &Pod,
) -> Result<(), Error> {
    let ns = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(sc.client.clone(), &ns);
    for claim in pods::claims(set, ordinal) {
        let Some(cached) = sc.claims.state().into_iter().find(|c| {
            c.namespace().as_deref() == Some(ns.as_str()) && c.name_any() == claim.name_any()
        }) else {
            continue;
        };
        let puid = pod.uid().unwrap_or_default();
        if cached.owner_references().iter().any(|o| o.uid == puid) {
            continue;
        }
        let mut owners = cached.owner_references().to_vec();
        owners.push(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: pod.name_any(),
                uid: puid,
                controller: None,
                block_owner_deletion: None,
            },
        );
        let patch = json!({"metadata": {"ownerReferences": owners, "resourceVersion": cached.resource_version()}});
        match api
            .patch(
                &cached.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::Api {
                    context: format!("setting owner of claim {ns}/{}", cached.name_any()),
                    source,
                });
            }
        }
    }
    Ok(())
}
