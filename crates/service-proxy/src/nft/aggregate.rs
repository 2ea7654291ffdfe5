//! Items of many owners (service ports, and the table's base as owner `""`) merged
//! into one table: an item two owners both want (a shared chain such as
//! `cluster-5`, a hairpin pair of an endpoint in two services) is there while one of
//! them wants it, with the value of the first owner by name. Changing one owner
//! marks only its items dirty, and the applied value of every item is remembered, so
//! a sync writes exactly the items whose value changed.

use std::collections::{BTreeMap, BTreeSet};

use super::layout::{Item, Items};

#[derive(Debug, Default, Clone)]
struct Entry {
    /// The owners wanting the item, sorted by owner, with their values.
    wanted: Vec<(String, String)>,
    /// The value in the kernel after the last successful sync.
    applied: Option<String>,
}

impl Entry {
    fn effective(&self) -> Option<&str> {
        self.wanted.first().map(|(_, v)| v.as_str())
    }
}

/// The merged items and what changed since the last successful sync.
#[derive(Debug, Default, Clone)]
pub(crate) struct Aggregate {
    entries: BTreeMap<Item, Entry>,
    by_owner: BTreeMap<String, Items>,
    dirty: BTreeSet<Item>,
}

/// An item whose value changes: from `before` (in the kernel) to `after` (wanted).
pub(crate) struct Change<'a> {
    pub(crate) item: &'a Item,
    pub(crate) before: Option<&'a str>,
    pub(crate) after: Option<&'a str>,
}

impl Aggregate {
    /// Makes `owner` want exactly `items` (none: the owner is gone).
    pub(crate) fn set_owner(&mut self, owner: &str, items: Items) {
        let old = self.by_owner.remove(owner).unwrap_or_default();
        if old == items {
            if !items.is_empty() {
                self.by_owner.insert(owner.to_owned(), items);
            }
            return;
        }
        let new_map: BTreeMap<&Item, &String> = items.iter().map(|(i, v)| (i, v)).collect();
        for (item, value) in &old {
            if new_map.get(item) == Some(&value) {
                continue;
            }
            if let Some(entry) = self.entries.get_mut(item) {
                entry.wanted.retain(|(o, _)| o != owner);
            }
            self.dirty.insert(item.clone());
        }
        let old_map: BTreeMap<&Item, &String> = old.iter().map(|(i, v)| (i, v)).collect();
        for (item, value) in &items {
            if old_map.get(item) == Some(&value) {
                continue;
            }
            let entry = self.entries.entry(item.clone()).or_default();
            match entry
                .wanted
                .binary_search_by(|(o, _)| o.as_str().cmp(owner))
            {
                Ok(i) => entry.wanted[i].1 = value.clone(),
                Err(i) => entry.wanted.insert(i, (owner.to_owned(), value.clone())),
            }
            self.dirty.insert(item.clone());
        }
        if !items.is_empty() {
            self.by_owner.insert(owner.to_owned(), items);
        }
    }

    /// Items whose wanted value differs from the applied one (all of them when
    /// `everything`: then `before` is what was applied, which the caller may ignore).
    pub(crate) fn changes(&self, everything: bool) -> Vec<Change<'_>> {
        fn change<'a>((item, entry): (&'a Item, &'a Entry)) -> Change<'a> {
            Change {
                item,
                before: entry.applied.as_deref(),
                after: entry.effective(),
            }
        }
        if everything {
            return self.entries.iter().map(change).collect();
        }
        self.dirty
            .iter()
            .filter_map(|item| self.entries.get_key_value(item))
            .map(change)
            .filter(|c| c.before != c.after)
            .collect()
    }

    /// Records that the kernel now holds every wanted value (after a successful sync
    /// of [`Aggregate::changes`]).
    pub(crate) fn applied(&mut self, everything: bool) {
        let items: Vec<Item> = if everything {
            self.entries.keys().cloned().collect()
        } else {
            std::mem::take(&mut self.dirty).into_iter().collect()
        };
        for item in items {
            let Some(entry) = self.entries.get_mut(&item) else {
                continue;
            };
            if entry.wanted.is_empty() {
                self.entries.remove(&item);
            } else {
                entry.applied = entry.effective().map(str::to_owned);
            }
        }
        self.dirty.clear();
    }

    /// Forgets what the kernel holds (after a failed sync): the next sync must write
    /// everything into a fresh table.
    pub(crate) fn forget_applied(&mut self) {
        self.entries.retain(|_, e| !e.wanted.is_empty());
        for entry in self.entries.values_mut() {
            entry.applied = None;
        }
        self.dirty.clear();
    }

    /// Every wanted item with its value, sorted.
    #[cfg(test)]
    pub(crate) fn wanted(&self) -> impl Iterator<Item = (&Item, &str)> {
        self.entries
            .iter()
            .filter_map(|(item, e)| e.effective().map(|v| (item, v)))
    }
}
