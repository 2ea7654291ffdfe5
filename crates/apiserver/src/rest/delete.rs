//! Deleting: DeleteOptions, preconditions, finalizers and propagation policy,
//! graceful pod deletion, namespace termination, and deletecollection.

use api::resource::ResourceInfo;
use api::status::{ApiError, FieldError};
use bytes::Bytes;
use serde_json::{Value, json};

use super::Ctx;
use crate::handler::Reply;
use crate::negotiate::Output;
use crate::object::{self, meta_mut};
use crate::serve::State;
use crate::storage::parse_rv;

/// Attempts of a read-modify-write before giving up with 409.
const RETRIES: usize = 8;

/// Options of a delete, from the body (DeleteOptions) and the query.
#[derive(Debug, Default, Clone)]
pub(crate) struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    fn parse(ctx: &Ctx<'_>, body: &Bytes) -> Result<Self, ApiError> {
        let mut o = DeleteOptions {
            dry_run: ctx.dry_run()?,
            ..Default::default()
        };
        if !body.is_empty() {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
            o.grace_period = v.get("gracePeriodSeconds").and_then(Value::as_i64);
            o.propagation = v
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(String::from);
            if v.get("orphanDependents") == Some(&json!(true)) && o.propagation.is_none() {
                o.propagation = Some("Orphan".into());
            }
            o.precondition_uid = v
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(String::from);
            o.precondition_rv = v
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(String::from);
            if let Some(d) = v.get("dryRun").and_then(Value::as_array) {
                o.dry_run |= d.iter().any(|x| x == "All");
            }
        }
        if let Some(g) = ctx.info.param("gracePeriodSeconds") {
            o.grace_period = Some(g.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds: {g:?}"))
            })?);
        }
        if let Some(p) = ctx.info.param("propagationPolicy") {
            o.propagation = Some(p.to_string());
        }
        if let Some(p) = &o.propagation
            && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
        {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![FieldError::not_supported(
                    "propagationPolicy",
                    p.as_str(),
                    &["Foreground", "Background", "Orphan", "nil"],
                )],
            ));
        }
        Ok(o)
    }
}

impl Ctx<'_> {
    /// Admission of a delete of `name` in `ns`: NodeRestriction (a node deletes only
    /// pods bound to it), admission webhooks and ValidatingAdmissionPolicies. The
    /// object is read only when the requester is a node or a webhook's or policy's
    /// rules match the delete.
    async fn admit_delete(&mut self, ns: Option<&str>, name: &str) -> Result<(), ApiError> {
        let dry_run = self.dry_run()?;
        let mut write = crate::admission::Write {
            who: self.who,
            operation: crate::admission::node_restriction::Operation::Delete,
            res: &self.res,
            subresource: &self.info.subresource,
            namespace: ns.unwrap_or_default(),
            name,
            object: None,
            old: None,
            dry_run,
        };
        if crate::admission::node_restriction::node_name(self.who).is_none()
            && !crate::admission::webhook::intercepts(self.state, &write).await?
            && !crate::admission::policy::may_match_delete(self.state, &write).await
        {
            return Ok(());
        }
        let old = self.state.storage.get(&self.res, ns, name).await?;
        write.old = Some(&old);
        crate::admission::webhook::mutate(self.state, &write, None, &mut self.warnings).await?;
        crate::admission::validate(self.state, &write, &mut self.warnings).await
    }

    pub(super) async fn delete(&mut self, body: Bytes) -> Result<Reply, ApiError> {
        let opts = DeleteOptions::parse(self, &body)?;
        let name = self.name().to_string();
        let ns = self.namespace().map(String::from);
        self.admit_delete(ns.as_deref(), &name).await?;
        let (obj, deleted) =
            delete_object(self.state, &self.res, self.namespace(), &name, &opts).await?;
        let returns_object = matches!(self.res.plural.as_str(), "pods" | "services" | "namespaces")
            && self.res.group.is_empty();
        if deleted && !returns_object && self.output == Output::Json {
            let uid = object::meta_str(&obj, "uid").unwrap_or_default();
            return Ok(Reply::Json(
                200,
                api::status::success_status(Some((&name, &self.res.group, &self.res.plural, uid))),
            ));
        }
        Ok(Reply::Json(200, self.render_object(obj)))
    }

    pub(super) async fn delete_collection(&mut self, body: Bytes) -> Result<Reply, ApiError> {
        let opts = DeleteOptions::parse(self, &body)?;
        let q = self.list_query()?;
        let prefix = self.list_prefix();
        let page = self
            .state
            .storage
            .list(&self.res, &prefix, None, None, 0, &|o| self.matches(&q, o))
            .await?;
        let mut items = Vec::new();
        for o in page.items {
            let name = object::name(&o).unwrap_or_default().to_string();
            let ns = object::namespace(&o).map(String::from);
            self.admit_delete(ns.as_deref(), &name).await?;
            match delete_object(self.state, &self.res, ns.as_deref(), &name, &opts).await {
                Ok((obj, _)) => items.push(obj),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Reply::Json(
            200,
            json!({
                "kind": self.res.list_kind(),
                "apiVersion": self.res.api_version(),
                "metadata": {"resourceVersion": page.revision.to_string()},
                "items": items,
            }),
        ))
    }
}

/// Deletes an object following Kubernetes' rules. Returns the final object and
/// whether it is gone (false when finalizers or graceful deletion keep it).
pub(crate) async fn delete_object(
    state: &State,
    res: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(Value, bool), ApiError> {
    for _ in 0..RETRIES {
        let old = state.storage.get(res, ns, name).await?;
        if let Some(uid) = &opts.precondition_uid {
            let actual = object::meta_str(&old, "uid").unwrap_or_default();
            if uid != actual {
                return Err(ApiError::conflict_message(
                    &res.group,
                    &res.plural,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.precondition_rv {
            let actual = object::meta_str(&old, "resourceVersion").unwrap_or_default();
            if rv != actual {
                return Err(ApiError::conflict_message(
                    &res.group,
                    &res.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                    ),
                ));
            }
        }
        let expected = parse_rv(object::meta_str(&old, "resourceVersion").unwrap_or("0"))?;
        let mut new = old.clone();
        let mut keep = false;
        let mut finalizers = object::finalizers(&old);
        if crate::crd::controller::is_crd(res)
            && old
                .pointer("/metadata/deletionTimestamp")
                .is_none_or(Value::is_null)
        {
            // Kubernetes' CRD storage: the custom resources go first.
            crate::crd::controller::mark_for_deletion(&mut new, &mut finalizers);
        }
        match opts.propagation.as_deref() {
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
                finalizers.push("orphan".into());
                keep = true;
            }
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push("foregroundDeletion".into());
                keep = true;
            }
            _ => {}
        }
        let is_namespace = res.group.is_empty() && res.plural == "namespaces";
        let already_terminating = old
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        if is_namespace {
            if !already_terminating {
                let m = meta_mut(&mut new);
                m.insert("deletionTimestamp".into(), object::now_rfc3339().into());
                m.insert("deletionGracePeriodSeconds".into(), 0.into());
                crate::object::set(&mut new, "status.phase", "Terminating".into());
                keep = true;
            } else if !finalizers.is_empty() || super::write::held_by_spec_finalizers(res, &old) {
                return Ok((old, false));
            }
            // Otherwise nothing holds it any more: a repeated delete removes it.
        } else if !finalizers.is_empty() {
            keep = true;
        }
        let graceful_pod = res.group.is_empty()
            && res.plural == "pods"
            && old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
            && !matches!(
                old.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            );
        let grace = opts
            .grace_period
            .or_else(|| {
                old.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30);
        if graceful_pod && grace > 0 && !keep {
            if already_terminating {
                return Ok((old, false));
            }
            let when = jiff::Timestamp::now().as_second() + grace;
            let m = meta_mut(&mut new);
            let ts = jiff::Timestamp::from_second(when)
                .map(|t| t.to_string())
                .unwrap_or_default();
            m.insert("deletionTimestamp".into(), ts.into());
            m.insert("deletionGracePeriodSeconds".into(), grace.into());
            keep = true;
        } else if keep && !is_namespace {
            let m = meta_mut(&mut new);
            if !already_terminating {
                m.insert("deletionTimestamp".into(), object::now_rfc3339().into());
                m.insert("deletionGracePeriodSeconds".into(), 0.into());
            }
            m.insert("finalizers".into(), json!(finalizers));
        }
        if keep {
            if new == old {
                return Ok((old, false));
            }
            if opts.dry_run {
                return Ok((new, false));
            }
            match state.storage.update(res, ns, name, &new, expected).await {
                Ok(v) => return Ok((v, false)),
                Err(e) if e.reason == "Conflict" => continue,
                Err(e) => return Err(e),
            }
        }
        if opts.dry_run {
            return Ok((old, true));
        }
        match state.storage.delete(res, ns, name, Some(expected)).await {
            Ok(v) => {
                crate::rest::subresource::release_service(state, res, &v);
                return Ok((v, true));
            }
            Err(e) if e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(&res.group, &res.plural, name))
}
