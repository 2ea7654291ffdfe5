//! `kubectl apply` scenarios: the strategic merge patches kubectl's three-way
//! merge sends, applied to live objects carrying server defaults, and what
//! Kubernetes makes of them.

use api::patch::strategic_merge;
use serde_json::{Value, json};

const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

/// A Deployment as the API server stores it after the first `kubectl apply`:
/// two containers, defaults filled in, a status.
fn live_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "0b1c",
            "resourceVersion": "42",
            "generation": 1,
            "labels": {"app": "web", "tier": "frontend"},
            "annotations": {
                "deployment.kubernetes.io/revision": "1",
                "kubectl.kubernetes.io/last-applied-configuration": "{...v1...}"
            }
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.25",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "resources": {},
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File",
                            "imagePullPolicy": "IfNotPresent"
                        },
                        {
                            "name": "sidecar",
                            "image": "busybox",
                            "resources": {},
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File",
                            "imagePullPolicy": "Always"
                        }
                    ],
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
        "status": {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2}
    })
}

#[test]
fn reapply_with_a_container_removed_an_env_changed_a_port_added_and_a_label_removed() {
    // The patch kubectl computes from last-applied (web + sidecar, tier label)
    // to the new file (web only, B=3, port 443 added, no tier label).
    let patch = json!({
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...v2...}"},
            "labels": {"tier": null}
        },
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}],
            "containers": [
                {
                    "$setElementOrder/env": [{"name": "A"}, {"name": "B"}],
                    "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 443}],
                    "env": [{"name": "B", "value": "3"}],
                    "name": "web",
                    "ports": [{"containerPort": 443}]
                },
                {"$patch": "delete", "name": "sidecar"}
            ]
        }}}
    });
    let out = strategic_merge(&live_deployment(), &patch, DEPLOYMENT).unwrap();

    let mut want = live_deployment();
    want["metadata"]["labels"] = json!({"app": "web"});
    want["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!("{...v2...}");
    want["spec"]["template"]["spec"]["containers"] = json!([{
        "name": "web",
        "image": "nginx:1.25",
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}],
        "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}],
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent"
    }]);
    assert_eq!(out, want);
}

#[test]
fn reapply_with_a_new_image_and_replica_count_keeps_server_defaults() {
    let patch = json!({
        "spec": {
            "replicas": 3,
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "containers": [{"image": "nginx:1.26", "name": "web"}]
            }}
        }
    });
    let out = strategic_merge(&live_deployment(), &patch, DEPLOYMENT).unwrap();
    let mut want = live_deployment();
    want["spec"]["replicas"] = json!(3);
    want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
    assert_eq!(out, want);
}

#[test]
fn switching_to_recreate_drops_rolling_update_through_retain_keys() {
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}});
    let out = strategic_merge(&live_deployment(), &patch, DEPLOYMENT).unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn adding_a_container_first_follows_set_element_order() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "init-proxy"}, {"name": "web"}, {"name": "sidecar"}],
        "containers": [{"image": "envoy", "name": "init-proxy"}]
    }}}});
    let out = strategic_merge(&live_deployment(), &patch, DEPLOYMENT).unwrap();
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["init-proxy", "web", "sidecar"]);
}

#[test]
fn removing_a_field_from_the_file_sends_null_and_deletes_it() {
    // The file dropped `env` from `web` entirely.
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"env": null, "name": "web"}]
    }}}});
    let out = strategic_merge(&live_deployment(), &patch, DEPLOYMENT).unwrap();
    assert!(
        out["spec"]["template"]["spec"]["containers"][0]
            .get("env")
            .is_none()
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][1]["name"],
        "sidecar"
    );
}

/// apimachinery's "add an item in a list and preserve order", on containers.
#[test]
fn an_added_item_goes_where_set_element_order_puts_it_and_live_fields_stay() {
    let current = json!({"spec": {"containers": [
        {"name": "1", "image": "a"},
        {"name": "2", "command": ["2"], "image": "b"}
    ]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "3"}, {"name": "1"}, {"name": "2"}],
        "containers": [{"name": "3", "command": ["3"]}]
    }});
    let out = strategic_merge(&current, &patch, "io.k8s.api.core.v1.Pod").unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([
            {"name": "3", "command": ["3"]},
            {"name": "1", "image": "a"},
            {"name": "2", "command": ["2"], "image": "b"}
        ])
    );
}

/// apimachinery's "add and delete an item in a list and preserve order", on containers.
#[test]
fn an_item_added_and_another_deleted_keep_the_requested_order() {
    let current = json!({"spec": {"containers": [
        {"name": "1", "image": "a"},
        {"name": "2", "command": ["2"], "image": "b"},
        {"name": "3", "command": ["3"]}
    ]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "4"}, {"name": "2"}, {"name": "1"}],
        "containers": [{"name": "4", "command": ["4"]}, {"name": "3", "$patch": "delete"}]
    }});
    let out = strategic_merge(&current, &patch, "io.k8s.api.core.v1.Pod").unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([
            {"name": "4", "command": ["4"]},
            {"name": "2", "command": ["2"], "image": "b"},
            {"name": "1", "image": "a"}
        ])
    );
}

/// apimachinery's "$setElementOrder contains item that is not present in the list to be merged".
#[test]
fn set_element_order_may_name_items_that_are_nowhere() {
    let current = json!({"spec": {"containers": [{"name": "1"}, {"name": "3"}]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
        "containers": [{"name": "3", "image": "3"}, {"name": "1", "image": "1"}]
    }});
    let out = strategic_merge(&current, &patch, "io.k8s.api.core.v1.Pod").unwrap();
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "3", "image": "3"}, {"name": "1", "image": "1"}])
    );
    // And for a primitive list without a patch list: only reordered.
    let current = json!({"metadata": {"finalizers": ["1", "3"]}});
    let patch = json!({"metadata": {"$setElementOrder/finalizers": ["3", "2", "1"]}});
    let out = strategic_merge(&current, &patch, DEPLOYMENT).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["3", "1"]));
}

/// apimachinery's "should check if order in $setElementOrder and patch list match".
#[test]
fn a_patch_list_out_of_set_element_order_is_rejected() {
    let current = json!({"spec": {"containers": [{"name": "1"}, {"name": "3"}, {"name": "2"}]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
        "containers": [{"name": "3", "image": "3"}, {"name": "1", "image": "1"}]
    }});
    let err = strategic_merge(&current, &patch, "io.k8s.api.core.v1.Pod").unwrap_err();
    assert!(err.to_string().contains("doesn't match"), "{err}");
}

/// apimachinery's "$deleteFromPrimitiveList of nonexistent item ... should not add the item".
#[test]
fn deleting_a_missing_primitive_adds_nothing() {
    let current = json!({"metadata": {"finalizers": ["1", "2"]}});
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["3"]}});
    let out = strategic_merge(&current, &patch, DEPLOYMENT).unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["1", "2"]));
    let current = json!({"metadata": {}});
    let out = strategic_merge(&current, &patch, DEPLOYMENT).unwrap();
    assert!(out["metadata"].get("finalizers").is_none());
}
