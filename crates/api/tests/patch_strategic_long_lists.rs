//! Strategic merge patches on lists of 20,000 items: each merges by key in
//! the order Kubernetes gives (a quadratic merge took minutes here).

use api::patch::strategic_merge;
use serde_json::{Value, json};

const POD: &str = "io.k8s.api.core.v1.Pod";
const N: usize = 20_000;

fn name(i: usize) -> String {
    format!("c{i:05}")
}

fn pod_with_containers(images: impl Iterator<Item = (String, &'static str)>) -> Value {
    let containers: Vec<Value> = images
        .map(|(name, image)| json!({"name": name, "image": image}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": containers}})
}

fn containers(pod: &Value) -> &Vec<Value> {
    pod["spec"]["containers"].as_array().expect("containers")
}

#[test]
fn twenty_thousand_containers_merge_by_name_with_deletes_and_new_items() {
    let original = pod_with_containers((0..N).map(|i| (name(i), "old")));
    // Every odd container gets a new image; every tenth from 4 is deleted;
    // 1,000 new containers are added.
    let mut patch_items: Vec<Value> = (1..N)
        .step_by(2)
        .map(|i| json!({"name": name(i), "image": "new"}))
        .collect();
    patch_items.extend((N..N + 1000).map(|i| json!({"name": name(i), "image": "added"})));
    patch_items.extend(
        (4..N)
            .step_by(10)
            .map(|i| json!({"name": name(i), "$patch": "delete"})),
    );
    let out = strategic_merge(
        &original,
        &json!({"spec": {"containers": patch_items}}),
        POD,
    )
    .expect("patch applies");

    let want = pod_with_containers(
        (0..N)
            .filter(|i| i % 10 != 4)
            .map(|i| (name(i), if i % 2 == 1 { "new" } else { "old" }))
            .chain((N..N + 1000).map(|i| (name(i), "added"))),
    );
    assert_eq!(containers(&out).len(), N - N / 10 + 1000);
    assert_eq!(out, want);
}

#[test]
fn twenty_thousand_containers_take_the_set_element_order() {
    let original = pod_with_containers((0..N).map(|i| (name(i), "old")));
    // The order list reverses the live list; the patch changes every third item.
    let order: Vec<Value> = (0..N).rev().map(|i| json!({"name": name(i)})).collect();
    let patch_items: Vec<Value> = (0..N)
        .rev()
        .filter(|i| i % 3 == 0)
        .map(|i| json!({"name": name(i), "image": "new"}))
        .collect();
    let out = strategic_merge(
        &original,
        &json!({"spec": {"$setElementOrder/containers": order, "containers": patch_items}}),
        POD,
    )
    .expect("patch applies");

    let want = pod_with_containers(
        (0..N)
            .rev()
            .map(|i| (name(i), if i % 3 == 0 { "new" } else { "old" })),
    );
    assert_eq!(out, want);
}

#[test]
fn twenty_thousand_finalizers_union_then_delete_from_the_primitive_list() {
    let f = |i: usize| Value::String(format!("example.com/f{i:05}"));
    let original =
        json!({"metadata": {"name": "p", "finalizers": (0..N).map(f).collect::<Vec<_>>()}});
    // Half overlaps the live list; the first 5,000 live ones are removed.
    let patch = json!({"metadata": {
        "finalizers": (N / 2..N + N / 2).map(f).collect::<Vec<_>>(),
        "$deleteFromPrimitiveList/finalizers": (0..5000).map(f).collect::<Vec<_>>()
    }});
    let out = strategic_merge(&original, &patch, POD).expect("patch applies");
    assert_eq!(
        out["metadata"]["finalizers"],
        Value::Array((5000..N + N / 2).map(f).collect())
    );
}
