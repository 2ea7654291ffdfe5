//! The field set of a value (`ToFieldSet`) and `EnsureNamedFieldsAreMembers`.

use serde_json::Value;

use super::IndexedItems;
use crate::path::PathElement;
use crate::schema::{Atom, ListKind, TypeRef};
use crate::set::FieldSet;

/// The fields a value sets: every scalar, atomic list and atomic map is a
/// leaf; list items are members (with their fields below them); map keys
/// that are not declared struct fields are members. Struct fields holding
/// objects are not members themselves.
pub(crate) fn to_field_set(value: &Value, t: TypeRef<'_>) -> FieldSet {
    match node(value, t) {
        Node::Inner(set) => set,
        // The root itself is never owned.
        Node::Leaf | Node::Nothing => FieldSet::new(),
    }
}

/// What a value contributes to the set of its parent.
enum Node {
    /// The value's own path is a member.
    Leaf,
    /// Members below the value's path.
    Inner(FieldSet),
    /// Nothing (null or empty granular values).
    Nothing,
}

fn node(value: &Value, t: TypeRef<'_>) -> Node {
    match t.resolve(Some(value)) {
        Atom::Scalar(_) => Node::Leaf,
        Atom::List(list) => {
            if matches!(list.kind, ListKind::Atomic) {
                return Node::Leaf;
            }
            match value {
                Value::Array(_) => {}
                Value::Null => return Node::Nothing,
                _ => return Node::Leaf,
            }
            let items = IndexedItems::new(&list, Some(value));
            let mut set = FieldSet::new();
            for pe in items.distinct() {
                let (first, count) = items.get(pe);
                if count == 1
                    && let Some(item) = first
                    && let Node::Inner(below) = node(item, list.element)
                {
                    set.insert_child(pe.clone(), below);
                }
                set.insert_member(pe.clone());
            }
            Node::Inner(set)
        }
        Atom::Map(map) => {
            if map.atomic {
                return Node::Leaf;
            }
            let obj = match value {
                Value::Object(obj) => obj,
                Value::Null => return Node::Nothing,
                _ => return Node::Leaf,
            };
            let mut set = FieldSet::new();
            for (key, child) in obj {
                let (child_type, declared) = map.member(key).unwrap_or((TypeRef::Deduced, false));
                let pe = PathElement::Field(key.clone());
                match node(child, child_type) {
                    Node::Leaf => set.insert_member(pe),
                    Node::Inner(below) => {
                        if !declared {
                            set.insert_member(pe.clone());
                        }
                        set.insert_child(pe, below);
                    }
                    Node::Nothing => {
                        if !declared {
                            set.insert_member(pe);
                        }
                    }
                }
            }
            Node::Inner(set)
        }
    }
}

/// Adds, as members, the declared struct fields that have members below
/// them (so removing a set that owned `a.b.c` can remove a now-empty
/// struct field `a`, but never a map entry `a.b`).
pub(crate) fn ensure_named_fields_are_members(set: &FieldSet, t: TypeRef<'_>) -> FieldSet {
    let atom = t.resolve(None);
    let mut out = FieldSet::new();
    for m in set.members() {
        out.insert_member(m.clone());
    }
    for (pe, child) in set.children() {
        let child_type = match (pe, &atom) {
            (PathElement::Field(name), Atom::Map(map)) => {
                if map.is_field(name) {
                    out.insert_member(pe.clone());
                }
                map.member(name).map(|(t, _)| t).unwrap_or(TypeRef::Atomic)
            }
            (PathElement::Key(_), Atom::List(list)) => list.element,
            _ => TypeRef::Atomic,
        };
        out.insert_child(
            pe.clone(),
            ensure_named_fields_are_members(child, child_type),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;
    use serde_json::json;

    fn printed(set: &FieldSet) -> Vec<String> {
        set.paths().iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn deployment_field_set_has_items_keys_and_leaves() {
        let s = Schema::for_kind("apps", "v1", "Deployment").unwrap();
        let obj = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "nginx",
                        "image": "nginx:1.25",
                        "ports": [{"containerPort": 80}],
                        "args": ["a", "b"]
                    }]}
                }
            }
        });
        let set = to_field_set(&obj, s.root());
        assert_eq!(
            printed(&set),
            [
                ".apiVersion",
                ".kind",
                ".metadata.name",
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.selector",
                ".spec.template.metadata.labels.app",
                r#".spec.template.spec.containers[name="nginx"]"#,
                r#".spec.template.spec.containers[name="nginx"].args"#,
                r#".spec.template.spec.containers[name="nginx"].image"#,
                r#".spec.template.spec.containers[name="nginx"].name"#,
                r#".spec.template.spec.containers[name="nginx"].ports[containerPort=80,protocol="TCP"]"#,
                r#".spec.template.spec.containers[name="nginx"].ports[containerPort=80,protocol="TCP"].containerPort"#,
            ]
        );
        let ensured = ensure_named_fields_are_members(&set, s.root());
        assert!(ensured.has(&crate::path::FieldPath::fields(["spec", "template"]).0));
        assert!(ensured.has(&crate::path::FieldPath::fields(["metadata", "labels"]).0));
        assert!(
            !ensured.has(&crate::path::FieldPath::fields(["metadata", "labels", "x"]).0),
            "map entries are not named fields"
        );
    }

    #[test]
    fn sets_use_values_and_duplicates_are_leaves() {
        let s = Schema::for_kind("", "v1", "Pod").unwrap();
        let obj = json!({
            "metadata": {"finalizers": ["a", "b"]},
            "spec": {"containers": [
                {"name": "x", "image": "i1"},
                {"name": "x", "image": "i2"}
            ]}
        });
        assert_eq!(
            printed(&to_field_set(&obj, s.root())),
            [
                r#".metadata.finalizers[="a"]"#,
                r#".metadata.finalizers[="b"]"#,
                r#".spec.containers[name="x"]"#,
            ]
        );
    }
}
