//! One sync of a DaemonSet: revisions, a pod per eligible node, rolling update,
//! status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::DaemonController;
use super::placement::{self, Fit};
use crate::Error;
use crate::job::pod_state::{self, is_available, is_finished, is_ready, is_terminating};
use crate::statefulset::history;

const REVISION_LABEL: &str = "controller-revision-hash";
const GENERATION_LABEL: &str = "pod-template-generation";
const RESYNC: Duration = Duration::from_secs(300);

fn owner_ref(ds: &DaemonSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: ds.name_any(),
        uid: ds.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// `intstr.GetScaledValueFromIntOrPercent`, rounding up.
fn scaled(v: Option<&IntOrString>, total: i32) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            ((pct * i64::from(total) + 99) / 100) as i32
        }
    }
}

/// The daemon pod for `node`.
fn new_pod(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), hash.into());
    labels.insert(
        GENERATION_LABEL.into(),
        ds.metadata.generation.unwrap_or(1).to_string(),
    );
    let mut spec = template.spec.unwrap_or_default();
    placement::add_daemon_tolerations(&mut spec);
    placement::pin_to_node(&mut spec, node);
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![owner_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

pub(super) async fn sync(ds: &DaemonSet, dc: &DaemonController) -> Result<Action, Error> {
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let key = format!("{ns}/{name}");
    let uid = ds.uid().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let owned: Vec<Arc<Pod>> = pod_state::owned_pods(&dc.pods, &ns, &uid);
    if !dc.expectations.satisfied(&key, |n| {
        pod_state::seen(owned.iter().map(|p| p.as_ref()), n)
    }) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let revs: Vec<_> = history::owned_revisions(&dc.revisions, &ns, &uid);
    let status = ds.status.clone().unwrap_or_default();
    let revisions = history::sync_revisions(
        &dc.client,
        &ns,
        &owner_ref(ds),
        &spec.template,
        spec.template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
        revs.clone(),
        None,
        status.collision_count.unwrap_or(0),
    )
    .await?;
    let hash = revisions
        .update
        .labels()
        .get(history::HASH_LABEL)
        .cloned()
        .unwrap_or_else(|| {
            revisions
                .update
                .name_any()
                .trim_start_matches(&format!("{name}-"))
                .to_string()
        });
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = jiff::Timestamp::now();
    let mut fit_spec = spec.template.spec.clone().unwrap_or_default();
    placement::add_daemon_tolerations(&mut fit_spec);

    let nodes: Vec<Arc<Node>> = dc.nodes.state();
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in owned.iter().map(|p| p.as_ref()) {
        if let Some(n) = pod_state::target_node(p) {
            by_node.entry(n).or_default().push(p);
        }
    }

    // Pods on nodes that are gone: nobody will run them.
    for (node, pods) in &by_node {
        if nodes.iter().any(|n| n.name_any() == *node) {
            continue;
        }
        for p in pods.iter().filter(|p| !is_terminating(p)) {
            delete_pod(dc, ds, &key, p, DeleteParams::default().grace_period(0)).await?;
        }
    }

    let mut desired = 0;
    let mut fits: BTreeMap<String, Fit> = BTreeMap::new();
    for node in &nodes {
        let node_name = node.name_any();
        let fit = placement::fit(&fit_spec, node);
        fits.insert(node_name.clone(), fit);
        if fit.should_run {
            desired += 1;
        }
        let pods: Vec<&Pod> = by_node
            .get(&node_name)
            .map(|v| v.iter().copied().filter(|p| !is_terminating(p)).collect())
            .unwrap_or_default();
        let (failed, mut live): (Vec<&Pod>, Vec<&Pod>) = pods
            .into_iter()
            .partition(|p| pod_state::phase(p) == "Failed");
        for p in &failed {
            dc.event(
                ds,
                true,
                "FailedDaemonPod",
                format!(
                    "Found failed daemon pod {ns}/{} on node {node_name}, will try to kill it",
                    p.name_any()
                ),
                Some(p.object_ref(&())),
            )
            .await;
            delete_pod(dc, ds, &key, p, pod_state::delete_params(p)).await?;
        }
        live.retain(|p| !is_finished(p));
        if fit.should_run && live.is_empty() {
            create_pod(dc, ds, &key, &hash, &node_name).await?;
        } else if !fit.should_continue_running {
            for p in &live {
                delete_pod(dc, ds, &key, p, pod_state::delete_params(p)).await?;
            }
        } else if live.len() > 1 {
            // Keep the oldest, preferring the current template.
            live.sort_by_key(|p| {
                (
                    p.labels().get(REVISION_LABEL) != Some(&hash),
                    p.metadata.creation_timestamp.clone().map(|t| t.0),
                )
            });
            let surge = live
                .iter()
                .any(|p| p.labels().get(REVISION_LABEL) == Some(&hash))
                && live
                    .iter()
                    .any(|p| p.labels().get(REVISION_LABEL) != Some(&hash));
            if !surge {
                for p in live.iter().skip(1) {
                    delete_pod(dc, ds, &key, p, pod_state::delete_params(p)).await?;
                }
            }
        }
    }

    // Rolling update.
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref() != Some("OnDelete") {
        let ru = strategy.rolling_update.clone().unwrap_or_default();
        let mut max_surge = scaled(ru.max_surge.as_ref(), desired);
        let mut max_unavailable = scaled(
            ru.max_unavailable.as_ref().or(Some(&IntOrString::Int(1))),
            desired,
        );
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        if max_surge > 0 {
            max_unavailable = max_unavailable.max(0);
        } else {
            max_surge = 0;
        }
        let mut unavailable = 0;
        let mut candidates: Vec<(&str, Vec<&Pod>)> = Vec::new();
        for (node, fit) in &fits {
            if !fit.should_run {
                continue;
            }
            let pods: Vec<&Pod> = by_node
                .get(node)
                .map(|v| {
                    v.iter()
                        .copied()
                        .filter(|p| !is_terminating(p) && !is_finished(p))
                        .collect()
                })
                .unwrap_or_default();
            if !pods.iter().any(|p| is_available(p, min_ready, now)) {
                unavailable += 1;
            }
            candidates.push((node.as_str(), pods));
        }
        let mut surged = candidates.iter().filter(|(_, pods)| pods.len() > 1).count() as i32;
        for (node, pods) in candidates {
            let old: Vec<&Pod> = pods
                .iter()
                .copied()
                .filter(|p| p.labels().get(REVISION_LABEL) != Some(&hash))
                .collect();
            let new: Vec<&Pod> = pods
                .iter()
                .copied()
                .filter(|p| p.labels().get(REVISION_LABEL) == Some(&hash))
                .collect();
            if old.is_empty() {
                continue;
            }
            let old_available = old.iter().any(|p| is_available(p, min_ready, now));
            if max_surge > 0 {
                if new.iter().any(|p| is_available(p, min_ready, now)) || !old_available {
                    for p in &old {
                        delete_pod(dc, ds, &key, p, pod_state::delete_params(p)).await?;
                    }
                } else if new.is_empty() && surged < max_surge {
                    create_pod(dc, ds, &key, &hash, node).await?;
                    surged += 1;
                }
            } else if !old_available {
                for p in &old {
                    delete_pod(dc, ds, &key, p, pod_state::delete_params(p)).await?;
                }
            } else if unavailable < max_unavailable {
                for p in &old {
                    delete_pod(dc, ds, &key, p, pod_state::delete_params(p)).await?;
                }
                unavailable += 1;
            }
        }
    }

    // Status from what the cache shows.
    let mut st = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: Some(revisions.collision_count),
        desired_number_scheduled: desired,
        conditions: status.conditions.clone(),
        ..Default::default()
    };
    let (mut current, mut misscheduled, mut ready, mut available, mut updated) = (0, 0, 0, 0, 0);
    for (node, fit) in &fits {
        let pods: Vec<&Pod> = by_node
            .get(node)
            .map(|v| v.iter().copied().filter(|p| !is_terminating(p)).collect())
            .unwrap_or_default();
        if pods.is_empty() {
            continue;
        }
        if !fit.should_run {
            misscheduled += 1;
            continue;
        }
        current += 1;
        if pods.iter().any(|p| is_ready(p)) {
            ready += 1;
        }
        if pods.iter().any(|p| is_available(p, min_ready, now)) {
            available += 1;
        }
        if pods
            .iter()
            .any(|p| p.labels().get(REVISION_LABEL) == Some(&hash))
        {
            updated += 1;
        }
    }
    st.current_number_scheduled = current;
    st.number_misscheduled = misscheduled;
    st.number_ready = ready;
    st.number_available = Some(available);
    st.number_unavailable = Some(desired - available).filter(|n| *n > 0);
    st.updated_number_scheduled = Some(updated);
    if ds.status.as_ref() != Some(&st) {
        let mut next = ds.clone();
        next.status = Some(st);
        next.metadata.managed_fields = None;
        Api::<DaemonSet>::namespaced(dc.client.clone(), &ns)
            .replace_status(&name, &PostParams::default(), &next)
            .await
            .map_err(|source| Error::Api {
                context: format!("updating status of daemonset {key}"),
                source,
            })?;
    }

    let mut in_use: Vec<String> = revs
        .iter()
        .filter(|r| {
            let h = r.labels().get(history::HASH_LABEL);
            owned
                .iter()
                .any(|p| p.labels().get(REVISION_LABEL) == h && h.is_some())
        })
        .map(|r| r.name_any())
        .collect();
    in_use.push(revisions.update.name_any());
    history::truncate(
        &dc.client,
        &ns,
        revs,
        &in_use,
        spec.revision_history_limit.unwrap_or(10),
    )
    .await?;
    let requeue = if min_ready > 0 {
        Duration::from_secs(u64::try_from(min_ready).unwrap_or(1))
    } else {
        RESYNC
    };
    Ok(Action::requeue(requeue))
}

async fn create_pod(
    dc: &DaemonController,
    ds: &DaemonSet,
    key: &str,
    hash: &str,
    node: &str,
) -> Result<(), Error> {
    let ns = ds.namespace().unwrap_or_default();
    let pod = new_pod(ds, hash, node);
    match Api::<Pod>::namespaced(dc.client.clone(), &ns)
        .create(&PostParams::default(), &pod)
        .await
    {
        Ok(created) => {
            dc.expectations.created(key, &created.name_any());
            tracing::debug!(pod = %created.name_any(), node, "created daemon pod");
            dc.event(
                ds,
                false,
                "SuccessfulCreate",
                format!("Created pod: {}", created.name_any()),
                Some(created.object_ref(&())),
            )
            .await;
            Ok(())
        }
        Err(source) => {
            dc.event(
                ds,
                true,
                "FailedCreate",
                format!("Error creating: {source}"),
                None,
            )
            .await;
            Err(Error::Api {
                context: format!("creating daemon pod for node {node}"),
                source,
            })
        }
    }
}

async fn delete_pod(
    dc: &DaemonController,
    ds: &DaemonSet,
    key: &str,
    pod: &Pod,
    dp: DeleteParams,
) -> Result<(), Error> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    match Api::<Pod>::namespaced(dc.client.clone(), &ns)
        .delete(&name, &dp)
        .await
    {
        Ok(_) => {
            dc.expectations.deleted(key, &name);
            dc.event(
                ds,
                false,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up_like_kubernetes() {
        assert_eq!(scaled(Some(&IntOrString::String("25%".into())), 5), 2);
        assert_eq!(scaled(Some(&IntOrString::Int(3)), 5), 3);
        assert_eq!(scaled(None, 5), 0);
    }
}
