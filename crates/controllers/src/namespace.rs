//! The namespace controller (Kubernetes' `pkg/controller/namespace`): when a
//! namespace is terminating, delete everything in it (every namespaced resource the
//! API discovery shows, custom ones included), report progress in its status
//! conditions, and once it is empty remove the `kubernetes` finalizer through
//! `namespaces/{name}/finalize`; the namespace is then deleted.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::garbagecollector::discovery;
use crate::{Context, Error};

mod conditions;
mod content;

/// The spec finalizer this controller is responsible for.
const FINALIZER: &str = "kubernetes";

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    Controller::new(
        Api::<Namespace>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {})
    .await;
    Ok(())
}

fn spec_finalizers(ns: &Namespace) -> Vec<String> {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
}

#[tracing::instrument(skip_all, fields(object = ns.metadata.name.as_deref().unwrap_or_default()))]
async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    if !spec_finalizers(&ns).iter().any(|f| f == FINALIZER) {
        // Finalized here already; other finalizers are someone else's.
        if spec_finalizers(&ns).is_empty()
            && ns.metadata.finalizers.as_ref().is_none_or(Vec::is_empty)
        {
            delete_again(&api, &name).await?;
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        return Ok(Action::await_change());
    }
    let served = match discovery::served(&ctx.client).await {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            set_conditions(
                &api,
                &ns,
                conditions::conditions(&Default::default(), Some(&msg)),
            )
            .await;
            return Err(Error::Api {
                context: "discovering resources".into(),
                source: e,
            });
        }
    };
    let summary = content::delete_all(&ctx.client, &name, &served).await;
    set_conditions(&api, &ns, conditions::conditions(&summary, None)).await;
    if !summary.empty() {
        tracing::debug!(remaining = ?summary.remaining, failures = ?summary.failures, "namespace content remains");
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    finalize(&api, &name).await?;
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// Removes the `kubernetes` spec finalizer through the `finalize` subresource.
async fn finalize(api: &Api<Namespace>, name: &str) -> Result<(), Error> {
    for _ in 0..5 {
        let Some(mut ns) = api
            .get_opt(name)
            .await
            .map_err(|e| Error::api("getting namespace", e))?
        else {
            return Ok(());
        };
        let left: Vec<String> = spec_finalizers(&ns)
            .into_iter()
            .filter(|f| f != FINALIZER)
            .collect();
        ns.spec.get_or_insert_with(Default::default).finalizers = Some(left);
        tracing::debug!("removing the kubernetes finalizer");
        match api
            .replace_subresource("finalize", name, &PostParams::default(), &ns)
            .await
        {
            Ok(done) => {
                if spec_finalizers(&done).is_empty()
                    && done.metadata.finalizers.as_ref().is_none_or(Vec::is_empty)
                {
                    delete_again(api, name).await?;
                }
                return Ok(());
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(Error::api("finalizing namespace", e)),
        }
    }
    Ok(())
}

/// Deletes a finalized namespace (the API server removes it once nothing holds it).
async fn delete_again(api: &Api<Namespace>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(Error::api("deleting finalized namespace", e)),
    }
}

async fn set_conditions(
    api: &Api<Namespace>,
    ns: &Namespace,
    wanted: Vec<k8s_openapi::api::core::v1::NamespaceCondition>,
) {
    let current = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let Some(conds) = conditions::merge(&current, wanted) else {
        return;
    };
    let mut new = ns.clone();
    new.status.get_or_insert_with(Default::default).conditions = Some(conds);
    let name = ns.metadata.name.clone().unwrap_or_default();
    if let Err(e) = api
        .replace_status(&name, &PostParams::default(), &new)
        .await
    {
        tracing::debug!(error = %e, "updating namespace conditions failed");
    }
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(error = %err, "namespace reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
