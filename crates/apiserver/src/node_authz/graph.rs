//! The relationship graph the Node authorizer decides from (Kubernetes'
//! `plugin/pkg/auth/authorizer/node/graph.go`). Every edge points towards the Node
//! that makes an object readable:
//!
//! ```text
//! node <- pod <- secret | configmap | pvc | serviceaccount
//!               pvc <- pv <- secret
//! node <- volumeattachment
//! ```
//!
//! An edge into a pod remembers the pod's node (a *destination*), and every vertex
//! counts its destination edges per node, so "is X related to node N" is one map
//! lookup for the objects pods use, and a short walk only through the
//! PersistentVolume edges, which know no node. Vertices that lose their last edge
//! are removed.

use std::collections::{HashMap, HashSet};

use super::refs::{PodRefs, PvRefs};

/// The kinds of objects in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Node,
    Pod,
    Secret,
    ConfigMap,
    Claim,
    Volume,
    ServiceAccount,
    VolumeAttachment,
}

type Id = u64;

#[derive(Debug)]
struct Vertex {
    kind: Kind,
    namespace: String,
    name: String,
    /// Outgoing edges: target -> the node the edge leads to, when it knows one.
    out: HashMap<Id, Option<Id>>,
    /// Sources of incoming edges.
    incoming: HashSet<Id>,
    /// How many outgoing edges lead to each node.
    destinations: HashMap<Id, u32>,
}

impl Vertex {
    fn degree(&self) -> usize {
        self.out.len() + self.incoming.len()
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Graph {
    /// kind -> namespace -> name -> vertex.
    ids: HashMap<Kind, HashMap<String, HashMap<String, Id>>>,
    vertices: HashMap<Id, Vertex>,
    next: Id,
    /// What each bound pod was added with, so that updates that change nothing the
    /// graph holds (status writes, mostly) leave it alone.
    pods: HashMap<(String, String), PodRefs>,
    /// Likewise for volumes.
    volumes: HashMap<String, PvRefs>,
    /// Likewise for volume attachments (their node).
    attachments: HashMap<String, String>,
}

impl Graph {
    fn id(&self, kind: Kind, namespace: &str, name: &str) -> Option<Id> {
        self.ids.get(&kind)?.get(namespace)?.get(name).copied()
    }

    fn vertex(&mut self, kind: Kind, namespace: &str, name: &str) -> Id {
        if let Some(id) = self.id(kind, namespace, name) {
            return id;
        }
        let id = self.next;
        self.next += 1;
        self.ids
            .entry(kind)
            .or_default()
            .entry(namespace.to_string())
            .or_default()
            .insert(name.to_string(), id);
        self.vertices.insert(
            id,
            Vertex {
                kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
                out: HashMap::new(),
                incoming: HashSet::new(),
                destinations: HashMap::new(),
            },
        );
        id
    }

    fn add_edge(&mut self, from: Id, to: Id, destination: Option<Id>) {
        let Some(f) = self.vertices.get_mut(&from) else {
            return;
        };
        if let Some(Some(old)) = f.out.insert(to, destination) {
            uncount(&mut f.destinations, old);
        }
        if let Some(d) = destination {
            *f.destinations.entry(d).or_default() += 1;
        }
        if let Some(t) = self.vertices.get_mut(&to) {
            t.incoming.insert(from);
        }
    }

    /// Removes a vertex and its edges (not its neighbours).
    fn remove(&mut self, id: Id) {
        let Some(v) = self.vertices.remove(&id) else {
            return;
        };
        for to in v.out.keys() {
            if let Some(t) = self.vertices.get_mut(to) {
                t.incoming.remove(&id);
            }
        }
        for from in &v.incoming {
            if let Some(f) = self.vertices.get_mut(from)
                && let Some(Some(d)) = f.out.remove(&id)
            {
                uncount(&mut f.destinations, d);
            }
        }
        if let Some(by_ns) = self.ids.get_mut(&v.kind)
            && let Some(names) = by_ns.get_mut(&v.namespace)
        {
            names.remove(&v.name);
            if names.is_empty() {
                by_ns.remove(&v.namespace);
            }
        }
    }

    /// Removes a vertex, and the neighbours only it was connected to.
    fn delete(&mut self, kind: Kind, namespace: &str, name: &str) {
        let Some(id) = self.id(kind, namespace, name) else {
            return;
        };
        let Some(v) = self.vertices.get(&id) else {
            return;
        };
        let orphans: Vec<Id> = v
            .out
            .keys()
            .chain(v.incoming.iter())
            .filter(|n| self.vertices.get(n).is_some_and(|n| n.degree() == 1))
            .copied()
            .collect();
        self.remove(id);
        for o in orphans {
            self.remove(o);
        }
    }

    /// Records a pod (`None`: deleted or not bound to a node).
    pub(crate) fn set_pod(&mut self, namespace: &str, name: &str, refs: Option<PodRefs>) {
        let key = (namespace.to_string(), name.to_string());
        if self.pods.get(&key) == refs.as_ref() {
            return;
        }
        self.delete(Kind::Pod, namespace, name);
        let Some(refs) = refs else {
            self.pods.remove(&key);
            return;
        };
        let pod = self.vertex(Kind::Pod, namespace, name);
        let node = self.vertex(Kind::Node, "", &refs.node);
        self.add_edge(pod, node, Some(node));
        let related = refs
            .service_account
            .iter()
            .map(|n| (Kind::ServiceAccount, n))
            .chain(refs.secrets.iter().map(|n| (Kind::Secret, n)))
            .chain(refs.config_maps.iter().map(|n| (Kind::ConfigMap, n)))
            .chain(refs.claims.iter().map(|n| (Kind::Claim, n)));
        let related: Vec<(Kind, &String)> = related.collect();
        for (kind, object) in related {
            let from = self.vertex(kind, namespace, object);
            self.add_edge(from, pod, Some(node));
        }
        self.pods.insert(key, refs);
    }

    /// Records a PersistentVolume (`None`: deleted). Only a bound volume has edges:
    /// to its claim, and from the secrets it is mounted with.
    pub(crate) fn set_volume(&mut self, name: &str, refs: Option<PvRefs>) {
        if self.volumes.get(name) == refs.as_ref() {
            return;
        }
        self.delete(Kind::Volume, "", name);
        let Some(refs) = refs else {
            self.volumes.remove(name);
            return;
        };
        if let Some((ns, claim)) = &refs.claim {
            let pv = self.vertex(Kind::Volume, "", name);
            let claim = self.vertex(Kind::Claim, ns, claim);
            // The claim's pods (and so its nodes) are not known here.
            self.add_edge(pv, claim, None);
            for (ns, secret) in &refs.secrets {
                let s = self.vertex(Kind::Secret, ns, secret);
                self.add_edge(s, pv, None);
            }
        }
        self.volumes.insert(name.to_string(), refs);
    }

    /// Records a VolumeAttachment and the node it attaches to (`None`: deleted).
    pub(crate) fn set_attachment(&mut self, name: &str, node: Option<String>) {
        let node = node.filter(|n| !n.is_empty());
        if self.attachments.get(name) == node.as_ref() {
            return;
        }
        self.delete(Kind::VolumeAttachment, "", name);
        let Some(node) = node else {
            self.attachments.remove(name);
            return;
        };
        let va = self.vertex(Kind::VolumeAttachment, "", name);
        let n = self.vertex(Kind::Node, "", &node);
        self.add_edge(va, n, Some(n));
        self.attachments.insert(name.to_string(), node);
    }

    /// Whether a path leads from the object to `node` (`hasPathFrom`).
    pub(crate) fn has_path(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        let (Some(node), Some(start)) = (
            self.id(Kind::Node, "", node),
            self.id(kind, namespace, name),
        ) else {
            return false;
        };
        let mut seen = HashSet::from([start]);
        let mut todo = vec![start];
        while let Some(id) = todo.pop() {
            if id == node {
                return true;
            }
            let Some(v) = self.vertices.get(&id) else {
                continue;
            };
            if v.destinations.contains_key(&node) {
                return true;
            }
            // Edges that know their node lead to another one (else the count above
            // had it); only the others may still lead to ours.
            for (to, destination) in &v.out {
                if destination.is_none() && seen.insert(*to) {
                    todo.push(*to);
                }
            }
        }
        false
    }

    /// How many vertices the graph holds (for tests and logs).
    pub(crate) fn len(&self) -> usize {
        self.vertices.len()
    }
}

fn uncount(counts: &mut HashMap<Id, u32>, node: Id) {
    if let Some(c) = counts.get_mut(&node) {
        *c -= 1;
        if *c == 0 {
            counts.remove(&node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: &str, secrets: &[&str], config_maps: &[&str], claims: &[&str]) -> PodRefs {
        let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        PodRefs {
            node: node.into(),
            service_account: Some("default".into()),
            secrets: set(secrets),
            config_maps: set(config_maps),
            claims: set(claims),
        }
    }

    fn volume(claim: (&str, &str), secrets: &[(&str, &str)]) -> PvRefs {
        PvRefs {
            claim: Some((claim.0.into(), claim.1.into())),
            secrets: secrets
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    #[test]
    fn objects_a_pod_uses_are_related_to_its_node_only() {
        let mut g = Graph::default();
        g.set_pod("ns", "web", Some(pod("a", &["s"], &["cm"], &["data"])));
        assert!(g.has_path("a", Kind::Secret, "ns", "s"));
        assert!(g.has_path("a", Kind::ConfigMap, "ns", "cm"));
        assert!(g.has_path("a", Kind::Claim, "ns", "data"));
        assert!(g.has_path("a", Kind::ServiceAccount, "ns", "default"));
        assert!(g.has_path("a", Kind::Pod, "ns", "web"));
        // Not from another node, another namespace, or another kind of the same name.
        assert!(!g.has_path("b", Kind::Secret, "ns", "s"));
        assert!(!g.has_path("a", Kind::Secret, "other", "s"));
        assert!(!g.has_path("a", Kind::ConfigMap, "ns", "s"));
    }

    #[test]
    fn deleting_the_last_pod_removes_the_access_and_every_vertex() {
        let mut g = Graph::default();
        g.set_pod("ns", "one", Some(pod("a", &["shared"], &[], &[])));
        g.set_pod("ns", "two", Some(pod("a", &["shared", "own"], &[], &[])));
        g.set_pod("ns", "one", None);
        assert!(g.has_path("a", Kind::Secret, "ns", "shared"));
        g.set_pod("ns", "two", None);
        assert!(!g.has_path("a", Kind::Secret, "ns", "shared"));
        assert!(!g.has_path("a", Kind::Secret, "ns", "own"));
        assert_eq!(g.len(), 0, "{g:?}");
    }

    #[test]
    fn a_pod_moving_its_references_moves_the_access() {
        let mut g = Graph::default();
        g.set_pod("ns", "p", Some(pod("a", &["old"], &[], &[])));
        g.set_pod("ns", "p", Some(pod("a", &["new"], &[], &[])));
        assert!(!g.has_path("a", Kind::Secret, "ns", "old"));
        assert!(g.has_path("a", Kind::Secret, "ns", "new"));
        // The same object on two nodes is readable from both, then from the one left.
        g.set_pod("ns", "q", Some(pod("b", &["new"], &[], &[])));
        assert!(g.has_path("b", Kind::Secret, "ns", "new"));
        g.set_pod("ns", "p", None);
        assert!(!g.has_path("a", Kind::Secret, "ns", "new"));
        assert!(g.has_path("b", Kind::Secret, "ns", "new"));
    }

    #[test]
    fn a_bound_volume_and_its_secrets_follow_the_claim_to_the_pods_node() {
        let mut g = Graph::default();
        g.set_volume(
            "pv1",
            Some(volume(("ns", "data"), &[("ns", "mount-secret")])),
        );
        // No pod uses the claim yet.
        assert!(!g.has_path("a", Kind::Volume, "", "pv1"));
        g.set_pod("ns", "db", Some(pod("a", &[], &[], &["data"])));
        assert!(g.has_path("a", Kind::Volume, "", "pv1"));
        assert!(g.has_path("a", Kind::Secret, "ns", "mount-secret"));
        assert!(!g.has_path("b", Kind::Volume, "", "pv1"));
        // Unbinding the volume (no claimRef) ends it; the claim stays the pod's.
        g.set_volume("pv1", Some(PvRefs::default()));
        assert!(!g.has_path("a", Kind::Volume, "", "pv1"));
        assert!(!g.has_path("a", Kind::Secret, "ns", "mount-secret"));
        assert!(g.has_path("a", Kind::Claim, "ns", "data"));
        g.set_pod("ns", "db", None);
        g.set_volume("pv1", None);
        assert_eq!(g.len(), 0, "{g:?}");
    }

    #[test]
    fn a_volume_attachment_is_related_to_its_node() {
        let mut g = Graph::default();
        g.set_attachment("va", Some("a".into()));
        assert!(g.has_path("a", Kind::VolumeAttachment, "", "va"));
        assert!(!g.has_path("b", Kind::VolumeAttachment, "", "va"));
        g.set_attachment("va", Some("b".into()));
        assert!(!g.has_path("a", Kind::VolumeAttachment, "", "va"));
        assert!(g.has_path("b", Kind::VolumeAttachment, "", "va"));
        g.set_attachment("va", None);
        assert_eq!(g.len(), 0);
    }

    #[test]
    fn a_configmap_used_by_thousands_of_pods_is_one_lookup_per_node() {
        let mut g = Graph::default();
        for i in 0..5_000 {
            let node = format!("n{}", i % 50);
            g.set_pod(
                "ns",
                &format!("p{i}"),
                Some(pod(&node, &[], &["kube-root-ca.crt"], &[])),
            );
        }
        assert!(g.has_path("n49", Kind::ConfigMap, "ns", "kube-root-ca.crt"));
        assert!(!g.has_path("n50", Kind::ConfigMap, "ns", "kube-root-ca.crt"));
        for i in 0..5_000 {
            if i % 50 == 7 {
                g.set_pod("ns", &format!("p{i}"), None);
            }
        }
        assert!(!g.has_path("n7", Kind::ConfigMap, "ns", "kube-root-ca.crt"));
        assert!(g.has_path("n8", Kind::ConfigMap, "ns", "kube-root-ca.crt"));
    }
}
