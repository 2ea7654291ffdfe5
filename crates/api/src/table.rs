//! `kubectl get` columns: `meta.k8s.io/v1` `Table` responses as kube-apiserver v1.33 builds them.
//!
//! kube-apiserver turns objects into tables with the printers of
//! `pkg/printers/internalversion/printers.go`, always in wide mode: every row carries the
//! priority-1 cells too and kubectl hides those columns unless asked for `-o wide`. Kinds
//! without a printer get the default convertor of `apiserver/pkg/registry/rest/table.go`
//! (`Name`, `Created At`). This module computes both from stored JSON objects.
//!
//! kube-apiserver prints its internal objects, which went through defaulting and conversion.
//! Where a printed field is one the server defaults (a Service's `type`, a Deployment's
//! `replicas`, a Secret's `type`, a PersistentVolume's `volumeMode`, ...) a missing field is
//! read with that default, so an object stored without it prints as kube-apiserver would.
//! Quantities are printed in canonical form (`1024Mi` prints `1Gi`), as the server stores them.

mod autoscaling;
mod cluster;
mod core;
mod docs;
mod duration;
mod fields;
mod labels;
mod network;
mod pod;
mod quantity;
mod storage;
mod workloads;

use std::str::FromStr;

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use duration::human_duration;

/// One column of a table, serialized as Kubernetes' `TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDefinition {
    /// Human-readable header, e.g. `Name` or `Nominated Node`.
    pub name: String,
    /// OpenAPI type of the cells: `string`, `integer`, `number`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub value_type: String,
    /// OpenAPI format modifier; `name` marks the column holding the object's name.
    pub format: String,
    /// What the column shows.
    pub description: String,
    /// 0 for columns shown by default; higher ones only with `kubectl get -o wide`.
    pub priority: i32,
}

impl ColumnDefinition {
    /// A priority-0 column.
    fn new(name: &str, value_type: &str, description: &str) -> Self {
        Self {
            name: name.to_owned(),
            value_type: value_type.to_owned(),
            format: String::new(),
            description: description.to_owned(),
            priority: 0,
        }
    }

    /// A priority-0 `string` column.
    fn text(name: &str, description: &str) -> Self {
        Self::new(name, "string", description)
    }

    /// The `Name` column every printer starts with.
    fn name() -> Self {
        Self::text("Name", docs::NAME).formatted("name")
    }

    /// The `Age` column.
    fn age() -> Self {
        Self::text("Age", docs::CREATION_TIMESTAMP)
    }

    /// The same column with a format modifier.
    fn formatted(mut self, format: &str) -> Self {
        self.format = format.to_owned();
        self
    }

    /// The same column shown only with `-o wide`.
    fn wide(mut self) -> Self {
        self.priority = 1;
        self
    }
}

/// The `Name` column every table starts with (`format: name`), as public building
/// block for tables whose other columns come from elsewhere (custom resources'
/// `additionalPrinterColumns`).
pub fn name_column() -> ColumnDefinition {
    ColumnDefinition::name()
}

/// The description Kubernetes gives `metadata.creationTimestamp` columns.
pub fn creation_timestamp_description() -> &'static str {
    docs::CREATION_TIMESTAMP
}

/// A whole `meta.k8s.io/v1` `Table` for `objects` with the given columns, each row's
/// cells computed by `cells` (one per column), e.g. from custom resources'
/// `additionalPrinterColumns`. `list_meta` and `include_object` as in [`build_table`].
pub fn build_table_with(
    columns: Vec<ColumnDefinition>,
    objects: &[Value],
    cells: &dyn Fn(&Value) -> Vec<Value>,
    include_object: IncludeObject,
    list_meta: Value,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            json!({
                "cells": cells(obj),
                "object": row_object(obj, include_object),
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": table_metadata(list_meta),
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// What each row's `object` holds (the `includeObject` parameter of `TableOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object: `"object": null`.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (kubectl's default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

/// An `includeObject` value other than `None`, `Metadata` or `Object`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognized includeObject value: {0:?}")]
pub struct UnknownIncludeObject(pub String);

impl FromStr for IncludeObject {
    type Err = UnknownIncludeObject;

    /// Parses the query parameter; empty means the default, `Metadata`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "None" => Ok(Self::None),
            "Metadata" | "" => Ok(Self::Metadata),
            "Object" => Ok(Self::Object),
            other => Err(UnknownIncludeObject(other.to_owned())),
        }
    }
}

/// A printer's column definitions.
type Columns = fn() -> Vec<ColumnDefinition>;

/// A printer's cells for one object as of a given instant.
type Cells = fn(&Value, Timestamp) -> Vec<Value>;

/// The columns and cell function of one kind's printer.
struct Printer {
    columns: Columns,
    cells: Cells,
}

/// The printer kube-apiserver registers for `group`/`kind`, if any.
fn printer(group: &str, kind: &str) -> Option<Printer> {
    let (columns, cells): (Columns, Cells) = match (group, kind) {
        ("", "Pod") => (pod::columns, pod::cells),
        ("", "PodTemplate") => (core::pod_template_columns, core::pod_template_cells),
        ("", "Namespace") => (core::namespace_columns, core::namespace_cells),
        ("", "Node") => (core::node_columns, core::node_cells),
        ("", "ConfigMap") => (core::config_map_columns, core::config_map_cells),
        ("", "Secret") => (core::secret_columns, core::secret_cells),
        ("", "ServiceAccount") => (core::service_account_columns, core::service_account_cells),
        ("", "Event") => (core::event_columns, core::core_event_cells),
        ("events.k8s.io", "Event") => (core::event_columns, core::events_event_cells),
        ("", "ResourceQuota") => (core::resource_quota_columns, core::resource_quota_cells),
        ("", "ComponentStatus") => (core::component_status_columns, core::component_status_cells),
        ("", "Service") => (network::service_columns, network::service_cells),
        ("", "Endpoints") => (network::endpoints_columns, network::endpoints_cells),
        ("discovery.k8s.io", "EndpointSlice") => (
            network::endpoint_slice_columns,
            network::endpoint_slice_cells,
        ),
        ("networking.k8s.io", "Ingress") => (network::ingress_columns, network::ingress_cells),
        ("networking.k8s.io", "IngressClass") => {
            (network::ingress_class_columns, network::ingress_class_cells)
        }
        ("networking.k8s.io", "NetworkPolicy") => (
            network::network_policy_columns,
            network::network_policy_cells,
        ),
        ("networking.k8s.io", "ServiceCIDR") => {
            (network::service_cidr_columns, network::service_cidr_cells)
        }
        ("networking.k8s.io", "IPAddress") => {
            (network::ip_address_columns, network::ip_address_cells)
        }
        ("", "PersistentVolume") => (storage::pv_columns, storage::pv_cells),
        ("", "PersistentVolumeClaim") => (storage::pvc_columns, storage::pvc_cells),
        ("storage.k8s.io", "StorageClass") => {
            (storage::storage_class_columns, storage::storage_class_cells)
        }
        ("storage.k8s.io", "CSIDriver") => (storage::csi_driver_columns, storage::csi_driver_cells),
        ("storage.k8s.io", "CSINode") => (storage::csi_node_columns, storage::csi_node_cells),
        ("storage.k8s.io", "CSIStorageCapacity") => (
            storage::csi_storage_capacity_columns,
            storage::csi_storage_capacity_cells,
        ),
        ("storage.k8s.io", "VolumeAttachment") => (
            storage::volume_attachment_columns,
            storage::volume_attachment_cells,
        ),
        ("", "ReplicationController") => (
            workloads::replication_controller_columns,
            workloads::replication_controller_cells,
        ),
        ("apps", "ReplicaSet") => (workloads::replica_set_columns, workloads::replica_set_cells),
        ("apps", "Deployment") => (workloads::deployment_columns, workloads::deployment_cells),
        ("apps", "StatefulSet") => (
            workloads::stateful_set_columns,
            workloads::stateful_set_cells,
        ),
        ("apps", "DaemonSet") => (workloads::daemon_set_columns, workloads::daemon_set_cells),
        ("apps", "ControllerRevision") => (
            workloads::controller_revision_columns,
            workloads::controller_revision_cells,
        ),
        ("batch", "Job") => (workloads::job_columns, workloads::job_cells),
        ("batch", "CronJob") => (workloads::cron_job_columns, workloads::cron_job_cells),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            (autoscaling::hpa_columns, autoscaling::hpa_cells)
        }
        ("policy", "PodDisruptionBudget") => (workloads::pdb_columns, workloads::pdb_cells),
        ("coordination.k8s.io", "Lease") => (cluster::lease_columns, cluster::lease_cells),
        ("scheduling.k8s.io", "PriorityClass") => (
            cluster::priority_class_columns,
            cluster::priority_class_cells,
        ),
        ("node.k8s.io", "RuntimeClass") => {
            (cluster::runtime_class_columns, cluster::runtime_class_cells)
        }
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            (cluster::role_binding_columns, cluster::role_binding_cells)
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => (
            cluster::cluster_role_binding_columns,
            cluster::role_binding_cells,
        ),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration")
        | ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            (cluster::webhook_columns, cluster::webhook_cells)
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => (
            cluster::admission_policy_columns,
            cluster::admission_policy_cells,
        ),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => (
            cluster::policy_binding_columns,
            cluster::policy_binding_cells,
        ),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => {
            (cluster::flow_schema_columns, cluster::flow_schema_cells)
        }
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => (
            cluster::priority_level_columns,
            cluster::priority_level_cells,
        ),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            (cluster::csr_columns, cluster::csr_cells)
        }
        _ => return None,
    };
    Some(Printer { columns, cells })
}

/// The columns kube-apiserver v1.33 answers for `group`/`kind` (group `""` is core),
/// priority-1 (`-o wide`) columns included.
///
/// Kinds without a printer (Role, ClusterRole, LimitRange, ...) get the default
/// convertor's `Name` and `Created At`.
pub fn column_definitions(group: &str, kind: &str) -> Vec<ColumnDefinition> {
    match printer(group, kind) {
        Some(printer) => (printer.columns)(),
        None => vec![
            ColumnDefinition::name(),
            ColumnDefinition::new("Created At", "date", docs::CREATION_TIMESTAMP),
        ],
    }
}

/// The cells of `obj`'s row, one per column of [`column_definitions`], as of `now`.
pub fn row_cells(group: &str, kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    match printer(group, kind) {
        Some(printer) => (printer.cells)(obj, now),
        None => vec![
            Value::from(fields::name(obj)),
            Value::from(duration::rfc3339(duration::timestamp_at(
                obj,
                &["metadata", "creationTimestamp"],
            ))),
        ],
    }
}

/// The row conditions kube-apiserver attaches to `obj`'s row (`TableRowCondition`s):
/// `Completed` for pods that succeeded or failed, none otherwise.
pub fn row_conditions(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
    match (group, kind) {
        ("", "Pod") => pod::conditions(obj),
        _ => Vec::new(),
    }
}

/// A whole `meta.k8s.io/v1` `Table` for `objects` of `group`/`kind`.
///
/// `list_meta` becomes the table's `metadata` (`resourceVersion`, `continue`,
/// `remainingItemCount`); nulls and empty strings are left out, as `ListMeta` omits them.
pub fn build_table(
    group: &str,
    kind: &str,
    objects: &[Value],
    now: Timestamp,
    include_object: IncludeObject,
    list_meta: Value,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            row.insert(
                "cells".into(),
                Value::Array(row_cells(group, kind, obj, now)),
            );
            let conditions = row_conditions(group, kind, obj);
            if !conditions.is_empty() {
                row.insert("conditions".into(), Value::Array(conditions));
            }
            row.insert("object".into(), row_object(obj, include_object));
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": table_metadata(list_meta),
        "columnDefinitions": column_definitions(group, kind),
        "rows": rows,
    })
}

/// The `object` of a row.
fn row_object(obj: &Value, include_object: IncludeObject) -> Value {
    match include_object {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => obj.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    }
}

/// The table's `ListMeta`, without the fields `omitempty` would drop.
fn table_metadata(list_meta: Value) -> Value {
    let Value::Object(fields) = list_meta else {
        return json!({});
    };
    let kept = fields
        .into_iter()
        .filter(|(_, value)| !matches!(value, Value::Null) && value.as_str() != Some(""))
        .collect();
    Value::Object(kept)
}
