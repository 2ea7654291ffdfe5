//! The schema objects are typed against, read the way structured-merge-diff
//! reads Kubernetes' OpenAPI (kube-openapi `schemaconv`):
//!
//! - a list is a map keyed by `x-kubernetes-list-map-keys` when
//!   `x-kubernetes-list-type: map`, a set when `set`, atomic when `atomic`;
//!   without a list type, a list with `x-kubernetes-patch-strategy: merge` is a
//!   map keyed by `x-kubernetes-patch-merge-key` (a set without one), and every
//!   other list is atomic;
//! - an object is granular unless `x-kubernetes-map-type: atomic`;
//! - `x-kubernetes-preserve-unknown-fields` lets unknown fields through as
//!   *deduced* values (maps granular, lists atomic);
//! - int-or-string, quantities and `RawExtension` are untyped.
//!
//! Built-in kinds use [`api::schema::definitions`], the same definitions and
//! patch extensions strategic merge patch uses, completed by the marker
//! facts in `builtin` that those definitions lack. Custom resources use the
//! CRD's `openAPIV3Schema`, with `apiVersion`, `kind` and `metadata` typed as
//! Kubernetes types them.

mod builtin;

use std::sync::Arc;

use serde_json::{Map, Value};

use builtin::FieldMeta;

const REF_PREFIXES: [&str; 2] = ["#/definitions/", "#/components/schemas/"];
const RAW_EXTENSION: &str = "io.k8s.apimachinery.pkg.runtime.RawExtension";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The schema of one kind.
#[derive(Debug, Clone)]
pub struct Schema {
    kind: SchemaKind,
}

#[derive(Debug, Clone)]
enum SchemaKind {
    Builtin(&'static str, &'static Value),
    Custom(Arc<Value>),
    Deduced,
}

impl Schema {
    /// A built-in kind by definition name, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub fn builtin(definition: &str) -> Option<Schema> {
        api::schema::definitions()
            .get_key_value(definition)
            .map(|(name, d)| Schema {
                kind: SchemaKind::Builtin(name, d),
            })
    }

    /// A built-in kind by group, version and kind (`""` is the core group).
    pub fn for_kind(group: &str, version: &str, kind: &str) -> Option<Schema> {
        Self::builtin(api::schema::definition_name_for(group, version, kind)?)
    }

    /// A custom resource version's `openAPIV3Schema` (from its CRD).
    pub fn custom(open_api_v3_schema: Value) -> Schema {
        Schema {
            kind: SchemaKind::Custom(Arc::new(open_api_v3_schema)),
        }
    }

    /// No schema: every object is granular, every list atomic (how
    /// structured-merge-diff treats values it knows nothing about).
    pub fn deduced() -> Schema {
        Schema {
            kind: SchemaKind::Deduced,
        }
    }

    /// The object Kubernetes compares a create with: the Go zero value of a
    /// built-in kind (non-pointer structs as `{}`, nil slices and pointers
    /// without `omitempty` as `null`), an empty object otherwise.
    pub(crate) fn zero_object(&self) -> Value {
        match &self.kind {
            SchemaKind::Builtin(name, _) => zero_of(name, 0),
            _ => Value::Object(Map::new()),
        }
    }

    pub(crate) fn root(&self) -> TypeRef<'_> {
        match &self.kind {
            SchemaKind::Builtin(name, s) => TypeRef::Builtin {
                schema: s,
                definition: Some(name),
                owner: None,
            },
            SchemaKind::Custom(s) => TypeRef::Custom {
                schema: s,
                root: true,
            },
            SchemaKind::Deduced => TypeRef::Deduced,
        }
    }
}

fn zero_of(definition: &str, depth: usize) -> Value {
    let defs = api::schema::definitions();
    let mut out = Map::new();
    if depth > 16 {
        return Value::Object(out);
    }
    for (field, zero) in builtin::zero_fields(definition) {
        let value = match zero {
            builtin::Zero::Null => Value::Null,
            builtin::Zero::Struct => {
                let target = defs
                    .get(definition)
                    .and_then(|d| d.get("properties"))
                    .and_then(|p| p.get(field))
                    .and_then(|p| ext_str(p, "$ref"))
                    .and_then(|r| REF_PREFIXES.iter().find_map(|p| r.strip_prefix(p)));
                match target {
                    Some(t) => zero_of(t, depth + 1),
                    None => Value::Object(Map::new()),
                }
            }
        };
        out.insert(field.to_owned(), value);
    }
    Value::Object(out)
}

/// A position in a schema.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TypeRef<'s> {
    /// A built-in definition node (possibly a `$ref`): the definition it is,
    /// if it is one, and the struct field it is the type of, for the marker
    /// tables.
    Builtin {
        schema: &'s Value,
        definition: Option<&'s str>,
        owner: Option<(&'s str, &'s str)>,
    },
    /// A CRD schema node; `root` for the object itself or an embedded resource.
    Custom { schema: &'s Value, root: bool },
    /// Unknown: maps granular, lists atomic.
    Deduced,
    /// Unknown and atomic through and through.
    Atomic,
}

/// The type of a value at a position.
pub(crate) enum Atom<'s> {
    Scalar(ScalarKind),
    Map(MapAtom<'s>),
    List(ListAtom<'s>),
}

/// What a scalar must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScalarKind {
    Numeric,
    String,
    Boolean,
    Untyped,
}

/// An object type: a struct (declared fields), a map (an element type), or both.
pub(crate) struct MapAtom<'s> {
    fields: Fields<'s>,
    element: Option<TypeRef<'s>>,
    /// Replaced and owned as a whole.
    pub(crate) atomic: bool,
}

enum Fields<'s> {
    None,
    Builtin {
        definition: Option<&'s str>,
        properties: &'s Map<String, Value>,
    },
    Custom {
        properties: Option<&'s Map<String, Value>>,
        root: bool,
    },
}

/// A list type.
pub(crate) struct ListAtom<'s> {
    pub(crate) element: TypeRef<'s>,
    pub(crate) kind: ListKind<'s>,
}

/// How list items are identified.
pub(crate) enum ListKind<'s> {
    /// The list is one value.
    Atomic,
    /// Items are scalars identified by value.
    Set,
    /// Items are objects identified by these key fields.
    Map(Vec<&'s str>),
}

impl<'s> TypeRef<'s> {
    /// The type of `value` here (structured-merge-diff's `Resolve` plus
    /// `deduceAtom`: untyped positions take the value's own shape).
    pub(crate) fn resolve(&self, value: Option<&Value>) -> Atom<'s> {
        match *self {
            TypeRef::Builtin {
                schema,
                definition,
                owner,
            } => resolve_builtin(schema, definition, owner, value),
            TypeRef::Custom { schema, root } => resolve_custom(schema, root, value),
            TypeRef::Deduced => deduced(value, false),
            TypeRef::Atomic => deduced(value, true),
        }
    }
}

fn deduced<'s>(value: Option<&Value>, atomic: bool) -> Atom<'s> {
    match value {
        Some(Value::Array(_)) => Atom::List(ListAtom {
            element: TypeRef::Atomic,
            kind: ListKind::Atomic,
        }),
        Some(Value::Object(_)) | Some(Value::Null) | None => Atom::Map(MapAtom {
            fields: Fields::None,
            element: Some(if atomic {
                TypeRef::Atomic
            } else {
                TypeRef::Deduced
            }),
            atomic,
        }),
        Some(_) => Atom::Scalar(ScalarKind::Untyped),
    }
}

/// The keywords of one schema node that typing looks at, read in a single
/// pass over the node (cheaper than a hash lookup per keyword).
#[derive(Default)]
struct Facts<'s> {
    reference: Option<&'s str>,
    all_of_first: Option<&'s Value>,
    ty: Option<&'s str>,
    format: Option<&'s str>,
    int_or_string: bool,
    preserve: bool,
    embedded: bool,
    properties: Option<&'s Map<String, Value>>,
    additional: Option<&'s Value>,
    items: Option<&'s Value>,
    map_type: Option<&'s str>,
    list_type: Option<&'s str>,
    list_map_keys: Option<&'s Vec<Value>>,
    patch_strategy: Option<&'s str>,
    patch_merge_key: Option<&'s str>,
}

fn facts(schema: &Value) -> Facts<'_> {
    let mut f = Facts::default();
    let Value::Object(node) = schema else {
        return f;
    };
    for (key, value) in node {
        match key.as_str() {
            "$ref" => f.reference = value.as_str(),
            "allOf" => f.all_of_first = value.as_array().and_then(|a| a.first()),
            "type" => f.ty = value.as_str(),
            "format" => f.format = value.as_str(),
            "x-kubernetes-int-or-string" => f.int_or_string = value.as_bool() == Some(true),
            "x-kubernetes-preserve-unknown-fields" => f.preserve = value.as_bool() == Some(true),
            "x-kubernetes-embedded-resource" => f.embedded = value.as_bool() == Some(true),
            "properties" => f.properties = value.as_object(),
            "additionalProperties" => f.additional = Some(value),
            "items" => f.items = Some(value),
            "x-kubernetes-map-type" => f.map_type = value.as_str(),
            "x-kubernetes-list-type" => f.list_type = value.as_str(),
            "x-kubernetes-list-map-keys" => f.list_map_keys = value.as_array(),
            "x-kubernetes-patch-strategy" => f.patch_strategy = value.as_str(),
            "x-kubernetes-patch-merge-key" => f.patch_merge_key = value.as_str(),
            _ => {}
        }
    }
    f
}

fn ext_str<'a>(schema: &'a Value, name: &str) -> Option<&'a str> {
    schema.get(name).and_then(Value::as_str)
}

impl<'s> Facts<'s> {
    fn scalar(&self) -> Option<ScalarKind> {
        if self.int_or_string {
            return Some(ScalarKind::Untyped);
        }
        match self.ty? {
            "integer" | "number" => Some(ScalarKind::Numeric),
            "boolean" => Some(ScalarKind::Boolean),
            "string" => match self.format.unwrap_or("") {
                "" | "byte" => Some(ScalarKind::String),
                _ => Some(ScalarKind::Untyped),
            },
            _ => None,
        }
    }

    /// `x-kubernetes-map-type`: Some(true) atomic, Some(false) granular.
    fn map_atomic(&self) -> Option<bool> {
        match self.map_type? {
            "atomic" => Some(true),
            "granular" => Some(false),
            _ => None,
        }
    }

    /// The list kind from `x-kubernetes-list-type` or, failing that (and
    /// only for built-in schemas), the patch strategy.
    fn list_kind(&self, patch_fallback: bool) -> ListKind<'s> {
        match self.list_type {
            Some("set") => return ListKind::Set,
            Some("map") => {
                let keys = self
                    .list_map_keys
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                return ListKind::Map(keys);
            }
            Some(_) => return ListKind::Atomic,
            None => {}
        }
        if !patch_fallback {
            return ListKind::Atomic;
        }
        match self.patch_strategy {
            Some("merge") | Some("merge,retainKeys") => match self.patch_merge_key {
                Some(key) => ListKind::Map(vec![key]),
                None => ListKind::Set,
            },
            _ => ListKind::Atomic,
        }
    }
}

fn resolve_builtin<'s>(
    property: &'s Value,
    mut definition: Option<&'s str>,
    owner: Option<(&'s str, &'s str)>,
    value: Option<&Value>,
) -> Atom<'s> {
    let defs = api::schema::definitions();
    let outer = facts(property);
    let mut f = facts(property);
    let mut followed = false;
    for _ in 0..32 {
        if let Some(reference) = f.reference {
            let Some(name) = REF_PREFIXES.iter().find_map(|p| reference.strip_prefix(p)) else {
                return deduced(value, false);
            };
            if name == RAW_EXTENSION {
                return deduced(value, true);
            }
            let Some((key, def)) = defs.get_key_value(name) else {
                return deduced(value, false);
            };
            definition = Some(key.as_str());
            f = facts(def);
            followed = true;
        } else if let Some(first) = f.all_of_first {
            f = facts(first);
            followed = true;
        } else {
            break;
        }
    }
    if let Some(kind) = f.scalar() {
        return Atom::Scalar(kind);
    }
    let owner_meta = owner.and_then(|(d, field)| builtin::field_meta(d, field));
    // An atomic/granular marker on the field beats the type's own marker.
    let field_map_type = match owner_meta {
        Some(FieldMeta::MapAtomic) => Some(true),
        Some(FieldMeta::MapGranular) => Some(false),
        _ if followed => outer.map_atomic(),
        _ => None,
    };
    let additional = match f.additional {
        Some(ap @ Value::Object(_)) => Some(TypeRef::Builtin {
            schema: ap,
            definition: None,
            owner: None,
        }),
        Some(Value::Bool(true)) => Some(TypeRef::Deduced),
        _ => None,
    };
    if let Some(properties) = f.properties {
        let type_atomic =
            definition.is_some_and(builtin::atomic_struct) || f.map_atomic() == Some(true);
        return Atom::Map(MapAtom {
            fields: Fields::Builtin {
                definition,
                properties,
            },
            element: if f.preserve {
                Some(TypeRef::Deduced)
            } else {
                additional
            },
            atomic: field_map_type.unwrap_or(type_atomic),
        });
    }
    if additional.is_some() {
        return Atom::Map(MapAtom {
            fields: Fields::None,
            element: additional,
            atomic: field_map_type.or(f.map_atomic()).unwrap_or(false),
        });
    }
    match f.ty {
        Some("array") => {
            let element = f
                .items
                .map(|items| TypeRef::Builtin {
                    schema: items,
                    definition: None,
                    owner: None,
                })
                .unwrap_or(TypeRef::Deduced);
            let kind = if f.list_type.is_some() {
                f.list_kind(false)
            } else {
                match owner_meta {
                    Some(FieldMeta::ListMap(keys)) => ListKind::Map(keys.to_vec()),
                    Some(FieldMeta::ListSet) => ListKind::Set,
                    Some(FieldMeta::ListAtomic) => ListKind::Atomic,
                    _ => f.list_kind(true),
                }
            };
            Atom::List(ListAtom { element, kind })
        }
        _ => deduced(value, false),
    }
}

fn resolve_custom<'s>(schema: &'s Value, root: bool, value: Option<&Value>) -> Atom<'s> {
    let f = facts(schema);
    if let Some(kind) = f.scalar() {
        return Atom::Scalar(kind);
    }
    let additional = match f.additional {
        Some(ap @ Value::Object(_)) => Some(TypeRef::Custom {
            schema: ap,
            root: false,
        }),
        Some(Value::Bool(true)) => Some(TypeRef::Deduced),
        _ => None,
    };
    if f.ty == Some("array") {
        let element = f
            .items
            .map(|items| TypeRef::Custom {
                schema: items,
                root: false,
            })
            .unwrap_or(TypeRef::Deduced);
        return Atom::List(ListAtom {
            element,
            kind: f.list_kind(false),
        });
    }
    let is_object = f.ty == Some("object") || f.properties.is_some() || additional.is_some();
    if !is_object && !root {
        // No type: anything goes, typed by the value.
        return deduced(value, false);
    }
    Atom::Map(MapAtom {
        fields: Fields::Custom {
            properties: f.properties,
            root: root || f.embedded,
        },
        element: if f.preserve {
            Some(TypeRef::Deduced)
        } else {
            additional
        },
        atomic: f.map_atomic() == Some(true),
    })
}

impl<'s> MapAtom<'s> {
    /// The type of a declared (struct) field.
    pub(crate) fn field(&self, key: &str) -> Option<TypeRef<'s>> {
        match &self.fields {
            Fields::None => None,
            Fields::Builtin {
                definition,
                properties,
            } => properties
                .get_key_value(key)
                .map(|(k, s)| TypeRef::Builtin {
                    schema: s,
                    definition: None,
                    owner: definition.map(|d| (d, k.as_str())),
                }),
            Fields::Custom { properties, root } => {
                if *root {
                    match key {
                        "apiVersion" | "kind" => {
                            return Some(TypeRef::Custom {
                                schema: &STRING_SCHEMA,
                                root: false,
                            });
                        }
                        "metadata" => {
                            return api::schema::definitions().get_key_value(OBJECT_META).map(
                                |(name, s)| TypeRef::Builtin {
                                    schema: s,
                                    definition: Some(name),
                                    owner: None,
                                },
                            );
                        }
                        _ => {}
                    }
                }
                properties
                    .and_then(|p| p.get(key))
                    .map(|s| TypeRef::Custom {
                        schema: s,
                        root: false,
                    })
            }
        }
    }

    /// The type of member `key` and whether it is a declared field; `None`
    /// when the schema does not allow the key.
    pub(crate) fn member(&self, key: &str) -> Option<(TypeRef<'s>, bool)> {
        if let Some(t) = self.field(key) {
            return Some((t, true));
        }
        self.element.map(|t| (t, false))
    }

    /// Whether `key` is a declared field.
    pub(crate) fn is_field(&self, key: &str) -> bool {
        self.field(key).is_some()
    }

    /// The declared default of field `key`, used for list-map keys an item omits.
    pub(crate) fn field_default(&self, key: &str) -> Option<Value> {
        match &self.fields {
            Fields::Builtin {
                definition: Some(d),
                ..
            } => builtin::key_default(d, key).map(|v| Value::String(v.to_owned())),
            Fields::Custom {
                properties: Some(p),
                ..
            } => p.get(key).and_then(|s| s.get("default")).cloned(),
            _ => None,
        }
    }
}

static STRING_SCHEMA: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| serde_json::json!({"type": "string"}));

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of<'s>(t: TypeRef<'s>, path: &[&str]) -> TypeRef<'s> {
        let mut t = t;
        for p in path {
            t = match t.resolve(None) {
                Atom::Map(m) => m.member(p).expect(p).0,
                Atom::List(l) => l.element,
                Atom::Scalar(_) => panic!("scalar at {p}"),
            };
        }
        t
    }

    fn list_kind(t: TypeRef<'_>) -> String {
        match t.resolve(None) {
            Atom::List(l) => match l.kind {
                ListKind::Atomic => "atomic".into(),
                ListKind::Set => "set".into(),
                ListKind::Map(k) => format!("map{k:?}"),
            },
            _ => "not a list".into(),
        }
    }

    fn map_atomic(t: TypeRef<'_>) -> bool {
        match t.resolve(None) {
            Atom::Map(m) => m.atomic,
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn deployment_lists_and_maps_follow_kubernetes_markers() {
        let s = Schema::for_kind("apps", "v1", "Deployment").unwrap();
        let pod = ["spec", "template", "spec"];
        let at = |p: &[&str]| field_of(s.root(), p);
        assert_eq!(
            list_kind(at(&[&pod[..], &["containers"]].concat())),
            r#"map["name"]"#
        );
        assert_eq!(
            list_kind(at(&[&pod[..], &["containers", "*", "ports"]].concat())),
            r#"map["containerPort", "protocol"]"#
        );
        assert_eq!(
            list_kind(at(&[&pod[..], &["containers", "*", "args"]].concat())),
            "atomic"
        );
        assert_eq!(list_kind(at(&["metadata", "finalizers"])), "set");
        assert_eq!(
            list_kind(at(&["metadata", "ownerReferences"])),
            r#"map["uid"]"#
        );
        assert!(
            map_atomic(at(&["spec", "selector"])),
            "LabelSelector is atomic"
        );
        assert!(!map_atomic(at(&["metadata", "labels"])));
        assert!(map_atomic(at(&[&pod[..], &["nodeSelector"]].concat())));
        assert!(matches!(
            at(&["spec", "replicas"]).resolve(None),
            Atom::Scalar(ScalarKind::Numeric)
        ));
    }

    #[test]
    fn zero_objects_are_go_zero_values() {
        let d = Schema::for_kind("apps", "v1", "Deployment").unwrap();
        assert_eq!(
            d.zero_object(),
            json!({
                "metadata": {"creationTimestamp": null},
                "spec": {
                    "selector": null,
                    "strategy": {},
                    "template": {"metadata": {"creationTimestamp": null}, "spec": {"containers": null}}
                },
                "status": {}
            })
        );
        assert_eq!(Schema::deduced().zero_object(), json!({}));
    }

    #[test]
    fn job_conditions_stay_atomic_and_pod_ip_lists_differ() {
        let job = Schema::for_kind("batch", "v1", "Job").unwrap();
        assert_eq!(
            list_kind(field_of(job.root(), &["status", "conditions"])),
            "atomic"
        );
        let pod = Schema::for_kind("", "v1", "Pod").unwrap();
        assert_eq!(
            list_kind(field_of(pod.root(), &["status", "hostIPs"])),
            "atomic"
        );
        assert_eq!(
            list_kind(field_of(pod.root(), &["status", "podIPs"])),
            r#"map["ip"]"#
        );
        let svc = Schema::for_kind("", "v1", "Service").unwrap();
        assert_eq!(
            list_kind(field_of(svc.root(), &["spec", "ports"])),
            r#"map["port", "protocol"]"#
        );
        assert!(map_atomic(field_of(svc.root(), &["spec", "selector"])));
    }

    #[test]
    fn custom_schemas_use_list_and_map_type_extensions() {
        let s = Schema::custom(json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "items": {"type": "array", "x-kubernetes-list-type": "map",
                              "x-kubernetes-list-map-keys": ["name"],
                              "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "plain": {"type": "array", "items": {"type": "string"}},
                    "sel": {"type": "object", "x-kubernetes-map-type": "atomic",
                            "additionalProperties": {"type": "string"}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }}
            }
        }));
        let at = |p: &[&str]| field_of(s.root(), p);
        assert_eq!(list_kind(at(&["spec", "items"])), r#"map["name"]"#);
        assert_eq!(list_kind(at(&["spec", "tags"])), "set");
        assert_eq!(list_kind(at(&["spec", "plain"])), "atomic");
        assert!(map_atomic(at(&["spec", "sel"])));
        assert!(matches!(
            at(&["spec", "free", "anything"]),
            TypeRef::Deduced
        ));
        // metadata is ObjectMeta even when the CRD schema leaves it open.
        assert_eq!(list_kind(at(&["metadata", "finalizers"])), "set");
        let Atom::Map(root) = s.root().resolve(None) else {
            panic!()
        };
        assert!(root.member("unknown").is_none());
    }
}
