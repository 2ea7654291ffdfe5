//! OpenAPI definitions: coverage of served kinds, GVK extensions, lists,
//! patch extensions, and that every `$ref` resolves.

use api::schema::{definition_name_for, definitions, definitions_v3, kinds};
use serde_json::{Map, Value, json};

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn assert_refs_resolve(defs: &Map<String, Value>, prefix: &str) {
    let mut refs = Vec::new();
    for def in defs.values() {
        collect_refs(def, &mut refs);
    }
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{r} does not start with {prefix}"));
        assert!(defs.contains_key(name), "{r} does not resolve");
    }
}

#[test]
fn every_v2_ref_points_at_a_definition() {
    assert_refs_resolve(definitions(), "#/definitions/");
}

#[test]
fn every_v3_ref_points_at_a_component_schema() {
    assert_refs_resolve(definitions_v3(), "#/components/schemas/");
}

#[test]
fn every_served_kind_carries_its_group_version_kind() {
    for defs in [definitions(), definitions_v3()] {
        for k in kinds() {
            let def = defs
                .get(&k.definition)
                .unwrap_or_else(|| panic!("no definition {}", k.definition));
            let gvks = def["x-kubernetes-group-version-kind"]
                .as_array()
                .unwrap_or_else(|| panic!("{} has no GVK", k.definition));
            assert!(
                gvks.contains(&json!({"group": k.group, "kind": k.kind, "version": k.version})),
                "{} lacks {}/{} {}",
                k.definition,
                k.group,
                k.version,
                k.kind
            );
        }
    }
}

#[test]
fn the_requested_kinds_are_all_served() {
    for (group, version, kind, definition) in [
        ("", "v1", "Namespace", "io.k8s.api.core.v1.Namespace"),
        ("", "v1", "PodList", "io.k8s.api.core.v1.PodList"),
        ("", "v1", "Binding", "io.k8s.api.core.v1.Binding"),
        (
            "",
            "v1",
            "ComponentStatus",
            "io.k8s.api.core.v1.ComponentStatus",
        ),
        ("", "v1", "Event", "io.k8s.api.core.v1.Event"),
        ("events.k8s.io", "v1", "Event", "io.k8s.api.events.v1.Event"),
        (
            "events.k8s.io",
            "v1",
            "EventList",
            "io.k8s.api.events.v1.EventList",
        ),
        ("apps", "v1", "Deployment", "io.k8s.api.apps.v1.Deployment"),
        (
            "apps",
            "v1",
            "ControllerRevisionList",
            "io.k8s.api.apps.v1.ControllerRevisionList",
        ),
        ("batch", "v1", "CronJob", "io.k8s.api.batch.v1.CronJob"),
        (
            "autoscaling",
            "v1",
            "Scale",
            "io.k8s.api.autoscaling.v1.Scale",
        ),
        (
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
        ),
        ("policy", "v1", "Eviction", "io.k8s.api.policy.v1.Eviction"),
        (
            "coordination.k8s.io",
            "v1",
            "Lease",
            "io.k8s.api.coordination.v1.Lease",
        ),
        (
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "io.k8s.api.discovery.v1.EndpointSlice",
        ),
        (
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            "io.k8s.api.scheduling.v1.PriorityClass",
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "io.k8s.api.rbac.v1.ClusterRoleBinding",
        ),
        (
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "io.k8s.api.storage.v1.StorageClass",
        ),
        (
            "",
            "v1",
            "Status",
            "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        ),
        (
            "apps",
            "v1",
            "DeleteOptions",
            "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        ),
    ] {
        assert_eq!(
            definition_name_for(group, version, kind),
            Some(definition),
            "{group}/{version} {kind}"
        );
        assert!(definitions().contains_key(definition));
    }
    assert!(definitions().contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList"));
    assert_eq!(definition_name_for("apps", "v1", "Nope"), None);
    assert_eq!(definition_name_for("", "v1", "ScaleList"), None);
}

#[test]
fn list_kinds_hold_items_of_their_kind_and_list_meta() {
    let list = &definitions()["io.k8s.api.apps.v1.DeploymentList"];
    assert_eq!(
        list["properties"]["items"]["items"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    );
    assert_eq!(
        list["properties"]["metadata"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
    );
    assert_eq!(list["required"], json!(["items"]));
    let list3 = &definitions_v3()["io.k8s.api.apps.v1.DeploymentList"];
    assert_eq!(
        list3["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
    );
}

#[test]
fn v2_keeps_descriptions_beside_refs_and_v3_wraps_them_in_all_of() {
    let v2 = &definitions()["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
    assert_eq!(
        v2["$ref"],
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert!(v2["description"].is_string());
    let v3 = &definitions_v3()["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
    assert_eq!(
        v3["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
}

#[test]
fn patch_strategies_are_published_where_kubectl_looks_for_them() {
    for defs in [definitions(), definitions_v3()] {
        let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let volumes = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        let strategy = &defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        assert!(strategy.get("x-kubernetes-patch-merge-key").is_none());
        let selector =
            &defs["io.k8s.api.policy.v1.PodDisruptionBudgetSpec"]["properties"]["selector"];
        assert_eq!(selector["x-kubernetes-patch-strategy"], "replace");
        let tolerations = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["tolerations"];
        assert!(tolerations.get("x-kubernetes-patch-strategy").is_none());
    }
}

#[test]
fn every_patch_table_entry_names_a_real_property() {
    for (definition, field, _) in api::patch::meta::entries() {
        let Some(def) = definitions().get(definition) else {
            // Types the server does not serve (CSINode) are simply absent.
            continue;
        };
        assert!(
            def["properties"].get(field).is_some(),
            "{definition} has no property {field}"
        );
    }
}

#[test]
fn int_or_string_has_kubernetes_formats() {
    let v2 = &definitions()["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(v2["type"], "string");
    assert_eq!(v2["format"], "int-or-string");
    let v3 = &definitions_v3()["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(
        v3["oneOf"],
        json!([{"type": "integer"}, {"type": "string"}])
    );
    let q3 = &definitions_v3()["io.k8s.apimachinery.pkg.api.resource.Quantity"];
    assert_eq!(q3["oneOf"], json!([{"type": "string"}, {"type": "number"}]));
}

#[test]
fn definitions_are_sorted_by_name() {
    let names: Vec<&String> = definitions().keys().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}
