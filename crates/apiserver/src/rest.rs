//! The REST verbs on resources (Kubernetes' `pkg/endpoints/handlers` and the generic
//! registry store): get, list, watch, create, update, patch, delete, deletecollection
//! and the status, scale and binding subresources.

use std::sync::Arc;

use api::resource::ResourceInfo;
use api::selector::{FieldSelector, LabelSelector};
use api::status::ApiError;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::authn::Identity;
use crate::crd::CustomResource;
use crate::handler::Reply;
use crate::negotiate::Output;
use crate::request::RequestInfo;
use crate::serve::State;
use crate::storage::{ContinueToken, parse_rv};
use crate::strategy::{self, Strategy, StrategyRef};

pub(crate) mod meta;
pub(crate) use meta::{partial_metadata, validate_object_meta};
pub(crate) mod apply;
pub(crate) mod delete;
mod eviction;
pub(crate) mod node_proxy;
pub(crate) mod subresource;
mod token;
pub(crate) mod write;

/// One resource request being served.
pub(crate) struct Ctx<'a> {
    pub state: &'a Arc<State>,
    pub who: &'a Identity,
    pub info: &'a RequestInfo,
    pub res: Arc<ResourceInfo>,
    pub strategy: StrategyRef,
    /// The custom resource version addressed, if it is one.
    pub custom: Option<Arc<CustomResource>>,
    pub output: Output,
    /// `Warning` headers to send.
    pub warnings: Vec<String>,
    /// The request's `User-Agent` (the default field manager of non-apply writes).
    pub user_agent: &'a str,
}

/// Selectors and paging of a list or watch.
pub(crate) struct ListQuery {
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        state: &'a Arc<State>,
        who: &'a Identity,
        info: &'a RequestInfo,
        output: Output,
        user_agent: &'a str,
    ) -> Result<Self, ApiError> {
        let snapshot = state.registry.snapshot();
        let res = snapshot
            .registry
            .lookup(&info.group, &info.version, &info.resource)
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found_message("the server could not find the requested resource")
            })?;
        if !res.namespaced && info.namespace.is_some() {
            return Err(ApiError::not_found_message(
                "the server could not find the requested resource",
            ));
        }
        let custom = snapshot
            .custom(&res.group, &res.version, &res.plural)
            .cloned();
        let strategy = strategy::resolve(&res, custom.as_ref());
        let warnings = custom
            .as_ref()
            .and_then(|c| c.warning.clone())
            .into_iter()
            .collect();
        Ok(Self {
            state,
            who,
            info,
            res,
            strategy,
            custom,
            output,
            warnings,
            user_agent,
        })
    }

    /// The namespace the request addresses (`None` for cluster-scoped resources).
    pub(crate) fn namespace(&self) -> Option<&str> {
        if self.res.namespaced {
            self.info.namespace.as_deref()
        } else {
            None
        }
    }

    pub(crate) fn name(&self) -> &str {
        self.info.name.as_deref().unwrap_or_default()
    }

    pub(crate) fn dry_run(&self) -> Result<bool, ApiError> {
        match self.info.param("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dryRun parameter: {other:?}: supported values: \"All\""
            ))),
        }
    }

    /// Serves the request.
    pub(crate) async fn serve(
        &mut self,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, ApiError> {
        let (content_type, body) = crate::csr::admit(self, content_type, body).await?;
        let verb = self.info.verb.clone();
        let sub = self.info.subresource.clone();
        if !sub.is_empty() {
            if !self.res.has_subresource(&sub) {
                return Err(ApiError::not_found_message(
                    "the server could not find the requested resource",
                ));
            }
            return self
                .serve_subresource(&sub, &verb, content_type, body)
                .await;
        }
        if self.res.namespaced
            && self.info.namespace.is_none()
            && !matches!(verb.as_str(), "list" | "watch")
        {
            return Err(ApiError::method_not_allowed());
        }
        if !self.res.allows(&verb) {
            return Err(ApiError::method_not_allowed());
        }
        match verb.as_str() {
            "get" => self.get().await,
            "list" => self.list().await,
            "watch" => self.watch().await,
            "create" => self.create(content_type, body).await,
            "update" => self.update(content_type, body, false).await,
            "patch" => self.patch(content_type, body, false).await,
            "delete" => self.delete(body).await,
            "deletecollection" => self.delete_collection(body).await,
            _ => Err(ApiError::method_not_allowed()),
        }
    }

    async fn serve_subresource(
        &mut self,
        sub: &str,
        verb: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, ApiError> {
        match (sub, verb) {
            ("status", "get") => self.get().await,
            ("status", "update") => self.update(content_type, body, true).await,
            ("status", "patch") => self.patch(content_type, body, true).await,
            ("scale", "get") => self.get_scale().await,
            ("scale", "update") => self.update_scale(content_type, body).await,
            ("scale", "patch") => self.patch_scale(content_type, body).await,
            ("binding", "create") => self.bind(content_type, body).await,
            ("token", "create") => self.token_request(content_type, body).await,
            ("eviction", "create") => self.evict(content_type, body).await,
            ("finalize", "update") => self.update(content_type, body, false).await,
            // CertificateSigningRequests' conditions (see `crate::csr::admit`).
            ("approval", "get") => self.get().await,
            ("approval", "update") => self.update(content_type, body, true).await,
            ("approval", "patch") => self.patch(content_type, body, true).await,
            _ => Err(ApiError::method_not_allowed()),
        }
    }

    /// A `Table` of objects of this resource.
    pub(crate) fn table(&self, objects: &[Value], list_meta: Value) -> Value {
        match &self.custom {
            Some(c) => c.table(objects, self.include_object(), list_meta),
            None => api::table::build_table(
                &self.res.group,
                &self.res.kind,
                objects,
                jiff::Timestamp::now(),
                self.include_object(),
                list_meta,
            ),
        }
    }

    /// Renders one object as asked by `Accept`.
    pub(crate) fn render_object(&self, obj: Value) -> Value {
        match self.output {
            Output::Table => self.table(
                std::slice::from_ref(&obj),
                json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)}),
            ),
            Output::PartialMetadata => meta::partial_metadata(&obj),
            _ => obj,
        }
    }

    pub(crate) fn include_object(&self) -> api::table::IncludeObject {
        match self.info.param("includeObject") {
            Some("None") => api::table::IncludeObject::None,
            Some("Object") => api::table::IncludeObject::Object,
            _ => api::table::IncludeObject::Metadata,
        }
    }

    async fn get(&mut self) -> Result<Reply, ApiError> {
        let obj = self
            .state
            .storage
            .get(&self.res, self.namespace(), self.name())
            .await?;
        Ok(Reply::Json(200, self.render_object(obj)))
    }

    /// Parses labelSelector and fieldSelector, rejecting unsupported fields.
    pub(crate) fn list_query(&self) -> Result<ListQuery, ApiError> {
        let labels = match self.info.param("labelSelector").filter(|s| !s.is_empty()) {
            Some(s) => {
                Some(LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?)
            }
            None => None,
        };
        let fields = match self.info.param("fieldSelector").filter(|s| !s.is_empty()) {
            Some(s) => {
                let f =
                    FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
                for field in f.fields() {
                    let ok = field == "metadata.name"
                        || (field == "metadata.namespace" && self.res.namespaced)
                        || self.strategy.is_selectable(field);
                    if !ok {
                        return Err(ApiError::bad_request(format!(
                            "field label not supported: {field}"
                        )));
                    }
                }
                Some(f)
            }
            None => None,
        };
        Ok(ListQuery { labels, fields })
    }

    /// Whether an object matches the list query.
    pub(crate) fn matches(&self, q: &ListQuery, obj: &Value) -> bool {
        matches_query(&*self.strategy, q, obj)
    }

    pub(crate) fn list_prefix(&self) -> String {
        match self.namespace() {
            Some(ns) => self.res.namespace_prefix(ns),
            None => self.res.key_prefix(),
        }
    }

    async fn list(&mut self) -> Result<Reply, ApiError> {
        let q = self.list_query()?;
        let limit: usize = match self.info.param("limit") {
            Some(l) if !l.is_empty() => l
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?,
            _ => 0,
        };
        let rv = self.info.param("resourceVersion").filter(|s| !s.is_empty());
        let rv_match = self
            .info
            .param("resourceVersionMatch")
            .filter(|s| !s.is_empty());
        let cont = self.info.param("continue").filter(|s| !s.is_empty());
        let (revision, start_after) = match (cont, rv, rv_match) {
            (Some(_), Some(rv), _) if rv != "0" => {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            (Some(c), _, _) => {
                let t = ContinueToken::decode(c)?;
                let compacted = self
                    .state
                    .storage
                    .store
                    .compacted_revision()
                    .await
                    .map_err(crate::storage::generic_store_error)?;
                if t.revision < compacted {
                    return Err(ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ));
                }
                (Some(t.revision), Some(t.start_after))
            }
            (None, None, Some(_)) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            (None, Some(rv), Some("Exact")) => {
                let r = parse_rv(rv)?;
                if r == 0 {
                    return Err(ApiError::bad_request(
                        "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                    ));
                }
                (Some(r), None)
            }
            (None, Some(rv), None | Some("NotOlderThan")) => {
                let r = parse_rv(rv)?;
                let current = self.state.storage.current_revision().await?;
                if r > current {
                    return Err(ApiError::timeout(format!(
                        "Too large resource version: {r}, current: {current}"
                    )));
                }
                (None, None)
            }
            (None, Some(_), Some(m)) => {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
            (None, None, None) => (None, None),
        };
        let prefix = self.list_prefix();
        let page = self
            .state
            .storage
            .list(&self.res, &prefix, revision, start_after, limit, &|o| {
                self.matches(&q, o)
            })
            .await?;
        let mut list_meta = json!({"resourceVersion": page.revision.to_string()});
        if let Some(t) = &page.continue_token {
            list_meta["continue"] = t.encode().into();
        }
        let body = match self.output {
            Output::Table => self.table(&page.items, list_meta),
            Output::PartialMetadata => json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": list_meta,
                "items": page.items.iter().map(meta::partial_metadata).collect::<Vec<_>>(),
            }),
            _ => {
                let items: Vec<Value> = page
                    .items
                    .into_iter()
                    .map(|mut o| {
                        if let Some(m) = o.as_object_mut() {
                            m.remove("kind");
                            m.remove("apiVersion");
                        }
                        o
                    })
                    .collect();
                json!({
                    "kind": self.res.list_kind(),
                    "apiVersion": self.res.api_version(),
                    "metadata": list_meta,
                    "items": items,
                })
            }
        };
        Ok(Reply::Json(200, body))
    }
}

/// Whether an object matches label and field selectors.
pub(crate) fn matches_query(strategy: &dyn Strategy, q: &ListQuery, obj: &Value) -> bool {
    if let Some(l) = &q.labels
        && !l.matches(&crate::object::labels(obj))
    {
        return false;
    }
    if let Some(f) = &q.fields {
        let lookup = |field: &str| -> Option<String> {
            match field {
                "metadata.name" => Some(crate::object::name(obj).unwrap_or_default().to_string()),
                "metadata.namespace" => Some(
                    crate::object::namespace(obj)
                        .unwrap_or_default()
                        .to_string(),
                ),
                other => strategy.field_value(obj, other).or(Some(String::new())),
            }
        };
        if !f.matches(&lookup) {
            return false;
        }
    }
    true
}
