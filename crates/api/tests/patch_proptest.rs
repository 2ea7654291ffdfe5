//! Properties of the patch functions on arbitrary JSON.

use api::patch::{merge_patch, strategic_merge};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Arbitrary JSON, with keys drawn from real field names and directives so
/// the strategic merge paths (merge keys, `$patch`, `$retainKeys`, ...) are hit.
fn arb_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("metadata".to_string()),
        Just("labels".to_string()),
        Just("finalizers".to_string()),
        Just("spec".to_string()),
        Just("template".to_string()),
        Just("containers".to_string()),
        Just("name".to_string()),
        Just("env".to_string()),
        Just("ports".to_string()),
        Just("containerPort".to_string()),
        Just("strategy".to_string()),
        Just("$patch".to_string()),
        Just("$retainKeys".to_string()),
        Just("$setElementOrder/containers".to_string()),
        Just("$setElementOrder/finalizers".to_string()),
        Just("$deleteFromPrimitiveList/finalizers".to_string()),
        "[a-z]{1,3}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        prop_oneof![
            Just("delete"),
            Just("replace"),
            Just("merge"),
            Just("a"),
            Just("b")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn arb_object() -> impl Strategy<Value = Value> {
    prop::collection::vec(("[a-z]{1,3}|spec|metadata|status", arb_json()), 0..5)
        .prop_map(|entries| Value::Object(entries.into_iter().collect()))
}

const DEFINITIONS: [&str; 4] = [
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.core.v1.Pod",
    "io.k8s.api.core.v1.Service",
    "io.k8s.api.policy.v1.PodDisruptionBudget",
];

proptest! {
    // No regression files in the tree; failures print their minimal input.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn an_empty_strategic_patch_returns_the_original(original in arb_object(), d in 0..DEFINITIONS.len()) {
        let out = strategic_merge(&original, &json!({}), DEFINITIONS[d]).unwrap();
        prop_assert_eq!(out, original);
    }

    #[test]
    fn an_empty_merge_patch_returns_the_original(original in arb_object()) {
        prop_assert_eq!(merge_patch(&original, &json!({})), original);
    }

    #[test]
    fn strategic_merge_never_panics(original in arb_json(), patch in arb_json(), d in 0..DEFINITIONS.len()) {
        let _ = strategic_merge(&original, &patch, DEFINITIONS[d]);
    }

    #[test]
    fn strategic_merge_of_objects_never_panics(original in arb_object(), patch in arb_object(), d in 0..DEFINITIONS.len()) {
        let _ = strategic_merge(&original, &patch, DEFINITIONS[d]);
    }

    #[test]
    fn merge_patch_never_panics(original in arb_json(), patch in arb_json()) {
        let _ = merge_patch(&original, &patch);
    }
}
