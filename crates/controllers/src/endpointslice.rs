//! The endpointslice controller: `discovery.k8s.io/v1` EndpointSlices for every
//! Service with a selector, owned by the Service (Kubernetes'
//! `pkg/controller/endpointslice`). Slices of deleted Services go with them through
//! the garbage collector (owner references).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::endpoints::{Key, key_of, pods, service_and_pod_informers};
use crate::informers::Change;
use crate::queue::{self, Queue, Tasks, informer};
use crate::{Context, Error};

mod desired;

use desired::{MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};

const RESYNC: Duration = Duration::from_secs(60);

fn slice_service(s: &EndpointSlice) -> Option<Key> {
    let labels = s.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    Some((
        s.metadata.namespace.clone().unwrap_or_default(),
        labels.get(SERVICE_NAME_LABEL)?.clone(),
    ))
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let _client = ctx.client.clone();
    let (q, mut worker) = queue::queue::<Key>();
    let mut tasks = Tasks::default();
    let (services, pod_store) = service_and_pod_informers(&ctx.informers, &mut tasks, &q).await;
    // Every slice is cached (one shared watch); only ours are looked at.
    let slices = informer(
        &ctx.informers,
        &mut tasks,
        q.clone(),
        |c: Change<'_, EndpointSlice>| c.object().and_then(slice_service).into_iter().collect(),
    )
    .await;
    spawn_resync(&mut tasks, q.clone(), services.clone());
    while let Some(batch) = worker.next_batch().await {
        for key in batch {
            let ok = match sync(&ctx, &services, &pod_store, &slices, &key).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(object = %format!("{}/{}", key.0, key.1), error = %e, "syncing endpointslices failed");
                    false
                }
            };
            worker.done(key, ok);
        }
    }
    Ok(())
}

fn spawn_resync(tasks: &mut Tasks, q: Queue<Key>, services: Store<Service>) {
    tasks.spawn(async move {
        loop {
            tokio::time::sleep(RESYNC).await;
            for s in services.state() {
                q.add(key_of(&s.metadata));
            }
        }
    });
}

#[tracing::instrument(skip_all, fields(object = %format!("{}/{}", key.0, key.1)))]
async fn sync(
    ctx: &Context,
    services: &Store<Service>,
    pod_store: &Store<Pod>,
    slices: &Store<EndpointSlice>,
    key: &Key,
) -> Result<(), Error> {
    let (ns, name) = key;
    let Some(svc) = services.get(&ObjectRef::new(name).within(ns)) else {
        // The garbage collector removes slices owned by a deleted Service.
        return Ok(());
    };
    if pods::selector(&svc).is_none() || svc.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let selected: Vec<Arc<Pod>> = pod_store.state_filter(|p| pods::selects(&svc, p));
    let selected: Vec<&Pod> = selected.iter().map(|p| p.as_ref()).collect();
    let existing: Vec<Arc<EndpointSlice>> = slices.state_filter(|s| {
        slice_service(s).as_ref() == Some(key) && s.metadata.deletion_timestamp.is_none()
    });
    let existing: Vec<&EndpointSlice> = existing.iter().map(|s| s.as_ref()).collect();
    let plan = desired::plan(&svc, &selected, &existing);
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    for s in &plan.create {
        tracing::debug!(endpoints = s.endpoints.len(), "creating endpointslice");
        match api.create(&PostParams::default(), s).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 403 => {}
            Err(e) => return Err(Error::api("creating endpointslice", e)),
        }
    }
    for s in &plan.update {
        let n = s.metadata.name.clone().unwrap_or_default();
        tracing::debug!(slice = %n, endpoints = s.endpoints.len(), "updating endpointslice");
        api.replace(&n, &PostParams::default(), s)
            .await
            .map_err(|e| Error::api("updating endpointslice", e))?;
    }
    for n in &plan.delete {
        tracing::debug!(slice = %n, "deleting endpointslice");
        match api.delete(n, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::api("deleting endpointslice", e)),
        }
    }
    Ok(())
}
