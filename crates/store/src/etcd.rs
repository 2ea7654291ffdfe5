//! A store on a real etcd v3 cluster. Revisions are etcd's own revisions.
//!
//! Every write is one etcd transaction: create is `create_revision == 0 → put`, update
//! is `mod_revision == expected → put, else get`, delete is `mod_revision == expected →
//! delete, else get`, so a failed compare-and-swap answers with the current state
//! without a second round trip. Keys live under an optional prefix, which the store
//! adds and strips.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
};

use crate::keys::{list_start, prefix_end};
use crate::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Revision, Store, StoreError, WatchStream,
};

#[cfg(test)]
mod tests;

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Client URLs, such as `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Prepended to every key (for example `/skiff`); empty for none. Lets several
    /// clusters share one etcd.
    pub prefix: String,
    /// How long connecting (and the first request, which checks the connection) may take.
    pub connect_timeout: Duration,
    /// A deadline for each unary request; `None` for none. Watches are not affected.
    pub request_timeout: Option<Duration>,
    /// User name and password when etcd has authentication enabled.
    pub user: Option<(String, String)>,
}

impl Default for EtcdConfig {
    /// `http://127.0.0.1:2379`, no prefix, a 5 second connect timeout.
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            prefix: String::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: None,
            user: None,
        }
    }
}

/// A [`Store`] on etcd. See the module documentation.
pub struct EtcdStore {
    client: Client,
    prefix: Vec<u8>,
    request_timeout: Option<Duration>,
    /// A revision known to be at or below etcd's compacted revision (speeds up
    /// [`Store::compacted_revision`]).
    compacted_floor: AtomicI64,
}

/// etcd's message when a revision was compacted away.
const ERR_COMPACTED: &str = "required revision has been compacted";
/// etcd's message when a revision is newer than the current one.
const ERR_FUTURE: &str = "required revision is a future revision";

fn grpc_message_contains(error: &etcd_client::Error, text: &str) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status) if status.message().contains(text))
}

impl EtcdStore {
    /// Connects to etcd and checks that it answers.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdStore, StoreError> {
        let mut options = ConnectOptions::new().with_connect_timeout(config.connect_timeout);
        if let Some((name, password)) = &config.user {
            options = options.with_user(name.clone(), password.clone());
        }
        let endpoints = config.endpoints.join(",");
        let connecting = Client::connect(&config.endpoints, Some(options));
        let client = tokio::time::timeout(config.connect_timeout, connecting)
            .await
            .map_err(|_| StoreError::Unavailable {
                reason: format!(
                    "etcd at {endpoints} did not answer within {:?}",
                    config.connect_timeout
                ),
            })?
            .map_err(|source| StoreError::etcd(format!("cannot connect to {endpoints}"), source))?;
        let store = EtcdStore {
            client,
            prefix: config.prefix.into_bytes(),
            request_timeout: config.request_timeout,
            compacted_floor: AtomicI64::new(1),
        };
        let revision = tokio::time::timeout(config.connect_timeout, store.current_revision())
            .await
            .map_err(|_| StoreError::Unavailable {
                reason: format!(
                    "etcd at {endpoints} did not answer within {:?}",
                    config.connect_timeout
                ),
            })??;
        tracing::debug!(%endpoints, revision, "connected to etcd");
        Ok(store)
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = self.prefix.clone();
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The etcd range `[start, end)` for keys under `prefix` from `start` (both without
    /// the store prefix).
    fn range(&self, prefix: &str, start: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut from = self.prefix.clone();
        from.extend_from_slice(start);
        let mut full_prefix = self.prefix.clone();
        full_prefix.extend_from_slice(prefix.as_bytes());
        // "\0" as the start means the first key; as the end it means "no end".
        let end = prefix_end(&full_prefix).unwrap_or_else(|| vec![0]);
        if from.is_empty() {
            from.push(0);
        }
        (from, end)
    }

    fn user_key(&self, key: &[u8]) -> Result<String, StoreError> {
        let lossy = || String::from_utf8_lossy(key).into_owned();
        let stripped =
            key.strip_prefix(self.prefix.as_slice())
                .ok_or_else(|| StoreError::Corrupt {
                    key: lossy(),
                    reason: "key outside the store prefix".to_string(),
                })?;
        String::from_utf8(stripped.to_vec()).map_err(|_| StoreError::Corrupt {
            key: lossy(),
            reason: "key is not UTF-8".to_string(),
        })
    }

    fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: self.user_key(kv.key())?,
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    /// Runs one unary request under the configured deadline; the inner result is etcd's.
    async fn call<T>(
        &self,
        context: &str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<Result<T, etcd_client::Error>, StoreError> {
        match self.request_timeout {
            Some(limit) => {
                tokio::time::timeout(limit, request)
                    .await
                    .map_err(|_| StoreError::Unavailable {
                        reason: format!("etcd request ({context}) timed out after {limit:?}"),
                    })
            }
            None => Ok(request.await),
        }
    }

    /// Runs one unary request under the configured deadline, mapping etcd's error.
    async fn deadline<T>(
        &self,
        context: &str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        self.call(context, request)
            .await?
            .map_err(|source| StoreError::etcd(context.to_string(), source))
    }

    async fn txn(&self, context: &str, txn: Txn) -> Result<TxnResponse, StoreError> {
        let mut kv = self.client.kv_client();
        self.deadline(context, kv.txn(txn)).await
    }

    /// The current state from the `else` branch of a failed transaction.
    /// The error of a compare-and-swap that did not succeed: NotFound when the key is
    /// gone, Conflict (with the current state) when its revision moved on.
    fn cas_failure(&self, key: &str, response: &TxnResponse) -> Result<StoreError, StoreError> {
        Ok(match self.failed_state(response)? {
            None => StoreError::NotFound {
                key: key.to_string(),
            },
            current => StoreError::Conflict {
                key: key.to_string(),
                current,
            },
        })
    }

    fn failed_state(&self, response: &TxnResponse) -> Result<Option<KeyValue>, StoreError> {
        for op in response.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                return get.kvs().first().map(|kv| self.key_value(kv)).transpose();
            }
        }
        Ok(None)
    }

    /// Whether a range at `revision` is still served (not compacted).
    async fn readable_at(&self, revision: Revision) -> Result<bool, StoreError> {
        let (key, _) = self.range("", b"");
        let mut kv = self.client.kv_client();
        let options = GetOptions::new().with_count_only().with_revision(revision);
        match self.call("probe", kv.get(key, Some(options))).await? {
            Ok(_) => Ok(true),
            Err(error) if grpc_message_contains(&error, ERR_COMPACTED) => Ok(false),
            Err(error) if grpc_message_contains(&error, ERR_FUTURE) => Ok(true),
            Err(source) => Err(StoreError::etcd(
                "cannot probe the compacted revision",
                source,
            )),
        }
    }

    async fn compacted_error(&self, requested: Revision) -> StoreError {
        match self.compacted_revision().await {
            Ok(compacted) => StoreError::Compacted {
                requested,
                compacted,
            },
            Err(error) => error,
        }
    }

    async fn future_error(&self, requested: Revision) -> StoreError {
        match self.current_revision().await {
            Ok(current) => StoreError::FutureRevision { requested, current },
            Err(error) => error,
        }
    }
}

fn header_revision(response: &TxnResponse) -> Revision {
    response.header().map_or(0, |header| header.revision())
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let (key, _) = self.range("", b"");
        let mut kv = self.client.kv_client();
        let options = GetOptions::new().with_count_only();
        let response = self
            .deadline("cannot read the revision", kv.get(key, Some(options)))
            .await?;
        Ok(response.header().map_or(0, |header| header.revision()))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let mut kv = self.client.kv_client();
        let response = self
            .deadline("cannot read a key", kv.get(self.full_key(key), None))
            .await?;
        response
            .kvs()
            .first()
            .map(|kv| self.key_value(kv))
            .transpose()
    }

    async fn list(&self, opts: &ListOptions) -> Result<ListResult, StoreError> {
        if let Some(requested) = opts.revision
            && requested < 1
        {
            // etcd's history starts at revision 1; 0 would mean "current" to etcd.
            return Err(self.compacted_error(requested).await);
        }
        let start = list_start(&opts.prefix, opts.start_after.as_deref());
        let (from, end) = self.range(&opts.prefix, &start);
        let mut options = GetOptions::new()
            .with_range(end)
            .with_limit(i64::try_from(opts.limit).unwrap_or(i64::MAX));
        if let Some(revision) = opts.revision {
            options = options.with_revision(revision);
        }
        let mut kv = self.client.kv_client();
        let response = match self.call("list", kv.get(from, Some(options))).await? {
            Ok(response) => response,
            Err(error) => {
                let requested = opts.revision.unwrap_or(0);
                return Err(if grpc_message_contains(&error, ERR_COMPACTED) {
                    self.compacted_error(requested).await
                } else if grpc_message_contains(&error, ERR_FUTURE) {
                    self.future_error(requested).await
                } else {
                    StoreError::etcd("cannot list", error)
                });
            }
        };
        let items = response
            .kvs()
            .iter()
            .map(|kv| self.key_value(kv))
            .collect::<Result<Vec<_>, _>>()?;
        let revision = opts
            .revision
            .unwrap_or_else(|| response.header().map_or(0, |header| header.revision()));
        Ok(ListResult {
            items,
            revision,
            more: response.more(),
        })
    }

    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let (from, end) = self.range(prefix, prefix.as_bytes());
        let mut kv = self.client.kv_client();
        let options = GetOptions::new().with_range(end).with_count_only();
        let response = self
            .deadline("cannot count", kv.get(from, Some(options)))
            .await?;
        Ok(usize::try_from(response.count()).unwrap_or(0))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full.clone(), value.to_vec(), None)])
            .or_else([TxnOp::get(full, None)]);
        let response = self.txn("cannot create a key", txn).await?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let revision = header_revision(&response);
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([
                Compare::version(full.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(
                full.clone(),
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let response = self.txn("cannot update a key", txn).await?;
        if !response.succeeded() {
            return Err(self.cas_failure(key, &response)?);
        }
        let revision = header_revision(&response);
        let create_revision = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|prev| prev.create_revision()),
                _ => None,
            })
            .ok_or_else(|| StoreError::Corrupt {
                key: key.to_string(),
                reason: "etcd did not return the previous value of an update".to_string(),
            })?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let full = self.full_key(key);
        let mut compares = vec![Compare::version(full.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected,
            ));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                full.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full, None)]);
        let response = self.txn("cannot delete a key", txn).await?;
        if !response.succeeded() {
            return Err(self.cas_failure(key, &response)?);
        }
        let revision = header_revision(&response);
        let prev = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().cloned(),
                _ => None,
            })
            .ok_or_else(|| StoreError::Corrupt {
                key: key.to_string(),
                reason: "etcd did not return the deleted value".to_string(),
            })?;
        Ok(KeyValue {
            key: key.to_string(),
            value: Bytes::copy_from_slice(prev.value()),
            create_revision: prev.create_revision(),
            mod_revision: revision,
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let (from, end) = self.range(prefix, prefix.as_bytes());
        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(after.saturating_add(1).max(1))
            .with_prev_key();
        let mut watch_client = self.client.watch_client();
        let stream = watch_client
            .watch(from, Some(options))
            .await
            .map_err(|source| StoreError::etcd("cannot start a watch", source))?;
        let state = EtcdWatch {
            stream,
            prefix: self.prefix.clone(),
            after,
            buffered: VecDeque::new(),
        };
        Ok(Box::pin(futures::stream::unfold(
            Some(state),
            |state| async move {
                let mut state = state?;
                match state.next().await {
                    Ok(event) => Some((Ok(event), Some(state))),
                    Err(error) => Some((Err(error), None)),
                }
            },
        )))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut kv = self.client.kv_client();
        let options = CompactionOptions::new().with_physical();
        match self
            .call("compact", kv.compact(revision, Some(options)))
            .await?
        {
            Ok(_) => {
                self.compacted_floor.fetch_max(revision, Ordering::Relaxed);
                tracing::debug!(revision, "etcd compacted");
                Ok(())
            }
            // Already compacted at or past this revision: nothing to do.
            Err(error) if grpc_message_contains(&error, ERR_COMPACTED) => Ok(()),
            Err(error) if grpc_message_contains(&error, ERR_FUTURE) => {
                Err(self.future_error(revision).await)
            }
            Err(source) => Err(StoreError::etcd("cannot compact", source)),
        }
    }

    /// etcd does not report its compacted revision directly: this finds the oldest
    /// revision a range is still served at, by binary search from the newest one this
    /// store knows about. 1 when nothing was compacted.
    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        let floor = self.compacted_floor.load(Ordering::Relaxed).max(1);
        if self.readable_at(floor).await? {
            return Ok(floor);
        }
        // Unreadable at `low`, readable at `high`.
        let (mut low, mut high) = (floor, self.current_revision().await?);
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if self.readable_at(middle).await? {
                high = middle;
            } else {
                low = middle;
            }
        }
        self.compacted_floor.fetch_max(high, Ordering::Relaxed);
        Ok(high)
    }
}

/// An etcd watch turned into our events.
struct EtcdWatch {
    stream: etcd_client::WatchStream,
    prefix: Vec<u8>,
    after: Revision,
    buffered: VecDeque<Event>,
}

impl EtcdWatch {
    async fn next(&mut self) -> Result<Event, StoreError> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return Ok(event);
            }
            let response = self
                .stream
                .message()
                .await
                .map_err(|source| StoreError::etcd("watch failed", source))?
                .ok_or_else(|| StoreError::Unavailable {
                    reason: "etcd ended the watch stream".to_string(),
                })?;
            if response.canceled() {
                if response.compact_revision() > 0 {
                    return Err(StoreError::Compacted {
                        requested: self.after,
                        compacted: response.compact_revision(),
                    });
                }
                return Err(StoreError::Unavailable {
                    reason: format!("etcd cancelled the watch: {}", response.cancel_reason()),
                });
            }
            for event in response.events() {
                self.buffered.push_back(self.convert(event)?);
            }
        }
    }

    fn convert(&self, event: &etcd_client::Event) -> Result<Event, StoreError> {
        let kv = event.kv().ok_or_else(|| StoreError::Unavailable {
            reason: "etcd sent a watch event without a key".to_string(),
        })?;
        let lossy = || String::from_utf8_lossy(kv.key()).into_owned();
        let key = kv
            .key()
            .strip_prefix(self.prefix.as_slice())
            .and_then(|key| String::from_utf8(key.to_vec()).ok())
            .ok_or_else(|| StoreError::Corrupt {
                key: lossy(),
                reason: "key outside the store prefix or not UTF-8".to_string(),
            })?;
        let prev = event.prev_kv();
        let prev_value = prev.map(|prev| Bytes::copy_from_slice(prev.value()));
        Ok(match event.event_type() {
            EventType::Put => Event {
                kind: if kv.create_revision() == kv.mod_revision() {
                    EventKind::Created
                } else {
                    EventKind::Updated
                },
                kv: KeyValue {
                    key,
                    value: Bytes::copy_from_slice(kv.value()),
                    create_revision: kv.create_revision(),
                    mod_revision: kv.mod_revision(),
                },
                prev_value,
            },
            EventType::Delete => Event {
                kind: EventKind::Deleted,
                kv: KeyValue {
                    key,
                    value: prev_value.clone().unwrap_or_default(),
                    create_revision: prev.map_or(0, |prev| prev.create_revision()),
                    mod_revision: kv.mod_revision(),
                },
                prev_value,
            },
        })
    }
}
