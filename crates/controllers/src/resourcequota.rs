//! The ResourceQuota controller: recomputes each quota's `status.used` from the
//! objects in its namespace (the admission plugin in the API server reserves usage
//! on create; this controller makes it exact again after deletes and failed creates).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ResourceQuota, ResourceQuotaStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::{Context, Error};

/// How often usage is recomputed.
const RESYNC: Duration = Duration::from_secs(10);

/// The (group, version, plural, kind) a quota resource name counts.
fn counted_resource(name: &str) -> Option<(&'static str, &'static str, String, String)> {
    let core = |plural: &str, kind: &str| Some(("", "v1", plural.to_string(), kind.to_string()));
    match name {
        "pods" | "cpu" | "memory" | "ephemeral-storage" => core("pods", "Pod"),
        n if n.starts_with("requests.") && n != "requests.storage" || n.starts_with("limits.") => {
            core("pods", "Pod")
        }
        "services" | "services.nodeports" | "services.loadbalancers" => core("services", "Service"),
        "configmaps" => core("configmaps", "ConfigMap"),
        "secrets" => core("secrets", "Secret"),
        "persistentvolumeclaims" | "requests.storage" => {
            core("persistentvolumeclaims", "PersistentVolumeClaim")
        }
        "replicationcontrollers" => core("replicationcontrollers", "ReplicationController"),
        "resourcequotas" => core("resourcequotas", "ResourceQuota"),
        n => {
            let rest = n.strip_prefix("count/")?;
            let (plural, group) = rest.split_once('.').unwrap_or((rest, ""));
            let (g, v, kind) = match (group, plural) {
                ("", "pods") => ("", "v1", "Pod"),
                ("", "services") => ("", "v1", "Service"),
                ("", "configmaps") => ("", "v1", "ConfigMap"),
                ("", "secrets") => ("", "v1", "Secret"),
                ("", "persistentvolumeclaims") => ("", "v1", "PersistentVolumeClaim"),
                ("apps", "deployments") => ("apps", "v1", "Deployment"),
                ("apps", "replicasets") => ("apps", "v1", "ReplicaSet"),
                ("apps", "statefulsets") => ("apps", "v1", "StatefulSet"),
                ("apps", "daemonsets") => ("apps", "v1", "DaemonSet"),
                ("batch", "jobs") => ("batch", "v1", "Job"),
                ("batch", "cronjobs") => ("batch", "v1", "CronJob"),
                _ => return None,
            };
            Some((g, v, plural.to_string(), kind.to_string()))
        }
    }
}

async fn reconcile(quota: Arc<ResourceQuota>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = quota.namespace().unwrap_or_default();
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let scope = serde_json::to_value(&quota.spec).unwrap_or_default();
    let mut cache: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    let mut used = BTreeMap::new();
    for name in hard.keys() {
        let Some((group, version, plural, kind)) = counted_resource(name) else {
            continue;
        };
        let key = format!("{group}/{plural}");
        if !cache.contains_key(&key) {
            let ar = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, &kind),
                &plural,
            );
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &ar);
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| Error::Api {
                    context: format!("listing {plural} in {ns} for quota"),
                    source: e,
                })?;
            let objs = list
                .items
                .iter()
                .filter_map(|o| serde_json::to_value(o).ok())
                .collect();
            cache.insert(key.clone(), objs);
        }
        let total: i64 = cache[&key]
            .iter()
            .filter(|o| api::quota::in_scope(&scope, group, &plural, o))
            .filter_map(|o| api::quota::usage(group, &plural, o, name))
            // Absurd requests must not wrap the total around to a small number.
            .fold(0, i64::saturating_add);
        used.insert(
            name.clone(),
            Quantity(api::quantity::format_milli(
                total,
                api::quota::is_bytes(name),
            )),
        );
    }
    let status = ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(used),
    };
    if quota.status.as_ref() != Some(&status) {
        let mut new = (*quota).clone();
        new.status = Some(status);
        let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
        match api
            .replace_status(&quota.name_any(), &PostParams::default(), &new)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => {
                return Err(Error::Api {
                    context: format!("updating status of resourcequota {ns}/{}", quota.name_any()),
                    source: e,
                });
            }
        }
    }
    Ok(Action::requeue(RESYNC))
}

fn error_policy(_q: Arc<ResourceQuota>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(error = %err, "resourcequota reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    Controller::new(
        Api::<ResourceQuota>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {})
    .await;
    Ok(())
}
