//! Volumes.
//!
//! Baseline `hostPathVolumes` (v1.0+): no `hostPath` volumes.
//!
//! Restricted `restrictedVolumes` (v1.0+, replacing the baseline check): only
//! configMap, csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim,
//! projected and secret volumes.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Volume;

use super::{Check, Pod, Versioned};
use crate::level::Level;
use crate::violation::{Violation, join_quote, pluralize};

pub(crate) const HOST_PATH: Check = Check {
    id: "hostPathVolumes",
    level: Level::Baseline,
    versions: &[Versioned {
        since: 0,
        check: host_path_1_0,
        overrides: &[],
    }],
};

pub(crate) const RESTRICTED: Check = Check {
    id: "restrictedVolumes",
    level: Level::Restricted,
    versions: &[Versioned {
        since: 0,
        check: restricted_1_0,
        overrides: &[HOST_PATH.id],
    }],
};

fn volumes<'a>(pod: &Pod<'a>) -> &'a [Volume] {
    pod.spec.volumes.as_deref().unwrap_or_default()
}

fn host_path_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let bad: Vec<&str> = volumes(pod)
        .iter()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if bad.is_empty() {
        return None;
    }
    Some(Violation::new(
        HOST_PATH.id,
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad)
        ),
    ))
}

/// Whether the restricted level allows the volume's source.
fn allowed(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.csi.is_some()
        || v.downward_api.is_some()
        || v.empty_dir.is_some()
        || v.ephemeral.is_some()
        || v.image.is_some()
        || v.persistent_volume_claim.is_some()
        || v.projected.is_some()
        || v.secret.is_some()
}

/// The name Kubernetes gives a forbidden volume source (first match in its order).
fn source_type(v: &Volume) -> &'static str {
    let sources = [
        (v.host_path.is_some(), "hostPath"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.nfs.is_some(), "nfs"),
        (v.iscsi.is_some(), "iscsi"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.rbd.is_some(), "rbd"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.cinder.is_some(), "cinder"),
        (v.cephfs.is_some(), "cephfs"),
        (v.flocker.is_some(), "flocker"),
        (v.fc.is_some(), "fc"),
        (v.azure_file.is_some(), "azureFile"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
        (v.quobyte.is_some(), "quobyte"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.storageos.is_some(), "storageos"),
    ];
    sources
        .into_iter()
        .find(|(set, _)| *set)
        .map_or("unknown", |(_, name)| name)
}

fn restricted_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in volumes(pod).iter().filter(|v| !allowed(v)) {
        bad.push(v.name.as_str());
        types.insert(source_type(v));
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<&str> = types.into_iter().collect();
    Some(Violation::new(
        RESTRICTED.id,
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    ))
}
