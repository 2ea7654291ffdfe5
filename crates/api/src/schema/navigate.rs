//! Walking the definitions: `$ref` and single-`allOf` resolution, properties,
//! items and map values. Shared by field validation and strategic merge patch.

use serde_json::{Map, Value};

/// The two places a `$ref` may point into.
const REF_PREFIXES: [&str; 2] = ["#/definitions/", "#/components/schemas/"];

/// A position in the schema: a (possibly unresolved) schema, or nothing known.
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    defs: &'a Map<String, Value>,
    schema: Option<&'a Value>,
}

/// How a schema treats the members of an object value.
pub(crate) enum Members<'a> {
    /// A struct: only these properties are known.
    Properties(&'a Map<String, Value>),
    /// A map: every value follows this schema.
    Map(Node<'a>),
    /// Anything goes (free-form objects, preserve-unknown-fields, non-objects).
    Any,
}

impl<'a> Node<'a> {
    /// The node of a named definition.
    pub(crate) fn definition(defs: &'a Map<String, Value>, name: &str) -> Option<Node<'a>> {
        defs.get(name).map(|schema| Node {
            defs,
            schema: Some(schema),
        })
    }

    fn with(self, schema: Option<&'a Value>) -> Node<'a> {
        Node {
            defs: self.defs,
            schema,
        }
    }

    /// Follows `$ref` and a leading `allOf` element until a concrete schema.
    pub(crate) fn resolved(&self) -> Option<&'a Value> {
        let mut schema = self.schema?;
        for _ in 0..32 {
            if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
                let name = REF_PREFIXES
                    .iter()
                    .find_map(|p| reference.strip_prefix(p))?;
                schema = self.defs.get(name)?;
            } else if let Some(first) = schema
                .get("allOf")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
            {
                schema = first;
            } else {
                return Some(schema);
            }
        }
        None
    }

    /// Whether the schema (or its resolved form) says a flag extension is true.
    pub(crate) fn flag(&self, extension: &str) -> bool {
        let set = |s: Option<&Value>| {
            s.and_then(|s| s.get(extension))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        set(self.schema) || set(self.resolved())
    }

    /// How members of an object value are typed here.
    pub(crate) fn members(&self) -> Members<'a> {
        let Some(schema) = self.resolved() else {
            return Members::Any;
        };
        if self.flag("x-kubernetes-preserve-unknown-fields") {
            return Members::Any;
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            return Members::Properties(props);
        }
        match schema.get("additionalProperties") {
            Some(ap @ Value::Object(_)) => Members::Map(self.with(Some(ap))),
            _ => Members::Any,
        }
    }

    /// The node of member `key` of an object value (a property, a map value,
    /// or unknown), with the unresolved property schema that carries extensions.
    pub(crate) fn member(&self, key: &str) -> Node<'a> {
        match self.members() {
            Members::Properties(props) => self.with(props.get(key)),
            Members::Map(values) => values,
            Members::Any => self.with(None),
        }
    }

    /// The node of the elements of an array value.
    pub(crate) fn items(&self) -> Node<'a> {
        self.with(self.resolved().and_then(|s| s.get("items")))
    }

    /// A string extension on the unresolved schema (e.g. `x-kubernetes-patch-merge-key`).
    pub(crate) fn extension(&self, name: &str) -> Option<&'a str> {
        self.schema?.get(name).and_then(Value::as_str)
    }
}
