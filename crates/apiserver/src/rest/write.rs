//! Mutating verbs: create, update (also of the status subresource), patch, delete and
//! deletecollection, with the generic metadata rules of Kubernetes' registry store.

use api::resource::ResourceInfo;
use api::status::{ApiError, FieldError};
use bytes::Bytes;
use serde_json::Value;

use super::apply::{self, API_SERVER_MANAGER, FieldOwner};
use super::{Ctx, meta};
use crate::handler::Reply;
use crate::negotiate::{self, BodyType};
use crate::object::{self, meta_mut};
use crate::serve::State;
use crate::storage::parse_rv;
use crate::strategy::Strategy;

/// Attempts of a read-modify-write before giving up with 409.
pub(super) const RETRIES: usize = 8;

/// Whether an update changes nothing (its managed fields included: a change
/// of ownership alone is written, as Kubernetes writes it). Compared in
/// place: objects are not copied.
fn same_ignoring_rv(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let meta_same = |x: &Value, y: &Value| {
        let (Some(x), Some(y)) = (x.as_object(), y.as_object()) else {
            return x == y;
        };
        let kept = |m: &serde_json::Map<String, Value>| {
            m.keys().filter(|k| *k != "resourceVersion").count()
        };
        kept(x) == kept(y)
            && x.iter()
                .filter(|(k, _)| *k != "resourceVersion")
                .all(|(k, v)| y.get(k) == Some(v))
    };
    a.len() == b.len()
        && a.iter().all(|(k, v)| match (k.as_str(), b.get(k)) {
            ("metadata", Some(w)) => meta_same(v, w),
            (_, w) => w == Some(v),
        })
}

/// Everything but metadata and status, for generation bumps.
fn spec_part(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// Whether a namespace still has `spec.finalizers` (other kinds never do).
pub(crate) fn held_by_spec_finalizers(res: &ResourceInfo, obj: &Value) -> bool {
    res.group.is_empty()
        && res.plural == "namespaces"
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
}

/// Drops empty or null metadata maps and lists, as Go's `omitempty` does.
fn prune_empty_metadata(obj: &mut Value) {
    let m = meta_mut(obj);
    for f in [
        "labels",
        "annotations",
        "finalizers",
        "ownerReferences",
        "managedFields",
    ] {
        let empty = match m.get(f) {
            Some(Value::Object(x)) => x.is_empty(),
            Some(Value::Array(x)) => x.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            m.remove(f);
        }
    }
}

fn invalid(res: &ResourceInfo, name: &str, errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid(&res.group, &res.kind, name, errs)
}

impl Ctx<'_> {
    /// Decodes a body into an object of this resource, applying field validation.
    fn decode_body(&mut self, content_type: Option<&str>, body: &Bytes) -> Result<Value, ApiError> {
        let ty = negotiate::body_type(content_type)?;
        if !matches!(ty, BodyType::Json | BodyType::Yaml | BodyType::Protobuf) {
            return Err(ApiError::unsupported_media_type(
                content_type.unwrap_or_default(),
            ));
        }
        if body.is_empty() {
            return Err(ApiError::bad_request("the body of the request was empty"));
        }
        let (mut obj, dups) = negotiate::decode_object(body, ty)?;
        self.check_kind(&obj)?;
        self.field_validation(&mut obj, dups)?;
        Ok(obj)
    }

    pub(super) fn check_kind(&self, obj: &Value) -> Result<(), ApiError> {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Object 'Kind' is missing in '{obj}'"
            )));
        }
        if api_version.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Object 'apiVersion' is missing in '{obj}'"
            )));
        }
        if api_version != self.res.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                self.res.api_version()
            )));
        }
        if kind != self.res.kind {
            return Err(ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): {kind} is not {}",
                self.res.kind, self.res.kind
            )));
        }
        Ok(())
    }

    /// Unknown/duplicate fields per `fieldValidation` (default Warn), and type errors.
    /// Custom resources are pruned and defaulted here, as Kubernetes decodes them.
    pub(super) fn field_validation(
        &mut self,
        obj: &mut Value,
        duplicates: Vec<String>,
    ) -> Result<(), ApiError> {
        let mode = self.info.param("fieldValidation").unwrap_or("Warn");
        if !["Strict", "Warn", "Ignore"].contains(&mode) {
            return Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {mode}. Supported values are: Ignore, Warn, Strict"
            )));
        }
        let prefix = format!(
            "{} in version {:?} cannot be handled as a {}",
            self.res.kind, self.res.version, self.res.kind
        );
        if let Err(e) = crate::typecheck::check(&self.res.definition, obj) {
            return Err(ApiError::bad_request(format!("{prefix}: {e}")));
        }
        let unknown = self.strategy.decode(obj, &self.res.definition);
        if mode == "Ignore" {
            return Ok(());
        }
        let mut problems: Vec<String> = duplicates;
        problems.extend(unknown.into_iter().map(|p| format!("unknown field {p:?}")));
        if problems.is_empty() {
            return Ok(());
        }
        if mode == "Strict" {
            return Err(ApiError::bad_request(format!(
                "{prefix}: strict decoding error: {}",
                problems.join(", ")
            )));
        }
        self.warnings.extend(problems);
        Ok(())
    }

    /// 405 while the CRD of the custom resource addressed is being deleted.
    pub(super) fn refuse_create_while_terminating(&self) -> Result<(), ApiError> {
        if self.custom.as_ref().is_some_and(|c| c.terminating) {
            return Err(ApiError {
                code: 405,
                reason: "MethodNotAllowed",
                message: "create not allowed while custom resource definition is terminating"
                    .into(),
                details: Some(api::status::StatusDetails {
                    group: Some(self.res.group.clone()),
                    kind: Some(self.res.plural.clone()),
                    ..Default::default()
                }),
                retry_after_seconds: None,
            });
        }
        Ok(())
    }

    /// [`Ctx::field_validation`] of a patched or applied object, without
    /// walking `metadata.managedFields` the server wrote itself: those of
    /// `stored` when the patch left them as they were, or (no `stored`)
    /// those an apply computed.
    pub(super) fn validate_patched(
        &mut self,
        obj: &mut Value,
        stored: Option<&Value>,
    ) -> Result<(), ApiError> {
        let own = obj.pointer("/metadata/managedFields").is_some_and(|mf| {
            stored.is_none_or(|s| s.pointer("/metadata/managedFields") == Some(mf))
        });
        // Set aside and put back in place (metadata keeps its order).
        let set_aside = if own {
            let m = meta_mut(obj);
            let at = m.keys().position(|k| k == "managedFields");
            at.zip(m.shift_remove("managedFields"))
        } else {
            None
        };
        let result = self.field_validation(obj, Vec::new());
        if let Some((at, mf)) = set_aside {
            let m = meta_mut(obj);
            // (Validation may have pruned metadata.)
            let at = at.min(m.len());
            m.shift_insert(at, "managedFields".into(), mf);
        }
        result
    }

    pub(super) async fn create(
        &mut self,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, ApiError> {
        let dry_run = self.dry_run()?;
        let manager = self.update_manager("CreateOptions")?;
        self.refuse_create_while_terminating()?;
        let mut obj = self.decode_body(content_type, &body)?;
        let path_ns = self.namespace().map(String::from);
        if self.res.namespaced {
            let ns = path_ns.clone().unwrap_or_default();
            match object::namespace(&obj) {
                Some(n) if n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta_mut(&mut obj).insert("namespace".into(), ns.into());
                }
            }
        } else {
            meta_mut(&mut obj).remove("namespace");
        }
        crate::rbac::escalation::check(self, &obj, None)?;
        let mut by = Requester {
            who: self.who,
            subresource: &self.info.subresource,
            warnings: &mut self.warnings,
            owner: FieldOwner::Update(&manager),
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

    pub(super) async fn update(
        &mut self,
        content_type: Option<&str>,
        body: Bytes,
        status_only: bool,
    ) -> Result<Reply, ApiError> {
        let dry_run = self.dry_run()?;
        let manager = self.update_manager("UpdateOptions")?;
        let new = self.decode_body(content_type, &body)?;
        let name = self.name().to_string();
        match object::name(&new) {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            None => {
                return Err(ApiError::bad_request(
                    "name is required in the object's metadata",
                ));
            }
            _ => {}
        }
        if let (Some(n), Some(ns)) = (object::namespace(&new), self.namespace())
            && n != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let old = self
            .state
            .storage
            .get(&self.res, self.namespace(), &name)
            .await?;
        crate::rbac::escalation::check(self, &new, Some(&old))?;
        let mut by = Requester {
            who: self.who,
            subresource: &self.info.subresource,
            warnings: &mut self.warnings,
            owner: FieldOwner::Update(&manager),
        };
        let (code, out) = update_object_by(
            self.state,
            &self.res,
            &*self.strategy,
            old,
            new,
            status_only,
            dry_run,
            Some(&mut by),
        )
        .await?;
        Ok(Reply::Json(code, self.render_object(out)))
    }

    pub(super) async fn patch(
        &mut self,
        content_type: Option<&str>,
        body: Bytes,
        status_only: bool,
    ) -> Result<Reply, ApiError> {
        let ty = negotiate::body_type(content_type)?;
        if ty == BodyType::ApplyPatch {
            return self.server_side_apply(&body, status_only).await;
        }
        let manager = self.update_manager("PatchOptions")?;
        let dry_run = self.dry_run()?;
        let name = self.name().to_string();
        let mut last_err = None;
        for _ in 0..RETRIES {
            let old = self
                .state
                .storage
                .get(&self.res, self.namespace(), &name)
                .await?;
            let patched = self.apply_patch(ty, &old, &body)?;
            if object::name(&patched) != Some(name.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    object::name(&patched).unwrap_or_default()
                )));
            }
            let mut patched = patched;
            self.check_kind(&patched)?;
            self.validate_patched(&mut patched, Some(&old))?;
            let pinned = object::meta_str(&patched, "resourceVersion")
                != object::meta_str(&old, "resourceVersion");
            crate::rbac::escalation::check(self, &patched, Some(&old))?;
            let mut by = Requester {
                who: self.who,
                subresource: &self.info.subresource,
                warnings: &mut self.warnings,
                owner: FieldOwner::Update(&manager),
            };
            match update_object_by(
                self.state,
                &self.res,
                &*self.strategy,
                old,
                patched,
                status_only,
                dry_run,
                Some(&mut by),
            )
            .await
            {
                Ok((code, out)) => return Ok(Reply::Json(code, self.render_object(out))),
                Err(e) if e.reason == "Conflict" && !pinned => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err
            .unwrap_or_else(|| ApiError::conflict(&self.res.group, &self.res.plural, &name)))
    }

    /// Applies a patch body of type `ty` to `old`.
    pub(super) fn apply_patch(
        &self,
        ty: BodyType,
        old: &Value,
        body: &Bytes,
    ) -> Result<Value, ApiError> {
        if body.is_empty() {
            return Err(ApiError::bad_request("the body of the request was empty"));
        }
        let to_api = |e: api::patch::PatchError| match e.http_status() {
            422 => ApiError {
                code: 422,
                reason: "Invalid",
                message: e.to_string(),
                details: None,
                retry_after_seconds: None,
            },
            _ => ApiError::bad_request(e.to_string()),
        };
        match ty {
            BodyType::JsonPatch => api::patch::json_patch(old, body).map_err(to_api),
            BodyType::MergePatch => api::patch::merge_patch_bytes(old, body).map_err(to_api),
            BodyType::StrategicMergePatch if self.custom.is_some() => Err(ApiError {
                code: 415,
                reason: "UnsupportedMediaType",
                message: "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
                details: None,
                retry_after_seconds: None,
            }),
            BodyType::StrategicMergePatch if crate::crd::controller::is_crd(&self.res) => {
                let p: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                Ok(crate::crd::strategy::strategic_merge_crd(old, &p))
            }
            BodyType::StrategicMergePatch => {
                let p: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                api::patch::strategic_merge(old, &p, &self.res.definition).map_err(to_api)
            }
            // Served by `Ctx::server_side_apply`, never patched onto an object.
            BodyType::ApplyPatch => Err(ApiError::unsupported_media_type(
                "application/apply-patch+yaml",
            )),
            BodyType::Json | BodyType::Yaml | BodyType::Protobuf => {
                Err(ApiError::unsupported_media_type(match ty {
                    BodyType::Json => "application/json",
                    BodyType::Protobuf => "application/vnd.kubernetes.protobuf",
                    _ => "application/yaml",
                }))
            }
        }
    }
}

/// Who asks for a write, for the validating admission plugins (NodeRestriction,
/// PodSecurity), and where their warnings go. Writes the API server makes itself
/// (bootstrap, RBAC reconciliation) have none.
pub(crate) struct Requester<'a> {
    pub who: &'a crate::authn::Identity,
    /// The subresource written ("" for the object itself).
    pub subresource: &'a str,
    pub warnings: &'a mut Vec<String>,
    /// How the write is recorded in `metadata.managedFields`.
    pub owner: FieldOwner<'a>,
}

/// Records a non-apply write in `metadata.managedFields` (apply has already
/// done so); writes without a requester are the API server's own.
fn record_write(
    state: &State,
    res: &ResourceInfo,
    by: Option<&Requester<'_>>,
    status_only: bool,
    old: Option<&Value>,
    new: Value,
) -> Value {
    let (subresource, manager) = match by {
        Some(by) => match by.owner {
            FieldOwner::Update(m) => (by.subresource, m),
            FieldOwner::Applied => return new,
        },
        None if status_only => ("status", API_SERVER_MANAGER),
        None => ("", API_SERVER_MANAGER),
    };
    apply::record_update(state, res, subresource, old, new, manager)
}

/// Creates a decoded object (namespace already set) as the API server itself.
pub(crate) async fn create_object(
    state: &State,
    res: &ResourceInfo,
    strategy: &dyn Strategy,
    obj: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    create_object_by(state, res, strategy, obj, dry_run, None).await
}

/// Creates a decoded object (namespace already set): metadata, defaults,
/// mutating admission, validation, validating admission, allocation, store.
pub(crate) async fn create_object_by(
    state: &State,
    res: &ResourceInfo,
    strategy: &dyn Strategy,
    mut obj: Value,
    dry_run: bool,
    by: Option<&mut Requester<'_>>,
) -> Result<Value, ApiError> {
    let ns = object::namespace(&obj).map(String::from);
    {
        let m = meta_mut(&mut obj);
        let has_name = m
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if !has_name
            && let Some(base) = m
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        {
            let n = meta::generate_name(base);
            m.insert("name".into(), n.into());
        }
    }
    let Some(name) = object::name(&obj).map(String::from) else {
        return Err(invalid(
            res,
            "",
            vec![FieldError::required(
                "metadata.name",
                "name or generateName is required",
            )],
        ));
    };
    if object::meta_str(&obj, "resourceVersion").is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    {
        let m = meta_mut(&mut obj);
        m.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
        m.insert("creationTimestamp".into(), object::now_rfc3339().into());
        for f in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(f);
        }
        if strategy.tracks_generation() {
            m.insert("generation".into(), 1.into());
        } else {
            m.remove("generation");
        }
    }
    if strategy.resets_status_on_create()
        && res.has_subresource("status")
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    strategy.default(&mut obj);
    // Kubernetes records the decoded, defaulted object's fields for the
    // manager before admission: what admission sets belongs to nobody.
    let mut obj = record_write(state, res, by.as_deref(), false, None, obj);
    // Kubernetes' order: defaults, admission (which may set fields), then the
    // strategy's own preparation and validation.
    crate::admission::admit_create(state, res, &mut obj).await?;
    // Then the mutating admission webhooks (defaults again if they changed the object).
    let mut by = by;
    if let Some(by) = by.as_deref_mut() {
        let write = crate::admission::Write {
            who: by.who,
            operation: crate::admission::node_restriction::Operation::Create,
            res,
            subresource: by.subresource,
            namespace: ns.as_deref().unwrap_or_default(),
            name: &name,
            object: None,
            old: None,
            dry_run,
        };
        if crate::admission::webhook::mutate(state, &write, Some(&mut obj), by.warnings).await? {
            strategy.default(&mut obj);
        }
    }
    strategy.prepare_for_create(&mut obj);
    prune_empty_metadata(&mut obj);
    let mut errs = meta::validate_name(strategy.name_rule(), &name, "metadata.name");
    errs.extend(meta::validate_object_meta(&obj));
    errs.extend(strategy.validate(&obj));
    if !errs.is_empty() {
        return Err(invalid(res, &name, errs));
    }
    if let Some(by) = by {
        let write = crate::admission::Write {
            who: by.who,
            operation: crate::admission::node_restriction::Operation::Create,
            res,
            subresource: by.subresource,
            namespace: ns.as_deref().unwrap_or_default(),
            name: &name,
            object: Some(&obj),
            old: None,
            dry_run,
        };
        crate::admission::validate(state, &write, by.warnings).await?;
    }
    if res.group.is_empty() && res.plural == "services" {
        // Report an existing Service as AlreadyExists, not as a taken cluster IP.
        match state.storage.get(res, ns.as_deref(), &name).await {
            Ok(_) => return Err(ApiError::already_exists(&res.group, &res.plural, &name)),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let allocated = crate::rest::subresource::allocate_service(state, res, &mut obj, None)
        .map_err(|errs| invalid(res, &name, errs))?;
    if dry_run {
        allocated.rollback(state);
        return Ok(obj);
    }
    if let Err(e) = crate::admission::reserve_quota(state, res, &obj).await {
        allocated.rollback(state);
        return Err(e);
    }
    match state.storage.create(res, ns.as_deref(), &name, &obj).await {
        Ok(v) => Ok(v),
        Err(e) => {
            allocated.rollback(state);
            Err(e)
        }
    }
}

/// Updates `old` (as stored, with its resourceVersion) to `new`, as the API server
/// itself.
pub(crate) async fn update_object(
    state: &State,
    res: &ResourceInfo,
    strategy: &dyn Strategy,
    old: Value,
    new: Value,
    status_only: bool,
    dry_run: bool,
) -> Result<(u16, Value), ApiError> {
    update_object_by(state, res, strategy, old, new, status_only, dry_run, None).await
}

/// Updates `old` (as stored, with its resourceVersion) to `new` for `by`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn update_object_by(
    state: &State,
    res: &ResourceInfo,
    strategy: &dyn Strategy,
    old: Value,
    mut new: Value,
    status_only: bool,
    dry_run: bool,
    by: Option<&mut Requester<'_>>,
) -> Result<(u16, Value), ApiError> {
    let name = object::name(&old).unwrap_or_default().to_string();
    let ns = object::namespace(&old).map(String::from);
    let old_rv = object::meta_str(&old, "resourceVersion")
        .unwrap_or_default()
        .to_string();
    match object::meta_str(&new, "resourceVersion") {
        Some(rv) if !rv.is_empty() && rv != old_rv => {
            parse_rv(rv)?;
            return Err(ApiError::conflict(&res.group, &res.plural, &name));
        }
        _ => {}
    }
    if status_only {
        let status = new.get("status").cloned();
        let mut merged = old.clone();
        match status {
            Some(s) => crate::object::set(&mut merged, "status", s),
            None => {
                if let Some(m) = merged.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        // The managed fields an apply to the status computed go along (an
        // update's are recomputed from the live ones below).
        if let Some(mf) = new.pointer("/metadata/managedFields") {
            meta_mut(&mut merged).insert("managedFields".into(), mf.clone());
        }
        new = merged;
    } else {
        {
            let om = old.get("metadata");
            let m = meta_mut(&mut new);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "generation",
            ] {
                match om.and_then(|om| om.get(f)) {
                    Some(v) => {
                        m.insert(f.into(), v.clone());
                    }
                    None => {
                        m.remove(f);
                    }
                }
            }
            m.remove("selfLink");
        }
        if res.has_subresource("status") {
            match old.get("status") {
                Some(s) => crate::object::set(&mut new, "status", s.clone()),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        strategy.default(&mut new);
        strategy.prepare_for_update(&mut new, &old);
    }
    // Before prune_empty_metadata: `managedFields: []` resets them.
    let mut new = record_write(state, res, by.as_deref(), status_only, Some(&old), new);
    // Mutating admission webhooks; like the built-in plugins on create, what they
    // set is owned by no field manager.
    let mut by = by;
    if let Some(by) = by.as_deref_mut() {
        let write = crate::admission::Write {
            who: by.who,
            operation: crate::admission::node_restriction::Operation::Update,
            res,
            subresource: by.subresource,
            namespace: ns.as_deref().unwrap_or_default(),
            name: &name,
            object: None,
            old: Some(&old),
            dry_run,
        };
        if crate::admission::webhook::mutate(state, &write, Some(&mut new), by.warnings).await?
            && !status_only
        {
            strategy.default(&mut new);
        }
    }
    prune_empty_metadata(&mut new);
    meta_mut(&mut new).insert("resourceVersion".into(), old_rv.clone().into());
    let mut errs = meta::validate_object_meta(&new);
    errs.extend(strategy.validate_update(&new, &old));
    if !errs.is_empty() {
        return Err(invalid(res, &name, errs));
    }
    if let Some(by) = by {
        let write = crate::admission::Write {
            who: by.who,
            operation: crate::admission::node_restriction::Operation::Update,
            res,
            subresource: by.subresource,
            namespace: ns.as_deref().unwrap_or_default(),
            name: &name,
            object: Some(&new),
            old: Some(&old),
            dry_run,
        };
        crate::admission::validate(state, &write, by.warnings).await?;
    }
    if strategy.tracks_generation() && !status_only {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let changed = if strategy.status_bumps_generation() {
            let outside_metadata = |v: &Value| {
                let mut v = v.clone();
                if let Some(m) = v.as_object_mut() {
                    m.remove("metadata");
                }
                v
            };
            outside_metadata(&new) != outside_metadata(&old)
        } else {
            spec_part(&new) != spec_part(&old)
        };
        let g = if changed { g + 1 } else { g };
        meta_mut(&mut new).insert("generation".into(), g.into());
    }
    let allocated = if status_only {
        crate::rest::subresource::Allocated::default()
    } else {
        crate::rest::subresource::allocate_service(state, res, &mut new, Some(&old))
            .map_err(|errs| invalid(res, &name, errs))?
    };
    if same_ignoring_rv(&new, &old) {
        return Ok((200, old));
    }
    let expected = parse_rv(&old_rv)?;
    let terminating = new
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    // A terminating object goes once nothing holds it: its finalizers, and for a
    // namespace also spec.finalizers (Kubernetes' ShouldDeleteNamespaceDuringUpdate).
    if terminating && object::finalizers(&new).is_empty() && !held_by_spec_finalizers(res, &new) {
        if dry_run {
            return Ok((200, new));
        }
        let out = state
            .storage
            .delete(res, ns.as_deref(), &name, Some(expected))
            .await?;
        crate::rest::subresource::release_service(state, res, &out);
        return Ok((200, out));
    }
    if dry_run {
        allocated.rollback(state);
        return Ok((200, new));
    }
    match state
        .storage
        .update(res, ns.as_deref(), &name, &new, expected)
        .await
    {
        Ok(v) => {
            crate::rest::subresource::release_replaced(state, res, &old, &v);
            Ok((200, v))
        }
        Err(e) => {
            allocated.rollback(state);
            Err(e)
        }
    }
}
