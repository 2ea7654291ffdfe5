//! Merging an applied configuration into a live object (`TypedValue.Merge`
//! with the keep-right-hand-side rule): leaves take the configuration's
//! value, granular maps merge key by key, list maps and sets merge item by
//! item, atomic values are replaced whole.

use serde_json::{Map, Value};

use super::{IndexedItems, is_empty_container, shape};
use crate::path::PathElement;
use crate::schema::{Atom, ListAtom, ListKind, MapAtom, TypeRef};

/// Merges `rhs` into `lhs`; `None` when neither side has anything.
pub(crate) fn merge(lhs: Option<&Value>, rhs: Option<&Value>, t: TypeRef<'_>) -> Option<Value> {
    let (l, r) = match (lhs, rhs) {
        (None, None) => return None,
        (Some(l), Some(r)) if shape(l) == shape(r) => (l, r),
        (Some(l), None) => return Some(l.clone()),
        _ => return rhs.cloned(),
    };
    match t.resolve(Some(r)) {
        Atom::Scalar(_) => Some(r.clone()),
        Atom::List(list) => {
            if matches!(list.kind, ListKind::Atomic)
                || (is_empty_container(Some(l)) && is_empty_container(Some(r)))
            {
                return Some(r.clone());
            }
            Some(Value::Array(merge_list(&list, l, r)))
        }
        Atom::Map(map) => {
            if map.atomic || (is_empty_container(Some(l)) && is_empty_container(Some(r))) {
                return Some(r.clone());
            }
            Some(Value::Object(merge_map(&map, l, r)))
        }
    }
}

fn merge_map(map: &MapAtom<'_>, lhs: &Value, rhs: &Value) -> Map<String, Value> {
    let empty = Map::new();
    let l = lhs.as_object().unwrap_or(&empty);
    let r = rhs.as_object().unwrap_or(&empty);
    let mut out = Map::new();
    for (key, lv) in l {
        let t = map.member(key).map(|(t, _)| t).unwrap_or(TypeRef::Deduced);
        if let Some(v) = merge(Some(lv), r.get(key), t) {
            out.insert(key.clone(), v);
        }
    }
    for (key, rv) in r {
        if l.contains_key(key) {
            continue;
        }
        let t = map.member(key).map(|(t, _)| t).unwrap_or(TypeRef::Deduced);
        if let Some(v) = merge(None, Some(rv), t) {
            out.insert(key.clone(), v);
        }
    }
    out
}

/// Merges list items keeping the live order, with the configuration's
/// items in the configuration's order relative to each other: live-only
/// items stay where they are, shared items appear in the configuration's
/// order, new items follow the configuration item before them.
fn merge_list(list: &ListAtom<'_>, lhs: &Value, rhs: &Value) -> Vec<Value> {
    let l = IndexedItems::new(list, Some(lhs));
    let r = IndexedItems::new(list, Some(rhs));
    let l_order = l.distinct();
    let r_order = r.distinct();
    let mut out = Vec::with_capacity(l_order.len().max(r_order.len()));

    let mut shared = r_order.iter().filter(|pe| l.get(pe).1 > 0);
    let mut next_shared: Option<&PathElement> = shared.next();
    let mut merged_rhs: std::collections::BTreeSet<&PathElement> = Default::default();

    let (mut li, mut ri) = (0, 0);
    while li < l_order.len() || ri < r_order.len() {
        if li < l_order.len() && ri < r_order.len() {
            let pe = &l_order[li];
            if *pe == r_order[ri] {
                merged_rhs.insert(pe);
                push_merged(&mut out, list, &l, &r, pe);
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if r.get(pe).1 > 0 && next_shared.is_some_and(|n| n != pe) {
                // A shared item, but not the one the configuration wants next.
                li += 1;
                continue;
            }
        }
        if li < l_order.len() {
            let pe = &l_order[li];
            if r.get(pe).1 == 0 {
                out.extend(l.all(pe).iter().map(|v| (*v).clone()));
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
                continue;
            }
        }
        if ri < r_order.len() {
            let pe = &r_order[ri];
            merged_rhs.insert(pe);
            push_merged(&mut out, list, &l, &r, pe);
            ri += 1;
            if next_shared.is_some_and(|n| n == pe) {
                next_shared = shared.next();
            }
        }
    }
    // Stored items without a key cannot be matched; they stay.
    out.extend(l.unkeyed.iter().map(|v| (*v).clone()));
    out
}

fn push_merged(
    out: &mut Vec<Value>,
    list: &ListAtom<'_>,
    l: &IndexedItems<'_>,
    r: &IndexedItems<'_>,
    pe: &PathElement,
) {
    let (lv, _) = l.get(pe);
    let (rv, _) = r.get(pe);
    if let Some(v) = merge(lv, rv, list.element) {
        out.push(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Schema;
    use serde_json::json;

    fn names(v: &Value) -> Vec<String> {
        v["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn list_maps_merge_by_key_and_keep_live_only_items() {
        let s = Schema::for_kind("", "v1", "Pod").unwrap();
        let live = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "tty": true},
            {"name": "sidecar", "image": "s:1"},
            {"name": "b", "image": "b:1"}
        ]}});
        let config = json!({"spec": {"containers": [
            {"name": "b", "image": "b:2"},
            {"name": "a", "image": "a:2"},
            {"name": "c", "image": "c:1"}
        ]}});
        let merged = merge(Some(&live), Some(&config), s.root()).unwrap();
        assert_eq!(names(&merged), ["sidecar", "b", "a", "c"]);
        let a = &merged["spec"]["containers"][2];
        assert_eq!(a, &json!({"name": "a", "image": "a:2", "tty": true}));
    }

    #[test]
    fn atomic_lists_and_maps_are_replaced() {
        let s = Schema::for_kind("apps", "v1", "Deployment").unwrap();
        let live = json!({"spec": {
            "selector": {"matchLabels": {"a": "1", "b": "2"}},
            "template": {"spec": {"containers": [{"name": "x", "args": ["1", "2"]}]}}
        }});
        let config = json!({"spec": {
            "selector": {"matchLabels": {"a": "1"}},
            "template": {"spec": {"containers": [{"name": "x", "args": ["3"]}]}}
        }});
        let merged = merge(Some(&live), Some(&config), s.root()).unwrap();
        assert_eq!(
            merged["spec"]["selector"],
            json!({"matchLabels": {"a": "1"}})
        );
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["3"])
        );
    }

    #[test]
    fn stored_items_without_a_key_are_kept() {
        let s = Schema::for_kind("", "v1", "Pod").unwrap();
        let merged = merge(
            Some(&json!({"spec": {"containers": [{"image": "nameless"}, {"name": "a"}]}})),
            Some(&json!({"spec": {"containers": [{"name": "b"}]}})),
            s.root(),
        )
        .unwrap();
        assert_eq!(
            merged["spec"]["containers"],
            json!([{"name": "a"}, {"name": "b"}, {"image": "nameless"}])
        );
    }

    #[test]
    fn sets_merge_as_unions() {
        let s = Schema::for_kind("", "v1", "ConfigMap").unwrap();
        let merged = merge(
            Some(&json!({"metadata": {"finalizers": ["a", "b"]}})),
            Some(&json!({"metadata": {"finalizers": ["c", "a"]}})),
            s.root(),
        )
        .unwrap();
        assert_eq!(merged["metadata"]["finalizers"], json!(["c", "a", "b"]));
    }
}
