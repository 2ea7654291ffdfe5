//! Server-side apply and `metadata.managedFields` on the write path, wired
//! the way kube-apiserver wires its field manager into its handlers
//! (`endpoints/handlers/{create,update,patch}.go`):
//!
//! - every create, update and non-apply patch records its manager — the
//!   `fieldManager` parameter, else the one derived from the `User-Agent` —
//!   with an `Update` entry ([`record_update`], called by the write path
//!   once the object is defaulted and before admission);
//! - `PATCH` with `application/apply-patch+yaml` merges the configuration
//!   into the live object for its manager, with conflicts, `force`, pruning
//!   and creation of missing objects ([`Ctx::server_side_apply`]);
//! - writes the API server makes itself (bootstrap objects, RBAC
//!   reconciliation and aggregation) are recorded as [`API_SERVER_MANAGER`],
//!   the name kube-apiserver's own loopback client gets.
//!
//! Field managers are built per group, version, kind and subresource and
//! cached ([`field_manager`]); a custom resource's is rebuilt when its CRD
//! publishes a new served version (a new [`CustomResource`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock, Weak};

use api::resource::ResourceInfo;
use api::status::{ApiError, FieldError};
use bytes::Bytes;
use jiff::Timestamp;
use managed_fields::{FieldManager, FieldPath, FieldSet, Schema};
use serde_json::Value;

use super::Ctx;
use super::write::{RETRIES, Requester, create_object_by, update_object_by};
use crate::crd::CustomResource;
use crate::handler::Reply;
use crate::negotiate;
use crate::object::{self, meta_mut};
use crate::serve::State;

/// The manager of writes the API server makes itself.
pub(crate) const API_SERVER_MANAGER: &str = "kube-apiserver";

/// How a write is recorded in `metadata.managedFields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldOwner<'a> {
    /// A create, update or non-apply patch by this manager.
    Update(&'a str),
    /// A server-side apply: the object already carries its managed fields.
    Applied,
}

/// A cached field manager and what it was built from.
struct Cached {
    /// The custom resource version it was built for (`None` for built-ins).
    /// A weak reference keeps the allocation, so a pointer match is the same
    /// publication of the CRD.
    custom: Option<Weak<CustomResource>>,
    manager: Arc<FieldManager>,
}

impl Cached {
    fn built_from(&self, custom: Option<&Arc<CustomResource>>) -> bool {
        match (&self.custom, custom) {
            (None, None) => true,
            (Some(weak), Some(c)) => std::ptr::eq(weak.as_ptr(), Arc::as_ptr(c)),
            _ => false,
        }
    }
}

/// Field managers by `group/version/kind/subresource`. Process-wide: a
/// built-in's manager is a pure function of the key, and a custom
/// resource's entry is checked against the served version it came from.
static CACHE: LazyLock<RwLock<HashMap<String, Cached>>> = LazyLock::new(Default::default);

/// The field manager of writes to `res` through `subresource` (`""` for the
/// object itself); `custom` is the served custom resource version, if `res`
/// is one.
pub(crate) fn field_manager(
    res: &ResourceInfo,
    custom: Option<&Arc<CustomResource>>,
    subresource: &str,
) -> Arc<FieldManager> {
    let key = format!("{}/{}/{}/{subresource}", res.group, res.version, res.kind);
    {
        let cache = CACHE.read().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(&key).filter(|c| c.built_from(custom)) {
            return c.manager.clone();
        }
    }
    let manager = Arc::new(build(res, custom.map(|c| &**c), subresource));
    let entry = Cached {
        custom: custom.map(Arc::downgrade),
        manager: manager.clone(),
    };
    CACHE
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, entry);
    manager
}

fn build(res: &ResourceInfo, custom: Option<&CustomResource>, subresource: &str) -> FieldManager {
    let (schema, top_level) = match custom {
        Some(c) => match &c.raw_schema {
            Some(s) => (Schema::custom(s.clone()), property_names(s)),
            None => (Schema::deduced(), Vec::new()),
        },
        None => match Schema::builtin(&res.definition) {
            Some(s) => (
                s,
                api::schema::definitions()
                    .get(&res.definition)
                    .map(property_names)
                    .unwrap_or_default(),
            ),
            None => (Schema::deduced(), Vec::new()),
        },
    };
    let fm = FieldManager::new(res.api_version(), res.kind.clone(), schema)
        .with_reset_fields(reset_fields(res, &top_level, subresource));
    if subresource.is_empty() {
        fm
    } else {
        fm.with_subresource(subresource)
    }
}

fn property_names(schema: &Value) -> Vec<String> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// What a write through `subresource` cannot set, so nobody gains ownership
/// of it there (the strategies' `GetResetFields`): the object itself leaves
/// `status` alone when status is a subresource; the status subresource
/// changes nothing but `status`.
fn reset_fields(res: &ResourceInfo, top_level: &[String], subresource: &str) -> FieldSet {
    let field = |name: &str| FieldPath::fields([name.to_owned()]);
    match subresource {
        "" if res.has_subresource("status") => FieldSet::from_paths([field("status")]),
        "status" => {
            let mut names = vec!["metadata", "spec"];
            names.extend(
                top_level
                    .iter()
                    .map(String::as_str)
                    .filter(|n| !["apiVersion", "kind", "status", "metadata", "spec"].contains(n)),
            );
            FieldSet::from_paths(names.into_iter().map(field))
        }
        _ => FieldSet::new(),
    }
}

/// Records a non-apply write by `manager` through `subresource`: `new` (the
/// object about to be persisted, defaulted) with its `metadata.managedFields`
/// brought up to date against `old` (`None` for a create).
pub(crate) fn record_update(
    state: &State,
    res: &ResourceInfo,
    subresource: &str,
    old: Option<&Value>,
    new: Value,
    manager: &str,
) -> Value {
    let custom = state.registry.custom(res);
    field_manager(res, custom.as_ref(), subresource).update(old, new, manager, Timestamp::now())
}

/// `<Kind>.meta.k8s.io "" is invalid: ...` (422): Kubernetes' answer to bad
/// `CreateOptions`, `UpdateOptions` or `PatchOptions`.
pub(crate) fn invalid_options(kind: &str, errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid("meta.k8s.io", kind, "", errors)
}

/// The `force` parameter as Kubernetes reads a boolean query parameter:
/// absent is `None`, `0` and `false` (any case) are false, anything else true.
fn force_param(value: Option<&str>) -> Option<bool> {
    value.map(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

impl Ctx<'_> {
    /// The field manager of a non-apply write, checked as Kubernetes checks
    /// `options` (`CreateOptions`, `UpdateOptions` or `PatchOptions`: only a
    /// patch may carry `force`, and only an apply patch may set it).
    pub(super) fn update_manager(&self, options: &str) -> Result<String, ApiError> {
        let param = self.info.param("fieldManager");
        let mut errors = Vec::new();
        if options == "PatchOptions" && self.info.param("force").is_some() {
            errors.push(FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            ));
        }
        errors.extend(managed_fields::validate_field_manager(
            param.unwrap_or_default(),
            false,
        ));
        if !errors.is_empty() {
            return Err(invalid_options(options, errors));
        }
        Ok(managed_fields::manager_or_user_agent(
            param,
            self.user_agent,
        ))
    }

    /// `PATCH` with `application/apply-patch+yaml`: merges the configuration
    /// into the live object for its manager (`fieldManager`, required),
    /// creating the object when there is none, and writes it with the live
    /// object's `resourceVersion` as precondition, trying again when another
    /// write came first.
    pub(super) async fn server_side_apply(
        &mut self,
        body: &Bytes,
        status_only: bool,
    ) -> Result<Reply, ApiError> {
        let manager = self
            .info
            .param("fieldManager")
            .unwrap_or_default()
            .to_owned();
        let errors = managed_fields::validate_field_manager(&manager, true);
        if !errors.is_empty() {
            return Err(invalid_options("PatchOptions", errors));
        }
        let force = force_param(self.info.param("force")).unwrap_or(false);
        let dry_run = self.dry_run()?;
        let config = negotiate::decode_apply(body)?;
        // A configuration naming a resourceVersion asks for exactly that one.
        let pinned = config
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty());
        let fm = field_manager(&self.res, self.custom.as_ref(), &self.info.subresource);
        let name = self.name().to_owned();
        let mut last_err = None;
        for _ in 0..RETRIES {
            let live = match self
                .state
                .storage
                .get(&self.res, self.namespace(), &name)
                .await
            {
                Ok(v) => Some(v),
                Err(e) if e.code == 404 && self.info.subresource.is_empty() => None,
                Err(e) => return Err(e),
            };
            let applied = fm
                .apply(live.as_ref(), &config, &manager, force, Timestamp::now())
                .map_err(|e| e.to_api_error())?;
            let (result, retry_on) = match live {
                None => (
                    self.create_applied(applied.object, dry_run).await,
                    "AlreadyExists",
                ),
                Some(live) => (
                    self.update_applied(live, applied.object, status_only, dry_run)
                        .await,
                    "Conflict",
                ),
            };
            match result {
                Ok(reply) => return Ok(reply),
                Err(e) if e.reason == retry_on && !pinned => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err
            .unwrap_or_else(|| ApiError::conflict(&self.res.group, &self.res.plural, &name)))
    }

    /// The name and namespace of an applied object must be the request's.
    fn check_applied_identity(&self, obj: &Value) -> Result<(), ApiError> {
        let name = self.name();
        let obj_name = object::name(obj).unwrap_or_default();
        if obj_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({obj_name}) does not match the name on the URL ({name})"
            )));
        }
        if let (Some(ns), Some(obj_ns)) = (self.namespace(), object::namespace(obj))
            && !obj_ns.is_empty()
            && obj_ns != ns
        {
            return Err(ApiError::bad_request(format!(
                "the namespace of the object ({obj_ns}) does not match the namespace on the request ({ns})"
            )));
        }
        Ok(())
    }

    /// Creates the object an apply made from nothing.
    async fn create_applied(&mut self, mut obj: Value, dry_run: bool) -> Result<Reply, ApiError> {
        self.refuse_create_while_terminating()?;
        if let Some(uid) = object::meta_str(&obj, "uid").filter(|u| !u.is_empty()) {
            return Err(ApiError::conflict_message(
                &self.res.group,
                &self.res.plural,
                self.name(),
                &format!(
                    "uid mismatch: the provided object specified uid {uid}, and no existing object was found"
                ),
            ));
        }
        self.check_applied_identity(&obj)?;
        {
            let m = meta_mut(&mut obj);
            match self.namespace() {
                Some(ns) => {
                    m.insert("namespace".into(), ns.into());
                }
                None => {
                    m.remove("namespace");
                }
            }
            m.remove("resourceVersion");
        }
        self.validate_patched(&mut obj, None)?;
        crate::rbac::escalation::check(self, &obj, None)?;
        let mut by = Requester {
            who: self.who,
            subresource: &self.info.subresource,
            warnings: &mut self.warnings,
            owner: FieldOwner::Applied,
        };
        let created = create_object_by(
            self.state,
            &self.res,
            &*self.strategy,
            obj,
            dry_run,
            Some(&mut by),
        )
        .await?;
        Ok(Reply::Json(201, self.render_object(created)))
    }

    /// Writes what an apply merged into the live object.
    async fn update_applied(
        &mut self,
        live: Value,
        mut obj: Value,
        status_only: bool,
        dry_run: bool,
    ) -> Result<Reply, ApiError> {
        self.check_applied_identity(&obj)?;
        self.validate_patched(&mut obj, None)?;
        crate::rbac::escalation::check(self, &obj, Some(&live))?;
        let mut by = Requester {
            who: self.who,
            subresource: &self.info.subresource,
            warnings: &mut self.warnings,
            owner: FieldOwner::Applied,
        };
        let (code, out) = update_object_by(
            self.state,
            &self.res,
            &*self.strategy,
            live,
            obj,
            status_only,
            dry_run,
            Some(&mut by),
        )
        .await?;
        Ok(Reply::Json(code, self.render_object(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn builtin(group: &str, version: &str, plural: &str) -> Arc<ResourceInfo> {
        api::resource::Registry::builtin()
            .lookup(group, version, plural)
            .cloned()
            .expect("built-in resource")
    }

    #[test]
    fn force_reads_like_a_kubernetes_boolean_parameter() {
        assert_eq!(force_param(None), None);
        assert_eq!(force_param(Some("true")), Some(true));
        assert_eq!(force_param(Some("")), Some(true));
        assert_eq!(force_param(Some("0")), Some(false));
        assert_eq!(force_param(Some("FALSE")), Some(false));
    }

    #[test]
    fn status_is_reset_on_the_object_and_everything_else_on_status() {
        let deployments = builtin("apps", "v1", "deployments");
        let main = reset_fields(&deployments, &[], "");
        assert!(main.has(&FieldPath::fields(["status"]).0));
        assert!(!main.has(&FieldPath::fields(["spec"]).0));
        let top = ["apiVersion", "kind", "metadata", "spec", "status", "extra"]
            .map(String::from)
            .to_vec();
        let status = reset_fields(&deployments, &top, "status");
        for kept in ["metadata", "spec", "extra"] {
            assert!(status.has(&FieldPath::fields([kept]).0), "{kept}");
        }
        assert!(!status.has(&FieldPath::fields(["status"]).0));
        let configmaps = builtin("", "v1", "configmaps");
        assert!(reset_fields(&configmaps, &[], "").is_empty());
    }

    #[test]
    fn built_in_field_managers_are_built_once_per_kind_and_subresource() {
        let deployments = builtin("apps", "v1", "deployments");
        let a = field_manager(&deployments, None, "");
        let b = field_manager(&deployments, None, "");
        assert!(Arc::ptr_eq(&a, &b));
        let scale = field_manager(&deployments, None, "scale");
        assert!(!Arc::ptr_eq(&a, &scale));
        // The manager types Deployments: replicas set by an update are owned.
        let created = a.update(
            None,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"replicas": 2}}),
            "kubectl-create",
            Timestamp::now(),
        );
        let entries =
            managed_fields::decode_entries(&created["metadata"]["managedFields"]).expect("entries");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].manager, "kubectl-create");
        assert!(
            entries[0]
                .fields
                .has(&FieldPath::fields(["spec", "replicas"]).0)
        );
    }

    fn crontabs(raw_schema: Value) -> Arc<CustomResource> {
        let mut info = (*builtin("", "v1", "configmaps")).clone();
        info.group = "stable.example.com".into();
        info.kind = "CronTab".into();
        info.plural = "crontabs".into();
        info.definition = String::new();
        info.subresources = vec!["status".into()];
        Arc::new(CustomResource {
            info: Arc::new(info),
            crd: "crontabs.stable.example.com".into(),
            storage_version: "v1".into(),
            schema: None,
            raw_schema: Some(raw_schema),
            status: true,
            scale: None,
            columns: Vec::new(),
            selectable: Vec::new(),
            terminating: false,
            warning: None,
        })
    }

    fn owned_after_create(fm: &FieldManager, obj: Value) -> Vec<managed_fields::FieldPath> {
        let created = fm.update(None, obj, "test", Timestamp::now());
        managed_fields::decode_entries(&created["metadata"]["managedFields"])
            .expect("entries")
            .iter()
            .flat_map(|e| e.fields.paths())
            .collect()
    }

    #[test]
    fn custom_resource_field_managers_follow_their_crd() {
        let list = |list_type: &str| {
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
                "ports": {"type": "array", "x-kubernetes-list-type": list_type,
                          "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "properties": {"name": {"type": "string"}}}}
            }}}})
        };
        let first = crontabs(list("map"));
        let obj = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
                         "metadata": {"name": "a"}, "spec": {"ports": [{"name": "http"}]}});
        let fm = field_manager(&first.info, Some(&first), "");
        assert!(Arc::ptr_eq(
            &fm,
            &field_manager(&first.info, Some(&first), "")
        ));
        let keyed = owned_after_create(&fm, obj.clone());
        assert!(
            keyed
                .iter()
                .any(|p| p.to_string().contains(r#"[name="http"]"#)),
            "{keyed:?}"
        );
        // The CRD changes: a new publication gets a manager of its own schema.
        let second = crontabs(list("atomic"));
        let fm2 = field_manager(&second.info, Some(&second), "");
        assert!(!Arc::ptr_eq(&fm, &fm2));
        let atomic = owned_after_create(&fm2, obj);
        assert!(
            atomic.iter().all(|p| !p.to_string().contains("[name=")),
            "{atomic:?}"
        );
    }

    #[test]
    fn custom_resource_definitions_are_typed_by_their_shape() {
        // No OpenAPI definition of CRDs is built in: their fields are deduced
        // (objects granular, lists atomic, as `spec.versions` is in Kubernetes).
        let crds = builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions");
        let fm = field_manager(&crds, None, "");
        let owned = owned_after_create(
            &fm,
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "crontabs.stable.example.com"},
                   "spec": {"group": "stable.example.com",
                            "versions": [{"name": "v1", "served": true, "storage": true}]}}),
        );
        let owned: Vec<String> = owned.iter().map(ToString::to_string).collect();
        assert!(owned.contains(&".spec.group".to_owned()), "{owned:?}");
        assert!(owned.contains(&".spec.versions".to_owned()), "{owned:?}");
    }
}
