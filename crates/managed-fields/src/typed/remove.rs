//! Removing a set of fields from a value (`TypedValue.RemoveItems`).

use serde_json::{Map, Value};

use super::list_item_pe;
use crate::path::PathElement;
use crate::schema::{Atom, ListKind, TypeRef};
use crate::set::FieldSet;

/// The value without the members of `set` (and everything below them).
/// A list or map emptied by the removal is gone (`None`): Kubernetes leaves
/// a `null` there, which decoding into the typed object drops.
pub(crate) fn remove_items(value: &Value, set: &FieldSet, t: TypeRef<'_>) -> Option<Value> {
    match t.resolve(Some(value)) {
        Atom::Scalar(_) => Some(value.clone()),
        Atom::List(list) => {
            let items = match value {
                Value::Array(items) if !items.is_empty() => items,
                _ => return None,
            };
            if matches!(list.kind, ListKind::Atomic) {
                return None;
            }
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let Ok(pe) = list_item_pe(&list, item) else {
                    out.push(item.clone());
                    continue;
                };
                if set.has_member(&pe) {
                    continue;
                }
                match set.child(&pe) {
                    Some(subset) if !subset.is_empty() => {
                        if let Some(rest) = remove_items(item, subset, list.element) {
                            out.push(rest);
                        }
                    }
                    _ => out.push(item.clone()),
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        Atom::Map(map) => {
            let obj = match value {
                Value::Object(obj) if !obj.is_empty() => obj,
                _ => return None,
            };
            if map.atomic {
                return None;
            }
            let mut out = Map::new();
            for (key, child) in obj {
                let pe = PathElement::Field(key.clone());
                if set.has_member(&pe) {
                    continue;
                }
                match set.child(&pe) {
                    Some(subset) if !subset.is_empty() => {
                        let t = map.member(key).map(|(t, _)| t).unwrap_or(TypeRef::Deduced);
                        if let Some(rest) = remove_items(child, subset, t) {
                            out.insert(key.clone(), rest);
                        }
                    }
                    _ => {
                        out.insert(key.clone(), child.clone());
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::FieldPath;
    use crate::schema::Schema;
    use serde_json::json;

    #[test]
    fn members_go_with_their_subtrees_and_emptied_parents_go_too() {
        let s = Schema::for_kind("", "v1", "ConfigMap").unwrap();
        let obj =
            json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "v", "j": "w"}});
        let set = FieldSet::from_paths([
            FieldPath::fields(["metadata", "labels", "a"]),
            FieldPath::fields(["data", "k"]),
        ]);
        let out = remove_items(&obj, &set, s.root()).unwrap();
        assert_eq!(out, json!({"metadata": {"name": "x"}, "data": {"j": "w"}}));
    }
}
