//! Operations on JSON values typed by a [`crate::schema`] position, as
//! structured-merge-diff's `typed` package does them: the field set of a
//! value, the comparison of two values, the merge of an applied
//! configuration into a live object, removing a set of fields, and the
//! validation of an applied configuration.

mod compare;
mod fieldset;
mod merge;
mod remove;
mod validate;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::path::{PathElement, values_equal};
use crate::schema::{Atom, ListAtom, ListKind};

pub(crate) use compare::{Comparison, Skip, compare, compare_skipping};
pub(crate) use fieldset::{ensure_named_fields_are_members, to_field_set};
pub(crate) use merge::merge;
pub(crate) use remove::remove_items;
pub(crate) use validate::validate;

/// A value that does not fit its schema (structured-merge-diff's
/// `ValidationError`): `path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    /// Where, as `.spec.containers[name="a"]`; empty for the root.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Several type errors, printed as structured-merge-diff prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeErrors(pub Vec<TypeError>);

impl fmt::Display for TypeErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                f.write_str("errors:")?;
                for e in many {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

/// The path element of a list item (`listItemToPathElement`): its key for
/// a list map (missing key fields take their schema default), its value for
/// a set.
pub(crate) fn list_item_pe(list: &ListAtom<'_>, item: &Value) -> Result<PathElement, String> {
    match &list.kind {
        ListKind::Map(keys) if !keys.is_empty() => {
            let map = match item {
                Value::Object(m) => m,
                Value::Null => {
                    return Err("associative list with keys may not have a null element".into());
                }
                _ => {
                    return Err("associative list with keys may not have non-map elements".into());
                }
            };
            let mut fields = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(v) = map.get(*key) {
                    fields.push(((*key).to_owned(), v.clone()));
                    continue;
                }
                let default = match list.element.resolve(Some(item)) {
                    Atom::Map(m) => m.field_default(key),
                    _ => None,
                };
                match default {
                    Some(d) => fields.push(((*key).to_owned(), d)),
                    None => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field {key:?} (and doesn't have default value)"
                        ));
                    }
                }
            }
            Ok(PathElement::key(fields))
        }
        _ => match item {
            Value::Object(_) => {
                Err("associative list without keys has an element that's a map type".into())
            }
            Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
            Value::Null => {
                Err("associative list without keys has an element that's an explicit null".into())
            }
            scalar => Ok(PathElement::Value(scalar.clone())),
        },
    }
}

/// The items of a granular list by path element, with the distinct
/// elements in first-seen order (duplicates are possible in live objects).
pub(crate) struct IndexedItems<'v> {
    order: Vec<PathElement>,
    by_pe: BTreeMap<PathElement, Vec<&'v Value>>,
    /// Items without a usable key (only possible in stored objects).
    pub(crate) unkeyed: Vec<&'v Value>,
}

impl<'v> IndexedItems<'v> {
    pub(crate) fn new(list: &ListAtom<'_>, value: Option<&'v Value>) -> Self {
        let mut order = Vec::new();
        let mut by_pe: BTreeMap<PathElement, Vec<&'v Value>> = BTreeMap::new();
        let mut unkeyed = Vec::new();
        if let Some(Value::Array(items)) = value {
            for item in items {
                let Ok(pe) = list_item_pe(list, item) else {
                    unkeyed.push(item);
                    continue;
                };
                match by_pe.get_mut(&pe) {
                    Some(all) => all.push(item),
                    None => {
                        order.push(pe.clone());
                        by_pe.insert(pe, vec![item]);
                    }
                }
            }
        }
        IndexedItems {
            order,
            by_pe,
            unkeyed,
        }
    }

    /// The first item with this element and the number of items with it.
    pub(crate) fn get(&self, pe: &PathElement) -> (Option<&'v Value>, usize) {
        match self.by_pe.get(pe) {
            Some(all) => (all.first().copied(), all.len()),
            None => (None, 0),
        }
    }

    /// Every item with this element.
    pub(crate) fn all(&self, pe: &PathElement) -> &[&'v Value] {
        self.by_pe.get(pe).map(Vec::as_slice).unwrap_or_default()
    }

    /// The distinct elements in first-seen order.
    pub(crate) fn distinct(&self) -> &[PathElement] {
        &self.order
    }
}

/// Whether a value is null, absent, or an empty list/object.
pub(crate) fn is_empty_container(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(m)) => m.is_empty(),
        Some(_) => false,
    }
}

/// Deep equality with numbers compared numerically.
pub(crate) fn deep_equal(a: &Value, b: &Value) -> bool {
    values_equal(a, b)
}

/// The JSON shape of a value, for type mismatch decisions.
pub(crate) fn shape(v: &Value) -> u8 {
    match v {
        Value::Object(_) => 1,
        Value::Array(_) => 2,
        Value::Null => 0,
        _ => 3,
    }
}
