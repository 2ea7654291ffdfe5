//! The clusterrole-aggregation controller's job, inside the API server: whenever
//! the RBAC index changes, an aggregated ClusterRole whose stored rules differ from
//! the union of the roles it selects gets that union written into it, so that
//! `kubectl get clusterrole view -o yaml` shows what the role grants. (Evaluation
//! does not wait for this write: the index resolves aggregation itself.)

use std::sync::Arc;

use serde_json::json;

use super::RBAC_GROUP;
use super::objects::RoleObject;
use super::rule::PolicyRule;
use crate::rest::write::update_object;
use crate::serve::State;
use crate::strategy;

async fn write(state: &State, name: &str, rules: &[PolicyRule]) {
    let Some(res) = state
        .registry
        .lookup(RBAC_GROUP, "v1", "clusterroles")
        .cloned()
    else {
        return;
    };
    let old = match state.storage.get(&res, None, name).await {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(role = name, error = %e.message, "aggregated role gone");
            return;
        }
    };
    let current = RoleObject::decode(&old);
    if current
        .as_ref()
        .is_none_or(|r| !r.is_aggregated() || r.rules == rules)
    {
        return;
    }
    let mut new = old.clone();
    new["rules"] = json!(rules);
    match update_object(
        state,
        &res,
        strategy::for_resource(&res),
        old,
        new,
        false,
        false,
    )
    .await
    {
        Ok(_) => tracing::debug!(
            role = name,
            rules = rules.len(),
            "aggregated cluster role updated"
        ),
        // A concurrent change is seen again through the index.
        Err(e) if e.code == 409 || e.code == 404 => {}
        Err(e) => {
            tracing::warn!(role = name, error = %e.message, "updating an aggregated cluster role failed")
        }
    }
}

/// Keeps aggregated ClusterRoles' stored rules up to date until shutdown.
pub(crate) async fn run(state: Arc<State>) {
    let mut changes = state.rbac.changes();
    let mut shutdown = state.shutdown.clone();
    loop {
        let snapshot = state.rbac.snapshot();
        for (name, rules) in snapshot.stale_aggregations() {
            write(&state, name, rules).await;
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}
