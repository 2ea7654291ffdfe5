//! The owner -> dependents graph built from metadata watches of every resource
//! (Kubernetes' `pkg/controller/garbagecollector/graph_builder.go`). Applying a watch
//! event returns the uids whose state may need action.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// Finalizer asking the collector to orphan the dependents first.
pub(crate) const ORPHAN: &str = "orphan";
/// Finalizer asking the collector to delete the dependents first.
pub(crate) const FOREGROUND: &str = "foregroundDeletion";

/// One object as the collector sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// `group/plural` of its resource.
    pub resource: String,
    /// Its namespace, if namespaced.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Its resourceVersion when last seen.
    pub resource_version: Option<String>,
    /// Its owners.
    pub owners: Vec<OwnerReference>,
    /// Its finalizers.
    pub finalizers: Vec<String>,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
}

impl Node {
    /// A node from an object's metadata, `None` without name or uid.
    pub(crate) fn from_meta(resource: &str, m: &ObjectMeta) -> Option<Self> {
        Some(Self {
            resource: resource.to_string(),
            namespace: m.namespace.clone(),
            name: m.name.clone()?,
            uid: m.uid.clone()?,
            resource_version: m.resource_version.clone(),
            owners: m.owner_references.clone().unwrap_or_default(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
        })
    }

    fn has(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted and waiting for its dependents to go first.
    pub(crate) fn deleting_dependents(&self) -> bool {
        self.deleting && self.has(FOREGROUND)
    }

    /// Being deleted and waiting for its dependents to be orphaned.
    pub(crate) fn orphaning(&self) -> bool {
        self.deleting && self.has(ORPHAN)
    }

    fn needs_attention(&self) -> bool {
        !self.owners.is_empty() || self.deleting_dependents() || self.orphaning()
    }
}

/// Objects by uid and dependents by owner uid.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// The object with `uid`.
    pub(crate) fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The objects naming `uid` as an owner.
    pub(crate) fn dependents(&self, uid: &str) -> Vec<&Node> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
            .collect()
    }

    /// Uids of the objects with an owner of `group`/`kind`.
    pub(crate) fn with_owner_kind(&self, group: &str, kind: &str) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| {
                n.owners.iter().any(|o| {
                    o.kind == kind && o.api_version.rsplit_once('/').map_or("", |(g, _)| g) == group
                })
            })
            .map(|n| n.uid.clone())
            .collect()
    }

    /// Uids of the objects of `resource`.
    pub(crate) fn uids_of(&self, resource: &str) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.resource == resource)
            .map(|n| n.uid.clone())
            .collect()
    }

    fn waiting_owners(&self, node: &Node) -> Vec<String> {
        node.owners
            .iter()
            .filter(|o| {
                self.nodes
                    .get(&o.uid)
                    .is_some_and(Node::deleting_dependents)
            })
            .map(|o| o.uid.clone())
            .collect()
    }

    /// Adds or updates an object; returns uids to look at.
    pub(crate) fn upsert(&mut self, node: Node) -> Vec<String> {
        let mut out = Vec::new();
        let old = self.nodes.remove(&node.uid);
        if let Some(old) = &old {
            for o in &old.owners {
                if let Some(d) = self.dependents.get_mut(&o.uid) {
                    d.remove(&old.uid);
                }
            }
            out.extend(self.waiting_owners(old));
        }
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(node.uid.clone());
        }
        out.extend(self.waiting_owners(&node));
        if node.needs_attention() && old.as_ref() != Some(&node) {
            out.push(node.uid.clone());
        }
        // An owner that starts deleting its dependents or orphaning them: look at it,
        // and (foreground) at each dependent.
        if node.deleting_dependents() && !old.as_ref().is_some_and(Node::deleting_dependents) {
            out.extend(
                self.dependents
                    .get(&node.uid)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        self.nodes.insert(node.uid.clone(), node);
        out
    }

    /// Removes an object; returns uids to look at (its dependents, waiting owners).
    pub(crate) fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(old) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        for o in &old.owners {
            if let Some(d) = self.dependents.get_mut(&o.uid) {
                d.remove(uid);
                if d.is_empty() && !self.nodes.contains_key(&o.uid) {
                    self.dependents.remove(&o.uid);
                }
            }
        }
        let mut out = self.waiting_owners(&old);
        out.extend(self.dependents.get(uid).into_iter().flatten().cloned());
        if self.dependents.get(uid).is_some_and(HashSet::is_empty) {
            self.dependents.remove(uid);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(uid: &str, owners: &[&str]) -> Node {
        Node {
            resource: "/configmaps".into(),
            namespace: Some("ns".into()),
            name: uid.into(),
            uid: uid.into(),
            resource_version: None,
            owners: owners
                .iter()
                .map(|o| OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: (*o).into(),
                    uid: (*o).into(),
                    block_owner_deletion: Some(true),
                    controller: None,
                })
                .collect(),
            finalizers: Vec::new(),
            deleting: false,
        }
    }

    #[test]
    fn deleting_an_owner_points_at_its_dependents() {
        let mut g = Graph::default();
        assert!(g.upsert(node("owner", &[])).is_empty());
        assert_eq!(g.upsert(node("dep", &["owner"])), vec!["dep".to_string()]);
        assert_eq!(g.dependents("owner").len(), 1);
        assert_eq!(g.remove("owner"), vec!["dep".to_string()]);
    }

    #[test]
    fn dependents_are_found_by_their_owners_kind() {
        let mut g = Graph::default();
        let mut dep = node("dep", &["owner"]);
        dep.owners[0].api_version = "stable.example.com/v1".into();
        dep.owners[0].kind = "CronTab".into();
        g.upsert(dep);
        g.upsert(node("other", &["x"]));
        assert_eq!(
            g.with_owner_kind("stable.example.com", "CronTab"),
            vec!["dep".to_string()]
        );
        assert_eq!(
            g.with_owner_kind("", "ConfigMap"),
            vec!["other".to_string()]
        );
        assert!(g.with_owner_kind("other.example.com", "CronTab").is_empty());
    }

    #[test]
    fn a_foreground_owner_is_looked_at_when_a_dependent_goes() {
        let mut g = Graph::default();
        g.upsert(node("dep", &["owner"]));
        let mut owner = node("owner", &[]);
        owner.deleting = true;
        owner.finalizers = vec![FOREGROUND.into()];
        let out = g.upsert(owner);
        assert!(out.contains(&"owner".to_string()));
        assert!(out.contains(&"dep".to_string()));
        assert_eq!(g.remove("dep"), vec!["owner".to_string()]);
        assert!(g.dependents("owner").is_empty());
    }
}
