//! Strategic merge patch: each directive and strategy on its own.

use api::patch::{PatchError, strategic_merge};
use serde_json::{Value, json};

const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
const POD: &str = "io.k8s.api.core.v1.Pod";

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
}

fn smp(original: &Value, patch: Value, definition: &str) -> Value {
    strategic_merge(original, &patch, definition).unwrap_or_else(|e| panic!("{e}"))
}

fn smp_err(original: &Value, patch: Value, definition: &str) -> PatchError {
    strategic_merge(original, &patch, definition).expect_err("patch should fail")
}

#[test]
fn null_deletes_and_maps_merge() {
    let original = json!({"metadata": {"name": "d", "labels": {"app": "web", "tier": "fe"}}});
    let out = smp(
        &original,
        json!({"metadata": {"labels": {"tier": null, "team": "a"}}}),
        DEPLOYMENT,
    );
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "team": "a"})
    );
    assert_eq!(out["metadata"]["name"], "d");
}

#[test]
fn an_empty_or_null_patch_changes_nothing() {
    let original = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}});
    assert_eq!(smp(&original, json!({}), DEPLOYMENT), original);
    assert_eq!(smp(&original, Value::Null, DEPLOYMENT), original);
}

#[test]
fn lists_without_a_strategy_are_replaced() {
    let original = pod(json!({
        "containers": [{"name": "a", "image": "x", "args": ["1", "2"]}],
        "tolerations": [{"key": "k1", "operator": "Exists"}, {"key": "k2", "operator": "Exists"}]
    }));
    let out = smp(
        &original,
        json!({"spec": {
            "tolerations": [{"key": "k3", "operator": "Exists"}],
            "containers": [{"name": "a", "args": ["3"]}]
        }}),
        POD,
    );
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "k3", "operator": "Exists"}])
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "a", "image": "x", "args": ["3"]}])
    );
}

#[test]
fn merge_lists_of_objects_merge_by_key_and_append_new_items() {
    let original = pod(json!({"containers": [
        {"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]},
        {"name": "b", "image": "y"}
    ]}));
    let out = smp(
        &original,
        json!({"spec": {"containers": [
            {"name": "c", "image": "z"},
            {"name": "a", "env": [{"name": "B", "value": "2"}]}
        ]}}),
        POD,
    );
    // Without `$setElementOrder`, items only in the patch come before live
    // items they cannot be ordered against (Go's mergeSortedSlice): B before A.
    assert_eq!(
        out["spec"]["containers"],
        json!([
            {"name": "c", "image": "z"},
            {"name": "a", "image": "x", "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]},
            {"name": "b", "image": "y"}
        ])
    );
}

#[test]
fn container_ports_merge_by_container_port_even_across_protocols() {
    // Kubernetes' known behaviour: the merge key is containerPort alone.
    let original = pod(
        json!({"containers": [{"name": "dns", "ports": [{"containerPort": 53, "protocol": "TCP"}]}]}),
    );
    let out = smp(
        &original,
        json!({"spec": {"containers": [{"name": "dns", "ports": [{"containerPort": 53, "protocol": "UDP"}]}]}}),
        POD,
    );
    assert_eq!(
        out["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 53, "protocol": "UDP"}])
    );
}

#[test]
fn patch_delete_removes_list_items_by_key() {
    let original = pod(json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}));
    let out = smp(
        &original,
        json!({"spec": {"containers": [{"$patch": "delete", "name": "b"}]}}),
        POD,
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "a"}, {"name": "c"}])
    );
}

#[test]
fn patch_replace_in_a_list_replaces_the_whole_list() {
    let original = pod(json!({"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}));
    let out = smp(
        &original,
        json!({"spec": {"containers": [{"name": "c", "image": "z"}, {"$patch": "replace"}]}}),
        POD,
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "c", "image": "z"}])
    );
}

#[test]
fn patch_merge_in_a_list_is_rejected() {
    let original = pod(json!({"containers": [{"name": "a"}]}));
    let err = smp_err(
        &original,
        json!({"spec": {"containers": [{"$patch": "merge"}]}}),
        POD,
    );
    assert_eq!(err, PatchError::MergingListsUnsupported);
    assert_eq!(
        err.to_string(),
        "merging lists cannot yet be specified in the patch"
    );
}

#[test]
fn patch_replace_on_a_map_replaces_it() {
    let original = json!({"spec": {"selector": {"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]}}});
    let out = smp(
        &original,
        json!({"spec": {"selector": {"$patch": "replace", "matchLabels": {"x": "y"}}}}),
        DEPLOYMENT,
    );
    assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"x": "y"}}));
}

#[test]
fn patch_delete_on_a_map_empties_it() {
    let original = json!({"spec": {"strategy": {"type": "Recreate"}, "replicas": 1}});
    let out = smp(
        &original,
        json!({"spec": {"strategy": {"$patch": "delete"}}}),
        DEPLOYMENT,
    );
    assert_eq!(out["spec"], json!({"strategy": {}, "replicas": 1}));
}

#[test]
fn patch_merge_on_a_map_is_an_unknown_patch_type() {
    let original = json!({"spec": {"strategy": {"type": "Recreate"}}});
    let err = smp_err(
        &original,
        json!({"spec": {"strategy": {"$patch": "merge", "type": "X"}}}),
        DEPLOYMENT,
    );
    assert_eq!(
        err.to_string(),
        "unknown patch type: merge in map: map[$patch:merge type:X]"
    );
    assert_eq!(err.http_status(), 500);
}

#[test]
fn retain_keys_clears_fields_not_listed() {
    let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}});
    let out = smp(
        &original,
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}}),
        DEPLOYMENT,
    );
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn retain_keys_rejects_a_patch_setting_an_unlisted_key() {
    let original = json!({"spec": {"strategy": {"type": "RollingUpdate"}}});
    let err = smp_err(
        &original,
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}}),
        DEPLOYMENT,
    );
    assert_eq!(err, PatchError::BadPatchFormatForRetainKeys);
    assert_eq!(err.to_string(), "invalid patch format of retainKeys");
    assert_eq!(err.http_status(), 400);
    let err = smp_err(
        &original,
        json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
        DEPLOYMENT,
    );
    assert_eq!(err, PatchError::BadPatchFormatForRetainKeys);
}

#[test]
fn retain_keys_switches_a_volume_source() {
    let original = pod(
        json!({"volumes": [{"name": "data", "emptyDir": {}}, {"name": "other", "emptyDir": {}}]}),
    );
    let out = smp(
        &original,
        json!({"spec": {
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "other"}],
            "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}, "name": "data"}]
        }}),
        POD,
    );
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name": "data", "configMap": {"name": "cfg"}}, {"name": "other", "emptyDir": {}}])
    );
}

#[test]
fn primitive_merge_lists_union_and_delete_from_primitive_list_removes() {
    let original = json!({"metadata": {"name": "d", "finalizers": ["a", "b"]}});
    let out = smp(
        &original,
        json!({"metadata": {
            "$deleteFromPrimitiveList/finalizers": ["a"],
            "$setElementOrder/finalizers": ["b", "c"],
            "finalizers": ["c"]
        }}),
        DEPLOYMENT,
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));

    let out = smp(
        &original,
        json!({"metadata": {"finalizers": ["c", "a"]}}),
        DEPLOYMENT,
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
}

#[test]
fn a_malformed_delete_from_primitive_list_key_is_rejected() {
    let original = json!({"metadata": {"finalizers": ["a"]}});
    let err = smp_err(
        &original,
        json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}),
        DEPLOYMENT,
    );
    assert_eq!(err.to_string(), "invalid patch format of primitive list");
}

#[test]
fn set_element_order_orders_the_merged_list() {
    let original = pod(json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}));
    let out = smp(
        &original,
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
            "containers": [{"name": "c", "image": "new"}]
        }}),
        POD,
    );
    // `b` is server-only: it goes before the first patch item that follows it
    // in the live order (`c`), as Go's mergeSortedSlice places it.
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "b"}, {"name": "c", "image": "new"}, {"name": "a"}])
    );
}

#[test]
fn set_element_order_must_contain_the_patch_items_in_order() {
    let original = pod(json!({"containers": [{"name": "a"}]}));
    let err = smp_err(
        &original,
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "b"}]
        }}),
        POD,
    );
    assert_eq!(
        err.to_string(),
        "The order in patch list:\n[map[name:b]]\n doesn't match $setElementOrder list:\n[map[name:a]]\n"
    );
}

#[test]
fn a_malformed_set_element_order_is_rejected() {
    let original = pod(json!({"containers": [{"name": "a"}]}));
    let err = smp_err(
        &original,
        json!({"spec": {"$setElementOrderX/containers": [{"name": "a"}]}}),
        POD,
    );
    assert_eq!(err, PatchError::BadPatchFormatForSetElementOrderList);
    let err = smp_err(
        &original,
        json!({"spec": {"$setElementOrder/containers": "a"}}),
        POD,
    );
    assert_eq!(
        err.to_string(),
        "expected a []interface {}, but received a string"
    );
}

#[test]
fn items_of_a_merged_list_need_the_merge_key() {
    let original = pod(json!({"containers": [{"name": "a"}]}));
    let err = smp_err(
        &original,
        json!({"spec": {"containers": [{"image": "x"}]}}),
        POD,
    );
    assert_eq!(
        err.to_string(),
        "map: map[image:x] does not contain declared merge key: name"
    );
}

#[test]
fn lists_of_lists_are_not_supported() {
    let original = json!({"metadata": {"finalizers": [["a"]]}});
    let err = smp_err(
        &original,
        json!({"metadata": {"finalizers": ["b"]}}),
        DEPLOYMENT,
    );
    assert_eq!(err, PatchError::NoListOfLists);
    assert_eq!(err.http_status(), 422);
    let original = json!({"metadata": {"finalizers": ["a"]}});
    let err = smp_err(
        &original,
        json!({"metadata": {"finalizers": [1]}}),
        DEPLOYMENT,
    );
    assert_eq!(
        err.to_string(),
        "list element types are not identical: [[a] [1]]"
    );
}

#[test]
fn a_value_of_another_type_replaces_with_nulls_and_directives_removed() {
    let original = json!({"spec": {"replicas": 1}});
    let out = smp(
        &original,
        json!({"spec": {"replicas": "two", "template": {"metadata": {"labels": {"a": null, "b": "1"}},
                "spec": {"containers": [{"name": "x", "env": null}, {"$patch": "delete", "name": "y"}]}}}}),
        DEPLOYMENT,
    );
    assert_eq!(out["spec"]["replicas"], "two");
    assert_eq!(
        out["spec"]["template"],
        json!({"metadata": {"labels": {"b": "1"}}, "spec": {"containers": [{"name": "x"}]}})
    );
}

#[test]
fn status_conditions_merge_by_type() {
    let original = json!({"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "False"}
    ]}});
    let out = smp(
        &original,
        json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]}}),
        POD,
    );
    assert_eq!(
        out["status"]["conditions"],
        json!([
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True"},
            {"type": "Initialized", "status": "True"}
        ])
    );
}

#[test]
fn owner_references_merge_by_uid_and_service_ports_by_port() {
    let original = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a", "kind": "X", "apiVersion": "v1"}]},
                          "spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
    let out = smp(
        &original,
        json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}]},
               "spec": {"ports": [{"port": 443, "targetPort": 8443}, {"port": 80, "name": "http"}]}}),
        "io.k8s.api.core.v1.Service",
    );
    assert_eq!(out["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(out["metadata"]["ownerReferences"][0]["name"], "a");
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 443, "targetPort": 8443}, {"port": 80, "targetPort": 8080, "name": "http"}])
    );
}

#[test]
fn a_replace_strategy_map_is_replaced() {
    let original = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}});
    let out = smp(
        &original,
        json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
        "io.k8s.api.policy.v1.PodDisruptionBudget",
    );
    assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"b": "2"}}));
    // The same patch merges on a Deployment, whose selector has no strategy.
    let out = smp(
        &original,
        json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
        DEPLOYMENT,
    );
    assert_eq!(
        out["spec"]["selector"],
        json!({"matchLabels": {"a": "1", "b": "2"}})
    );
}

#[test]
fn unknown_definitions_do_not_support_strategic_merge() {
    let err = smp_err(&json!({}), json!({}), "com.example.v1.Widget");
    assert_eq!(
        err.to_string(),
        "strategic merge patch format is not supported"
    );
    assert_eq!(err.http_status(), 400);
}

#[test]
fn non_object_documents_are_rejected() {
    let err = smp_err(&json!({}), json!([1]), POD);
    assert_eq!(
        err.to_string(),
        "json: cannot unmarshal array into Go value of type map[string]interface {}"
    );
    assert_eq!(err.http_status(), 400);
    let err = smp_err(&json!([]), json!({}), POD);
    assert_eq!(err, PatchError::BadJsonDoc);
}
