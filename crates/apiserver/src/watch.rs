//! Watch: a chunked stream of `{"type": ..., "object": ...}` lines, with initial
//! ADDED events when no resourceVersion is given, resume from any revision that is
//! not compacted (410 Expired as an ERROR event otherwise), selector transitions
//! turned into ADDED/DELETED like the watch cache does, and bookmarks.

use std::time::Duration;

use api::status::ApiError;
use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use std::sync::Arc;

use store::{EventKind, StoreError};

use crate::watch_cache::Change;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::handler::Reply;
use crate::negotiate::Output;
use crate::rest::{Ctx, ListQuery};
use crate::storage::parse_rv;

/// How often an idle watch with bookmarks enabled gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

struct Encoder {
    output: Output,
    group: String,
    kind: String,
    api_version: String,
    headers_sent: bool,
    include: api::table::IncludeObject,
    /// A custom resource prints its own columns.
    custom: Option<Arc<crate::crd::CustomResource>>,
}

impl Encoder {
    fn line(&mut self, ty: &str, obj: Value) -> Bytes {
        let object = match (self.output, ty) {
            (_, "ERROR") | (_, "BOOKMARK") => obj,
            (Output::Table, _) => {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null);
                let list_meta = json!({"resourceVersion": rv});
                let mut t = match &self.custom {
                    Some(c) => c.table(std::slice::from_ref(&obj), self.include, list_meta),
                    None => api::table::build_table(
                        &self.group,
                        &self.kind,
                        std::slice::from_ref(&obj),
                        jiff::Timestamp::now(),
                        self.include,
                        list_meta,
                    ),
                };
                if self.headers_sent {
                    t["columnDefinitions"] = json!([]);
                }
                self.headers_sent = true;
                t
            }
            (Output::PartialMetadata, _) => crate::rest::partial_metadata(&obj),
            _ => obj,
        };
        let mut v = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    }

    /// `{"type":..,"object":<json>}` around already encoded object JSON.
    fn shared_line(&self, ty: &str, object: &Bytes) -> Bytes {
        let mut v = Vec::with_capacity(object.len() + 32);
        v.extend_from_slice(b"{\"type\":\"");
        v.extend_from_slice(ty.as_bytes());
        v.extend_from_slice(b"\",\"object\":");
        v.extend_from_slice(object);
        v.extend_from_slice(b"}\n");
        Bytes::from(v)
    }

    fn bookmark(&mut self, rv: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.kind, "apiVersion": self.api_version, "metadata": meta});
        self.line("BOOKMARK", obj)
    }
}

impl Ctx<'_> {
    pub(crate) async fn watch(&mut self) -> Result<Reply, ApiError> {
        let q = self.list_query()?;
        let rv = self
            .info
            .param("resourceVersion")
            .filter(|s| !s.is_empty())
            .map(String::from);
        let send_initial = self.info.param("sendInitialEvents") == Some("true");
        let bookmarks = self.info.flag("allowWatchBookmarks");
        if send_initial && !bookmarks {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                vec![api::status::FieldError::forbidden(
                    "allowWatchBookmarks",
                    "allowWatchBookmarks must be true when sendInitialEvents is set",
                )],
            ));
        }
        let timeout = match self.info.param("timeoutSeconds") {
            Some(t) => Duration::from_secs(
                t.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t:?}")))?,
            ),
            None => Duration::from_secs(rand::rng().random_range(1800..3600)),
        };
        let prefix = self.list_prefix();
        let mut enc = Encoder {
            output: self.output,
            group: self.res.group.clone(),
            kind: self.res.kind.clone(),
            api_version: self.res.api_version(),
            headers_sent: false,
            include: self.include_object(),
            custom: self.custom.clone(),
        };
        let (tx, rx) = mpsc::channel::<Bytes>(64);

        // Initial state: no resourceVersion or "0" (or sendInitialEvents) lists first.
        let (initial, from) = match rv.as_deref() {
            None | Some("0") => {
                let page = self
                    .state
                    .storage
                    .list(&self.res, &prefix, None, None, 0, &|o| self.matches(&q, o))
                    .await?;
                (Some(page.items), page.revision)
            }
            Some(r) => {
                let r = parse_rv(r)?;
                if send_initial {
                    let page = self
                        .state
                        .storage
                        .list(&self.res, &prefix, None, None, 0, &|o| self.matches(&q, o))
                        .await?;
                    (Some(page.items), page.revision.max(r))
                } else {
                    (None, r)
                }
            }
        };
        let compacted = self
            .state
            .storage
            .store
            .compacted_revision()
            .await
            .map_err(crate::storage::generic_store_error)?;
        if initial.is_none() && from < compacted.saturating_sub(1) {
            let e = ApiError::gone(from, compacted);
            let line = enc.line("ERROR", e.to_status());
            return Ok(Reply::Stream(Box::pin(futures::stream::once(async move {
                line
            }))));
        }
        let mut source = match self.state.watch_cache.subscribe(from) {
            Some(sub) => Source::Cache {
                backlog: sub.backlog.into(),
                live: sub.live,
            },
            None => match self.state.storage.store.watch(&prefix, from).await {
                Ok(s) => Source::Store(s),
                Err(StoreError::Compacted {
                    requested,
                    compacted,
                }) => {
                    let line = enc.line("ERROR", ApiError::gone(requested, compacted).to_status());
                    return Ok(Reply::Stream(Box::pin(futures::stream::once(async move {
                        line
                    }))));
                }
                Err(e) => return Err(crate::storage::generic_store_error(e)),
            },
        };
        // A watch without selectors sees every change under its prefix: no need to
        // look at the object (or the previous one) per event.
        let selects = q.labels.is_some() || q.fields.is_some();
        let ctx_matches = {
            let query = ListQuery {
                labels: q.labels.clone(),
                fields: q.fields.clone(),
            };
            let strategy = self.strategy.clone();
            move |obj: &Value| crate::rest::matches_query(&*strategy, &query, obj)
        };
        let mut shutdown = self.state.shutdown.clone();
        let view = self.state.storage.view(&self.res);
        tokio::spawn(async move {
            let mut last_rv = from;
            if let Some(items) = initial {
                for obj in items {
                    if tx.send(enc.line("ADDED", obj)).await.is_err() {
                        return;
                    }
                }
                if send_initial && tx.send(enc.bookmark(from, true)).await.is_err() {
                    return;
                }
            }
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut tick = tokio::time::interval(BOOKMARK_EVERY);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                    _ = shutdown.changed() => return,
                    _ = tick.tick(), if bookmarks => {
                        if tx.send(enc.bookmark(last_rv, false)).await.is_err() {
                            return;
                        }
                    }
                    ev = source.next() => {
                        let Some(ev) = ev else { return };
                        let change = match ev {
                            Ok(c) => c,
                            Err(StoreError::Compacted { requested, compacted }) => {
                                let _ = tx.send(enc.line("ERROR", ApiError::gone(requested, compacted).to_status())).await;
                                return;
                            }
                            Err(e) => {
                                let _ = tx.send(enc.line("ERROR", ApiError::internal(e.to_string()).to_status())).await;
                                return;
                            }
                        };
                        if change.revision <= from || !change.key.starts_with(&prefix) {
                            continue;
                        }
                        last_rv = change.revision;
                        let converted = view.converts();
                        let shown = |v: &Value| if converted { view.to_served(v.clone()) } else { v.clone() };
                        let obj_owned;
                        let obj: &Value = if converted { obj_owned = shown(&change.object); &obj_owned } else { &change.object };
                        let (now_matches, was_matching) = if selects {
                            let prev_owned;
                            let prev = match change.prev() {
                                Some(p) if converted => {
                                    prev_owned = shown(p);
                                    Some(&prev_owned)
                                }
                                other => other,
                            };
                            (ctx_matches(obj), prev.map(&ctx_matches))
                        } else {
                            (true, None)
                        };
                        let ty = match (change.kind, was_matching, now_matches) {
                            (EventKind::Created, _, true) => "ADDED",
                            (EventKind::Deleted, Some(false), _) => continue,
                            (EventKind::Deleted, _, true) | (EventKind::Deleted, Some(true), _) => "DELETED",
                            (EventKind::Updated, Some(false), true) => "ADDED",
                            (EventKind::Updated, Some(true), false) => "DELETED",
                            (EventKind::Updated, _, true) => "MODIFIED",
                            _ => continue,
                        };
                        // Plain JSON watchers share the object's bytes, encoded once.
                        let line = if enc.output == Output::Json && !converted {
                            enc.shared_line(ty, change.json())
                        } else {
                            enc.line(ty, obj.clone())
                        };
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Reply::Stream(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Where a watch's changes come from: the shared watch cache, or (for resumes older
/// than it holds) a store watch of its own.
enum Source {
    Cache {
        backlog: std::collections::VecDeque<Arc<Change>>,
        live: tokio::sync::broadcast::Receiver<Arc<Change>>,
    },
    Store(store::WatchStream),
}

impl Source {
    async fn next(&mut self) -> Option<Result<Arc<Change>, StoreError>> {
        match self {
            Source::Cache { backlog, live } => {
                if let Some(c) = backlog.pop_front() {
                    return Some(Ok(c));
                }
                // A watcher that falls too far behind is closed; the client resumes
                // from its last resourceVersion, as with kube-apiserver's cacher.
                live.recv().await.ok().map(Ok)
            }
            Source::Store(s) => loop {
                match s.next().await? {
                    Ok(ev) => {
                        if let Some(c) = Change::decode(ev) {
                            return Some(Ok(c));
                        }
                    }
                    Err(e) => return Some(Err(e)),
                }
            },
        }
    }
}
