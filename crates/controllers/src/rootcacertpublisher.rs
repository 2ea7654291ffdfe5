//! The root-ca-cert-publisher controller: every namespace that is not terminating
//! has a `kube-root-ca.crt` ConfigMap holding the cluster CA (`ca.crt`), which the
//! `kube-api-access` volume of every pod projects next to its service account token,
//! so in-cluster clients can verify the API server (Kubernetes'
//! `pkg/controller/certificates/rootcacertpublisher`). Edited or deleted copies are
//! put back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::{Context, Error};

/// The ConfigMap's name in every namespace.
pub(crate) const CONFIG_MAP: &str = "kube-root-ca.crt";
/// The key holding the CA bundle.
const KEY: &str = "ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Runs the controller until aborted; idle when no root CA is configured.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    if ctx.config.root_ca.is_none() {
        tracing::warn!("no root CA configured: kube-root-ca.crt ConfigMaps are not published");
        return Ok(());
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let config_maps: Api<ConfigMap> = Api::all(ctx.client.clone());
    let only_ours = watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP}"));
    Controller::new(namespaces, watcher::Config::default())
        .watches(config_maps, only_ours, |cm| {
            Some(ObjectRef::new(cm.metadata.namespace.as_deref()?))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// The ConfigMap as it should be.
fn desired(namespace: &str, ca: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP.into()),
            namespace: Some(namespace.into()),
            annotations: Some(BTreeMap::from([(
                "kubernetes.io/description".to_string(),
                DESCRIPTION.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(KEY.to_string(), ca.to_string())])),
        ..Default::default()
    }
}

/// Whether `existing` needs rewriting to hold `ca` (other keys and labels stay).
fn needs_update(existing: &ConfigMap, ca: &str) -> bool {
    let data_ok = existing
        .data
        .as_ref()
        .is_some_and(|d| d.len() == 1 && d.get(KEY).map(String::as_str) == Some(ca));
    let binary_empty = existing.binary_data.as_ref().is_none_or(|b| b.is_empty());
    !(data_ok && binary_empty)
}

#[tracing::instrument(skip_all, fields(object = ns.metadata.name.as_deref().unwrap_or_default()))]
async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(ca) = ctx.config.root_ca.as_deref() else {
        return Ok(Action::await_change());
    };
    let name = ns.metadata.name.clone().unwrap_or_default();
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let context = |verb: &str| format!("{verb} configmap {name}/{CONFIG_MAP}");
    let existing = api
        .get_opt(CONFIG_MAP)
        .await
        .map_err(|e| Error::api(&context("getting"), e))?;
    let result = match existing {
        None => {
            api.create(&PostParams::default(), &desired(&name, ca))
                .await
        }
        Some(cm) if needs_update(&cm, ca) => {
            let mut cm = cm;
            cm.data = Some(BTreeMap::from([(KEY.to_string(), ca.to_string())]));
            cm.binary_data = None;
            api.replace(CONFIG_MAP, &PostParams::default(), &cm).await
        }
        Some(_) => return Ok(Action::await_change()),
    };
    match result {
        Ok(_) => tracing::debug!("published the root CA"),
        // Created meanwhile (the watch brings us back), changed under us (likewise),
        // or the namespace started terminating.
        Err(kube::Error::Api(e)) if matches!(e.code, 403 | 404 | 409) => {}
        Err(e) => return Err(Error::api(&context("writing"), e)),
    }
    Ok(Action::await_change())
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(error = %err, "root CA publishing failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_copy_holding_exactly_the_ca_is_left_alone() {
        let good = desired("ns", "PEM");
        assert!(!needs_update(&good, "PEM"));
        assert!(
            needs_update(&good, "OTHER PEM"),
            "a rotated CA is republished"
        );
        let mut extra = good.clone();
        extra
            .data
            .get_or_insert_default()
            .insert("x".into(), "y".into());
        assert!(needs_update(&extra, "PEM"), "foreign keys are dropped");
        let mut emptied = good;
        emptied.data = None;
        assert!(needs_update(&emptied, "PEM"));
    }
}
