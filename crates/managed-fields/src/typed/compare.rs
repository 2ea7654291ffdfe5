//! Comparing two values of one type (`TypedValue.Compare`): which fields the
//! right side added, modified and removed.

use serde_json::{Map, Value};

use super::{IndexedItems, deep_equal, is_empty_container, shape};
use crate::path::PathElement;
use crate::schema::{Atom, ListAtom, ListKind, MapAtom, TypeRef};
use crate::set::FieldSet;

/// Fields added, modified and removed going from the left value to the right.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Comparison {
    pub(crate) added: FieldSet,
    pub(crate) modified: FieldSet,
    pub(crate) removed: FieldSet,
}

impl Comparison {
    /// Drops `fields` and everything below them from all three sets.
    pub(crate) fn exclude(mut self, fields: &FieldSet) -> Self {
        if !fields.is_empty() {
            self.added = self.added.recursive_difference(fields);
            self.modified = self.modified.recursive_difference(fields);
            self.removed = self.removed.recursive_difference(fields);
        }
        self
    }
}

/// Compares `lhs` to `rhs`. Nodes present on one side only are added or
/// removed themselves, with everything below them; leaves (scalars, atomic
/// lists and maps, empty containers) present on both sides are modified when
/// their values differ.
pub(crate) fn compare(lhs: Option<&Value>, rhs: Option<&Value>, t: TypeRef<'_>) -> Comparison {
    let mut c = Comparison::default();
    walk(lhs, rhs, t, &mut Vec::new(), &mut c);
    c
}

fn walk(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    t: TypeRef<'_>,
    path: &mut Vec<PathElement>,
    c: &mut Comparison,
) {
    if lhs.is_none() && rhs.is_none() {
        return;
    }
    if let (Some(l), Some(r)) = (lhs, rhs)
        && l == r
    {
        return;
    }
    let same_shape = match (lhs, rhs) {
        (Some(l), Some(r)) => {
            shape(l) == shape(r) || matches!(l, Value::Null) || matches!(r, Value::Null)
        }
        _ => true,
    };
    let in_leaf = if !same_shape {
        leaf(lhs, rhs, path, c);
        true
    } else {
        match t.resolve(rhs.or(lhs)) {
            Atom::Scalar(_) => {
                leaf(lhs, rhs, path, c);
                true
            }
            Atom::List(list) => {
                if matches!(list.kind, ListKind::Atomic)
                    || (is_empty_container(lhs) && is_empty_container(rhs))
                {
                    leaf(lhs, rhs, path, c);
                    true
                } else {
                    list_items(&list, lhs, rhs, path, c);
                    false
                }
            }
            Atom::Map(map) => {
                if map.atomic || (is_empty_container(lhs) && is_empty_container(rhs)) {
                    leaf(lhs, rhs, path, c);
                    true
                } else {
                    map_items(&map, lhs, rhs, path, c);
                    false
                }
            }
        }
    };
    if !in_leaf {
        if lhs.is_none() {
            c.added.insert(path);
        } else if rhs.is_none() {
            c.removed.insert(path);
        }
    }
}

fn leaf(lhs: Option<&Value>, rhs: Option<&Value>, path: &[PathElement], c: &mut Comparison) {
    match (lhs, rhs) {
        (None, _) => c.added.insert(path),
        (_, None) => c.removed.insert(path),
        (Some(l), Some(r)) => {
            if !deep_equal(l, r) {
                c.modified.insert(path);
            }
        }
    }
}

fn map_items(
    map: &MapAtom<'_>,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &mut Vec<PathElement>,
    c: &mut Comparison,
) {
    let empty = Map::new();
    let l = match lhs {
        Some(Value::Object(m)) => m,
        _ => &empty,
    };
    let r = match rhs {
        Some(Value::Object(m)) => m,
        _ => &empty,
    };
    let keys = l.keys().chain(r.keys().filter(|k| !l.contains_key(*k)));
    for key in keys {
        let t = map.member(key).map(|(t, _)| t).unwrap_or(TypeRef::Deduced);
        path.push(PathElement::Field(key.clone()));
        walk(l.get(key), r.get(key), t, path, c);
        path.pop();
    }
}

fn list_items(
    list: &ListAtom<'_>,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &mut Vec<PathElement>,
    c: &mut Comparison,
) {
    let l = IndexedItems::new(list, lhs);
    let r = IndexedItems::new(list, rhs);
    let mut all: Vec<&PathElement> = l.distinct().iter().collect();
    all.extend(r.distinct().iter().filter(|pe| l.get(pe).1 == 0));
    for pe in all {
        let (l_first, l_count) = l.get(pe);
        let (r_first, r_count) = r.get(pe);
        path.push(pe.clone());
        match (l_count, r_count) {
            // The usual case: at most one item on each side.
            (0..=1, 0..=1) => walk(l_first, r_first, list.element, path, c),
            // Duplicates on both sides: compared as one atomic value.
            (2.., 2..) => {
                let (la, ra) = (l.all(pe), r.all(pe));
                let same =
                    la.len() == ra.len() && la.iter().zip(ra.iter()).all(|(a, b)| deep_equal(a, b));
                if !same {
                    c.modified.insert(path);
                }
            }
            // Duplicates resolved: the duplicate marker goes, a single item comes.
            (2.., _) => {
                if r_count != 0 {
                    walk(None, r_first, list.element, path, c);
                }
                c.removed.insert(path);
            }
            // New duplicates: the single item goes, the duplicate marker comes.
            (_, _) => {
                if l_count != 0 {
                    walk(l_first, None, list.element, path, c);
                }
                c.added.insert(path);
            }
        }
        path.pop();
    }
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
    fn created_maps_are_added_with_their_leaves() {
        let s = Schema::for_kind("", "v1", "ConfigMap").unwrap();
        let c = compare(
            Some(&json!({})),
            Some(&json!({"metadata": {"labels": {"a": "1"}}, "data": {"k": "v"}})),
            s.root(),
        );
        assert_eq!(
            printed(&c.added),
            [
                ".data",
                ".metadata",
                ".data.k",
                ".metadata.labels",
                ".metadata.labels.a"
            ]
        );
        assert!(c.modified.is_empty() && c.removed.is_empty());
    }

    #[test]
    fn changed_leaves_are_modified_and_dropped_items_removed() {
        let s = Schema::for_kind("apps", "v1", "Deployment").unwrap();
        let old = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "a", "image": "x"}, {"name": "b", "image": "y"}
        ]}}}});
        let new = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "a", "image": "x2"}
        ]}}}});
        let c = compare(Some(&old), Some(&new), s.root());
        assert_eq!(
            printed(&c.modified),
            [
                ".spec.replicas",
                r#".spec.template.spec.containers[name="a"].image"#
            ]
        );
        assert_eq!(
            printed(&c.removed),
            [
                r#".spec.template.spec.containers[name="b"]"#,
                r#".spec.template.spec.containers[name="b"].image"#,
                r#".spec.template.spec.containers[name="b"].name"#,
            ]
        );
        assert!(c.added.is_empty());
    }
}
