//! PersistentVolume, PersistentVolumeClaim, StorageClass, CSIDriver, CSINode,
//! CSIStorageCapacity, VolumeAttachment.

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::fields::{self, at, items, len_at, name, opt_bool_at, str_at, str_or};
use super::{ColumnDefinition, docs, duration, quantity};

/// The beta annotation that, when present, names a volume's or claim's class.
const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

pub(super) fn pv_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Capacity", docs::PV_CAPACITY),
        ColumnDefinition::text("Access Modes", docs::PV_ACCESS_MODES),
        ColumnDefinition::text("Reclaim Policy", docs::PV_RECLAIM_POLICY),
        ColumnDefinition::text("Status", docs::PV_PHASE),
        ColumnDefinition::text("Claim", docs::PV_CLAIM_REF),
        ColumnDefinition::text("StorageClass", "StorageClass of the pv"),
        ColumnDefinition::text("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
        ColumnDefinition::text("Reason", docs::PV_REASON),
        ColumnDefinition::age(),
        ColumnDefinition::text("VolumeMode", docs::PV_VOLUME_MODE).wide(),
    ]
}

pub(super) fn pv_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match at(obj, &["spec", "claimRef"]) {
        Some(r) => format!("{}/{}", str_at(r, &["namespace"]), str_at(r, &["name"])),
        None => String::new(),
    };
    let phase = if fields::is_deleting(obj) {
        "Terminating"
    } else {
        str_or(obj, &["status", "phase"], "Pending")
    };
    let class = storage_class_annotation(obj).unwrap_or(str_at(obj, &["spec", "storageClassName"]));
    vec![
        Value::from(name(obj)),
        Value::from(quantity::at(obj, &["spec", "capacity", "storage"])),
        Value::from(access_modes(items(obj, &["spec", "accessModes"]))),
        Value::from(str_or(
            obj,
            &["spec", "persistentVolumeReclaimPolicy"],
            "Retain",
        )),
        Value::from(phase),
        Value::from(claim),
        Value::from(class),
        Value::from(volume_attributes_class(obj)),
        Value::from(str_at(obj, &["status", "reason"])),
        Value::from(duration::age(obj, now)),
        Value::from(str_or(obj, &["spec", "volumeMode"], "Filesystem")),
    ]
}

pub(super) fn pvc_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Status", docs::PVC_PHASE),
        ColumnDefinition::text("Volume", docs::PVC_VOLUME_NAME),
        ColumnDefinition::text("Capacity", docs::PVC_CAPACITY),
        ColumnDefinition::text("Access Modes", docs::PVC_ACCESS_MODES),
        ColumnDefinition::text("StorageClass", "StorageClass of the pvc"),
        ColumnDefinition::text("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
        ColumnDefinition::age(),
        ColumnDefinition::text("VolumeMode", docs::PVC_VOLUME_MODE).wide(),
    ]
}

pub(super) fn pvc_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let phase = if fields::is_deleting(obj) {
        "Terminating"
    } else {
        str_or(obj, &["status", "phase"], "Pending")
    };
    let volume = str_at(obj, &["spec", "volumeName"]);
    // Capacity and access modes only show once the claim is bound to a volume.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity::at(obj, &["status", "capacity", "storage"]),
            access_modes(items(obj, &["status", "accessModes"])),
        )
    };
    let class = storage_class_annotation(obj)
        .or_else(|| fields::opt_str_at(obj, &["spec", "storageClassName"]))
        .unwrap_or("");
    vec![
        Value::from(name(obj)),
        Value::from(phase),
        Value::from(volume),
        Value::from(capacity),
        Value::from(modes),
        Value::from(class),
        Value::from(volume_attributes_class(obj)),
        Value::from(duration::age(obj, now)),
        Value::from(str_or(obj, &["spec", "volumeMode"], "Filesystem")),
    ]
}

/// The beta storage class annotation, which wins over `spec.storageClassName`.
fn storage_class_annotation(obj: &Value) -> Option<&str> {
    fields::opt_str_at(
        obj,
        &["metadata", "annotations", BETA_STORAGE_CLASS_ANNOTATION],
    )
}

fn volume_attributes_class(obj: &Value) -> &str {
    fields::opt_str_at(obj, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>")
}

/// `RWO,ROX,RWX,RWOP` for the modes present, in that order (`GetAccessModesAsString`).
fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

pub(super) fn storage_class_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Provisioner", docs::STORAGE_CLASS_PROVISIONER),
        ColumnDefinition::text("ReclaimPolicy", docs::STORAGE_CLASS_RECLAIM_POLICY),
        ColumnDefinition::text("VolumeBindingMode", docs::STORAGE_CLASS_VOLUME_BINDING_MODE),
        ColumnDefinition::text(
            "AllowVolumeExpansion",
            docs::STORAGE_CLASS_ALLOW_VOLUME_EXPANSION,
        ),
        ColumnDefinition::age(),
    ]
}

pub(super) fn storage_class_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|key| fields::opt_str_at(obj, &["metadata", "annotations", key]) == Some("true"));
    let mut display_name = name(obj).to_owned();
    if is_default {
        display_name.push_str(" (default)");
    }
    vec![
        Value::from(display_name),
        Value::from(str_at(obj, &["provisioner"])),
        Value::from(fields::opt_str_at(obj, &["reclaimPolicy"]).unwrap_or("Delete")),
        Value::from(fields::opt_str_at(obj, &["volumeBindingMode"]).unwrap_or("Immediate")),
        Value::from(opt_bool_at(obj, &["allowVolumeExpansion"]).unwrap_or(false)),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn csi_driver_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::new(
            "AttachRequired",
            "boolean",
            docs::CSI_DRIVER_ATTACH_REQUIRED,
        ),
        ColumnDefinition::new(
            "PodInfoOnMount",
            "boolean",
            docs::CSI_DRIVER_POD_INFO_ON_MOUNT,
        ),
        ColumnDefinition::new(
            "StorageCapacity",
            "boolean",
            docs::CSI_DRIVER_STORAGE_CAPACITY,
        ),
        ColumnDefinition::text("TokenRequests", docs::CSI_DRIVER_TOKEN_REQUESTS),
        ColumnDefinition::new(
            "RequiresRepublish",
            "boolean",
            docs::CSI_DRIVER_REQUIRES_REPUBLISH,
        ),
        ColumnDefinition::text("Modes", docs::CSI_DRIVER_MODES),
        ColumnDefinition::age(),
    ]
}

pub(super) fn csi_driver_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    let flag = |key: &str, default: bool| opt_bool_at(obj, &["spec", key]).unwrap_or(default);
    let token_requests = match at(obj, &["spec", "tokenRequests"]) {
        None => "<unset>".to_owned(),
        Some(_) => items(obj, &["spec", "tokenRequests"])
            .iter()
            .map(|t| str_at(t, &["audience"]))
            .collect::<Vec<_>>()
            .join(","),
    };
    let modes: Vec<&str> = items(obj, &["spec", "volumeLifecycleModes"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    vec![
        Value::from(name(obj)),
        Value::from(flag("attachRequired", true)),
        Value::from(flag("podInfoOnMount", false)),
        Value::from(flag("storageCapacity", false)),
        Value::from(token_requests),
        Value::from(flag("requiresRepublish", false)),
        // The server defaults an empty list to `Persistent`.
        Value::from(if modes.is_empty() {
            "Persistent".to_owned()
        } else {
            modes.join(",")
        }),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn csi_node_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::new(
            "Drivers",
            "integer",
            "Drivers indicates the number of CSI drivers registered on the node",
        ),
        ColumnDefinition::age(),
    ]
}

pub(super) fn csi_node_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        Value::from(name(obj)),
        Value::from(len_at(obj, &["spec", "drivers"])),
        Value::from(duration::age(obj, now)),
    ]
}

pub(super) fn csi_storage_capacity_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("StorageClassName", docs::CSI_STORAGE_CAPACITY_CLASS),
        ColumnDefinition::text("Capacity", docs::CSI_STORAGE_CAPACITY_CAPACITY),
    ]
}

pub(super) fn csi_storage_capacity_cells(obj: &Value, _now: Timestamp) -> Vec<Value> {
    vec![
        Value::from(name(obj)),
        Value::from(str_at(obj, &["storageClassName"])),
        Value::from(quantity::opt_at(obj, &["capacity"]).unwrap_or_else(|| "<unset>".to_owned())),
    ]
}

pub(super) fn volume_attachment_columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::name(),
        ColumnDefinition::text("Attacher", docs::VOLUME_ATTACHMENT_ATTACHER).formatted("name"),
        ColumnDefinition::text("PV", docs::VOLUME_ATTACHMENT_PV),
        ColumnDefinition::text("Node", docs::VOLUME_ATTACHMENT_NODE),
        ColumnDefinition::new("Attached", "boolean", docs::VOLUME_ATTACHMENT_ATTACHED),
        ColumnDefinition::age(),
    ]
}

pub(super) fn volume_attachment_cells(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        Value::from(name(obj)),
        Value::from(str_at(obj, &["spec", "attacher"])),
        Value::from(str_at(obj, &["spec", "source", "persistentVolumeName"])),
        Value::from(str_at(obj, &["spec", "nodeName"])),
        Value::from(opt_bool_at(obj, &["status", "attached"]).unwrap_or(false)),
        Value::from(duration::age(obj, now)),
    ]
}
