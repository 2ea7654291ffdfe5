//! OpenAPI definitions beyond the built-in API types: the CustomResourceDefinition
//! type family (from k8s-openapi's schemas, as for every built-in type) and each
//! served custom resource version, built from its schema the way
//! apiextensions-apiserver's OpenAPI builder does (`apiVersion`, `kind`,
//! `metadata` as ObjectMeta, `x-kubernetes-group-version-kind`, a `<Kind>List`).

use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use schemars::generate::SchemaSettings;
use schemars::transform::RemoveRefSiblings;
use serde_json::{Map, Value, json};

use super::resource::CustomResource;

const CRD_DEFINITION: &str =
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DOC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA_DOC: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

fn prefix(v3: bool) -> &'static str {
    if v3 {
        "#/components/schemas/"
    } else {
        "#/definitions/"
    }
}

/// A `$ref` with a description next to it, as each flavour writes it.
fn described_ref(def: &str, description: &str, v3: bool) -> Value {
    let r = format!("{}{def}", prefix(v3));
    if v3 {
        json!({"allOf": [{"$ref": r}], "description": description})
    } else {
        json!({"$ref": r, "description": description})
    }
}

fn list_definition(def: &str, group: &str, version: &str, kind: &str, v3: bool) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind}"),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": API_VERSION_DOC, "type": "string"},
            "items": {
                "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/api-conventions.md", kind.to_lowercase()),
                "type": "array",
                "items": {"$ref": format!("{}{def}", prefix(v3))},
            },
            "kind": {"description": KIND_DOC, "type": "string"},
            "metadata": described_ref(LIST_META, LIST_METADATA_DOC, v3),
        },
        "x-kubernetes-group-version-kind": [{"group": group, "kind": format!("{kind}List"), "version": version}],
    })
}

/// The CustomResourceDefinition type family, one flavour each, built once.
pub(crate) fn crd_definitions(v3: bool) -> &'static Map<String, Value> {
    static V2: OnceLock<Map<String, Value>> = OnceLock::new();
    static V3: OnceLock<Map<String, Value>> = OnceLock::new();
    let cell = if v3 { &V3 } else { &V2 };
    cell.get_or_init(|| {
        let settings = if v3 {
            SchemaSettings::openapi3()
        } else {
            SchemaSettings::draft07().with(|s| {
                s.transforms.retain(|t| !t.is::<RemoveRefSiblings>());
            })
        }
        .with(|s| s.meta_schema = None);
        let mut generator = settings.into_generator();
        generator.subschema_for::<apiextensions::CustomResourceDefinition>();
        let mut defs = generator.take_definitions(true);
        let gvk = |kind: &str| {
            json!([{"group": api::resource::APIEXTENSIONS, "kind": kind, "version": "v1"}])
        };
        if let Some(Value::Object(d)) = defs.get_mut(CRD_DEFINITION) {
            d.insert(
                "x-kubernetes-group-version-kind".into(),
                gvk("CustomResourceDefinition"),
            );
        }
        let mut list = list_definition(
            CRD_DEFINITION,
            api::resource::APIEXTENSIONS,
            "v1",
            "CustomResourceDefinition",
            v3,
        );
        list["description"] =
            "CustomResourceDefinitionList is a list of CustomResourceDefinition objects.".into();
        defs.insert(format!("{CRD_DEFINITION}List"), list);
        defs
    })
}

/// What Swagger 2.0 cannot say: junctors, `nullable` (apiextensions-apiserver's
/// v2 conversion drops them too).
fn to_v2(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in [
                "nullable",
                "anyOf",
                "oneOf",
                "allOf",
                "not",
                "x-kubernetes-validations",
            ] {
                m.remove(k);
            }
            if m.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
                m.remove("type");
            }
            for (_, x) in m.iter_mut() {
                to_v2(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(to_v2),
        _ => {}
    }
}

/// The definition of a custom resource version and of its list.
pub(crate) fn custom_definitions(c: &CustomResource, v3: bool) -> Vec<(String, Value)> {
    let info = &c.info;
    let mut schema = c
        .raw_schema
        .clone()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    if !v3 {
        to_v2(&mut schema);
    }
    if let Some(m) = schema.as_object_mut() {
        m.insert("type".into(), "object".into());
        let props = m
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        if !props.is_object() {
            *props = Value::Object(Map::new());
        }
        if let Some(p) = props.as_object_mut() {
            p.insert(
                "apiVersion".into(),
                json!({"description": API_VERSION_DOC, "type": "string"}),
            );
            p.insert(
                "kind".into(),
                json!({"description": KIND_DOC, "type": "string"}),
            );
            p.insert(
                "metadata".into(),
                described_ref(OBJECT_META, METADATA_DOC, v3),
            );
        }
        m.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": info.group, "kind": info.kind, "version": info.version}]),
        );
    }
    let list = list_definition(&info.definition, &info.group, &info.version, &info.kind, v3);
    vec![
        (info.definition.clone(), schema),
        (format!("{}List", info.definition), list),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crd_type_family_has_its_group_version_kind() {
        for v3 in [false, true] {
            let defs = crd_definitions(v3);
            assert_eq!(
                defs[CRD_DEFINITION]["x-kubernetes-group-version-kind"][0]["kind"],
                "CustomResourceDefinition"
            );
            assert!(defs.contains_key(&format!("{CRD_DEFINITION}List")));
            assert!(defs.contains_key(
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"
            ));
        }
    }
}
