//! What the server computes from stored objects, which carry whatever clients
//! wrote (the API server does not check quantities, for one): table rows for
//! `kubectl get` and ResourceQuota usage.

use std::sync::OnceLock;

use api::k8s_openapi::jiff::Timestamp;
use api::resource::Registry;
use api::{quota, table};
use serde_json::Value;

use crate::{choose, split};

/// Quota resource names, the ones with logic behind them and a few without.
const QUOTA_NAMES: &[&str] = &[
    "pods",
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
    "ephemeral-storage",
    "requests.ephemeral-storage",
    "limits.ephemeral-storage",
    "services",
    "services.nodeports",
    "services.loadbalancers",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "requests.storage",
    "count/deployments.apps",
    "count/pods",
    "example.com/widgets",
];

/// `group/kind \0 object`: one cell per column, and quota usage, never panic.
pub fn stored_object(data: &[u8]) {
    let (name, doc) = split(data);
    let Some(resource) = choose(resources(), name) else {
        return;
    };
    let Ok(obj) = serde_json::from_slice::<Value>(doc) else {
        return;
    };
    let (group, kind) = resource.split_once('/').unwrap_or(("", resource));
    let now = Timestamp::from_second(1_750_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let cells = table::row_cells(group, kind, &obj, now);
    assert_eq!(
        cells.len(),
        table::column_definitions(group, kind).len(),
        "cells and columns of {resource} differ in number"
    );
    let _ = table::row_conditions(group, kind, &obj);

    let registry = registry();
    let Some(info) = registry
        .all()
        .iter()
        .find(|r| r.group == group && r.kind == kind)
    else {
        return;
    };
    for name in QUOTA_NAMES {
        let _ = quota::usage(group, &info.plural, &obj, name);
    }
    // The object's own `spec` as a quota spec: scopes and scope selectors.
    if let Some(spec) = obj.get("spec") {
        let _ = quota::in_scope(spec, group, &info.plural, &obj);
    }
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::builtin)
}

/// `group/kind` of every built-in resource (`/Pod` for core).
fn resources() -> &'static [String] {
    static RESOURCES: OnceLock<Vec<String>> = OnceLock::new();
    RESOURCES.get_or_init(|| {
        let mut names: Vec<String> = registry()
            .all()
            .iter()
            .map(|r| format!("{}/{}", r.group, r.kind))
            .collect();
        names.sort();
        names.dedup();
        names
    })
}
