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
    #[cfg(test)]
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
    compare_skipping(lhs, rhs, t, &Skip::default())
}

/// Field paths a comparison does not walk (reset fields,
/// `metadata.managedFields`), as a tree of field names: built once, looked
/// up by `&str` without allocating.
#[derive(Debug, Clone, Default)]
pub(crate) struct Skip {
    members: Vec<String>,
    children: Vec<(String, Skip)>,
}

impl Skip {
    /// The field paths of `set` (paths through list items or map keys
    /// other than fields are not skipped).
    pub(crate) fn from_fields(set: &FieldSet) -> Skip {
        let mut skip = Skip::default();
        for pe in set.members() {
            if let PathElement::Field(name) = pe {
                skip.members.push(name.clone());
            }
        }
        for (pe, child) in set.children() {
            if let PathElement::Field(name) = pe {
                let below = Skip::from_fields(child);
                if !below.is_empty() {
                    skip.children.push((name.clone(), below));
                }
            }
        }
        skip
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    fn skips(&self, key: &str) -> bool {
        self.members.iter().any(|m| m == key)
    }

    fn below(&self, key: &str) -> Option<&Skip> {
        self.children
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, s)| s)
    }
}

/// [`compare`] without looking at `skip` and what is below it: the result
/// is `compare(..).exclude(skip)`, without walking the skipped values.
pub(crate) fn compare_skipping(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    t: TypeRef<'_>,
    skip: &Skip,
) -> Comparison {
    let mut c = Comparison::default();
    let skip = (!skip.is_empty()).then_some(skip);
    walk(lhs, rhs, t, skip, &mut Vec::new(), &mut c);
    c
}

/// `l == r` but for the skipped fields.
fn equal_skipping(l: &Value, r: &Value, skip: Option<&Skip>) -> bool {
    match (skip, l, r) {
        (Some(s), Value::Object(a), Value::Object(b)) => {
            let mut kept = 0;
            for (k, v) in a {
                if s.skips(k) {
                    continue;
                }
                kept += 1;
                match b.get(k) {
                    Some(w) if equal_skipping(v, w, s.below(k)) => {}
                    _ => return false,
                }
            }
            kept == b.keys().filter(|k| !s.skips(k)).count()
        }
        _ => l == r,
    }
}

fn walk(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    t: TypeRef<'_>,
    skip: Option<&Skip>,
    path: &mut Vec<PathElement>,
    c: &mut Comparison,
) {
    if lhs.is_none() && rhs.is_none() {
        return;
    }
    if let (Some(l), Some(r)) = (lhs, rhs)
        && equal_skipping(l, r, skip)
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
                    list_items(&list, lhs, rhs, skip, path, c);
                    false
                }
            }
            Atom::Map(map) => {
                if map.atomic || (is_empty_container(lhs) && is_empty_container(rhs)) {
                    leaf(lhs, rhs, path, c);
                    true
                } else {
                    map_items(&map, lhs, rhs, skip, path, c);
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
    skip: Option<&Skip>,
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
        if skip.is_some_and(|s| s.skips(key)) {
            continue;
        }
        let below = skip.and_then(|s| s.below(key));
        let (lv, rv) = (l.get(key), r.get(key));
        if let (Some(a), Some(b)) = (lv, rv)
            && equal_skipping(a, b, below)
        {
            // Unchanged: nothing to type or record.
            continue;
        }
        let t = map.member(key).map(|(t, _)| t).unwrap_or(TypeRef::Deduced);
        path.push(PathElement::Field(key.clone()));
        walk(lv, rv, t, below, path, c);
        path.pop();
    }
}

fn list_items(
    list: &ListAtom<'_>,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    // Field-name skips do not reach into list items.
    _skip: Option<&Skip>,
    path: &mut Vec<PathElement>,
    c: &mut Comparison,
) {
    let l = IndexedItems::new(list, lhs);
    let r = IndexedItems::new(list, rhs);
    let mut all: Vec<&PathElement> = l.distinct().iter().collect();
    all.extend(r.distinct().iter().filter(|pe| l.get(pe).1 == 0));
    let below: Option<&Skip> = None;
    for pe in all {
        let (l_first, l_count) = l.get(pe);
        let (r_first, r_count) = r.get(pe);
        path.push(pe.clone());
        match (l_count, r_count) {
            // The usual case: at most one item on each side.
            (0..=1, 0..=1) => walk(l_first, r_first, list.element, below, path, c),
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
                    walk(None, r_first, list.element, below, path, c);
                }
                c.removed.insert(path);
            }
            // New duplicates: the single item goes, the duplicate marker comes.
            (_, _) => {
                if l_count != 0 {
                    walk(l_first, None, list.element, below, path, c);
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
    fn skipped_fields_are_not_compared() {
        let s = Schema::for_kind("apps", "v1", "Deployment").unwrap();
        let old = json!({"metadata": {"labels": {"a": "1"}, "managedFields": [{"manager": "x"}]},
                         "spec": {"replicas": 1, "paused": true}, "status": {"replicas": 1}});
        let new = json!({"metadata": {"labels": {"a": "2"}},
                         "spec": {"replicas": 2}, "status": {"replicas": 3, "readyReplicas": 1}});
        let skip = FieldSet::from_paths([
            crate::path::FieldPath::fields(["metadata", "managedFields"]),
            crate::path::FieldPath::fields(["status"]),
        ]);
        let skipped = compare_skipping(Some(&old), Some(&new), s.root(), &Skip::from_fields(&skip));
        assert_eq!(
            skipped,
            compare(Some(&old), Some(&new), s.root()).exclude(&skip)
        );
        assert_eq!(
            printed(&skipped.modified),
            [".metadata.labels.a", ".spec.replicas"]
        );
        assert_eq!(printed(&skipped.removed), [".spec.paused"]);
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
