//! Which PersistentVolume a claim gets, as Kubernetes' `FindMatchingVolume` and the
//! PV controller's access-mode index decide it: pure functions over the objects.
//!
//! A volume pre-bound to the claim (its `claimRef` names the claim, with the claim's
//! UID or none) wins whenever it is big enough and of the claim's volume mode —
//! that is how provisioned volumes and volumes the scheduler picked get bound.
//! Otherwise, unless binding waits for the first consumer, the smallest Available
//! volume of the claim's class whose access modes include the claim's, whose
//! labels match the claim's selector, and whose volume mode is the claim's; among
//! those, volumes with fewer access modes first (the index walks access-mode sets
//! from the smallest).

use std::collections::{BTreeMap, BTreeSet};

use api::selector::LabelSelector;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The beta class annotation on claims and volumes; it wins over `storageClassName`.
pub(crate) const ANN_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The claim's class name ("" for none), as `GetPersistentVolumeClaimClass`.
pub(crate) fn claim_class(c: &PersistentVolumeClaim) -> &str {
    annotation(&c.metadata, ANN_STORAGE_CLASS)
        .or_else(|| c.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// Whether the claim names a class at all (an explicit "" counts: it means "no
/// class"), as `PersistentVolumeClaimHasClass`.
pub(crate) fn claim_has_class(c: &PersistentVolumeClaim) -> bool {
    annotation(&c.metadata, ANN_STORAGE_CLASS).is_some()
        || c.spec
            .as_ref()
            .is_some_and(|s| s.storage_class_name.is_some())
}

/// The volume's class name ("" for none).
pub(crate) fn volume_class(v: &PersistentVolume) -> &str {
    annotation(&v.metadata, ANN_STORAGE_CLASS)
        .or_else(|| v.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// Whether `v` is bound or pre-bound to `c`: its claimRef names the claim, and its
/// UID, when set, is the claim's.
pub(crate) fn bound_to_claim(v: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if r.name != c.metadata.name || r.namespace != c.metadata.namespace {
        return false;
    }
    match r.uid.as_deref() {
        None | Some("") => true,
        Some(uid) => c.metadata.uid.as_deref() == Some(uid),
    }
}

fn storage(map: Option<&BTreeMap<String, Quantity>>) -> Option<i64> {
    match map.and_then(|m| m.get("storage")) {
        None => Some(0),
        Some(q) => api::quantity::value(&q.0),
    }
}

/// The claim's storage request in bytes (0 without one; `None` when unparsable).
pub(crate) fn requested_bytes(c: &PersistentVolumeClaim) -> Option<i64> {
    storage(
        c.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
}

/// The volume's capacity in bytes (0 without one; `None` when unparsable).
pub(crate) fn capacity_bytes(v: &PersistentVolume) -> Option<i64> {
    storage(v.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

/// Whether claim and volume disagree on the volume mode (unset means Filesystem).
pub(crate) fn volume_mode_mismatch(c: &PersistentVolumeClaim, v: &PersistentVolume) -> bool {
    let claim = c.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    let volume = v.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    claim.unwrap_or("Filesystem") != volume.unwrap_or("Filesystem")
}

fn modes(list: Option<&Vec<String>>) -> BTreeSet<&str> {
    list.into_iter().flatten().map(String::as_str).collect()
}

/// Whether the volume offers every access mode the claim asks for.
pub(crate) fn access_modes_fit(c: &PersistentVolumeClaim, v: &PersistentVolume) -> bool {
    let offered = modes(v.spec.as_ref().and_then(|s| s.access_modes.as_ref()));
    modes(c.spec.as_ref().and_then(|s| s.access_modes.as_ref())).is_subset(&offered)
}

/// Whether a volume the claim asked for by name (`spec.volumeName`) can serve it;
/// the error is Kubernetes' reason (`checkVolumeSatisfyClaim`).
pub(crate) fn satisfies(v: &PersistentVolume, c: &PersistentVolumeClaim) -> Result<(), String> {
    if v.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "the volume is marked for deletion {:?}",
            v.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    if capacity_bytes(v).unwrap_or(0) < requested_bytes(c).unwrap_or(0) {
        return Err("requested PV is too small".into());
    }
    if volume_class(v) != claim_class(c) {
        return Err("storageClassName does not match".into());
    }
    if volume_mode_mismatch(c, v) {
        return Err("incompatible volumeMode".into());
    }
    if !access_modes_fit(c, v) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

fn phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// The volume `claim` should be bound to, if any. With `delay_binding` (the class
/// binds on first consumer) only a volume pre-bound to the claim is returned: the
/// scheduler or a provisioner picks the others. Errors name a selector that does not
/// parse.
pub(crate) fn best_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    delay_binding: bool,
) -> Result<Option<&'a PersistentVolume>, String> {
    let requested = requested_bytes(claim).unwrap_or(0);
    let class = claim_class(claim);
    let selector = match claim.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(sel) => Some(LabelSelector::from_label_selector(sel).map_err(|e| {
            format!(
                "error creating internal label selector for claim: {}/{}: {e}",
                claim.metadata.namespace.as_deref().unwrap_or_default(),
                claim.metadata.name.as_deref().unwrap_or_default()
            )
        })?),
        None => None,
    };
    let claim_modes = modes(claim.spec.as_ref().and_then(|s| s.access_modes.as_ref()));
    // (number of access modes, capacity, name) of the best unbound volume so far.
    let mut best: Option<((usize, i64, &str), &PersistentVolume)> = None;
    for v in volumes {
        let spec = v.spec.as_ref();
        if spec.and_then(|s| s.claim_ref.as_ref()).is_some() && !bound_to_claim(v, claim) {
            continue;
        }
        let offered = modes(spec.and_then(|s| s.access_modes.as_ref()));
        if !claim_modes.is_subset(&offered) {
            continue;
        }
        let Some(capacity) = capacity_bytes(v) else {
            continue;
        };
        if capacity < requested
            || volume_mode_mismatch(claim, v)
            || v.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if bound_to_claim(v, claim) {
            return Ok(Some(v));
        }
        if delay_binding || phase(v) != "Available" || volume_class(v) != class {
            continue;
        }
        if let Some(sel) = &selector {
            let labels = v.metadata.labels.clone().unwrap_or_default();
            if !sel.matches(&labels) {
                continue;
            }
        }
        let rank = (
            offered.len(),
            capacity,
            v.metadata.name.as_deref().unwrap_or_default(),
        );
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((rank, v));
        }
    }
    Ok(best.map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(name: &str, size: &str, class: &str, modes: &[&str], phase: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"disk": "ssd"}},
            "spec": {"capacity": {"storage": size}, "accessModes": modes, "storageClassName": class,
                     "hostPath": {"path": format!("/data/{name}")}},
            "status": {"phase": phase},
        }))
        .expect("pv")
    }

    fn pvc(size: &str, class: Option<&str>, modes: &[&str]) -> PersistentVolumeClaim {
        let mut spec = json!({"accessModes": modes, "resources": {"requests": {"storage": size}}});
        if let Some(c) = class {
            spec["storageClassName"] = json!(c);
        }
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "uid-1"},
            "spec": spec,
        }))
        .expect("pvc")
    }

    fn pick<'a>(
        c: &PersistentVolumeClaim,
        vs: &'a [PersistentVolume],
        delay: bool,
    ) -> Option<&'a str> {
        best_match(c, vs, delay)
            .expect("match")
            .and_then(|v| v.metadata.name.as_deref())
    }

    #[test]
    fn the_smallest_available_volume_that_fits_is_chosen() {
        let vs = [
            pv("big", "10Gi", "", &["ReadWriteOnce"], "Available"),
            pv("small", "1Gi", "", &["ReadWriteOnce"], "Available"),
            pv("tiny", "100Mi", "", &["ReadWriteOnce"], "Available"),
            pv("taken", "2Gi", "", &["ReadWriteOnce"], "Bound"),
        ];
        assert_eq!(
            pick(&pvc("500Mi", Some(""), &["ReadWriteOnce"]), &vs, false),
            Some("small")
        );
        assert_eq!(
            pick(&pvc("20Gi", Some(""), &["ReadWriteOnce"]), &vs, false),
            None
        );
    }

    #[test]
    fn class_access_modes_volume_mode_and_selector_must_match() {
        let mut block = pv("block", "1Gi", "", &["ReadWriteOnce"], "Available");
        block.spec.as_mut().expect("spec").volume_mode = Some("Block".into());
        let vs = [
            pv("fast", "1Gi", "fast", &["ReadWriteOnce"], "Available"),
            pv("rox", "1Gi", "", &["ReadOnlyMany"], "Available"),
            block,
        ];
        assert_eq!(
            pick(&pvc("1Gi", Some(""), &["ReadWriteOnce"]), &vs, false),
            None
        );
        assert_eq!(
            pick(&pvc("1Gi", Some("fast"), &["ReadWriteOnce"]), &vs, false),
            Some("fast")
        );
        assert_eq!(
            pick(&pvc("1Gi", None, &["ReadOnlyMany"]), &vs, false),
            Some("rox")
        );
        let mut c = pvc("1Gi", Some("fast"), &["ReadWriteOnce"]);
        c.spec.as_mut().expect("spec").selector =
            serde_json::from_value(json!({"matchLabels": {"disk": "hdd"}})).expect("selector");
        assert_eq!(pick(&c, &vs, false), None);
        c.spec.as_mut().expect("spec").selector =
            serde_json::from_value(json!({"matchLabels": {"disk": "ssd"}})).expect("selector");
        assert_eq!(pick(&c, &vs, false), Some("fast"));
    }

    #[test]
    fn volumes_with_fewer_access_modes_come_first() {
        let vs = [
            pv(
                "rwo-rox",
                "1Gi",
                "",
                &["ReadWriteOnce", "ReadOnlyMany"],
                "Available",
            ),
            pv("rwo-big", "5Gi", "", &["ReadWriteOnce"], "Available"),
        ];
        assert_eq!(
            pick(&pvc("1Gi", Some(""), &["ReadWriteOnce"]), &vs, false),
            Some("rwo-big")
        );
    }

    #[test]
    fn a_pre_bound_volume_wins_also_when_binding_waits_for_a_consumer() {
        let mut pre = pv(
            "pvc-uid-1",
            "1Gi",
            "local-path",
            &["ReadWriteOnce"],
            "Pending",
        );
        pre.spec.as_mut().expect("spec").claim_ref = serde_json::from_value(
            json!({"kind": "PersistentVolumeClaim", "namespace": "ns", "name": "data", "uid": "uid-1"}),
        )
        .expect("ref");
        let mut other = pre.clone();
        other.metadata.name = Some("someone-elses".into());
        other
            .spec
            .as_mut()
            .expect("spec")
            .claim_ref
            .as_mut()
            .expect("ref")
            .uid = Some("uid-2".into());
        let free = pv("free", "1Gi", "local-path", &["ReadWriteOnce"], "Available");
        let vs = [free, other, pre];
        let c = pvc("1Gi", Some("local-path"), &["ReadWriteOnce"]);
        assert_eq!(pick(&c, &vs, true), Some("pvc-uid-1"));
        assert_eq!(
            pick(&c, &vs[..2], true),
            None,
            "unbound volumes wait for the scheduler"
        );
        assert_eq!(pick(&c, &vs[..2], false), Some("free"));
    }

    #[test]
    fn a_volume_being_deleted_is_never_chosen() {
        let mut v = pv("going", "1Gi", "", &["ReadWriteOnce"], "Available");
        v.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert_eq!(
            pick(
                &pvc("1Gi", Some(""), &["ReadWriteOnce"]),
                &[v.clone()],
                false
            ),
            None
        );
        assert!(satisfies(&v, &pvc("1Gi", Some(""), &["ReadWriteOnce"])).is_err());
    }

    #[test]
    fn a_requested_volume_is_checked_with_kubernetes_reasons() {
        let v = pv("v", "1Gi", "", &["ReadWriteOnce"], "Available");
        assert_eq!(satisfies(&v, &pvc("1Gi", None, &["ReadWriteOnce"])), Ok(()));
        assert_eq!(
            satisfies(&v, &pvc("2Gi", None, &["ReadWriteOnce"])).unwrap_err(),
            "requested PV is too small"
        );
        assert_eq!(
            satisfies(&v, &pvc("1Gi", Some("fast"), &["ReadWriteOnce"])).unwrap_err(),
            "storageClassName does not match"
        );
        assert_eq!(
            satisfies(&v, &pvc("1Gi", None, &["ReadWriteMany"])).unwrap_err(),
            "incompatible accessMode"
        );
    }

    #[test]
    fn the_beta_annotation_names_the_class_and_an_empty_class_is_a_class() {
        let mut c = pvc("1Gi", None, &["ReadWriteOnce"]);
        assert!(!claim_has_class(&c));
        assert_eq!(claim_class(&c), "");
        c.spec.as_mut().expect("spec").storage_class_name = Some(String::new());
        assert!(claim_has_class(&c));
        c.metadata.annotations = Some(BTreeMap::from([(ANN_STORAGE_CLASS.into(), "gold".into())]));
        assert_eq!(claim_class(&c), "gold");
    }
}
