//! The garbagecollector controller (Kubernetes' `pkg/controller/garbagecollector`).
//! Every resource the API serves with list, watch and delete (found through
//! discovery, again every [`REDISCOVER`], so custom resources are covered; a
//! dependent whose owner's kind is not served yet is retried with backoff, and
//! looked at again as soon as discovery finds the kind) is watched
//! metadata-only into an owner -> dependents [`graph`]. Objects whose owners are all
//! gone are deleted (background), references to gone owners are dropped while another
//! owner remains, owners deleted in the foreground lose their `foregroundDeletion`
//! finalizer once their blocking dependents are gone, and orphaning owners lose their
//! `orphan` finalizer once their dependents no longer point at them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::verbs;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;

use crate::queue;
use crate::{Context, Error};

mod attempt;
pub(crate) mod discovery;
mod graph;

use attempt::Resources;
use discovery::Served;
use graph::{Graph, Node};

/// How often discovery runs again to pick up new (or dropped) resources.
const REDISCOVER: Duration = Duration::from_secs(30);
/// How long to wait for the first lists before acting anyway.
const SYNC_WAIT: Duration = Duration::from_secs(30);

/// Resources the collector never looks at (as Kubernetes' `ignoredResources`).
const IGNORED: &[&str] = &["/events", "events.k8s.io/events"];

type Msg = (String, Event<PartialObjectMeta<DynamicObject>>);

struct Collector {
    client: kube::Client,
    resources: Resources,
    graph: Graph,
    watches: HashMap<String, tokio::task::JoinHandle<()>>,
    /// Resources whose first list has not completed.
    unsynced: HashSet<String>,
    /// Per resource, uids seen during a relist (to drop what vanished meanwhile).
    relisting: HashMap<String, HashSet<String>>,
    tx: mpsc::UnboundedSender<Msg>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        for w in self.watches.values() {
            w.abort();
        }
    }
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let (q, mut worker) = queue::queue::<String>();
    let mut gc = Collector {
        client: ctx.client.clone(),
        resources: Resources {
            by_key: HashMap::new(),
            by_kind: HashMap::new(),
        },
        graph: Graph::default(),
        watches: HashMap::new(),
        unsynced: HashSet::new(),
        relisting: HashMap::new(),
        tx,
    };
    gc.rediscover().await;
    let started = tokio::time::Instant::now();
    let mut rediscover = tokio::time::interval(REDISCOVER);
    rediscover.tick().await;
    let mut deferred: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            biased;
            Some((key, ev)) = rx.recv() => {
                for uid in gc.apply(&key, ev) {
                    q.add(uid);
                }
            }
            _ = rediscover.tick() => {
                // Dependents of newly served kinds (custom resources) are looked at
                // again at once instead of at their next backoff.
                for (group, kind) in gc.rediscover().await {
                    for uid in gc.graph.with_owner_kind(&group, &kind) {
                        q.add(uid);
                    }
                }
            }
            Some(batch) = worker.next_batch() => {
                deferred.extend(batch);
                if !gc.unsynced.is_empty() && started.elapsed() < SYNC_WAIT {
                    // Act only on a complete graph; look again shortly.
                    q.add_after(String::new(), Duration::from_millis(500));
                    continue;
                }
                for uid in std::mem::take(&mut deferred) {
                    if uid.is_empty() {
                        continue;
                    }
                    let ok = match attempt::attempt(&gc.client, &gc.resources, &gc.graph, &uid).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::debug!(uid = %uid, error = %e, "garbage collection attempt failed");
                            false
                        }
                    };
                    worker.done(uid, ok);
                }
            }
        }
    }
}

impl Collector {
    /// Runs discovery; starts watches for new resources, stops those no longer
    /// served. Returns the (group, kind) of the resources newly watched.
    async fn rediscover(&mut self) -> Vec<(String, String)> {
        let served = match discovery::served(&self.client).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "discovery failed; keeping the current resources");
                return Vec::new();
            }
        };
        let mut added = Vec::new();
        let wanted: Vec<Served> = served
            .into_iter()
            .filter(|s| s.supports(&[verbs::LIST, verbs::WATCH, verbs::DELETE]))
            .filter(|s| !IGNORED.contains(&s.key().as_str()))
            .collect();
        let keys: HashSet<String> = wanted.iter().map(Served::key).collect();
        let gone: Vec<String> = self
            .watches
            .keys()
            .filter(|k| !keys.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            tracing::debug!(resource = %k, "resource no longer served; stopping its watch");
            if let Some(w) = self.watches.remove(&k) {
                w.abort();
            }
            self.unsynced.remove(&k);
            for uid in self.graph.uids_of(&k) {
                self.graph.remove(&uid);
            }
        }
        self.resources.by_kind = wanted
            .iter()
            .map(|s| {
                (
                    (s.resource.group.clone(), s.resource.kind.clone()),
                    s.clone(),
                )
            })
            .collect();
        for s in wanted {
            let key = s.key();
            if !self.watches.contains_key(&key) {
                tracing::debug!(resource = %key, "watching resource");
                added.push((s.resource.group.clone(), s.resource.kind.clone()));
                self.unsynced.insert(key.clone());
                self.watches.insert(
                    key.clone(),
                    spawn_watch(&self.client, &s, key.clone(), self.tx.clone()),
                );
            }
            self.resources.by_key.insert(key, s);
        }
        added
    }

    /// Applies a watch event to the graph; returns uids to look at.
    fn apply(&mut self, key: &str, ev: Event<PartialObjectMeta<DynamicObject>>) -> Vec<String> {
        match ev {
            Event::Apply(o) => Node::from_meta(key, &o.metadata)
                .map(|n| self.graph.upsert(n))
                .unwrap_or_default(),
            Event::Delete(o) => o
                .metadata
                .uid
                .as_deref()
                .map(|u| self.graph.remove(u))
                .unwrap_or_default(),
            Event::Init => {
                self.relisting.insert(key.to_string(), HashSet::new());
                Vec::new()
            }
            Event::InitApply(o) => {
                let Some(n) = Node::from_meta(key, &o.metadata) else {
                    return Vec::new();
                };
                self.relisting
                    .entry(key.to_string())
                    .or_default()
                    .insert(n.uid.clone());
                self.graph.upsert(n)
            }
            Event::InitDone => {
                self.unsynced.remove(key);
                let seen = self.relisting.remove(key).unwrap_or_default();
                let mut out = Vec::new();
                for uid in self.graph.uids_of(key) {
                    if !seen.contains(&uid) {
                        out.extend(self.graph.remove(&uid));
                    }
                }
                out
            }
        }
    }
}

fn spawn_watch(
    client: &kube::Client,
    s: &Served,
    key: String,
    tx: mpsc::UnboundedSender<Msg>,
) -> tokio::task::JoinHandle<()> {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &s.resource);
    tokio::spawn(async move {
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    if tx.send((key.clone(), ev)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::debug!(resource = %key, error = %e, "metadata watch failed; retrying")
                }
            }
        }
    })
}
