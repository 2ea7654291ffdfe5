//! Ownership bookkeeping and the apply merge, as structured-merge-diff's
//! `merge.Updater` does them (one version: Skiff serves each kind at one
//! version, so there is no conversion between managers' versions).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::conflict::{Conflict, Conflicts};
use crate::managers::{ManagerKey, VersionedSet};
use crate::schema::TypeRef;
use crate::set::FieldSet;
use crate::typed::{
    Comparison, Skip, compare_skipping, ensure_named_fields_are_members, merge, remove_items,
    to_field_set,
};

pub(crate) type Managers = BTreeMap<ManagerKey, VersionedSet>;

pub(crate) struct Updater<'a> {
    pub(crate) root: TypeRef<'a>,
    /// Fields nobody owns on this endpoint (the strategy's reset fields).
    pub(crate) ignored: &'a FieldSet,
    /// `ignored` and `metadata.managedFields`: what comparisons do not walk.
    pub(crate) skipped: &'a Skip,
}

impl Updater<'_> {
    /// Takes the fields `new` changed away from every manager but
    /// `workflow` (or reports them as conflicts unless `force`), and the
    /// fields it removed from everyone.
    fn take_ownership(
        &self,
        old: &Value,
        new: &Value,
        managers: &mut Managers,
        workflow: Option<&ManagerKey>,
        force: bool,
    ) -> Result<(Comparison, FieldSet), Conflicts> {
        let comparison = compare_skipping(Some(old), Some(new), self.root, self.skipped);
        let changed = comparison.modified.union(&comparison.added);
        let mut conflicts: Vec<(ManagerKey, FieldSet)> = Vec::new();
        for (manager, vs) in managers.iter() {
            if Some(manager) == workflow {
                continue;
            }
            let contested = vs.set.intersection(&changed);
            if !contested.is_empty() {
                conflicts.push((manager.clone(), contested));
            }
        }
        if !force && !conflicts.is_empty() {
            return Err(conflicts_from(&conflicts));
        }
        for (manager, contested) in &conflicts {
            if let Some(vs) = managers.get_mut(manager) {
                vs.replace_set(vs.set.difference(contested));
            }
        }
        if !comparison.removed.is_empty() {
            for (manager, vs) in managers.iter_mut() {
                if Some(manager) != workflow {
                    vs.replace_set(vs.set.difference(&comparison.removed));
                }
            }
        }
        managers.retain(|_, vs| !vs.set.is_empty());
        Ok((comparison, changed))
    }

    /// A non-apply write from `old` to `new`: takes the fields it changed
    /// or added away from every manager in `managers`, and the fields it
    /// removed; returns both (changed or added, removed), ignored fields
    /// left out. `metadata.managedFields` of either side is not looked at.
    pub(crate) fn update(
        &self,
        old: &Value,
        new: &Value,
        managers: &mut Managers,
    ) -> (FieldSet, FieldSet) {
        match self.take_ownership(old, new, managers, None, true) {
            Ok((c, changed)) => (changed, c.removed),
            // Forced: never conflicts.
            Err(_) => (FieldSet::new(), FieldSet::new()),
        }
    }

    /// Applies `config` to `live` for `manager`: the merged object (None if
    /// it equals `live`) and the managers' new sets.
    pub(crate) fn apply(
        &self,
        live: &Value,
        config: &Value,
        api_version: &str,
        managers: &mut Managers,
        manager: &ManagerKey,
        force: bool,
    ) -> Result<Option<Value>, Conflicts> {
        let mut merged = merge(Some(live), Some(config), self.root).unwrap_or_else(|| live.clone());
        strip_nulls(&mut merged);
        let last = managers.get(manager).map(|vs| vs.set.clone());
        let set = to_field_set(config, self.root).recursive_difference(self.ignored);
        managers.insert(
            manager.clone(),
            VersionedSet::new(set, api_version.to_owned(), true),
        );
        if let Some(last) = last.filter(|l| !l.is_empty()) {
            merged = self.prune(&merged, managers, &last);
        }
        self.take_ownership(live, &merged, managers, Some(manager), force)?;
        Ok((merged != *live).then_some(merged))
    }

    /// Removes what the applier applied last time, no longer applies, and
    /// nobody else owns.
    fn prune(&self, merged: &Value, managers: &Managers, last: &FieldSet) -> Value {
        let ensure = |s: &FieldSet| ensure_named_fields_are_members(s, self.root);
        let fields_of = |v: &Value| ensure(&to_field_set(v, self.root));
        let remove = |v: &Value, s: &FieldSet| {
            remove_items(v, s, self.root).unwrap_or_else(|| Value::Object(Default::default()))
        };

        let pruned = remove(merged, &ensure(last));

        // Add back what anyone (the applier's new configuration included) owns.
        let owned = managers
            .values()
            .fold(FieldSet::new(), |acc, vs| acc.union(&vs.set));
        let merged_set = fields_of(merged);
        let pruned = remove(
            merged,
            &merged_set.difference(&fields_of(&pruned).union(&ensure(&owned))),
        );

        // Only what the applier owned last time may go; the rest comes back.
        let gone = merged_set
            .difference(&fields_of(&pruned))
            .intersection(&ensure(last));
        remove(merged, &gone)
    }
}

fn conflicts_from(by_manager: &[(ManagerKey, FieldSet)]) -> Conflicts {
    let mut sorted: Vec<&(ManagerKey, FieldSet)> = by_manager.iter().collect();
    sorted.sort_by_key(|a| a.0.identifier());
    Conflicts(
        sorted
            .into_iter()
            .flat_map(|(manager, set)| {
                set.paths().into_iter().map(move |path| Conflict {
                    manager: manager.clone(),
                    path,
                })
            })
            .collect(),
    )
}

/// Drops `null` members of objects: applying `field: null` unsets it, as
/// decoding into a typed object does in Kubernetes.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}
