//! Applying a strategic merge patch, server side, as apimachinery
//! `pkg/util/strategicpatch/patch.go` does (`StrategicMergeMapPatch` with
//! `MergeParallelList` and `IgnoreUnmatchedNulls`).
//!
//! Semantics, in the order `mergeMap` applies them to each object:
//! 1. `$patch: replace` replaces the object by the patch, `$patch: delete`
//!    empties it; any other `$patch` value is an error.
//! 2. `$retainKeys: [..]` drops every key of the original not listed (and
//!    rejects a patch that sets an unlisted key).
//! 3. `$setElementOrder/<list>: [..]` merges `<list>` and orders the result:
//!    listed items in that order, server-only items kept near their neighbours.
//! 4. Every other key: `null` deletes; a key missing from the original (or of
//!    another JSON type) takes the patch value with nulls and directive
//!    elements removed; maps merge recursively unless the field's strategy is
//!    `replace`; lists merge if the field's strategy is `merge` (by merge key
//!    for lists of objects, as a set union for primitives) and are replaced
//!    otherwise; `$deleteFromPrimitiveList/<list>: [..]` removes values from a
//!    primitive list. In merged lists of objects, `{key: v, $patch: delete}`
//!    removes the item and `{$patch: replace}` replaces the whole list by the
//!    rest of the patch list.
//!
//! Go finds list items by scanning the list for each one; here every lookup
//! by merge key (or by value, for primitive lists) goes through a hash map
//! built once per list, so merging lists of n items takes O(n) lookups
//! instead of O(n²) comparisons, with the same results, order and errors.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::PatchError;
use super::gofmt;
use crate::schema::navigate::Node;

const DIRECTIVE_MARKER: &str = "$patch";
const DELETE_DIRECTIVE: &str = "delete";
const REPLACE_DIRECTIVE: &str = "replace";
const MERGE_DIRECTIVE: &str = "merge";
const RETAIN_KEYS_STRATEGY: &str = "retainKeys";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

/// Go's `reflect.Map` kind versus everything else, for list elements.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Map,
    Scalar,
}

/// Patch metadata found at a field: strategy (without `retainKeys`) and merge key.
struct FieldMeta<'a> {
    node: Node<'a>,
    strategy: String,
    merge_key: String,
}

/// Applies `patch` to `original` at the schema position `node`.
pub(crate) fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    node: Node<'_>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE_MARKER) {
        return match directive.as_str() {
            Some(REPLACE_DIRECTIVE) => {
                patch.shift_remove(DIRECTIVE_MARKER);
                Ok(patch)
            }
            Some(DELETE_DIRECTIVE) => Ok(Map::new()),
            _ => Err(PatchError::BadPatchType {
                directive: gofmt::s(directive),
                map: gofmt::map(&patch),
            }),
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, node)?;

    for (key, patch_value) in patch {
        let (is_delete_list, key) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            let original_key = extract_key(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX)?;
            (
                true,
                if original_key.is_empty() {
                    key
                } else {
                    original_key
                },
            )
        } else {
            (false, key)
        };

        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }

        let same_type = original
            .get(&key)
            .is_some_and(|o| same_go_type(o, &patch_value));
        if !same_type {
            // Missing from the original, or another type: take the patch value.
            if !is_delete_list {
                let mut value = patch_value;
                discard_null_values(&mut value);
                match remove_directives(value) {
                    Some(v) => {
                        original.insert(key, v);
                    }
                    None => {
                        original.shift_remove(&key);
                    }
                }
            }
            continue;
        }

        // Take the value out in place, so the key keeps its position.
        let original_value = original.get_mut(&key).map(std::mem::take);
        let merged = match (original_value, patch_value) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                let meta = field_meta(node, &key, false)?;
                if meta.strategy != REPLACE_DIRECTIVE {
                    Value::Object(merge_map(o, p, meta.node)?)
                } else {
                    Value::Object(p)
                }
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                let meta = field_meta(node, &key, true)?;
                Value::Array(merge_slice_handler(o, p, &meta, is_delete_list)?)
            }
            // Scalars of the same type: the patch wins (scalars never carry directives).
            (_, p) => p,
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// Go compares `reflect.TypeOf` of both sides; for scalars only the outcome matters.
fn same_go_type(a: &Value, b: &Value) -> bool {
    gofmt::type_name(a) == gofmt::type_name(b)
}

/// Patch metadata of `key` under `node` (for a list: its elements' node).
fn field_meta<'a>(node: Node<'a>, key: &str, slice: bool) -> Result<FieldMeta<'a>, PatchError> {
    let field = node.member(key);
    let strategies: Vec<&str> = field
        .extension("x-kubernetes-patch-strategy")
        .map(|s| s.split(',').collect())
        .unwrap_or_default();
    let strategy = match strategies.as_slice() {
        [] => "",
        [one] if *one == RETAIN_KEYS_STRATEGY => "",
        [one] => one,
        [a, b] if *a == RETAIN_KEYS_STRATEGY => b,
        [a, b] if *b == RETAIN_KEYS_STRATEGY => a,
        _ => {
            return Err(PatchError::UnexpectedPatchStrategy {
                strategies: format!("[{}]", strategies.join(" ")),
            });
        }
    };
    Ok(FieldMeta {
        node: if slice { field.items() } else { field },
        strategy: strategy.to_owned(),
        merge_key: field
            .extension("x-kubernetes-patch-merge-key")
            .unwrap_or_default()
            .to_owned(),
    })
}

/// `applyRetainKeysDirective`.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadPatchFormatForRetainKeys);
    };
    let retained: HashSet<&str> = retain.iter().filter_map(Value::as_str).collect();
    let listed = |k: &str| retained.contains(k);
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || k.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !listed(k) {
            return Err(PatchError::BadPatchFormatForRetainKeys);
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// `mergePatchIntoOriginal`: merges each list that has a `$setElementOrder`
/// directive and orders the result.
fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    node: Node<'_>,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX))
        .cloned()
        .collect();
    for key in keys {
        let Some(order) = patch.shift_remove(&key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad_arg_type("[]interface {}", &order));
        };
        let original_key = extract_key(&key, SET_ELEMENT_ORDER_PREFIX)?;
        let original_list = list_at(original, &original_key)?;
        let patch_list = list_at(patch, &original_key)?;
        let meta = field_meta(node, &original_key, true)?;
        validate_patch_with_set_order_list(
            patch_list.as_deref().unwrap_or_default(),
            &order,
            &meta.merge_key,
        )?;

        let merged = match (&original_list, &patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => remove_directives_from_list(p.clone()),
            (Some(o), Some(p)) => merge_slice_handler(o.clone(), p.clone(), &meta, false)?,
            (None, None) => continue,
        };

        let (patch_items, server_only) = partition(&merged, &order, &meta.merge_key)?;
        let original_items = original_list.unwrap_or_default();
        let kind =
            slice_element_kind(&[&original_items, patch_list.as_deref().unwrap_or_default()])?;
        let both = normalize_element_order(
            patch_items,
            server_only,
            &order,
            &original_items,
            &meta.merge_key,
            kind,
        )?;
        original.insert(original_key.clone(), Value::Array(both));
        patch.shift_remove(&original_key);
    }
    Ok(())
}

/// The list at `key`, if present; an error if it is not a list.
fn list_at(map: &Map<String, Value>, key: &str) -> Result<Option<Vec<Value>>, PatchError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.clone())),
        Some(other) => Err(bad_arg_type("[]interface {}", other)),
    }
}

/// `extractKey`: `prefix/key` to `key`.
fn extract_key(s: &str, prefix: &str) -> Result<String, PatchError> {
    match s.split_once('/') {
        Some((head, rest)) if head == prefix => Ok(rest.to_owned()),
        _ if prefix == DELETE_FROM_PRIMITIVE_LIST_PREFIX => {
            Err(PatchError::BadPatchFormatForPrimitiveList)
        }
        _ => Err(PatchError::BadPatchFormatForSetElementOrderList),
    }
}

/// `validatePatchWithSetOrderList`: patch items must appear in the order list, in order.
fn validate_patch_with_set_order_list(
    patch_list: &[Value],
    order: &[Value],
    merge_key: &str,
) -> Result<(), PatchError> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete = if merge_key.is_empty() {
        patch_list.to_vec()
    } else {
        extract_to_delete_items(patch_list.to_vec())?.0
    };
    let (mut pi, mut si) = (0, 0);
    while pi < non_delete.len() && si < order.len() {
        if contains_directive_marker(&non_delete[pi]) {
            pi += 1;
            continue;
        }
        if merge_key_value_equal(&non_delete[pi], &order[si], merge_key)? {
            pi += 1;
        }
        si += 1;
    }
    if pi < non_delete.len() && si >= order.len() {
        return Err(PatchError::SetElementOrderMismatch {
            patch: gofmt::list(patch_list),
            order: gofmt::list(order),
        });
    }
    Ok(())
}

fn contains_directive_marker(item: &Value) -> bool {
    item.as_object()
        .is_some_and(|m| m.contains_key(DIRECTIVE_MARKER))
}

fn merge_key_value_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool, PatchError> {
    if merge_key.is_empty() {
        return Ok(left == right);
    }
    let l = left
        .as_object()
        .ok_or_else(|| bad_arg_type("map[string]interface {}", left))?;
    let r = right
        .as_object()
        .ok_or_else(|| bad_arg_type("map[string]interface {}", right))?;
    let lv = l.get(merge_key).ok_or_else(|| no_merge_key(l, merge_key))?;
    let rv = r.get(merge_key).ok_or_else(|| no_merge_key(r, merge_key))?;
    Ok(lv == rv)
}

/// `mergeSliceHandler`: merge if the strategy says so (or for deletion lists), else replace.
fn merge_slice_handler(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &FieldMeta<'_>,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if meta.strategy == MERGE_DIRECTIVE || is_delete_list {
        merge_slice(original, patch, meta.node, &meta.merge_key, is_delete_list)
    } else {
        Ok(patch)
    }
}

/// `mergeSlice`.
fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    node: Node<'_>,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = slice_element_kind(&[&original, &patch])?;
    let (original, patch, merged) = if kind == Kind::Scalar {
        if is_delete_list {
            let deleted: HashSet<&Value> = patch.iter().collect();
            return Ok(original
                .into_iter()
                .filter(|v| !deleted.contains(v))
                .collect());
        }
        // Go de-duplicates in an order of its own; the order is normalised below anyway.
        let mut seen: HashSet<&Value> = HashSet::with_capacity(original.len() + patch.len());
        let merged: Vec<Value> = original
            .iter()
            .chain(patch.iter())
            .filter(|v| seen.insert(*v))
            .cloned()
            .collect();
        (original, patch, merged)
    } else {
        if merge_key.is_empty() {
            return Err(PatchError::NoMergeKeyForList {
                name: "struct".to_owned(),
            });
        }
        let (original, patch) = merge_slice_with_special_elements(original, patch, merge_key)?;
        let merged =
            merge_slice_without_special_elements(original.clone(), &patch, merge_key, node)?;
        (original, patch, merged)
    };
    let (patch_items, server_only) = partition(&merged, &patch, merge_key)?;
    normalize_element_order(patch_items, server_only, &patch, &original, merge_key, kind)
}

/// `mergeSliceWithSpecialElements`: applies `$patch: delete` / `replace` items.
fn merge_slice_with_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut without_special = Vec::new();
    let mut replace = false;
    // Merge key values of `$patch: delete` items, removed from `original` at the end.
    let mut deleted: HashSet<Value> = HashSet::new();
    // Go checks the (unchanged) original at each delete item: no deletion
    // removes a non-map, so the first one is found by every check.
    let first_non_map = original.iter().position(|v| !v.is_object());
    for item in patch {
        let Value::Object(m) = &item else {
            without_special.push(item);
            continue;
        };
        let Some(directive) = m.get(DIRECTIVE_MARKER) else {
            without_special.push(item);
            continue;
        };
        match directive.as_str() {
            Some(DELETE_DIRECTIVE) => {
                let value = m.get(merge_key).ok_or_else(|| no_merge_key(m, merge_key))?;
                if let Some(index) = first_non_map {
                    return Err(PatchError::NotAMap { index });
                }
                deleted.insert(value.clone());
            }
            Some(REPLACE_DIRECTIVE) => replace = true,
            Some(MERGE_DIRECTIVE) => return Err(PatchError::MergingListsUnsupported),
            _ => {
                return Err(PatchError::BadPatchType {
                    directive: gofmt::s(directive),
                    map: gofmt::map(m),
                });
            }
        }
    }
    if replace {
        Ok((without_special, Vec::new()))
    } else {
        if !deleted.is_empty() {
            original.retain(|v| !v.get(merge_key).is_some_and(|k| deleted.contains(k)));
        }
        Ok((original, without_special))
    }
}

/// `mergeSliceWithoutSpecialElements`: merges items with equal merge keys, appends the rest.
fn merge_slice_without_special_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    node: Node<'_>,
) -> Result<Vec<Value>, PatchError> {
    // Where each merge key value sits in `original`, kept up to date as items
    // merge (a merge may change an item's key) and new items are appended.
    let mut positions: HashMap<Value, Vec<usize>> = HashMap::new();
    for (i, v) in original.iter().enumerate() {
        if let Some(key) = v.as_object().and_then(|m| m.get(merge_key)) {
            positions.entry(key.clone()).or_default().push(i);
        }
    }
    // Merged and appended items are maps: the first non-map stays first.
    let first_non_map = original.iter().position(|v| !v.is_object());
    for item in patch {
        let Value::Object(m) = item else {
            return Err(bad_arg_type("map[string]interface {}", item));
        };
        let value = m.get(merge_key).ok_or_else(|| no_merge_key(m, merge_key))?;
        let found = positions.get(value).and_then(|p| p.first().copied());
        if let Some(index) = first_non_map.filter(|&n| found.is_none_or(|f| n < f)) {
            return Err(PatchError::NotAMap { index });
        }
        match found {
            Some(i) => {
                let Value::Object(o) = std::mem::take(&mut original[i]) else {
                    return Err(PatchError::NotAMap { index: i });
                };
                let merged = merge_map(o, m.clone(), node)?;
                if merged.get(merge_key) != Some(value) {
                    move_position(&mut positions, i, value, merged.get(merge_key));
                }
                original[i] = Value::Object(merged);
            }
            None => {
                positions
                    .entry(value.clone())
                    .or_default()
                    .push(original.len());
                original.push(item.clone());
            }
        }
    }
    Ok(original)
}

/// Files position `i` under the merge key value `to` (none: unkeyed) instead
/// of `from`, keeping each value's positions in ascending order.
fn move_position(
    positions: &mut HashMap<Value, Vec<usize>>,
    i: usize,
    from: &Value,
    to: Option<&Value>,
) {
    if let Some(list) = positions.get_mut(from) {
        if let Ok(at) = list.binary_search(&i) {
            list.remove(at);
        }
        if list.is_empty() {
            positions.remove(from);
        }
    }
    if let Some(to) = to {
        let list = positions.entry(to.clone()).or_default();
        let at = list.partition_point(|&p| p < i);
        list.insert(at, i);
    }
}

/// `findMapInSliceBasedOnKeyValue` over one list, for many values: the first
/// map whose merge key equals a value, or Go's error for a non-map met first.
struct KeyLookup<'a> {
    first: HashMap<&'a Value, usize>,
    first_non_map: Option<usize>,
}

impl<'a> KeyLookup<'a> {
    fn new(list: &'a [Value], merge_key: &str) -> Self {
        let mut first = HashMap::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            if let Some(key) = v.as_object().and_then(|m| m.get(merge_key)) {
                first.entry(key).or_insert(i);
            }
        }
        Self {
            first,
            first_non_map: list.iter().position(|v| !v.is_object()),
        }
    }

    fn find(&self, value: &Value) -> Result<Option<usize>, PatchError> {
        let found = self.first.get(value).copied();
        match self.first_non_map {
            Some(index) if found.is_none_or(|f| index < f) => Err(PatchError::NotAMap { index }),
            _ => Ok(found),
        }
    }
}

/// Splits `merged` into items present in `by` (patch items) and the rest (server-only).
fn partition(
    merged: &[Value],
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut patch_items = Vec::new();
    let mut server_only = Vec::new();
    // `by` by value (primitive lists) or by merge key.
    let by_key = (!merge_key.is_empty()).then(|| KeyLookup::new(by, merge_key));
    let by_value: HashSet<&Value> = match by_key {
        None => by.iter().collect(),
        Some(_) => HashSet::new(),
    };
    for v in merged {
        let present = match &by_key {
            None => by_value.contains(v),
            Some(keys) => {
                let Value::Object(m) = v else {
                    return Err(bad_arg_type("map[string]interface {}", v));
                };
                let value = m.get(merge_key).ok_or_else(|| no_merge_key(m, merge_key))?;
                keys.find(value)?.is_some()
            }
        };
        if present {
            patch_items.push(v.clone());
        } else {
            server_only.push(v.clone());
        }
    }
    Ok((patch_items, server_only))
}

/// `sliceElementType`: all elements of all lists must share one type, and not be lists.
fn slice_element_kind(lists: &[&[Value]]) -> Result<Kind, PatchError> {
    let mut first: Option<&Value> = None;
    for v in lists.iter().flat_map(|l| l.iter()) {
        match first {
            None => {
                if v.is_array() {
                    return Err(PatchError::NoListOfLists);
                }
                first = Some(v);
            }
            Some(f) if !same_go_type(f, v) => {
                let rendered: Vec<String> = lists.iter().map(|l| gofmt::list(l)).collect();
                return Err(PatchError::ListElementTypesNotIdentical {
                    lists: format!("[{}]", rendered.join(" ")),
                });
            }
            Some(_) => {}
        }
    }
    match first {
        None => Err(PatchError::NoElements),
        Some(Value::Object(_)) => Ok(Kind::Map),
        Some(_) => Ok(Kind::Scalar),
    }
}

/// `normalizeElementOrder`: sorts patch items by the patch order and server-only
/// items by the live order, then interleaves them.
fn normalize_element_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Result<Vec<Value>, PatchError> {
    let patch = normalize_slice_order(patch, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;
    Ok(merge_sorted_slice(
        server_only,
        patch,
        server_order,
        merge_key,
        kind,
    ))
}

/// `normalizeSliceOrder`: stable sort by position in `order`; `$patch: delete` items last.
fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Result<Vec<Value>, PatchError> {
    let (mut to_sort, to_delete) = if kind == Kind::Map {
        for item in to_sort.iter().chain(order.iter()) {
            let Value::Object(m) = item else {
                return Err(bad_arg_type("map[string]interface {}", item));
            };
            if !m.contains_key(merge_key) {
                return Err(no_merge_key(m, merge_key));
            }
        }
        extract_to_delete_items(to_sort)?
    } else {
        (to_sort, Vec::new())
    };
    // Items are always found in `order` when Kubernetes reaches here; unfound
    // ones (Go's comparator is not a strict order for them) go last.
    let positions = Positions::new(order, merge_key, kind);
    to_sort.sort_by_cached_key(|v| positions.of(v).unwrap_or(usize::MAX));
    to_sort.extend(to_delete);
    Ok(to_sort)
}

/// `extractToDeleteItems`: splits off the `$patch: delete` items.
fn extract_to_delete_items(list: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    for v in list {
        let Value::Object(m) = &v else {
            return Err(bad_arg_type("map[string]interface {}", &v));
        };
        if m.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some(DELETE_DIRECTIVE) {
            delete.push(v);
        } else {
            keep.push(v);
        }
    }
    Ok((keep, delete))
}

/// Go's `index` for many values: the position of the first item of a list
/// equal to a value, by merge key for maps (a missing key compares equal to a
/// missing key, as Go's nil does).
struct Positions<'a, 'k> {
    first: HashMap<Option<&'a Value>, usize>,
    merge_key: &'k str,
    kind: Kind,
}

impl<'a, 'k> Positions<'a, 'k> {
    fn new(list: &'a [Value], merge_key: &'k str, kind: Kind) -> Self {
        let mut first = HashMap::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            first.entry(key_of(v, merge_key, kind)).or_insert(i);
        }
        Self {
            first,
            merge_key,
            kind,
        }
    }

    fn of(&self, value: &Value) -> Option<usize> {
        self.first
            .get(&key_of(value, self.merge_key, self.kind))
            .copied()
    }
}

/// What `index` compares: the merge key of a map, a scalar itself.
fn key_of<'a>(v: &'a Value, merge_key: &str, kind: Kind) -> Option<&'a Value> {
    match kind {
        Kind::Map => v.as_object().and_then(|m| m.get(merge_key)),
        Kind::Scalar => Some(v),
    }
}

/// `mergeSortedSlice`: inserts each server-only item (`left`) before the first
/// patch item (`right`) that comes after it in the live order.
fn merge_sorted_slice(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Vec<Value> {
    let positions = Positions::new(server_order, merge_key, kind);
    let less = |l: Option<usize>, r: Option<usize>| -> bool {
        match (l, r) {
            (Some(li), Some(ri)) => li < ri,
            _ => false,
        }
    };
    let mut out = Vec::with_capacity(left.len() + right.len());
    let with_position = |v: Value| (positions.of(&v), v);
    let mut left = left.into_iter().map(with_position).peekable();
    let mut right = right.into_iter().map(with_position).peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((l, _)), Some((r, _))) => less(*l, *r),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next.map(|(_, v)| v));
    }
    out
}

/// `removeDirectives`: drops objects carrying `$patch` (returns `None` for one).
fn remove_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE_MARKER) {
                return None;
            }
            Some(Value::Object(
                m.into_iter()
                    .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                    .collect(),
            ))
        }
        Value::Array(items) => Some(Value::Array(remove_directives_from_list(items))),
        other => Some(other),
    }
}

fn remove_directives_from_list(items: Vec<Value>) -> Vec<Value> {
    items.into_iter().filter_map(remove_directives).collect()
}

/// `discardNullValuesFromPatch`: removes null members of objects, recursively.
fn discard_null_values(value: &mut Value) {
    match value {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(discard_null_values);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_null_values),
        _ => {}
    }
}

fn bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    PatchError::BadArgType {
        expected: expected.to_owned(),
        actual: gofmt::type_name(actual).to_owned(),
    }
}

fn no_merge_key(map: &Map<String, Value>, key: &str) -> PatchError {
    PatchError::NoMergeKey {
        map: gofmt::map(map),
        key: key.to_owned(),
    }
}
