//! Whole `meta.k8s.io/v1` Table responses, `includeObject`, column definitions on the wire and
//! kubectl's AGE arithmetic.

use api::k8s_openapi::jiff::{SignedDuration, Timestamp};
use api::table::{
    IncludeObject, UnknownIncludeObject, build_table, column_definitions, human_duration, row_cells,
};
use serde_json::{Value, json};

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

fn ago(seconds: i64) -> String {
    (now() - SignedDuration::from_secs(seconds)).to_string()
}

fn config_map(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name, "namespace": "default", "uid": "1234", "resourceVersion": "42",
            "creationTimestamp": ago(42), "labels": {"app": "web"},
        },
        "data": {"key": "value"},
    })
}

#[test]
fn human_duration_matches_apimachinery() {
    for (seconds, want) in [
        (-5, "<invalid>"),
        (-2, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (59, "59s"),
        (60, "60s"),
        (119, "119s"),
        (120, "2m"),
        (123, "2m3s"),
        (599, "9m59s"),
        (600, "10m"),
        (659, "10m"),
        (3599, "59m"),
        (10_799, "179m"),
        (10_800, "3h"),
        (11_100, "3h5m"),
        (8 * 3600 - 1, "7h59m"),
        (8 * 3600, "8h"),
        (47 * 3600 + 3599, "47h"),
        (48 * 3600, "2d"),
        (2 * 86400 + 3 * 3600, "2d3h"),
        (8 * 86400 - 1, "7d23h"),
        (8 * 86400, "8d"),
        (45 * 86400, "45d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (3 * 365 * 86400 + 20 * 86400, "3y20d"),
        (8 * 365 * 86400 - 1, "7y364d"),
        (8 * 365 * 86400, "8y"),
        (20 * 365 * 86400 + 100 * 86400, "20y"),
    ] {
        assert_eq!(human_duration(seconds), want, "human_duration({seconds})");
    }
}

#[test]
fn include_object_parses_like_the_query_parameter() {
    assert_eq!("None".parse(), Ok(IncludeObject::None));
    assert_eq!("Metadata".parse(), Ok(IncludeObject::Metadata));
    assert_eq!("".parse(), Ok(IncludeObject::Metadata));
    assert_eq!("Object".parse(), Ok(IncludeObject::Object));
    assert_eq!(IncludeObject::default(), IncludeObject::Metadata);
    let err = "object".parse::<IncludeObject>().unwrap_err();
    assert_eq!(err, UnknownIncludeObject("object".to_owned()));
    assert_eq!(
        err.to_string(),
        r#"unrecognized includeObject value: "object""#
    );
}

#[test]
fn include_object_metadata_yields_partial_object_metadata() {
    let cm = config_map("settings");
    let table = build_table(
        "",
        "ConfigMap",
        std::slice::from_ref(&cm),
        now(),
        IncludeObject::Metadata,
        json!({"resourceVersion": "57", "continue": ""}),
    );
    assert_eq!(
        table,
        json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": "57"},
            "columnDefinitions": column_definitions("", "ConfigMap"),
            "rows": [{
                "cells": ["settings", 1, "42s"],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": cm["metadata"],
                },
            }],
        })
    );
}

#[test]
fn include_object_object_embeds_the_object_and_none_leaves_it_null() {
    let objects = [config_map("a"), config_map("b")];
    let full = build_table(
        "",
        "ConfigMap",
        &objects,
        now(),
        IncludeObject::Object,
        json!({"resourceVersion": "7", "continue": "abc", "remainingItemCount": 3}),
    );
    assert_eq!(full["rows"][1]["object"], objects[1]);
    assert_eq!(
        full["metadata"],
        json!({"resourceVersion": "7", "continue": "abc", "remainingItemCount": 3})
    );
    let bare = build_table(
        "",
        "ConfigMap",
        &objects,
        now(),
        IncludeObject::None,
        Value::Null,
    );
    assert_eq!(
        bare["rows"][0],
        json!({"cells": ["a", 1, "42s"], "object": null})
    );
    assert_eq!(bare["metadata"], json!({}));
}

#[test]
fn empty_list_still_has_column_definitions_and_no_rows() {
    let table = build_table(
        "apps",
        "Deployment",
        &[],
        now(),
        IncludeObject::Metadata,
        json!({"resourceVersion": "9"}),
    );
    assert_eq!(table["rows"], json!([]));
    assert_eq!(table["columnDefinitions"].as_array().unwrap().len(), 8);
}

#[test]
fn table_rows_of_finished_pods_carry_row_conditions() {
    let pod = json!({"metadata": {"name": "done"}, "spec": {"containers": [{"name": "c"}]},
                     "status": {"phase": "Succeeded"}});
    let table = build_table("", "Pod", &[pod], now(), IncludeObject::None, json!({}));
    let row = table["rows"][0].as_object().unwrap();
    let keys: Vec<&str> = row.keys().map(String::as_str).collect();
    assert_eq!(keys, ["cells", "conditions", "object"]);
    assert_eq!(row["conditions"][0]["type"], json!("Completed"));
}

#[test]
fn column_definitions_serialize_as_table_column_definitions() {
    let columns = serde_json::to_value(column_definitions("", "Namespace")).unwrap();
    assert_eq!(columns[0]["name"], json!("Name"));
    assert_eq!(columns[0]["type"], json!("string"));
    assert_eq!(columns[0]["format"], json!("name"));
    assert_eq!(columns[0]["priority"], json!(0));
    assert!(
        columns[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("Name must be unique within a namespace.")
    );
    assert_eq!(
        columns[1],
        json!({"name": "Status", "type": "string", "format": "", "description": "The status of the namespace", "priority": 0})
    );
    assert!(
        columns[2]["description"]
            .as_str()
            .unwrap()
            .starts_with("CreationTimestamp is a timestamp")
    );
}

#[test]
fn every_printed_kind_has_one_cell_per_column() {
    let kinds = [
        ("", "Pod"),
        ("", "PodTemplate"),
        ("", "Namespace"),
        ("", "Node"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "ServiceAccount"),
        ("", "Event"),
        ("events.k8s.io", "Event"),
        ("", "ResourceQuota"),
        ("", "ComponentStatus"),
        ("", "Service"),
        ("", "Endpoints"),
        ("", "ReplicationController"),
        ("", "PersistentVolume"),
        ("", "PersistentVolumeClaim"),
        ("", "LimitRange"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "IngressClass"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("networking.k8s.io", "ServiceCIDR"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "CSIStorageCapacity"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("apps", "ReplicaSet"),
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ControllerRevision"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("policy", "PodDisruptionBudget"),
        ("coordination.k8s.io", "Lease"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("node.k8s.io", "RuntimeClass"),
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
        ),
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration",
        ),
        ("certificates.k8s.io", "CertificateSigningRequest"),
    ];
    let empty = json!({"metadata": {"name": "x", "creationTimestamp": ago(1)}});
    for (group, kind) in kinds {
        let columns = column_definitions(group, kind);
        let cells = row_cells(group, kind, &empty, now());
        assert_eq!(cells.len(), columns.len(), "{group}/{kind}");
        let name_column = columns.iter().position(|c| c.format == "name");
        assert!(name_column.is_some(), "{group}/{kind} has a name column");
    }
}

#[test]
fn ip_address_rows_carry_an_age_cell_beyond_their_two_columns() {
    // kube-apiserver v1.33 declares Name and ParentRef only, yet prints the age too.
    let ip = json!({"metadata": {"name": "10.96.0.1", "creationTimestamp": ago(3)},
                    "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"}}});
    assert_eq!(
        column_definitions("networking.k8s.io", "IPAddress").len(),
        2
    );
    assert_eq!(
        row_cells("networking.k8s.io", "IPAddress", &ip, now()),
        vec![
            json!("10.96.0.1"),
            json!("services/default/kubernetes"),
            json!("3s")
        ]
    );
}
