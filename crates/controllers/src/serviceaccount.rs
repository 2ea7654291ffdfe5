//! The serviceaccount controller: every namespace that is not terminating has a
//! `default` ServiceAccount; it is created again when deleted (Kubernetes'
//! `pkg/controller/serviceaccount/serviceaccounts_controller.go`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::{Context, Error};

/// Names of the service accounts every namespace gets.
const DEFAULT_ACCOUNTS: &[&str] = &["default"];

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let accounts: Api<ServiceAccount> = Api::all(ctx.client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .watches(accounts, watcher::Config::default(), |sa| {
            let ns = sa.metadata.namespace.clone()?;
            DEFAULT_ACCOUNTS
                .contains(&sa.metadata.name.as_deref().unwrap_or_default())
                .then(|| ObjectRef::new(&ns))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

#[tracing::instrument(skip_all, fields(object = ns.metadata.name.as_deref().unwrap_or_default()))]
async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    for account in DEFAULT_ACCOUNTS {
        let existing = api.get_opt(account).await.map_err(|e| Error::Api {
            context: format!("getting serviceaccount {name}/{account}"),
            source: e,
        })?;
        if existing.is_some() {
            continue;
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some((*account).to_string()),
                namespace: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::debug!(account, "created service account"),
            // Already there, or the namespace started terminating meanwhile.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 || e.code == 404 => {}
            Err(e) => {
                return Err(Error::Api {
                    context: format!("creating serviceaccount {name}/{account}"),
                    source: e,
                });
            }
        }
    }
    Ok(Action::await_change())
}

fn error_policy(_ns: Arc<Namespace>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(error = %err, "serviceaccount reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}
