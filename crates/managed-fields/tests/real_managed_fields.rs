//! The managedFields of a Deployment made with `kubectl create deployment
//! web --image=nginx` and rolled out by kube-controller-manager, written by
//! hand in the shape the Kubernetes documentation shows: it must read and
//! write back byte for byte, and the create entry must be what the field
//! manager itself records for that create.

use jiff::Timestamp;
use managed_fields::{FieldManager, FieldPath, FieldSet, Operation};
use serde_json::{Value, json};

const MANAGED_FIELDS: &str = r#"[{"manager":"kubectl-create","operation":"Update","apiVersion":"apps/v1","time":"2024-05-01T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:progressDeadlineSeconds":{},"f:replicas":{},"f:revisionHistoryLimit":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":{".":{},"f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}}},{"manager":"kube-controller-manager","operation":"Update","apiVersion":"apps/v1","time":"2024-05-01T10:00:05Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:annotations":{".":{},"f:deployment.kubernetes.io/revision":{}}},"f:status":{"f:availableReplicas":{},"f:conditions":{".":{},"k:{\"type\":\"Available\"}":{".":{},"f:lastTransitionTime":{},"f:lastUpdateTime":{},"f:message":{},"f:reason":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Progressing\"}":{".":{},"f:lastTransitionTime":{},"f:lastUpdateTime":{},"f:message":{},"f:reason":{},"f:status":{},"f:type":{}}},"f:observedGeneration":{},"f:readyReplicas":{},"f:replicas":{},"f:updatedReplicas":{}}},"subresource":"status"}]"#;

/// The Deployment as stored after `kubectl create` and defaulting.
fn created_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "c5b1f4f2-3f6a-4a57-a3f7-5a1f0e6d7b21",
            "resourceVersion": "1021",
            "generation": 1,
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "labels": {"app": "web"}
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "nginx",
                        "image": "nginx",
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "imagePullPolicy": "Always"
                    }],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "securityContext": {},
                    "schedulerName": "default-scheduler"
                }
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600
        },
        "status": {}
    })
}

fn deployments() -> FieldManager {
    FieldManager::for_builtin("apps", "v1", "Deployment")
        .unwrap()
        .with_reset_fields(FieldSet::from_paths([FieldPath::fields(["status"])]))
}

#[test]
fn real_managed_fields_round_trip_byte_for_byte() {
    let parsed: Value = serde_json::from_str(MANAGED_FIELDS).unwrap();
    let entries = managed_fields::decode_entries(&parsed).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].manager, "kubectl-create");
    assert_eq!(entries[0].operation, Operation::Update);
    assert_eq!(entries[1].subresource, "status");
    assert_eq!(
        entries[1].time,
        Some("2024-05-01T10:00:05Z".parse::<Timestamp>().unwrap())
    );
    assert!(entries[1].fields.has(&[
        managed_fields::PathElement::field("status"),
        managed_fields::PathElement::field("conditions"),
        managed_fields::PathElement::key([("type", json!("Progressing"))]),
        managed_fields::PathElement::field("reason"),
    ]));
    let written = serde_json::to_string(&managed_fields::encode_entries(&entries)).unwrap();
    assert_eq!(written, MANAGED_FIELDS);
}

#[test]
fn the_field_manager_records_the_same_create_entry() {
    let created = deployments().update(
        None,
        created_deployment(),
        "kubectl-create",
        "2024-05-01T10:00:00Z".parse().unwrap(),
    );
    let expected: Value = serde_json::from_str(MANAGED_FIELDS).unwrap();
    assert_eq!(
        serde_json::to_string(&created["metadata"]["managedFields"][0]).unwrap(),
        serde_json::to_string(&expected[0]).unwrap()
    );
}

#[test]
fn a_server_side_apply_on_the_real_object_conflicts_only_where_values_differ() {
    let mut live = created_deployment();
    live["metadata"]["managedFields"] = serde_json::from_str(MANAGED_FIELDS).unwrap();
    let fm = deployments();
    let cfg = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}
            }
        }
    });
    let err = fm
        .apply(Some(&live), &cfg, "kubectl", false, Timestamp::UNIX_EPOCH)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: .spec.replicas"#
    );
    let applied = fm
        .apply(Some(&live), &cfg, "kubectl", true, Timestamp::UNIX_EPOCH)
        .unwrap();
    let first = &applied.object["metadata"]["managedFields"][0];
    assert_eq!(first["manager"], "kubectl");
    assert_eq!(first["operation"], "Apply");
    assert!(first.get("subresource").is_none());
    assert_eq!(
        applied.object["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}
