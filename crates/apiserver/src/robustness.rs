//! The server never panics on input: property tests feed arbitrary paths, queries,
//! bodies and JSON objects through the request decoder, every resource's strategy
//! (defaults, validation), type checking, field validation and patching.

use proptest::prelude::*;
use serde_json::{Map, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9 ._:/-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("metadata".to_string()),
                        Just("spec".to_string()),
                        Just("status".to_string()),
                        Just("template".to_string()),
                        Just("containers".to_string()),
                        Just("ports".to_string()),
                        Just("selector".to_string()),
                        Just("labels".to_string()),
                        Just("name".to_string()),
                        Just("data".to_string()),
                        Just("stringData".to_string()),
                        Just("replicas".to_string()),
                        Just("type".to_string()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                ),
                0..6,
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn request_paths_and_queries_never_panic(path in "(/[a-z0-9%.=-]{0,10}){0,8}", query in "[a-zA-Z0-9%=&+]{0,30}") {
        for m in [http::Method::GET, http::Method::POST, http::Method::PUT, http::Method::PATCH, http::Method::DELETE, http::Method::OPTIONS] {
            let _ = crate::request::parse(&m, &path, Some(&query));
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for ty in [crate::negotiate::BodyType::Json, crate::negotiate::BodyType::Yaml] {
            let _ = crate::negotiate::decode_object(&bytes, ty);
        }
    }

    #[test]
    fn every_strategy_survives_arbitrary_objects(obj in json_value(), old in json_value()) {
        let reg = api::resource::Registry::builtin();
        for res in reg.all() {
            let s = crate::strategy::for_resource(res);
            let mut o = obj.clone();
            s.default(&mut o);
            s.prepare_for_create(&mut o);
            let _ = s.validate(&o);
            let _ = s.validate_update(&o, &old);
            let _ = crate::typecheck::check(&res.definition, &o);
            let _ = api::schema::find_unknown_fields(&o, &res.definition);
            let _ = api::patch::strategic_merge(&old, &obj, &res.definition);
            for f in s.selectable_fields() {
                let _ = s.field_value(&o, f);
            }
            let _ = crate::rest::partial_metadata(&o);
        }
    }
}
