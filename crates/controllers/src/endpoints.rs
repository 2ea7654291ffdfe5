//! The endpoints controller: an Endpoints object per Service with a selector, listing
//! the addresses of the pods it selects (Kubernetes'
//! `pkg/controller/endpoint/endpoints_controller.go`). Services without a selector are
//! left alone; the Endpoints of a deleted Service are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::{Context, Error};

pub(crate) mod pods;
mod subsets;

use crate::informers::{Change, Informers};
use crate::queue::{self, Queue, Tasks, informer};

/// A Service key: namespace and name.
pub(crate) type Key = (String, String);

/// How often every Service is synced again regardless of events.
const RESYNC: Duration = Duration::from_secs(60);

/// Services (in the pod's namespace) selecting the pod before or after a change.
fn services_for_pod_change(c: Change<'_, Pod>, services: &Store<Service>) -> Vec<Key> {
    let (new, old) = match c {
        Change::Applied { obj, old } => (obj, old),
        Change::Deleted(obj) => (obj, None),
        Change::Resynced => return Vec::new(),
    };
    services
        .state()
        .iter()
        .filter(|s| pods::selects(s, new) || old.is_some_and(|o| pods::selects(s, o)))
        .map(|s| key_of(&s.metadata))
        .collect()
}

/// The key of an object's metadata.
pub(crate) fn key_of(m: &ObjectMeta) -> Key {
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// The Service and Pod caches both endpoint controllers build on: a Service change
/// enqueues that Service, a Pod change the Services selecting the pod.
pub(crate) async fn service_and_pod_informers(
    informers: &Informers,
    tasks: &mut Tasks,
    q: &Queue<Key>,
) -> (Store<Service>, Store<Pod>) {
    let services = informer(informers, tasks, q.clone(), |c: Change<'_, Service>| {
        c.object()
            .map(|s| key_of(&s.metadata))
            .into_iter()
            .collect()
    })
    .await;
    let svc_store = services.clone();
    let pods = informer(informers, tasks, q.clone(), move |c| {
        services_for_pod_change(c, &svc_store)
    })
    .await;
    (services, pods)
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let _client = ctx.client.clone();
    let (q, mut worker) = queue::queue::<Key>();
    let mut tasks = Tasks::default();
    let (services, pod_store) = service_and_pod_informers(&ctx.informers, &mut tasks, &q).await;
    let endpoints = informer(
        &ctx.informers,
        &mut tasks,
        q.clone(),
        |c: Change<'_, Endpoints>| {
            c.object()
                .map(|e| key_of(&e.metadata))
                .into_iter()
                .collect()
        },
    )
    .await;
    spawn_resync(&mut tasks, q.clone(), services.clone(), endpoints.clone());
    let caches = Caches {
        services,
        pods: pod_store,
        endpoints,
    };
    while let Some(batch) = worker.next_batch().await {
        for key in batch {
            let ok = match sync(&ctx, &caches, &key).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(object = %format!("{}/{}", key.0, key.1), error = %e, "syncing endpoints failed");
                    false
                }
            };
            worker.done(key, ok);
        }
    }
    Ok(())
}

fn spawn_resync(
    tasks: &mut Tasks,
    q: Queue<Key>,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
) {
    tasks.spawn(async move {
        loop {
            for s in services.state() {
                q.add(key_of(&s.metadata));
            }
            for e in endpoints.state() {
                q.add(key_of(&e.metadata));
            }
            tokio::time::sleep(RESYNC).await;
        }
    });
}

struct Caches {
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
}

/// Leader-election Endpoints carry this annotation and are never touched.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

#[tracing::instrument(skip_all, fields(object = %format!("{}/{}", key.0, key.1)))]
async fn sync(ctx: &Context, caches: &Caches, key: &Key) -> Result<(), Error> {
    let (ns, name) = key;
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    let existing = caches.endpoints.get(&ObjectRef::new(name).within(ns));
    let Some(svc) = caches.services.get(&ObjectRef::new(name).within(ns)) else {
        let Some(ep) = existing else { return Ok(()) };
        if ep
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(LEADER_ANNOTATION))
            || (ns == "default" && name == "kubernetes")
        {
            return Ok(());
        }
        tracing::debug!("service is gone; deleting its endpoints");
        return match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(Error::api("deleting endpoints", e)),
        };
    };
    if pods::selector(&svc).is_none() {
        return Ok(());
    }
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let selected: Vec<Arc<Pod>> = caches.pods.state_filter(|p| pods::selects(&svc, p));
    let selected: Vec<&Pod> = selected.iter().map(|p| p.as_ref()).collect();
    let subsets = subsets::desired(&svc, &selected);
    let mut labels: BTreeMap<String, String> = svc.metadata.labels.clone().unwrap_or_default();
    if pods::is_headless(&svc) {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    } else {
        labels.remove("service.kubernetes.io/headless");
    }
    let subsets_opt = (!subsets.is_empty()).then_some(subsets);
    match existing {
        Some(ep) => {
            let same_subsets = ep.subsets.clone().filter(|s| !s.is_empty()) == subsets_opt;
            let same_labels = ep.metadata.labels.clone().unwrap_or_default() == labels;
            if same_subsets && same_labels {
                return Ok(());
            }
            let mut new = (*ep).clone();
            new.subsets = subsets_opt;
            new.metadata.labels = Some(labels);
            tracing::debug!("updating endpoints");
            api.replace(name, &PostParams::default(), &new)
                .await
                .map_err(|e| Error::api("updating endpoints", e))?;
        }
        None => {
            let new = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    ..Default::default()
                },
                subsets: subsets_opt,
            };
            tracing::debug!("creating endpoints");
            match api.create(&PostParams::default(), &new).await {
                Ok(_) => {}
                // The namespace is terminating: nothing to do.
                Err(kube::Error::Api(e)) if e.code == 403 => {}
                Err(e) => return Err(Error::api("creating endpoints", e)),
            }
        }
    }
    Ok(())
}
