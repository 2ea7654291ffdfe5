//! Creates the default roles and bindings (cluster-wide and in `kube-system`) at
//! every start, and reconciles those that
//! carry `rbac.authorization.kubernetes.io/autoupdate: "true"` as Kubernetes'
//! bootstrap does: missing labels, annotations, rules, aggregation selectors and
//! subjects are added (nothing a user added is removed); a binding whose role
//! reference changed is recreated.

use std::sync::Arc;
use std::time::Duration;

use api::resource::ResourceInfo;
use api::status::ApiError;
use serde_json::{Value, json};

use super::RBAC_GROUP;
use super::objects::{Binding, RoleObject};
use super::policy::{self, AUTOUPDATE};
use super::rule;
use crate::rest::write::{create_object, update_object};
use crate::serve::State;
use crate::strategy;

/// How long the server waits for its index to hold the defaults before it is ready.
const CATCH_UP: Duration = Duration::from_secs(10);

fn resource(state: &State, plural: &str) -> Result<Arc<ResourceInfo>, crate::Error> {
    state
        .registry
        .lookup(RBAC_GROUP, "v1", plural)
        .cloned()
        .ok_or_else(|| crate::Error::Config(format!("built-in resource {plural} missing")))
}

fn failed(what: &str, name: &str) -> impl Fn(ApiError) -> crate::Error {
    let context = format!("reconciling default {what} {name}");
    move |e| crate::Error::Config(format!("{context}: {}", e.message))
}

/// Adds `expected`'s labels and annotations the object lacks; true when it did.
fn merge_metadata(obj: &mut Value, expected: &Value) -> bool {
    let mut changed = false;
    for field in ["labels", "annotations"] {
        let Some(want) = expected["metadata"][field].as_object() else {
            continue;
        };
        let meta = crate::object::meta_mut(obj);
        let have = meta
            .entry(field)
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(have) = have {
            for (k, v) in want {
                if !have.contains_key(k) {
                    have.insert(k.clone(), v.clone());
                    changed = true;
                }
            }
        }
    }
    changed
}

fn autoupdate(obj: &Value) -> bool {
    obj["metadata"]["annotations"][AUTOUPDATE].as_str() != Some("false")
}

/// Creates `expected`, or returns the stored object when it exists.
async fn existing_or_create(
    state: &State,
    res: &ResourceInfo,
    expected: &Value,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, crate::Error> {
    match state.storage.get(res, namespace, name).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.code == 404 => {
            let strategy = strategy::for_resource(res);
            match create_object(state, res, strategy, expected.clone(), false).await {
                Ok(_) => Ok(None),
                Err(e) if e.reason == "AlreadyExists" => Ok(None),
                Err(e) => Err(failed(&res.kind, name)(e)),
            }
        }
        Err(e) => Err(failed(&res.kind, name)(e)),
    }
}

async fn update(
    state: &State,
    res: &ResourceInfo,
    old: Value,
    new: Value,
    name: &str,
) -> Result<(), crate::Error> {
    let strategy = strategy::for_resource(res);
    update_object(state, res, strategy, old, new, false, false)
        .await
        .map(|_| ())
        .map_err(failed(&res.kind, name))
}

async fn reconcile_role(
    state: &State,
    res: &ResourceInfo,
    role: &policy::DefaultRole,
) -> Result<(), crate::Error> {
    let expected = role.to_object();
    let stored = existing_or_create(state, res, &expected, role.namespace, role.name).await?;
    let Some(old) = stored.filter(autoupdate) else {
        return Ok(());
    };
    let mut new = old.clone();
    let mut changed = merge_metadata(&mut new, &expected);
    if let Some(key) = role.aggregate {
        let selector = json!({"matchLabels": {key: "true"}});
        let selectors = new
            .pointer_mut("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array_mut);
        match selectors {
            Some(list) if list.contains(&selector) => {}
            Some(list) => {
                list.push(selector);
                changed = true;
            }
            None => {
                new["aggregationRule"] = json!({"clusterRoleSelectors": [selector]});
                changed = true;
            }
        }
    } else {
        let have = RoleObject::decode(&old)
            .map(|s| s.rules)
            .unwrap_or_default();
        if let Err(missing) = rule::covers(&have, &role.rules) {
            let mut rules = have;
            rules.extend(rule::compact(missing));
            new["rules"] = json!(rules);
            changed = true;
        }
    }
    if changed {
        tracing::info!(role = role.name, namespace = ?role.namespace, "updating a default role");
        update(state, res, old, new, role.name).await?;
    }
    Ok(())
}

async fn reconcile_binding(
    state: &State,
    res: &ResourceInfo,
    binding: &policy::DefaultBinding,
) -> Result<(), crate::Error> {
    let expected = binding.to_object();
    let (namespace, name) = (binding.namespace, binding.name);
    let stored = existing_or_create(state, res, &expected, namespace, name).await?;
    let Some(old) = stored.filter(autoupdate) else {
        return Ok(());
    };
    let decoded = Binding::decode(&old);
    let same_role = decoded
        .as_ref()
        .is_some_and(|b| b.role_ref.kind == binding.role_kind() && b.role_ref.name == binding.role);
    if !same_role {
        // roleRef is immutable: recreate, as Kubernetes does.
        tracing::info!(binding = name, namespace = ?namespace, "recreating a default binding");
        state
            .storage
            .delete(res, namespace, name, None)
            .await
            .map_err(failed(&res.kind, name))?;
        existing_or_create(state, res, &expected, namespace, name).await?;
        return Ok(());
    }
    let mut new = old.clone();
    let mut changed = merge_metadata(&mut new, &expected);
    let mut subjects = decoded.map(|b| b.subjects).unwrap_or_default();
    for s in &binding.subjects {
        if !subjects
            .iter()
            .any(|h| h.kind == s.kind && h.name == s.name && h.namespace == s.namespace)
        {
            subjects.push(s.clone());
            changed = true;
        }
    }
    if changed {
        new["subjects"] = json!(subjects);
        tracing::info!(binding = name, namespace = ?namespace, "updating a default binding");
        update(state, res, old, new, name).await?;
    }
    Ok(())
}

/// Creates or reconciles every default role and binding, then waits until the RBAC
/// index holds them, so that components starting at readiness are authorized.
/// What the defaults granted before the Node authorizer existed, taken back from
/// data dirs made by earlier versions: the `system:nodes` group in the
/// `system:node` binding (Kubernetes removes it the same way when Node
/// authorization is on) and the `system:skiff:node` role and binding.
async fn retire_superseded(
    state: &State,
    cluster_roles: &ResourceInfo,
    cluster_bindings: &ResourceInfo,
) -> Result<(), crate::Error> {
    if !state
        .config
        .authorization_modes
        .contains(&crate::AuthorizationMode::Node)
    {
        return Ok(());
    }
    if let Ok(old) = state
        .storage
        .get(cluster_bindings, None, "system:node")
        .await
    {
        let is_nodes = |s: &Value| s["kind"] == "Group" && s["name"] == "system:nodes";
        let autoupdate = old
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(AUTOUPDATE))
            .and_then(Value::as_str)
            != Some("false");
        if autoupdate
            && old["subjects"]
                .as_array()
                .is_some_and(|s| s.iter().any(is_nodes))
        {
            let mut new = old.clone();
            if let Some(subjects) = new["subjects"].as_array_mut() {
                subjects.retain(|s| !is_nodes(s));
            }
            update_object(
                state,
                cluster_bindings,
                strategy::for_resource(cluster_bindings),
                old,
                new,
                false,
                false,
            )
            .await
            .map_err(failed("clusterrolebinding", "system:node"))?;
        }
    }
    for res in [cluster_bindings, cluster_roles] {
        let ours = state
            .storage
            .get(res, None, "system:skiff:node")
            .await
            .ok()
            .is_some_and(|o| {
                o.pointer("/metadata/labels/kubernetes.io~1bootstrapping")
                    .and_then(Value::as_str)
                    == Some("rbac-defaults")
            });
        if ours {
            let opts = crate::rest::delete::DeleteOptions::default();
            match crate::rest::delete::delete_object(state, res, None, "system:skiff:node", &opts)
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(failed(&res.plural, "system:skiff:node")(e)),
            }
        }
    }
    Ok(())
}

pub(crate) async fn ensure_defaults(state: &State) -> Result<(), crate::Error> {
    let (cluster_roles, roles) = (resource(state, "clusterroles")?, resource(state, "roles")?);
    for role in policy::default_roles() {
        let res = if role.namespace.is_some() {
            &roles
        } else {
            &cluster_roles
        };
        reconcile_role(state, res, &role).await?;
    }
    let cluster_bindings = resource(state, "clusterrolebindings")?;
    let bindings = resource(state, "rolebindings")?;
    for binding in policy::default_bindings() {
        let res = if binding.namespace.is_some() {
            &bindings
        } else {
            &cluster_bindings
        };
        reconcile_binding(state, res, &binding).await?;
    }
    retire_superseded(state, &cluster_roles, &cluster_bindings).await?;
    let revision = state
        .storage
        .current_revision()
        .await
        .map_err(|e| crate::Error::Config(e.message))?;
    if !state.rbac.wait_for(revision, CATCH_UP).await {
        return Err(crate::Error::Config(
            "the RBAC index did not catch up with the default roles".into(),
        ));
    }
    Ok(())
}
