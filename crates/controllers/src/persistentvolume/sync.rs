//! What the binder does with one claim or one volume (Kubernetes' `syncClaim` and
//! `syncVolume`), decided by pure functions over the cached objects, and the object
//! changes a binding makes (`GetBindVolumeToClaim`, `bindClaimToVolume`,
//! `updateClaimStatus`). The caller carries the steps out through the API.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use super::matching::{self, bound_to_claim, claim_class, claim_has_class};
use super::{ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_PROVISIONED_BY, ANN_SELECTED_NODE};

/// An event to record: type, reason and note, worded as Kubernetes' PV controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// The event's reason.
    pub reason: &'static str,
    /// The event's note.
    pub message: String,
}

impl Note {
    fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Note {
            warning: false,
            reason,
            message: message.into(),
        }
    }

    fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Note {
            warning: true,
            reason,
            message: message.into(),
        }
    }
}

/// What to do with a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimStep {
    /// Bind it to this volume (and finish both objects' binding state).
    Bind(String),
    /// It names no class and a default class exists now: give it that class.
    AssignClass(String),
    /// Its class binds on first consumer and no node is selected yet: keep it
    /// Pending and say what it waits for (pods not yet scheduled, or a consumer).
    WaitForConsumer,
    /// Ask the class's external provisioner for a volume (annotate the claim).
    Provision(String),
    /// Keep it Pending, optionally saying why.
    Pending(Option<Note>),
    /// Only record this event.
    Event(Note),
    /// It lost its volume: phase Lost, with this event when the phase changes.
    Lost(Note),
}

fn volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default()
}

fn has_annotation(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

fn claim_ref(v: &PersistentVolume) -> Option<&ObjectReference> {
    v.spec.as_ref()?.claim_ref.as_ref()
}

fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// Whether a class is marked as the default (GA or beta annotation `"true"`).
pub(crate) fn is_default_class(c: &StorageClass) -> bool {
    let a = c.metadata.annotations.as_ref();
    [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|k| a.and_then(|a| a.get(*k)).map(String::as_str) == Some("true"))
}

/// The default class: the newest of the classes marked default, then by name (as
/// Kubernetes 1.28+ chooses among several).
pub(crate) fn default_class(classes: &[Arc<StorageClass>]) -> Option<&StorageClass> {
    classes
        .iter()
        .map(|c| c.as_ref())
        .filter(|c| is_default_class(c))
        .min_by(|a, b| {
            let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(b)
                .cmp(&created(a))
                .then_with(|| name(&a.metadata).cmp(name(&b.metadata)))
        })
}

/// Decides what to do with `claim` given every volume and class.
pub(crate) fn claim_step(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    classes: &[Arc<StorageClass>],
) -> Result<ClaimStep, String> {
    let find = |n: &str| {
        volumes
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(n))
    };
    if has_annotation(&claim.metadata, ANN_BIND_COMPLETED) {
        return Ok(bound_claim_step(
            claim,
            find(volume_name(claim)).map(|v| v.as_ref()),
        ));
    }
    let wanted = volume_name(claim);
    if !wanted.is_empty() {
        let Some(volume) = find(wanted) else {
            // The user asked for a volume that does not exist (yet).
            return Ok(ClaimStep::Pending(None));
        };
        if claim_ref(volume).is_none() {
            return Ok(match matching::satisfies(volume, claim) {
                Ok(()) => ClaimStep::Bind(wanted.to_string()),
                Err(why) => ClaimStep::Pending(Some(Note::warning(
                    "VolumeMismatch",
                    format!("Cannot bind to requested volume {wanted:?}: {why}"),
                ))),
            });
        }
        if bound_to_claim(volume, claim) {
            return Ok(ClaimStep::Bind(wanted.to_string()));
        }
        let note = Note::warning(
            "FailedBinding",
            format!("volume {wanted:?} already bound to a different claim."),
        );
        if has_annotation(&claim.metadata, ANN_BOUND_BY_CONTROLLER) {
            return Err(format!(
                "invalid binding of claim to volume {wanted:?}: volume already claimed by another claim"
            ));
        }
        return Ok(ClaimStep::Pending(Some(note)));
    }
    let class_name = claim_class(claim);
    let class = classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(class_name));
    let delay_binding =
        class.is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
    if let Some(v) = matching::best_match(claim, volumes.iter().map(|v| v.as_ref()), delay_binding)?
    {
        return Ok(ClaimStep::Bind(name(&v.metadata).to_string()));
    }
    if !claim_has_class(claim)
        && let Some(default) = default_class(classes)
    {
        return Ok(ClaimStep::AssignClass(name(&default.metadata).to_string()));
    }
    let selected = has_annotation(&claim.metadata, ANN_SELECTED_NODE);
    if delay_binding && !selected {
        return Ok(ClaimStep::WaitForConsumer);
    }
    if class_name.is_empty() {
        return Ok(ClaimStep::Pending(Some(Note::normal(
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
        ))));
    }
    let Some(class) = class else {
        return Ok(ClaimStep::Event(Note::warning(
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io {class_name:?} not found"),
        )));
    };
    if class.provisioner.starts_with("kubernetes.io/") {
        // Skiff has no in-tree volume plugins: kubernetes.io/no-provisioner and the
        // old cloud provisioners find none, as in a cluster without them.
        return Ok(ClaimStep::Event(Note::warning(
            "ProvisioningFailed",
            format!("no volume plugin matched name: {}", class.provisioner),
        )));
    }
    Ok(ClaimStep::Provision(class.provisioner.clone()))
}

fn bound_claim_step(claim: &PersistentVolumeClaim, volume: Option<&PersistentVolume>) -> ClaimStep {
    if volume_name(claim).is_empty() {
        return ClaimStep::Lost(Note::warning(
            "ClaimLost",
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        ));
    }
    let Some(volume) = volume else {
        return ClaimStep::Lost(Note::warning(
            "ClaimLost",
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
        ));
    };
    match claim_ref(volume) {
        Some(r) if r.uid != claim.metadata.uid => ClaimStep::Lost(Note::warning(
            "ClaimMisbound",
            "Two claims are bound to the same volume, this one is bound incorrectly",
        )),
        _ => ClaimStep::Bind(name(&volume.metadata).to_string()),
    }
}

/// The event for a claim waiting for its first consumer: the pods not yet
/// scheduled that use it, if any.
pub(crate) fn wait_note(unscheduled_pods: &[String]) -> Note {
    match unscheduled_pods {
        [] => Note::normal(
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
        ),
        [one] => Note::normal(
            "WaitForPodScheduled",
            format!("waiting for pod {one} to be scheduled"),
        ),
        many => Note::normal(
            "WaitForPodScheduled",
            format!("waiting for pods {} to be scheduled", many.join(",")),
        ),
    }
}

/// What to do with a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VolumeStep {
    /// Set this phase (Available or Bound) unless it is set.
    Phase(&'static str),
    /// Its claim still has to be bound to it: sync the claim.
    SyncClaim,
    /// Its claim is gone (or bound elsewhere, for a provisioned volume): phase
    /// Released, then apply the reclaim policy.
    Release,
    /// Undo a binding the claim no longer wants: drop a controller-made claimRef,
    /// or only the UID of a user's pre-binding; then Available.
    Unbind,
}

/// Decides what to do with `volume`, given the claim its claimRef names (looked up
/// by namespace and name, whatever its UID).
pub(crate) fn volume_step(
    volume: &PersistentVolume,
    claim: Option<&PersistentVolumeClaim>,
) -> VolumeStep {
    let Some(r) = claim_ref(volume) else {
        return VolumeStep::Phase("Available");
    };
    let Some(uid) = r.uid.as_deref().filter(|u| !u.is_empty()) else {
        // Pre-bound by a user or a provisioner; the claim's sync binds it.
        return VolumeStep::Phase("Available");
    };
    let Some(claim) = claim.filter(|c| c.metadata.uid.as_deref() == Some(uid)) else {
        return VolumeStep::Release;
    };
    let wanted = volume_name(claim);
    if wanted.is_empty() {
        return VolumeStep::SyncClaim;
    }
    if wanted == name(&volume.metadata) {
        return VolumeStep::Phase("Bound");
    }
    let reclaim = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    if has_annotation(&volume.metadata, ANN_PROVISIONED_BY) && reclaim == Some("Delete") {
        return VolumeStep::Release;
    }
    VolumeStep::Unbind
}

/// What the reclaim policy of a released volume asks of the binder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reclaim {
    /// Retain: the volume stays Released until an administrator acts.
    Keep,
    /// Delete by an external provisioner (the one named in `provisioned-by`, e.g.
    /// the node agent's local-path provisioner): it removes the storage, then the
    /// volume. The binder never deletes such volumes itself.
    External,
    /// Nothing can carry the policy out: phase Failed with this event.
    Fail(Note),
}

/// The reclaim step for a released `volume`.
pub(crate) fn reclaim(volume: &PersistentVolume) -> Reclaim {
    let policy = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    let provisioner = volume
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_PROVISIONED_BY))
        .map(String::as_str)
        .unwrap_or_default();
    match policy {
        "Retain" => Reclaim::Keep,
        "Delete" if !provisioner.is_empty() && !provisioner.starts_with("kubernetes.io/") => {
            Reclaim::External
        }
        "Delete" => Reclaim::Fail(Note::warning(
            "VolumeFailedDelete",
            format!(
                "error getting deleter volume plugin for volume {:?}: no deletable volume plugin matched",
                name(&volume.metadata)
            ),
        )),
        "Recycle" => Reclaim::Fail(Note::warning(
            "VolumeFailedRecycle",
            "No recycler plugin found for the volume!",
        )),
        _ => Reclaim::Fail(Note::warning(
            "VolumeUnknownReclaimPolicy",
            "Volume has unrecognized PersistentVolumeReclaimPolicy",
        )),
    }
}

fn set_annotation(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) {
    meta.annotations
        .get_or_insert_with(Default::default)
        .entry(key.to_string())
        .or_insert_with(|| "yes".to_string());
}

/// A reference to `claim` for a volume's claimRef.
pub(crate) fn reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// The volume bound to `claim`, when that changes it: claimRef with the claim's
/// UID, and `bound-by-controller` unless it was (pre-)bound to the claim already.
pub(crate) fn bind_volume(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Option<PersistentVolume> {
    let mut out = volume.clone();
    let mut dirty = false;
    let current = claim_ref(volume);
    if current.is_none_or(|r| {
        r.name != claim.metadata.name
            || r.namespace != claim.metadata.namespace
            || r.uid != claim.metadata.uid
    }) {
        out.spec.get_or_insert_with(Default::default).claim_ref = Some(reference(claim));
        dirty = true;
    }
    if !bound_to_claim(volume, claim) && !has_annotation(&volume.metadata, ANN_BOUND_BY_CONTROLLER)
    {
        set_annotation(&mut out.metadata, ANN_BOUND_BY_CONTROLLER);
        dirty = true;
    }
    dirty.then_some(out)
}

/// The claim bound to `volume`, when that changes it: `spec.volumeName` (with
/// `bound-by-controller` when the controller set it) and `bind-completed`.
pub(crate) fn bind_claim(
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> Option<PersistentVolumeClaim> {
    let mut out = claim.clone();
    let mut dirty = false;
    let volume_name = name(&volume.metadata);
    if self::volume_name(claim) != volume_name {
        out.spec.get_or_insert_with(Default::default).volume_name = Some(volume_name.to_string());
        set_annotation(&mut out.metadata, ANN_BOUND_BY_CONTROLLER);
        dirty = true;
    }
    if !has_annotation(&claim.metadata, ANN_BIND_COMPLETED) {
        set_annotation(&mut out.metadata, ANN_BIND_COMPLETED);
        dirty = true;
    }
    dirty.then_some(out)
}

/// The claim with status `phase`, when that changes it: with a volume, its access
/// modes, and its capacity when the claim becomes Bound; without, neither.
pub(crate) fn claim_status(
    claim: &PersistentVolumeClaim,
    phase: &str,
    volume: Option<&PersistentVolume>,
) -> Option<PersistentVolumeClaim> {
    let mut out = claim.clone();
    let status = out.status.get_or_insert_with(Default::default);
    let old_phase = status.phase.clone();
    let mut dirty = false;
    if status.phase.as_deref() != Some(phase) {
        status.phase = Some(phase.to_string());
        dirty = true;
    }
    match volume {
        None => {
            if status.access_modes.take().is_some() {
                dirty = true;
            }
            if status.capacity.take().is_some() {
                dirty = true;
            }
        }
        Some(v) => {
            let spec = v.spec.as_ref();
            let modes = spec.and_then(|s| s.access_modes.clone());
            if status.access_modes != modes {
                status.access_modes = modes;
                dirty = true;
            }
            let capacity = spec.and_then(|s| s.capacity.clone());
            if old_phase.as_deref() != Some(phase) && status.capacity != capacity {
                status.capacity = capacity;
                dirty = true;
            }
        }
    }
    dirty.then_some(out)
}

/// The volume after undoing a binding (`unbindVolume`): a controller-made claimRef
/// goes with its annotation; a user's pre-binding keeps its name, loses its UID.
pub(crate) fn unbind_volume(volume: &PersistentVolume) -> PersistentVolume {
    let mut out = volume.clone();
    if has_annotation(&volume.metadata, ANN_BOUND_BY_CONTROLLER) {
        if let Some(s) = out.spec.as_mut() {
            s.claim_ref = None;
        }
        if let Some(a) = out.metadata.annotations.as_mut() {
            a.remove(ANN_BOUND_BY_CONTROLLER);
        }
    } else if let Some(r) = out.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
        r.uid = None;
    }
    out
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
