//! The component as `skiff server` runs it: kube-runtime watchers fill the index, the
//! server answers from it.

use std::{
    collections::HashSet,
    fmt::Debug,
    sync::{
        Arc, PoisonError, RwLock, RwLockWriteGuard,
        atomic::{AtomicU8, Ordering},
    },
};

use futures::StreamExt;
use k8s_openapi::api::{
    core::v1::{Namespace, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::Instrument;

use crate::{DnsConfig, DnsServer, Error, Index, SharedIndex};

/// Runs the cluster DNS: binds `config.listen` (failing at once if it cannot), watches
/// Services, EndpointSlices and Namespaces into a fresh [`Index`] (list, then watch;
/// re-lists after a lost watch drop what disappeared meanwhile), and serves until
/// `shutdown` turns true. Cluster names are answered SERVFAIL until all three have
/// listed once; names outside the domain are forwarded from the start.
pub async fn run(
    client: kube::Client,
    config: DnsConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let index: SharedIndex = Arc::new(RwLock::new(Index::new(&config)?));
    let server = DnsServer::bind(index.clone(), &config).await?;
    tracing::info!(listen = ?server.local_addrs(), domain = %config.domain, "cluster DNS listening");
    let synced = Arc::new(Synced::default());
    let watches = async {
        tokio::join!(
            watch_into(Api::<Service>::all(client.clone()), &index, &synced, 0),
            watch_into(
                Api::<EndpointSlice>::all(client.clone()),
                &index,
                &synced,
                1
            ),
            watch_into(Api::<Namespace>::all(client), &index, &synced, 2),
        )
    };
    tokio::select! {
        result = server.run(shutdown) => result,
        _ = watches => Err(Error::ServerFailed("watch streams ended".to_string())),
    }
}

/// Which watches have listed once; the index is marked synced when all have.
#[derive(Debug, Default)]
struct Synced(AtomicU8);

const ALL_SYNCED: u8 = 0b111;

impl Synced {
    fn mark(&self, bit: u8, index: &SharedIndex) {
        let before = self.0.fetch_or(1 << bit, Ordering::SeqCst);
        if before != ALL_SYNCED && before | (1 << bit) == ALL_SYNCED {
            write(index).set_synced(true);
            tracing::info!("cluster DNS caches synced; answering cluster names");
        }
    }
}

/// A kind the index holds.
trait Indexed: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static {
    fn apply(index: &mut Index, object: &Self);
    fn delete(index: &mut Index, namespace: &str, name: &str);
    fn keys(index: &Index) -> Vec<(String, String)>;
}

impl Indexed for Service {
    fn apply(index: &mut Index, object: &Self) {
        index.apply_service(object);
    }
    fn delete(index: &mut Index, namespace: &str, name: &str) {
        index.delete_service(namespace, name);
    }
    fn keys(index: &Index) -> Vec<(String, String)> {
        index.service_keys()
    }
}

impl Indexed for EndpointSlice {
    fn apply(index: &mut Index, object: &Self) {
        index.apply_endpoint_slice(object);
    }
    fn delete(index: &mut Index, namespace: &str, name: &str) {
        index.delete_endpoint_slice(namespace, name);
    }
    fn keys(index: &Index) -> Vec<(String, String)> {
        index.slice_keys()
    }
}

impl Indexed for Namespace {
    fn apply(index: &mut Index, object: &Self) {
        index.apply_namespace(object);
    }
    fn delete(index: &mut Index, _namespace: &str, name: &str) {
        index.delete_namespace(name);
    }
    fn keys(index: &Index) -> Vec<(String, String)> {
        index
            .namespace_keys()
            .into_iter()
            .map(|n| (String::new(), n))
            .collect()
    }
}

/// Applies every watch event of `api` to the index, one object at a time.
async fn watch_into<K: Indexed>(api: Api<K>, index: &SharedIndex, synced: &Synced, bit: u8) {
    let kind = K::kind(&());
    let span = tracing::debug_span!("dns_watch", kind = %kind);
    async {
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut listing = Listing::default();
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    failing = false;
                    if listing.apply(index, event) {
                        tracing::debug!("listed");
                        synced.mark(bit, index);
                    }
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "watch failed; retrying with backoff");
                }
                Err(error) => tracing::debug!(%error, "watch still failing"),
            }
        }
    }
    .instrument(span)
    .await
}

/// The keys seen during a (re-)list: what the index holds beyond them when the list
/// ends was deleted while no watch was open.
#[derive(Debug, Default)]
struct Listing(Option<HashSet<(String, String)>>);

impl Listing {
    /// Applies one watch event; true when it completed a (re-)list.
    fn apply<K: Indexed>(&mut self, index: &SharedIndex, event: watcher::Event<K>) -> bool {
        match event {
            watcher::Event::Init => self.0 = Some(HashSet::new()),
            watcher::Event::InitApply(object) => {
                if let Some(seen) = &mut self.0 {
                    seen.insert(key(&object));
                }
                K::apply(&mut write(index), &object);
            }
            watcher::Event::InitDone => {
                if let Some(seen) = self.0.take() {
                    let mut index = write(index);
                    for (namespace, name) in K::keys(&index) {
                        if !seen.contains(&(namespace.clone(), name.clone())) {
                            K::delete(&mut index, &namespace, &name);
                        }
                    }
                }
                return true;
            }
            watcher::Event::Apply(object) => K::apply(&mut write(index), &object),
            watcher::Event::Delete(object) => {
                let (namespace, name) = key(&object);
                K::delete(&mut write(index), &namespace, &name);
            }
        }
        false
    }
}

fn key<K: Resource>(object: &K) -> (String, String) {
    (
        object.namespace().unwrap_or_default().to_ascii_lowercase(),
        object.name_any().to_ascii_lowercase(),
    )
}

fn write(index: &SharedIndex) -> RwLockWriteGuard<'_, Index> {
    index.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn service(name: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..Service::default()
        }
    }

    fn names(index: &SharedIndex) -> Vec<String> {
        let mut names: Vec<String> = write(index)
            .service_keys()
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_relist_drops_what_was_deleted_while_the_watch_was_down() {
        let index: SharedIndex = Arc::new(RwLock::new(Index::new(&DnsConfig::default()).unwrap()));
        let mut listing = Listing::default();
        assert!(!listing.apply::<Service>(&index, watcher::Event::Init));
        listing.apply(&index, watcher::Event::InitApply(service("a")));
        listing.apply(&index, watcher::Event::InitApply(service("b")));
        assert!(listing.apply::<Service>(&index, watcher::Event::InitDone));
        listing.apply(&index, watcher::Event::Apply(service("c")));
        assert_eq!(names(&index), ["a", "b", "c"]);

        // The watch broke; meanwhile a and c were deleted and d created.
        listing.apply::<Service>(&index, watcher::Event::Init);
        listing.apply(&index, watcher::Event::InitApply(service("b")));
        listing.apply(&index, watcher::Event::InitApply(service("d")));
        // Until the list is complete, nothing is dropped.
        assert_eq!(names(&index), ["a", "b", "c", "d"]);
        assert!(listing.apply::<Service>(&index, watcher::Event::InitDone));
        assert_eq!(names(&index), ["b", "d"]);

        listing.apply(&index, watcher::Event::Delete(service("b")));
        assert_eq!(names(&index), ["d"]);
    }

    #[test]
    fn the_index_is_synced_once_all_three_kinds_listed() {
        let index: SharedIndex = Arc::new(RwLock::new(Index::new(&DnsConfig::default()).unwrap()));
        let synced = Synced::default();
        synced.mark(0, &index);
        synced.mark(2, &index);
        synced.mark(0, &index);
        assert!(!write(&index).is_synced());
        synced.mark(1, &index);
        assert!(write(&index).is_synced());
    }
}
