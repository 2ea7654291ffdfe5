//! Sets of field paths, the unit of ownership (structured-merge-diff's
//! `fieldpath.Set`): a path is in the set when its last element is a member
//! at its level; parents are not implied.

use std::collections::{BTreeMap, BTreeSet};

use crate::path::{FieldPath, PathElement};

/// A set of field paths, stored as a tree: `members` are the elements that
/// end a path at this level, `children` the subsets below an element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of the given paths.
    pub fn from_paths<I: IntoIterator<Item = FieldPath>>(paths: I) -> Self {
        let mut s = Self::new();
        for p in paths {
            s.insert(&p.0);
        }
        s
    }

    /// Adds a path (its parents are not added). The empty path is ignored:
    /// nobody owns the whole object.
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut node = self;
        for pe in parents {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.members.insert(last.clone());
    }

    /// Whether the path is a member.
    pub fn has(&self, path: &[PathElement]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut node = self;
        for pe in parents {
            match node.children.get(pe) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.members.contains(last)
    }

    /// Whether no path is a member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    /// Number of member paths.
    pub fn len(&self) -> usize {
        self.members.len() + self.children.values().map(FieldSet::len).sum::<usize>()
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_in_place(other);
        out
    }

    fn union_in_place(&mut self, other: &FieldSet) {
        self.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            match self.children.get_mut(pe) {
                Some(mine) => mine.union_in_place(child),
                None => {
                    if !child.is_empty() {
                        self.children.insert(pe.clone(), child.clone());
                    }
                }
            }
        }
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    children.insert(pe.clone(), both);
                }
            }
        }
        FieldSet { members, children }
    }

    /// Paths in `self` but not in `other`. A member of `other` does not remove
    /// the paths below it (`parent - child = parent`, `child - parent = child`
    /// unless the child itself is in `other`).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        FieldSet { members, children }
    }

    /// Like [`FieldSet::difference`], but a member of `other` also removes
    /// every path below it.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            let rest = match other.children.get(pe) {
                Some(theirs) => child.recursive_difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        FieldSet { members, children }
    }

    /// The paths below `pe`, without the `pe` prefix.
    pub fn with_prefix(&self, pe: &PathElement) -> FieldSet {
        self.children.get(pe).cloned().unwrap_or_default()
    }

    /// Borrowed subset below `pe`, if any.
    pub(crate) fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    /// Whether `pe` is a member at this level.
    pub(crate) fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = &PathElement> {
        self.members.iter()
    }

    pub(crate) fn children(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.children.iter()
    }

    pub(crate) fn insert_member(&mut self, pe: PathElement) {
        self.members.insert(pe);
    }

    pub(crate) fn insert_child(&mut self, pe: PathElement, child: FieldSet) {
        if !child.is_empty() {
            self.children.insert(pe, child);
        }
    }

    /// The set in `FieldsV1` form (see [`crate::fieldsv1`]).
    pub fn to_fields_v1(&self) -> serde_json::Value {
        crate::fieldsv1::encode(self)
    }

    /// Reads a set from its `FieldsV1` form.
    pub fn from_fields_v1(
        fields: &serde_json::Value,
    ) -> Result<FieldSet, crate::fieldsv1::FieldsV1Error> {
        crate::fieldsv1::decode(fields)
    }

    /// Every member path, members of a level before the levels below it
    /// (the order structured-merge-diff iterates in).
    pub fn paths(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<FieldPath>) {
        for m in &self.members {
            let mut p = prefix.clone();
            p.push(m.clone());
            out.push(FieldPath(p));
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(paths: &[&[&str]]) -> FieldSet {
        FieldSet::from_paths(paths.iter().map(|p| FieldPath::fields(p.iter().copied())))
    }

    #[test]
    fn insert_does_not_add_parents() {
        let s = set(&[&["spec", "replicas"]]);
        assert!(s.has(&FieldPath::fields(["spec", "replicas"]).0));
        assert!(!s.has(&FieldPath::fields(["spec"]).0));
        assert_eq!(s.len(), 1);
        assert!(FieldSet::from_paths([FieldPath::default()]).is_empty());
    }

    #[test]
    fn set_operations_follow_structured_merge_diff() {
        let a = set(&[&["a"], &["a", "b"], &["c", "d"]]);
        let b = set(&[&["a"], &["c"], &["e"]]);
        assert_eq!(
            a.union(&b),
            set(&[&["a"], &["a", "b"], &["c"], &["c", "d"], &["e"]])
        );
        assert_eq!(a.intersection(&b), set(&[&["a"]]));
        // parent - child = parent; child - parent = child.
        assert_eq!(a.difference(&b), set(&[&["a", "b"], &["c", "d"]]));
        // Recursive difference removes the whole subtree of a member.
        assert_eq!(a.recursive_difference(&b), FieldSet::new());
        assert_eq!(
            a.difference(&set(&[&["a", "b"]])),
            set(&[&["a"], &["c", "d"]])
        );
    }

    #[test]
    fn paths_list_members_before_children() {
        let s = set(&[&["spec", "replicas"], &["kind"], &["spec", "template", "x"]]);
        let printed: Vec<String> = s.paths().iter().map(|p| p.to_string()).collect();
        assert_eq!(printed, [".kind", ".spec.replicas", ".spec.template.x"]);
        assert_eq!(s.with_prefix(&PathElement::field("spec")).len(), 2);
    }
}
