//! Finishing a namespace deletion: delete everything in it, then drop the
//! `kubernetes` finalizer and the namespace itself. Runs inside the API server until
//! the controller manager (a later issue) takes over this job.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::rest::delete::{DeleteOptions, delete_object};
use crate::serve::State;

/// Starts finalizing namespace `name` in the background.
pub(crate) fn spawn_finalizer(state: Arc<State>, name: String) {
    tokio::spawn(async move {
        let mut shutdown = state.shutdown.clone();
        loop {
            match finalize_once(&state, &name).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(namespace = %name, error = %e.message, "namespace finalization step failed")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.wait_for(|v| *v) => return,
            }
        }
    });
}

/// One pass; true when the namespace is gone.
async fn finalize_once(state: &State, name: &str) -> Result<bool, api::status::ApiError> {
    let opts = DeleteOptions {
        grace_period: Some(0),
        propagation: Some("Background".into()),
        ..Default::default()
    };
    let mut remaining = 0usize;
    for res in state.registry.all().iter().filter(|r| r.namespaced) {
        let page = state
            .storage
            .list(res, &res.namespace_prefix(name), None, None, 0, &|_| true)
            .await?;
        for obj in page.items {
            let Some(n) = crate::object::name(&obj) else {
                continue;
            };
            remaining += 1;
            match delete_object(state, res, Some(name), n, &opts).await {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    if remaining > 0 {
        // Deleted objects may still be held by finalizers; look again next pass.
        let mut left = 0;
        for res in state.registry.all().iter().filter(|r| r.namespaced) {
            left += state
                .storage
                .store
                .count(&res.namespace_prefix(name))
                .await
                .map_err(crate::storage::generic_store_error)?;
        }
        if left > 0 {
            return Ok(false);
        }
    }
    let Some(ns_res) = state.registry.lookup("", "v1", "namespaces").cloned() else {
        return Ok(true);
    };
    let ns = match state.storage.get(&ns_res, None, name).await {
        Ok(ns) => ns,
        Err(e) if e.code == 404 => return Ok(true),
        Err(e) => return Err(e),
    };
    let rv =
        crate::storage::parse_rv(crate::object::meta_str(&ns, "resourceVersion").unwrap_or("0"))?;
    let spec_finalizers: Vec<Value> = ns
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|f| *f != "kubernetes").cloned().collect())
        .unwrap_or_default();
    if spec_finalizers.is_empty() && crate::object::finalizers(&ns).is_empty() {
        match state.storage.delete(&ns_res, None, name, Some(rv)).await {
            Ok(_) => Ok(true),
            Err(e) if e.code == 404 => Ok(true),
            Err(e) if e.reason == "Conflict" => Ok(false),
            Err(e) => Err(e),
        }
    } else {
        let mut new = ns.clone();
        crate::object::set(&mut new, "spec.finalizers", json!(spec_finalizers));
        match state.storage.update(&ns_res, None, name, &new, rv).await {
            Ok(_) | Err(_) => Ok(false),
        }
    }
}
