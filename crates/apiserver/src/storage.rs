//! Objects on top of the revisioned store: JSON encoding, `resourceVersion` from the
//! store's revisions, store errors turned into Kubernetes `Status` errors, and
//! paginated lists with continue tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use api::resource::ResourceInfo;
use api::status::ApiError;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};
use store::{KeyValue, ListOptions, Revision, Store, StoreError};

use crate::conversion::View;

/// Object-level access to the store for one server.
#[derive(Clone)]
pub(crate) struct Storage {
    pub store: Arc<dyn Store>,
    /// What is served (custom resources are converted on the way in and out).
    pub served: Arc<crate::crd::ServedResources>,
    /// Acknowledged writes an in-memory index must have seen before it answers.
    pub written: Arc<WriteMark>,
}

/// The highest store revision of a write this server acknowledged under some key
/// prefixes: an index fed by the watch cache that has seen this revision has seen
/// every such write (of this server; other API servers' writes reach it through
/// the watch only, as Kubernetes' informers do).
#[derive(Debug, Default)]
pub(crate) struct WriteMark {
    prefixes: &'static [&'static str],
    revision: AtomicI64,
}

impl WriteMark {
    /// A mark for writes under `prefixes`.
    pub(crate) fn new(prefixes: &'static [&'static str]) -> Self {
        Self {
            prefixes,
            revision: AtomicI64::new(0),
        }
    }

    /// Records an acknowledged write of `key` at `revision`.
    pub(crate) fn record(&self, key: &str, revision: Revision) {
        if self.prefixes.iter().any(|p| key.starts_with(p)) {
            self.revision.fetch_max(revision, Ordering::AcqRel);
        }
    }

    /// The highest revision recorded.
    pub(crate) fn get(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }
}

/// Maps a store failure about one object to its Kubernetes error.
pub(crate) fn store_error(info: &ResourceInfo, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound { .. } => ApiError::not_found(&info.group, &info.plural, name),
        StoreError::AlreadyExists { .. } => {
            ApiError::already_exists(&info.group, &info.plural, name)
        }
        StoreError::Conflict { .. } => ApiError::conflict(&info.group, &info.plural, name),
        other => generic_store_error(other),
    }
}

/// Maps a store failure that is not about one object.
pub(crate) fn generic_store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::gone(requested, compacted),
        StoreError::FutureRevision { requested, current } => ApiError::timeout(format!(
            "Too large resource version: {requested}, current: {current}"
        )),
        other => ApiError::internal(other.to_string()),
    }
}

/// Decodes a stored object and sets its `resourceVersion`.
pub(crate) fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object at {} is not JSON: {e}", kv.key)))?;
    crate::object::meta_mut(&mut v)
        .insert("resourceVersion".into(), kv.mod_revision.to_string().into());
    Ok(v)
}

/// Encodes an object for storage (without `resourceVersion`, which the store owns).
fn encode(view: &View, obj: &Value) -> Bytes {
    let mut obj = view.to_storage(obj);
    crate::object::meta_mut(&mut obj).remove("resourceVersion");
    Bytes::from(serde_json::to_vec(&obj).unwrap_or_default())
}

/// Parses a `resourceVersion` string.
pub(crate) fn parse_rv(rv: &str) -> Result<Revision, ApiError> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

/// A list continuation: where to continue and at which revision.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ContinueToken {
    pub revision: Revision,
    pub start_after: String,
}

impl ContinueToken {
    pub(crate) fn encode(&self) -> String {
        let j = json!({"v": "meta.k8s.io/v1", "rv": self.revision, "start": self.start_after});
        base64::engine::general_purpose::URL_SAFE.encode(j.to_string())
    }

    pub(crate) fn decode(s: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::bad_request(format!("continue key is not valid: {s:?}"));
        let raw = base64::engine::general_purpose::URL_SAFE
            .decode(s)
            .map_err(|_| bad())?;
        let j: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        if j["v"] != "meta.k8s.io/v1" {
            return Err(bad());
        }
        Ok(Self {
            revision: j["rv"].as_i64().ok_or_else(bad)?,
            start_after: j["start"].as_str().ok_or_else(bad)?.to_string(),
        })
    }
}

/// One page of a list.
pub(crate) struct Page {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<ContinueToken>,
}

impl Storage {
    /// How objects of `info` look in storage and as served.
    pub(crate) fn view(&self, info: &ResourceInfo) -> View {
        View::of(&self.served, info)
    }

    pub(crate) async fn get(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = info.key(ns, name);
        match self.store.get(&key).await {
            Ok(Some(kv)) => self.view(info).decode(&kv),
            Ok(None) => Err(ApiError::not_found(&info.group, &info.plural, name)),
            Err(e) => Err(store_error(info, name, e)),
        }
    }

    pub(crate) async fn create(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value, ApiError> {
        let view = self.view(info);
        let kv = self
            .store
            .create(&info.key(ns, name), encode(&view, obj))
            .await
            .map_err(|e| store_error(info, name, e))?;
        self.written.record(&kv.key, kv.mod_revision);
        view.decode(&kv)
    }

    pub(crate) async fn update(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
        expected: Revision,
    ) -> Result<Value, ApiError> {
        let view = self.view(info);
        let kv = self
            .store
            .update(&info.key(ns, name), encode(&view, obj), expected)
            .await
            .map_err(|e| store_error(info, name, e))?;
        self.written.record(&kv.key, kv.mod_revision);
        view.decode(&kv)
    }

    pub(crate) async fn delete(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        expected: Option<Revision>,
    ) -> Result<Value, ApiError> {
        let kv = self
            .store
            .delete(&info.key(ns, name), expected)
            .await
            .map_err(|e| store_error(info, name, e))?;
        self.written.record(&kv.key, kv.mod_revision);
        self.view(info).decode(&kv)
    }

    /// Lists objects, filtering with `keep`, until `limit` kept items are found (0 = all).
    pub(crate) async fn list(
        &self,
        info: &ResourceInfo,
        prefix: &str,
        revision: Option<Revision>,
        start_after: Option<String>,
        limit: usize,
        keep: &(dyn Fn(&Value) -> bool + Sync),
    ) -> Result<Page, ApiError> {
        let view = self.view(info);
        let mut items = Vec::new();
        let mut start = start_after;
        let mut at = revision;
        loop {
            let want = if limit == 0 {
                0
            } else {
                (limit - items.len()).max(1)
            };
            let opts = ListOptions {
                prefix: prefix.to_string(),
                start_after: start.clone(),
                limit: want,
                revision: at,
            };
            let res = self.store.list(&opts).await.map_err(generic_store_error)?;
            at = Some(res.revision);
            let last_key = res.items.last().map(|kv| kv.key.clone());
            for kv in &res.items {
                let obj = view.decode(kv)?;
                if keep(&obj) {
                    items.push(obj);
                    if limit > 0 && items.len() == limit {
                        let more =
                            res.more || kv.key != *last_key.as_ref().expect("items not empty");
                        let continue_token = more.then(|| ContinueToken {
                            revision: res.revision,
                            start_after: kv.key.clone(),
                        });
                        return Ok(Page {
                            items,
                            revision: res.revision,
                            continue_token,
                        });
                    }
                }
            }
            if !res.more || last_key.is_none() {
                return Ok(Page {
                    items,
                    revision: res.revision,
                    continue_token: None,
                });
            }
            start = last_key;
        }
    }

    pub(crate) async fn current_revision(&self) -> Result<Revision, ApiError> {
        self.store
            .current_revision()
            .await
            .map_err(generic_store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = ContinueToken {
            revision: 42,
            start_after: "/registry/core/configmaps/default/a".into(),
        };
        assert_eq!(ContinueToken::decode(&t.encode()).expect("decodes"), t);
        assert_eq!(ContinueToken::decode("!!!").expect_err("garbage").code, 400);
    }
}
