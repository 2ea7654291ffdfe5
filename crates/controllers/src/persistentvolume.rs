//! The persistentvolume-binder controller (Kubernetes' PV controller,
//! `pkg/controller/volume/persistentvolume`): binds claims to volumes and keeps
//! both objects' phases, and hands claims to their class's provisioner.
//!
//! - A claim gets the smallest Available volume that satisfies it (class, access
//!   modes, capacity, selector, volume mode), or the volume it names in
//!   `spec.volumeName`, or a volume pre-bound to it by `claimRef`. Binding writes
//!   the volume's claimRef and phase Bound, then the claim's `volumeName`, its
//!   `pv.kubernetes.io/bind-completed` / `bound-by-controller` annotations and its
//!   status (Bound, access modes, capacity).
//! - A claim whose class binds on first consumer (`WaitForFirstConsumer`) waits
//!   until the scheduler names a node in `volume.kubernetes.io/selected-node`; only
//!   a volume pre-bound to it is bound before that.
//! - A claim of a class with an external provisioner and no fitting volume gets
//!   `volume.kubernetes.io/storage-provisioner`: the provisioner (the node agent's
//!   local-path provisioner for `rancher.io/local-path`) creates a volume pre-bound
//!   to the claim by claimRef, and the binder binds it.
//! - A volume whose claim is gone becomes Released. Retain keeps it so. Delete on a
//!   volume provisioned by an external provisioner is that provisioner's job (the
//!   agent on the volume's node removes the directory, then the volume): the binder
//!   never deletes volumes. Delete or Recycle on any other volume cannot be carried
//!   out (Skiff has no in-tree volume plugins): phase Failed, as in Kubernetes.
//!
//! One worker, a queue of claim and volume keys fed by the shared informers, and a
//! resync of everything every [`RESYNC`] (the PV controller's 15 s), which also
//! repeats the waiting events.

mod matching;
mod sync;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use events::{Recorder, Reporter};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::informers::Change;
use crate::queue::{self, Tasks};
use crate::{Context, Error};
use sync::{ClaimStep, Note, Reclaim, VolumeStep};

/// Set on a claim once its binding is complete.
pub(crate) const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume whose binding the controller (not the user) made.
pub(crate) const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Set on a volume by the provisioner that created it.
pub(crate) const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Set on a claim by the scheduler: the node its volume is to be provisioned on.
pub(crate) const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set on a claim: the provisioner asked to provision it.
pub(crate) const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The deprecated form of [`ANN_STORAGE_PROVISIONER`], still set for old provisioners.
pub(crate) const ANN_BETA_STORAGE_PROVISIONER: &str =
    "volume.beta.kubernetes.io/storage-provisioner";

/// How often every claim and volume is synced again.
const RESYNC: Duration = Duration::from_secs(15);

/// What the queue holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A claim, by namespace and name.
    Claim(String, String),
    /// A volume, by name.
    Volume(String),
    /// Every claim and volume.
    All,
}

fn claim_key(c: &PersistentVolumeClaim) -> Key {
    Key::Claim(c.namespace().unwrap_or_default(), c.name_any())
}

fn claim_keys(change: Change<'_, PersistentVolumeClaim>) -> Vec<Key> {
    let Some(c) = change.object() else {
        return vec![Key::All];
    };
    let mut keys = vec![claim_key(c)];
    if let Some(v) = c
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty())
    {
        keys.push(Key::Volume(v));
    }
    keys
}

fn volume_keys(change: Change<'_, PersistentVolume>) -> Vec<Key> {
    let Some(v) = change.object() else {
        return vec![Key::All];
    };
    let mut keys = vec![Key::Volume(v.name_any())];
    if let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
        && let (Some(ns), Some(name)) = (&r.namespace, &r.name)
    {
        keys.push(Key::Claim(ns.clone(), name.clone()));
    }
    keys
}

/// Runs the controller until aborted.
pub(crate) async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let (q, mut worker) = queue::queue::<Key>();
    let mut tasks = Tasks::default();
    let claims = queue::informer(&ctx.informers, &mut tasks, q.clone(), claim_keys).await;
    let volumes = queue::informer(&ctx.informers, &mut tasks, q.clone(), volume_keys).await;
    let classes = queue::informer::<StorageClass, _>(&ctx.informers, &mut tasks, q.clone(), |_| {
        vec![Key::All]
    })
    .await;
    let pods = ctx.informers.get::<Pod>().await.store();
    {
        let q = q.clone();
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(RESYNC).await;
                q.add(Key::All);
            }
        });
    }
    let mut binder = Binder {
        client: ctx.client.clone(),
        recorder: Recorder::new(
            ctx.client.clone(),
            Reporter {
                controller: "persistentvolume-controller".into(),
                instance: None,
            },
        ),
        claims,
        volumes,
        classes,
        pods,
        fresh_claims: HashMap::new(),
        fresh_volumes: HashMap::new(),
    };
    while let Some(batch) = worker.next_batch().await {
        let mut keys: Vec<Key> = Vec::new();
        for key in batch {
            if key == Key::All {
                keys.extend(
                    binder
                        .volumes
                        .state()
                        .iter()
                        .map(|v| Key::Volume(v.name_any())),
                );
                keys.extend(binder.claims.state().iter().map(|c| claim_key(c)));
            } else {
                keys.push(key);
            }
        }
        // Volumes first (phases), then claims; each key once.
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(k.clone()));
        keys.sort_by_key(|k| matches!(k, Key::Claim(..)));
        for key in keys {
            let result = match &key {
                Key::Claim(ns, name) => binder.sync_claim(ns, name).await,
                Key::Volume(name) => binder.sync_volume(name).await,
                Key::All => Ok(()),
            };
            if let Err(e) = &result {
                tracing::debug!(key = ?key, error = %e, "persistent volume sync failed; retrying");
            }
            worker.done(key, result.is_ok());
        }
        binder.forget_stale();
    }
    drop(tasks);
    Ok(())
}

/// The controller's state: caches, and the objects it wrote itself that the caches
/// may not show yet (Kubernetes' PV controller keeps the same, comparing
/// resourceVersions), so a sync right after a write does not act on stale objects.
struct Binder {
    client: kube::Client,
    recorder: Recorder,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    pods: Store<Pod>,
    fresh_claims: HashMap<ObjectRef<PersistentVolumeClaim>, Arc<PersistentVolumeClaim>>,
    fresh_volumes: HashMap<ObjectRef<PersistentVolume>, Arc<PersistentVolume>>,
}

fn rv<K: Resource>(o: &K) -> u64 {
    o.meta()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The newer of the cached object and the one written last.
fn newest<K: Resource>(cached: Option<Arc<K>>, written: Option<&Arc<K>>) -> Option<Arc<K>> {
    let cached = cached?;
    match written {
        Some(w) if rv(w.as_ref()) > rv(cached.as_ref()) => Some(w.clone()),
        _ => Some(cached),
    }
}

fn api_err(what: String) -> impl FnOnce(kube::Error) -> Error {
    move |e| Error::Api {
        context: what,
        source: e,
    }
}

impl Binder {
    fn claim(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        let key = ObjectRef::new(name).within(ns);
        newest(self.claims.get(&key), self.fresh_claims.get(&key))
    }

    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        let key = ObjectRef::new(name);
        newest(self.volumes.get(&key), self.fresh_volumes.get(&key))
    }

    fn all_volumes(&self) -> Vec<Arc<PersistentVolume>> {
        self.volumes
            .state()
            .into_iter()
            .filter_map(|v| {
                newest(
                    Some(v.clone()),
                    self.fresh_volumes.get(&ObjectRef::from_obj(v.as_ref())),
                )
            })
            .collect()
    }

    /// Drops written objects the caches have caught up with (or that are gone).
    fn forget_stale(&mut self) {
        let (claims, volumes) = (&self.claims, &self.volumes);
        self.fresh_claims.retain(|k, w| {
            claims
                .get(k)
                .is_some_and(|c| rv(c.as_ref()) < rv(w.as_ref()))
        });
        self.fresh_volumes.retain(|k, w| {
            volumes
                .get(k)
                .is_some_and(|v| rv(v.as_ref()) < rv(w.as_ref()))
        });
    }

    fn wrote_claim(&mut self, c: PersistentVolumeClaim) -> Arc<PersistentVolumeClaim> {
        let c = Arc::new(c);
        self.fresh_claims
            .insert(ObjectRef::from_obj(c.as_ref()), c.clone());
        c
    }

    fn wrote_volume(&mut self, v: PersistentVolume) -> Arc<PersistentVolume> {
        let v = Arc::new(v);
        self.fresh_volumes
            .insert(ObjectRef::from_obj(v.as_ref()), v.clone());
        v
    }

    async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, note: Note) {
        crate::events::record(
            &self.recorder,
            &obj.object_ref(&()),
            crate::events::event_type(note.warning),
            note.reason,
            note.message,
            None,
        )
        .await;
    }

    #[tracing::instrument(skip(self), fields(object = %format!("{ns}/{name}")))]
    async fn sync_claim(&mut self, ns: &str, name: &str) -> Result<(), Error> {
        let Some(claim) = self.claim(ns, name) else {
            // Gone: its volumes are released.
            let bound: Vec<String> = self
                .all_volumes()
                .iter()
                .filter(|v| {
                    v.spec
                        .as_ref()
                        .and_then(|s| s.claim_ref.as_ref())
                        .is_some_and(|r| {
                            r.namespace.as_deref() == Some(ns) && r.name.as_deref() == Some(name)
                        })
                })
                .map(|v| v.name_any())
                .collect();
            for v in bound {
                self.sync_volume(&v).await?;
            }
            return Ok(());
        };
        let volumes = self.all_volumes();
        let classes = self.classes.state();
        let step = sync::claim_step(&claim, &volumes, &classes).map_err(Error::Invalid)?;
        tracing::debug!(step = ?step, "claim");
        match step {
            ClaimStep::Bind(volume) => {
                let Some(v) = self.volume(&volume) else {
                    return Ok(());
                };
                self.bind(&v, &claim).await
            }
            ClaimStep::AssignClass(class) => {
                let mut c = (*claim).clone();
                c.spec
                    .get_or_insert_with(Default::default)
                    .storage_class_name = Some(class);
                let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
                let c = api
                    .replace(name, &PostParams::default(), &c)
                    .await
                    .map_err(api_err(format!(
                        "assigning the default class to claim {ns}/{name}"
                    )))?;
                self.wrote_claim(c);
                Ok(())
            }
            ClaimStep::WaitForConsumer => {
                let pods = self.unscheduled_pods(&claim);
                self.event(claim.as_ref(), sync::wait_note(&pods)).await;
                self.claim_status(&claim, "Pending", None).await
            }
            ClaimStep::Provision(provisioner) => {
                self.ask_provisioner(&claim, &provisioner).await?;
                let message = format!(
                    "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
                );
                self.event(
                    claim.as_ref(),
                    Note {
                        warning: false,
                        reason: "ExternalProvisioning",
                        message,
                    },
                )
                .await;
                Ok(())
            }
            ClaimStep::Pending(note) => {
                if let Some(note) = note {
                    self.event(claim.as_ref(), note).await;
                }
                self.claim_status(&claim, "Pending", None).await
            }
            ClaimStep::Event(note) => {
                self.event(claim.as_ref(), note).await;
                Ok(())
            }
            ClaimStep::Lost(note) => {
                let changed =
                    claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Lost");
                self.claim_status(&claim, "Lost", None).await?;
                if changed {
                    self.event(claim.as_ref(), note).await;
                }
                Ok(())
            }
        }
    }

    #[tracing::instrument(skip(self), fields(object = %name))]
    async fn sync_volume(&mut self, name: &str) -> Result<(), Error> {
        let Some(volume) = self.volume(name) else {
            return Ok(());
        };
        let claim = volume
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| self.claim(r.namespace.as_deref()?, r.name.as_deref()?));
        let step = sync::volume_step(&volume, claim.as_deref());
        tracing::debug!(step = ?step, "volume");
        match step {
            VolumeStep::Phase(phase) => self.volume_phase(&volume, phase, None).await.map(drop),
            VolumeStep::SyncClaim => {
                let r = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
                let (ns, claim) = r
                    .map(|r| {
                        (
                            r.namespace.clone().unwrap_or_default(),
                            r.name.clone().unwrap_or_default(),
                        )
                    })
                    .unwrap_or_default();
                Box::pin(self.sync_claim(&ns, &claim)).await
            }
            VolumeStep::Release => {
                let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref());
                let volume = if matches!(phase, Some("Released" | "Failed")) {
                    volume
                } else {
                    tracing::debug!(
                        reason = "Released",
                        "volume released; reclaim policy follows"
                    );
                    self.volume_phase(&volume, "Released", None).await?
                };
                match sync::reclaim(&volume) {
                    Reclaim::Keep | Reclaim::External => Ok(()),
                    Reclaim::Fail(note) => {
                        let was = volume.status.as_ref().and_then(|s| s.phase.as_deref())
                            == Some("Failed");
                        let message = note.message.clone();
                        let volume = self.volume_phase(&volume, "Failed", Some(message)).await?;
                        if !was {
                            self.event(volume.as_ref(), note).await;
                        }
                        Ok(())
                    }
                }
            }
            VolumeStep::Unbind => {
                let api: Api<PersistentVolume> = Api::all(self.client.clone());
                let v = api
                    .replace(name, &PostParams::default(), &sync::unbind_volume(&volume))
                    .await
                    .map_err(api_err(format!("unbinding volume {name}")))?;
                let v = self.wrote_volume(v);
                self.volume_phase(&v, "Available", None).await.map(drop)
            }
        }
    }

    /// Binds `volume` and `claim` (Kubernetes' `bind`): the volume's claimRef, its
    /// phase, the claim's volumeName and annotations, its status; each written only
    /// when it changes, each write building on the previous one's result.
    async fn bind(
        &mut self,
        volume: &Arc<PersistentVolume>,
        claim: &Arc<PersistentVolumeClaim>,
    ) -> Result<(), Error> {
        let (ns, name, pv) = (
            claim.namespace().unwrap_or_default(),
            claim.name_any(),
            volume.name_any(),
        );
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let mut volume = volume.clone();
        if let Some(v) = sync::bind_volume(&volume, claim) {
            let v = volumes
                .replace(&pv, &PostParams::default(), &v)
                .await
                .map_err(api_err(format!("binding volume {pv} to claim {ns}/{name}")))?;
            volume = self.wrote_volume(v);
        }
        volume = self.volume_phase(&volume, "Bound", None).await?;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let mut claim = claim.clone();
        if let Some(c) = sync::bind_claim(&claim, &volume) {
            let c = claims
                .replace(&name, &PostParams::default(), &c)
                .await
                .map_err(api_err(format!("binding claim {ns}/{name} to volume {pv}")))?;
            claim = self.wrote_claim(c);
        }
        self.claim_status(&claim, "Bound", Some(&volume)).await?;
        tracing::debug!(volume = %pv, "claim bound");
        Ok(())
    }

    async fn claim_status(
        &mut self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        volume: Option<&PersistentVolume>,
    ) -> Result<(), Error> {
        let Some(c) = sync::claim_status(claim, phase, volume) else {
            return Ok(());
        };
        let (ns, name) = (claim.namespace().unwrap_or_default(), claim.name_any());
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let c = api
            .replace_status(&name, &PostParams::default(), &c)
            .await
            .map_err(api_err(format!("setting claim {ns}/{name} {phase}")))?;
        self.wrote_claim(c);
        Ok(())
    }

    /// Sets the volume's phase (and message) unless it is set; returns the volume.
    async fn volume_phase(
        &mut self,
        volume: &Arc<PersistentVolume>,
        phase: &str,
        message: Option<String>,
    ) -> Result<Arc<PersistentVolume>, Error> {
        if volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase) {
            return Ok(volume.clone());
        }
        let mut v = (**volume).clone();
        let status = v.status.get_or_insert_with(Default::default);
        status.phase = Some(phase.to_string());
        status.message = message;
        let name = volume.name_any();
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let v = api
            .replace_status(&name, &PostParams::default(), &v)
            .await
            .map_err(api_err(format!("setting volume {name} {phase}")))?;
        Ok(self.wrote_volume(v))
    }

    /// Names the class's provisioner on the claim (both annotations), for it to
    /// provision a volume.
    async fn ask_provisioner(
        &mut self,
        claim: &PersistentVolumeClaim,
        provisioner: &str,
    ) -> Result<(), Error> {
        let ann = claim.metadata.annotations.clone().unwrap_or_default();
        if [ANN_STORAGE_PROVISIONER, ANN_BETA_STORAGE_PROVISIONER]
            .iter()
            .all(|k| ann.get(*k).map(String::as_str) == Some(provisioner))
        {
            return Ok(());
        }
        let mut c = claim.clone();
        let a = c.metadata.annotations.get_or_insert_with(Default::default);
        for k in [ANN_STORAGE_PROVISIONER, ANN_BETA_STORAGE_PROVISIONER] {
            a.insert(k.to_string(), provisioner.to_string());
        }
        let (ns, name) = (claim.namespace().unwrap_or_default(), claim.name_any());
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let c = api
            .replace(&name, &PostParams::default(), &c)
            .await
            .map_err(api_err(format!(
                "annotating claim {ns}/{name} for its provisioner"
            )))?;
        self.wrote_claim(c);
        Ok(())
    }

    /// Names of the pods in the claim's namespace that use it and are not yet on a
    /// node (nor finished).
    fn unscheduled_pods(&self, claim: &PersistentVolumeClaim) -> Vec<String> {
        let (ns, name) = (claim.namespace().unwrap_or_default(), claim.name_any());
        let mut out: Vec<String> = self
            .pods
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .filter(|p| {
                p.spec
                    .as_ref()
                    .is_some_and(|s| s.node_name.as_deref().unwrap_or_default().is_empty())
            })
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.volumes.as_ref())
                    .is_some_and(|vs| {
                        vs.iter().any(|v| {
                            v.persistent_volume_claim
                                .as_ref()
                                .is_some_and(|c| c.claim_name == name)
                        })
                    })
            })
            .map(|p| p.name_any())
            .collect();
        out.sort();
        out
    }
}
