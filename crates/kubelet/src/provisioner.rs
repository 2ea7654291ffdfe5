//! The built-in local-path provisioner (k3s's `rancher.io/local-path`, run by every
//! node agent for its own node instead of as a cluster Deployment with helper pods).
//!
//! Provisioning: a claim of a class whose provisioner is [`PROVISIONER`], unbound,
//! whose `volume.kubernetes.io/selected-node` (set by the scheduler) is this node,
//! gets a directory `<agent dir>/storage/pvc-<uid>_<namespace>_<name>` (mode 0777,
//! as local-path-provisioner makes it) and a PersistentVolume `pvc-<uid>`: hostPath
//! `DirectoryOrCreate` at that directory, required node affinity
//! `kubernetes.io/hostname In [<node>]`, the claim's request as capacity, its
//! access modes, the class's reclaim policy, `pv.kubernetes.io/provisioned-by`, and
//! a claimRef to the claim. The persistentvolume-binder controller then binds the
//! claim to it (the external-provisioner protocol: the provisioner only pre-binds).
//!
//! Deletion: a volume this node's provisioner made, Released, with reclaim policy
//! Delete: the directory goes first, then the PersistentVolume. The binder never
//! deletes these. Only directories directly under the storage directory are ever
//! removed, whatever a volume's path says, and not while a pod on this node still
//! uses the deleted claim (Skiff has no `kubernetes.io/pvc-protection` finalizer
//! yet, so a claim can go while its pod runs; its data waits for the pod).
//!
//! The storage directory (mode 0700; pods reach their volume through its bind
//! mount) is left alone by `skiff killall`, as k3s keeps its storage: volumes
//! outlive the agent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use events::{Event, EventType, Recorder, Reporter};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use crate::{AgentConfig, Error};

/// The provisioner name a StorageClass names to use it (k3s's).
pub(crate) const PROVISIONER: &str = "rancher.io/local-path";
/// The claim annotation naming the node its volume is to be provisioned on.
const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The volume annotation naming its provisioner.
const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The volume annotation naming the node its directory is on (local-path's).
const ANN_NODE: &str = "local.path.provisioner/selected-node";
/// The beta class annotation, which wins over `spec.storageClassName`.
const ANN_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// The node label volumes are pinned with.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Everything is looked at again this often, also without changes.
const RESYNC: Duration = Duration::from_secs(30);
/// And this soon after something failed.
const RETRY: Duration = Duration::from_secs(2);
/// And this soon while a released volume is still used by a pod.
const IN_USE_RETRY: Duration = Duration::from_secs(5);

/// The storage directory of the agent directory `dir`: `<dir>/storage`.
pub(crate) fn storage_dir(dir: &Path) -> PathBuf {
    dir.join("storage")
}

fn claim_class(c: &PersistentVolumeClaim) -> &str {
    c.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_STORAGE_CLASS))
        .map(String::as_str)
        .or_else(|| c.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The name of the volume provisioned for a claim: `pvc-<uid>`, as Kubernetes names it.
fn volume_name(c: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", c.metadata.uid.as_deref().unwrap_or_default())
}

/// Whether this node's provisioner is asked for a volume for `claim` (of `class`).
pub(crate) fn wants_volume(
    claim: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    node: &str,
) -> bool {
    let selected = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_SELECTED_NODE));
    selected.map(String::as_str) == Some(node)
        && claim.metadata.deletion_timestamp.is_none()
        && claim.metadata.uid.is_some()
        && claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or_default()
            .is_empty()
        && class.is_some_and(|c| c.provisioner == PROVISIONER)
}

/// The directory and volume for `claim` on `node`, or why the claim cannot have one
/// (local-path-provisioner's refusals, worded as it and its library word them).
pub(crate) fn plan(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    root: &Path,
) -> Result<(PathBuf, PersistentVolume), String> {
    let spec = claim.spec.clone().unwrap_or_default();
    if spec.volume_mode.as_deref() == Some("Block") {
        return Err(format!(
            "{PROVISIONER} does not support block volume provisioning"
        ));
    }
    let class_name = claim_class(claim);
    let failed =
        |why: &str| format!("failed to provision volume with StorageClass {class_name:?}: {why}");
    if spec.selector.is_some() {
        return Err(failed("claim.Spec.Selector is not supported"));
    }
    let modes = spec.access_modes.clone().unwrap_or_default();
    if modes
        .iter()
        .any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod")
    {
        return Err(failed(
            "NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes",
        ));
    }
    let name = volume_name(claim);
    let (ns, claim_name) = (claim.namespace().unwrap_or_default(), claim.name_any());
    let dir = root.join(format!("{name}_{ns}_{claim_name}"));
    let capacity = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .ok_or_else(|| failed("claim has no storage request"))?;
    let volume = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {ANN_PROVISIONED_BY: PROVISIONER, ANN_NODE: node}},
        "spec": {
            "capacity": {"storage": capacity},
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": class.reclaim_policy.as_deref().unwrap_or("Delete"),
            "storageClassName": class_name,
            "volumeMode": "Filesystem",
            "hostPath": {"path": dir.to_string_lossy(), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}},
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": claim_name,
                "uid": claim.metadata.uid, "resourceVersion": claim.metadata.resource_version,
            },
        },
    });
    let volume = serde_json::from_value(volume).map_err(|e| failed(&e.to_string()))?;
    Ok((dir, volume))
}

/// The node a volume of this provisioner lives on: its annotation, else the single
/// value of its hostname node affinity.
fn volume_node(pv: &PersistentVolume) -> Option<&str> {
    if let Some(n) = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_NODE))
    {
        return Some(n);
    }
    let terms = &pv
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|e| e.key == HOSTNAME_LABEL && e.operator == "In")
        .and_then(|e| match e.values.as_deref() {
            Some([one]) => Some(one.as_str()),
            _ => None,
        })
}

/// Whether `pv` is this node's to delete now: provisioned here, Released, Delete.
pub(crate) fn should_delete(pv: &PersistentVolume, node: &str) -> bool {
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_PROVISIONED_BY))
        .map(String::as_str)
        == Some(PROVISIONER);
    ours && volume_node(pv) == Some(node)
        && pv.metadata.deletion_timestamp.is_none()
        && pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released")
        && pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            == Some("Delete")
}

/// The directory of `pv` if it is one this provisioner may remove: directly under
/// `root`, named `pvc-…`.
pub(crate) fn owned_dir(pv: &PersistentVolume, root: &Path) -> Result<PathBuf, String> {
    let spec = pv.spec.as_ref();
    let path = spec
        .and_then(|s| s.host_path.as_ref().map(|h| h.path.clone()))
        .or_else(|| spec.and_then(|s| s.local.as_ref().map(|l| l.path.clone())))
        .ok_or_else(|| "no HostPath set".to_string())?;
    let p = PathBuf::from(&path);
    let under_root = p.parent() == Some(root)
        && p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("pvc-") && n != "..");
    if !under_root {
        return Err(format!(
            "path {path} is not a volume directory under {}",
            root.display()
        ));
    }
    Ok(p)
}

/// The pods (`namespace/name`) among `pods` (this node's, in the claim's namespace)
/// that may still have `pv`'s directory mounted: not finished, and using the claim
/// its claimRef names — unless a claim of that name exists again, with another UID,
/// and the pod is not older than it (then the pod uses the new claim).
pub(crate) fn users(
    pv: &PersistentVolume,
    pods: &[Pod],
    current_claim: Option<&PersistentVolumeClaim>,
) -> Vec<String> {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return Vec::new();
    };
    let replaced_at = current_claim
        .filter(|c| c.metadata.uid != r.uid)
        .map(|c| c.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let mut out: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.namespace == r.namespace)
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .is_some_and(|vs| {
                    vs.iter().any(|v| {
                        v.persistent_volume_claim
                            .as_ref()
                            .is_some_and(|c| Some(&c.claim_name) == r.name.as_ref())
                    })
                })
        })
        .filter(|p| match replaced_at {
            None => true,
            Some(new_claim) => p.metadata.creation_timestamp.as_ref().map(|t| t.0) < new_claim,
        })
        .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
        .collect();
    out.sort();
    out
}

/// Creates the volume directory (mode 0777 whatever the umask) under `root`
/// (created mode 0700 when missing).
fn make_volume_dir(root: &Path, dir: &Path) -> std::io::Result<()> {
    if !root.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)?;
    }
    match std::fs::DirBuilder::new().mode(0o777).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
}

/// Removes a volume directory and everything in it (symlinks inside are removed,
/// not followed); a missing directory is fine.
fn remove_volume_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The provisioner's state.
struct Provisioner {
    client: kube::Client,
    node: String,
    root: PathBuf,
    recorder: Recorder,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    /// Claims (by UID) this process created a volume for.
    provisioned: HashSet<String>,
    /// The last failure reported per claim UID or volume name (reported once).
    reported: HashMap<String, String>,
}

/// Runs the provisioner for `config`'s node until `shutdown`.
pub(crate) async fn run(
    client: kube::Client,
    config: AgentConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let (claims, claims_w) = reflector::store();
    let (volumes, volumes_w) = reflector::store();
    let (classes, classes_w) = reflector::store();
    let cfg = watcher::Config::default;
    let streams = futures::stream::select_all([
        watcher::watcher(Api::<PersistentVolumeClaim>::all(client.clone()), cfg())
            .default_backoff()
            .reflect(claims_w)
            .map(|e| {
                (
                    0,
                    e.map(|e| matches!(e, WatchEvent::InitDone))
                        .map_err(|e| e.to_string()),
                )
            })
            .boxed(),
        watcher::watcher(Api::<PersistentVolume>::all(client.clone()), cfg())
            .default_backoff()
            .reflect(volumes_w)
            .map(|e| {
                (
                    1,
                    e.map(|e| matches!(e, WatchEvent::InitDone))
                        .map_err(|e| e.to_string()),
                )
            })
            .boxed(),
        watcher::watcher(Api::<StorageClass>::all(client.clone()), cfg())
            .default_backoff()
            .reflect(classes_w)
            .map(|e| {
                (
                    2,
                    e.map(|e| matches!(e, WatchEvent::InitDone))
                        .map_err(|e| e.to_string()),
                )
            })
            .boxed(),
    ]);
    let mut streams = std::pin::pin!(streams);
    let mut p = Provisioner {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: PROVISIONER.into(),
                instance: Some(format!("{PROVISIONER}_{}", config.node_name)),
            },
        ),
        client,
        node: config.node_name.clone(),
        root: storage_dir(&config.dir),
        claims,
        volumes,
        classes,
        provisioned: HashSet::new(),
        reported: HashMap::new(),
    };
    let mut synced = [false; 3];
    let mut next = tokio::time::Instant::now() + RESYNC;
    loop {
        let first = tokio::select! {
            ev = streams.next() => match ev { Some(ev) => Some(ev), None => break },
            _ = tokio::time::sleep_until(next) => None,
            _ = crate::stopped(&mut shutdown) => break,
        };
        // Take in everything already there before looking at the caches.
        let mut pending = first.into_iter().collect::<Vec<_>>();
        while let Some(Some(ev)) = streams.next().now_or_never() {
            pending.push(ev);
        }
        for (which, ev) in pending {
            match ev {
                Ok(true) => synced[which] = true,
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "local-path provisioner watch failed; retrying")
                }
            }
        }
        if !synced.iter().all(|s| *s) {
            continue;
        }
        next = tokio::time::Instant::now() + p.reconcile().await;
    }
}

impl Provisioner {
    /// Provisions and deletes what the caches ask for; returns when to look again
    /// without a change: soon after a failure or while a volume is still in use.
    async fn reconcile(&mut self) -> Duration {
        let mut next = RESYNC;
        let classes: BTreeMap<String, Arc<StorageClass>> = self
            .classes
            .state()
            .into_iter()
            .map(|c| (c.name_any(), c))
            .collect();
        for claim in self.claims.state() {
            let class = classes.get(claim_class(&claim)).map(|c| c.as_ref());
            if !wants_volume(&claim, class, &self.node) {
                continue;
            }
            let uid = claim.metadata.uid.clone().unwrap_or_default();
            if self.provisioned.contains(&uid)
                || self
                    .volumes
                    .get(&ObjectRef::new(&volume_name(&claim)))
                    .is_some()
            {
                continue;
            }
            let Some(class) = class else { continue };
            if let Err(e) = self.provision(&claim, class).await {
                tracing::warn!(error = %e, "local-path provisioning failed");
                next = next.min(RETRY);
            }
        }
        for pv in self.volumes.state() {
            if !should_delete(&pv, &self.node) {
                continue;
            }
            match self.delete(&pv).await {
                Ok(true) => {}
                Ok(false) => next = next.min(IN_USE_RETRY),
                Err(e) => {
                    tracing::warn!(error = %e, "local-path volume deletion failed");
                    next = next.min(RETRY);
                }
            }
        }
        let live: HashSet<String> = self
            .claims
            .state()
            .iter()
            .filter_map(|c| c.metadata.uid.clone())
            .chain(self.volumes.state().iter().map(|v| v.name_any()))
            .collect();
        self.provisioned.retain(|uid| live.contains(uid));
        self.reported.retain(|k, _| live.contains(k));
        next
    }

    async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::debug!(error = %e, reason, "recording event failed");
        }
    }

    /// Reports a failure once per object and message.
    async fn failed<K: Resource<DynamicType = ()>>(
        &mut self,
        key: String,
        obj: &K,
        reason: &str,
        message: String,
    ) {
        if self.reported.get(&key) != Some(&message) {
            self.event(obj, true, reason, message.clone()).await;
            self.reported.insert(key, message);
        }
    }

    #[tracing::instrument(skip_all, fields(object = %format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any()), node = %self.node))]
    async fn provision(
        &mut self,
        claim: &PersistentVolumeClaim,
        class: &StorageClass,
    ) -> Result<(), Error> {
        let uid = claim.metadata.uid.clone().unwrap_or_default();
        let key = format!(
            "{}/{}",
            claim.namespace().unwrap_or_default(),
            claim.name_any()
        );
        let (dir, volume) = match plan(claim, class, &self.node, &self.root) {
            Ok(p) => p,
            Err(why) => {
                self.failed(uid, claim, "ProvisioningFailed", why).await;
                return Ok(());
            }
        };
        if !self.reported.contains_key(&uid) {
            self.event(
                claim,
                false,
                "Provisioning",
                format!("External provisioner is provisioning volume for claim {key:?}"),
            )
            .await;
        }
        let (root, made) = (self.root.clone(), dir.clone());
        let created = tokio::task::spawn_blocking(move || make_volume_dir(&root, &made))
            .await
            .map_err(|e| Error::Invalid(format!("creating {}: {e}", dir.display())))?;
        if let Err(e) = created {
            let message = format!(
                "failed to provision volume with StorageClass {:?}: creating {}: {e}",
                claim_class(claim),
                dir.display()
            );
            self.failed(uid, claim, "ProvisioningFailed", message).await;
            return Err(Error::io(format!("creating {}", dir.display()), e));
        }
        let name = volume.name_any();
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &volume).await {
            Ok(_) => {
                tracing::info!(volume = %name, path = %dir.display(), "provisioned a local-path volume");
                self.event(
                    claim,
                    false,
                    "ProvisioningSucceeded",
                    format!("Successfully provisioned volume {name}"),
                )
                .await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                let message = format!(
                    "failed to provision volume with StorageClass {:?}: {e}",
                    claim_class(claim)
                );
                self.failed(uid, claim, "ProvisioningFailed", message).await;
                return Err(Error::api(format!("creating volume {name}"), e));
            }
        }
        self.provisioned.insert(uid);
        Ok(())
    }

    /// The pods on this node that may still have `pv`'s directory mounted.
    async fn users_of(&self, pv: &PersistentVolume) -> Result<Vec<String>, Error> {
        let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
            return Ok(Vec::new());
        };
        let (ns, claim) = (
            r.namespace.clone().unwrap_or_default(),
            r.name.clone().unwrap_or_default(),
        );
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let on_node = ListParams::default().fields(&format!("spec.nodeName={}", self.node));
        let list = pods
            .list(&on_node)
            .await
            .map_err(|e| Error::api(format!("listing pods using claim {ns}/{claim}"), e))?;
        let current = self.claims.get(&ObjectRef::new(&claim).within(&ns));
        Ok(users(pv, &list.items, current.as_deref()))
    }

    /// Deletes a released volume: its directory, then the object. `Ok(false)` when
    /// a pod on this node still uses it (the claim was deleted under a running pod):
    /// the data stays until the pod is gone.
    #[tracing::instrument(skip_all, fields(object = %pv.name_any(), node = %self.node))]
    async fn delete(&mut self, pv: &PersistentVolume) -> Result<bool, Error> {
        let name = pv.name_any();
        let dir = match owned_dir(pv, &self.root) {
            Ok(d) => d,
            Err(why) => {
                let message = format!("failed to delete volume {name}: {why}");
                self.failed(name, pv, "VolumeFailedDelete", message).await;
                return Ok(true);
            }
        };
        let users = self.users_of(pv).await?;
        if !users.is_empty() {
            let message = format!("Volume is used by pods: {}", users.join(","));
            if self.reported.get(&name) != Some(&message) {
                self.event(pv, false, "VolumeDelete", message.clone()).await;
                self.reported.insert(name, message);
            }
            return Ok(false);
        }
        let gone = dir.clone();
        let removed = tokio::task::spawn_blocking(move || remove_volume_dir(&gone))
            .await
            .map_err(|e| Error::Invalid(format!("removing {}: {e}", dir.display())))?;
        if let Err(e) = removed {
            let message = format!(
                "failed to delete volume {name}: removing {}: {e}",
                dir.display()
            );
            self.failed(name.clone(), pv, "VolumeFailedDelete", message)
                .await;
            return Err(Error::io(format!("removing {}", dir.display()), e));
        }
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pv.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {
                tracing::info!(path = %dir.display(), "deleted a local-path volume and its directory");
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(true),
            Err(e) => Err(Error::api(format!("deleting volume {name}"), e)),
        }
    }
}

#[cfg(test)]
mod tests;
