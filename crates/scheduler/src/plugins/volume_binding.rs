//! VolumeBinding: a pod's PersistentVolumeClaims decide where it may run. A claim
//! bound to a PersistentVolume allows only nodes its `nodeAffinity` matches (local
//! volumes); an unbound claim of an `Immediate` class keeps the pod pending until it
//! is bound; an unbound claim of a `WaitForFirstConsumer` class is bound where the
//! pod goes: to a fitting available volume on that node, or provisioned there (the
//! scheduler names the node in the claim's `volume.kubernetes.io/selected-node`
//! annotation before it binds the pod, as kube-scheduler does).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::runtime::reflector::{ObjectRef, Store};

use super::node_affinity::selector_matches;
use crate::cache::{Cache, NodeInfo};
use crate::framework::{Code, CycleState, Plugin, Status};
use crate::pod_info::PodInfo;

/// The plugin.
pub struct VolumeBinding;

/// Reason when a bound volume's node affinity excludes the node.
pub const CONFLICT: &str = "node(s) had volume node affinity conflict";
/// Reason when no available volume fits on the node and none can be provisioned.
pub const NO_VOLUME: &str = "node(s) didn't find available persistent volumes to bind";
/// Reason when a claim of an Immediate class is still unbound.
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// The claim annotation naming the node a volume is to be provisioned on.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The claim annotation naming the provisioner asked to provision it.
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// A class whose volumes are only ever created by hand.
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

const KEY: &str = "VolumeBinding";

/// The storage objects the scheduler watches.
#[derive(Clone)]
pub struct VolumeStores {
    /// PersistentVolumeClaims.
    pub claims: Store<PersistentVolumeClaim>,
    /// PersistentVolumes.
    pub volumes: Store<PersistentVolume>,
    /// StorageClasses.
    pub classes: Store<StorageClass>,
}

/// A claim waiting for its pod's node.
#[derive(Debug, Clone)]
struct Delayed {
    claim: PersistentVolumeClaim,
    /// The class's provisioner (empty or no-provisioner: static volumes only).
    provisioner: String,
}

#[derive(Default)]
struct State {
    /// Node affinity of the bound volumes.
    bound: Vec<k8s_openapi::api::core::v1::NodeSelector>,
    delayed: Vec<Delayed>,
    /// Available volumes per class name, for delayed claims without a provisioner.
    available: BTreeMap<String, Vec<PersistentVolume>>,
}

/// What binding the pod to a node asks of the API first.
#[derive(Debug, Clone, PartialEq)]
pub enum PreBind {
    /// Annotate the claim for its provisioner to create a volume on the node.
    Provision {
        /// Namespace of the claim.
        namespace: String,
        /// The claim.
        claim: String,
        /// The node.
        node: String,
        /// The class's provisioner.
        provisioner: String,
    },
    /// Pre-bind this available volume to the claim (its `claimRef`).
    BindVolume {
        /// The volume.
        volume: String,
        /// Namespace of the claim.
        namespace: String,
        /// The claim.
        claim: String,
        /// The claim's UID.
        uid: String,
        /// The volume's resourceVersion when it was chosen: the pre-bind is
        /// refused (Conflict) when the volume changed since.
        resource_version: String,
    },
}

impl PreBind {
    /// The claim this asks about, as `(namespace, name)`.
    pub fn claim(&self) -> (&str, &str) {
        match self {
            PreBind::Provision {
                namespace, claim, ..
            }
            | PreBind::BindVolume {
                namespace, claim, ..
            } => (namespace, claim),
        }
    }
}

/// The names of the claims a pod uses (generic ephemeral volumes included).
fn claim_names(pod: &Pod) -> Vec<String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral.as_ref().map(|_| format!("{name}-{}", v.name))
            }
        })
        .collect()
}

fn quantity_bytes(q: Option<&Quantity>) -> i64 {
    q.and_then(|q| api::quantity::milli_value(&q.0))
        .map_or(0, |m| m / 1000)
}

/// Whether the available volume `pv` can hold `claim`.
fn volume_fits(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let (Some(spec), Some(want)) = (pv.spec.as_ref(), claim.spec.as_ref()) else {
        return false;
    };
    // Available, or not yet marked so by the volume controller.
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    let available = matches!(phase, None | Some("Available" | "Pending"))
        && spec.claim_ref.is_none()
        && pv.metadata.deletion_timestamp.is_none();
    let size = quantity_bytes(spec.capacity.as_ref().and_then(|c| c.get("storage")));
    let asked = quantity_bytes(
        want.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage")),
    );
    let modes = spec.access_modes.clone().unwrap_or_default();
    let modes_ok = want
        .access_modes
        .iter()
        .flatten()
        .all(|m| modes.contains(m));
    available && size >= asked && modes_ok
}

fn node_affinity(pv: &PersistentVolume) -> Option<k8s_openapi::api::core::v1::NodeSelector> {
    pv.spec.as_ref()?.node_affinity.as_ref()?.required.clone()
}

impl VolumeBinding {
    /// What must happen in the API before the pod is bound to `node`: claims to
    /// annotate for provisioning there, volumes to pre-bind. `state` is the cycle
    /// that chose the node (its PreFilter found the claims).
    pub fn pre_bind(state: &CycleState, node: &NodeInfo) -> Vec<PreBind> {
        let Some(s) = state.read::<State>(KEY) else {
            return Vec::new();
        };
        let mut taken: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for d in &s.delayed {
            let namespace = d.claim.metadata.namespace.clone().unwrap_or_default();
            let claim = d.claim.metadata.name.clone().unwrap_or_default();
            if d.provisioner.is_empty() || d.provisioner == NO_PROVISIONER {
                let class = class_of(&d.claim);
                let found = s.available.get(&class).and_then(|pvs| {
                    pvs.iter()
                        .filter(|pv| {
                            !taken.contains(pv.metadata.name.as_ref().unwrap_or(&String::new()))
                        })
                        .filter(|pv| volume_fits(pv, &d.claim))
                        .filter(|pv| {
                            node_affinity(pv)
                                .is_none_or(|a| selector_matches(&a, node.labels(), &node.name))
                        })
                        .min_by_key(|pv| {
                            quantity_bytes(
                                pv.spec
                                    .as_ref()
                                    .and_then(|s| s.capacity.as_ref())
                                    .and_then(|c| c.get("storage")),
                            )
                        })
                });
                if let Some(pv) = found {
                    let volume = pv.metadata.name.clone().unwrap_or_default();
                    taken.push(volume.clone());
                    out.push(PreBind::BindVolume {
                        volume,
                        namespace,
                        claim,
                        uid: d.claim.metadata.uid.clone().unwrap_or_default(),
                        resource_version: pv.metadata.resource_version.clone().unwrap_or_default(),
                    });
                }
            } else {
                out.push(PreBind::Provision {
                    namespace,
                    claim,
                    node: node.name.clone(),
                    provisioner: d.provisioner.clone(),
                });
            }
        }
        out
    }
}

fn class_of(claim: &PersistentVolumeClaim) -> String {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .unwrap_or_default()
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }

    fn filters(&self) -> bool {
        true
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, cache: &Cache) -> Status {
        let names = claim_names(&pod.pod);
        if names.is_empty() {
            return Status::skip();
        }
        let Some(stores) = cache.volume_stores() else {
            return Status::skip();
        };
        let ns = pod.namespace();
        let mut s = State::default();
        for name in names {
            let Some(claim) = stores.claims.get(&ObjectRef::new(&name).within(ns)) else {
                return Status::new(
                    Code::UnschedulableAndUnresolvable,
                    format!("persistentvolumeclaim \"{name}\" not found"),
                );
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return Status::new(
                    Code::UnschedulableAndUnresolvable,
                    format!("persistentvolumeclaim \"{name}\" is being deleted"),
                );
            }
            let bound_to = claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .filter(|v| !v.is_empty());
            if let Some(volume) = bound_to {
                let Some(pv) = stores.volumes.get(&ObjectRef::new(&volume)) else {
                    return Status::new(
                        Code::UnschedulableAndUnresolvable,
                        format!("persistentvolume \"{volume}\" not found"),
                    );
                };
                if let Some(a) = node_affinity(&pv) {
                    s.bound.push(a);
                }
                continue;
            }
            let class_name = class_of(&claim);
            let class = (!class_name.is_empty())
                .then(|| stores.classes.get(&ObjectRef::new(&class_name)))
                .flatten();
            let delayed = class
                .as_ref()
                .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
            if !delayed {
                return Status::new(Code::UnschedulableAndUnresolvable, UNBOUND_IMMEDIATE);
            }
            let provisioner = class.map(|c| c.provisioner.clone()).unwrap_or_default();
            if (provisioner.is_empty() || provisioner == NO_PROVISIONER)
                && !s.available.contains_key(&class_name)
            {
                let pvs = stores
                    .volumes
                    .state()
                    .into_iter()
                    .filter(|pv| {
                        pv.spec
                            .as_ref()
                            .and_then(|s| s.storage_class_name.as_deref())
                            == Some(class_name.as_str())
                    })
                    .filter(|pv| !cache.volume_assumed(pv))
                    .map(|pv| (*pv).clone())
                    .collect();
                s.available.insert(class_name.clone(), pvs);
            }
            s.delayed.push(Delayed {
                claim: (*claim).clone(),
                provisioner,
            });
        }
        state.write(KEY, s);
        Status::success()
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<State>(KEY) else {
            return Status::success();
        };
        let labels = node.labels();
        if s.bound
            .iter()
            .any(|a| !selector_matches(a, labels, &node.name))
        {
            return Status::new(Code::UnschedulableAndUnresolvable, CONFLICT);
        }
        let mut taken: Vec<&str> = Vec::new();
        for d in &s.delayed {
            if !(d.provisioner.is_empty() || d.provisioner == NO_PROVISIONER) {
                continue;
            }
            let fits = s.available.get(&class_of(&d.claim)).and_then(|pvs| {
                pvs.iter().find(|pv| {
                    let name = pv.metadata.name.as_deref().unwrap_or_default();
                    !taken.contains(&name)
                        && volume_fits(pv, &d.claim)
                        && node_affinity(pv)
                            .is_none_or(|a| selector_matches(&a, labels, &node.name))
                })
            });
            match fits {
                Some(pv) => taken.push(pv.metadata.name.as_deref().unwrap_or_default()),
                None => return Status::new(Code::UnschedulableAndUnresolvable, NO_VOLUME),
            }
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kube::runtime::reflector::{self, store::Writer};
    use kube::runtime::watcher::Event;
    use serde_json::json;

    use super::*;
    use crate::plugins::default_profile;
    use crate::schedule_one::{Framework, Nominated};

    fn store<K>(objects: Vec<serde_json::Value>) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + 'static,
    {
        let mut writer: Writer<K> = Writer::default();
        let reader = writer.as_reader();
        writer.apply_watcher_event(&Event::Init);
        for o in objects {
            writer.apply_watcher_event(&Event::InitApply(
                serde_json::from_value(o).expect("object"),
            ));
        }
        writer.apply_watcher_event(&Event::InitDone);
        let _ = reflector::store::<K>;
        reader
    }

    fn local_pv(name: &str, node: &str, class: &str, phase: &str, size: &str) -> serde_json::Value {
        json!({"metadata": {"name": name, "resourceVersion": "7"}, "spec": {
            "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": class, "local": {"path": "/x"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": phase}})
    }

    fn claim(name: &str, class: &str, volume: Option<&str>) -> serde_json::Value {
        json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")}, "spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": class,
            "resources": {"requests": {"storage": "1Gi"}}, "volumeName": volume}})
    }

    fn cluster(claims: Vec<serde_json::Value>, pvs: Vec<serde_json::Value>) -> Cache {
        let mut c = Cache::default();
        for name in ["n1", "n2"] {
            let node = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}});
            c.apply_node(Arc::new(serde_json::from_value(node).expect("node")));
        }
        c.set_volume_stores(VolumeStores {
            claims: store(claims),
            volumes: store(pvs),
            classes: store(vec![
                json!({"metadata": {"name": "local-path"}, "provisioner": "rancher.io/local-path",
                       "volumeBindingMode": "WaitForFirstConsumer"}),
                json!({"metadata": {"name": "manual"}, "provisioner": NO_PROVISIONER,
                       "volumeBindingMode": "WaitForFirstConsumer"}),
                json!({"metadata": {"name": "fast"}, "provisioner": "example.com/fast"}),
            ]),
        });
        c
    }

    fn pod_with(claim: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"},
                    "spec": {"containers": [{"name": "c"}], "volumes": [
                        {"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}))
                .expect("pod"),
            ),
            0,
        ))
    }

    fn schedule(c: &Cache, claim: &str) -> Result<String, String> {
        schedule_with_state(c, claim).map(|(node, _)| node)
    }

    fn schedule_with_state(c: &Cache, claim: &str) -> Result<(String, CycleState), String> {
        let mut fw = Framework::new(default_profile());
        fw.schedule(c, &pod_with(claim), &Nominated::new(), &mut rand::rng())
            .map(|(d, state)| (d.node, state))
            .map_err(|(e, _)| match e {
                crate::schedule_one::ScheduleError::Fit(fe) => fe.message(),
                other => format!("{other:?}"),
            })
    }

    #[test]
    fn a_bound_local_volume_pins_the_pod_to_its_node() {
        let c = cluster(
            vec![claim("data", "manual", Some("pv-n2"))],
            vec![local_pv("pv-n2", "n2", "manual", "Bound", "1Gi")],
        );
        for _ in 0..5 {
            assert_eq!(schedule(&c, "data").as_deref(), Ok("n2"));
        }
    }

    #[test]
    fn unbound_claims_wait_or_bind_where_the_pod_goes() {
        let c = cluster(
            vec![
                claim("later", "local-path", None),
                claim("now", "fast", None),
                claim("static", "manual", None),
                claim("static-too", "manual", None),
            ],
            vec![
                local_pv("small-n1", "n1", "manual", "Available", "100Mi"),
                local_pv("big-n2", "n2", "manual", "Available", "2Gi"),
            ],
        );
        let mut c = c;
        let err = schedule(&c, "now").expect_err("immediate and unbound");
        assert!(err.contains(UNBOUND_IMMEDIATE), "{err}");
        let err = schedule(&c, "missing").expect_err("no claim");
        assert!(
            err.contains("persistentvolumeclaim \"missing\" not found"),
            "{err}"
        );
        // A static volume big enough exists only on n2.
        let (chosen, state) = schedule_with_state(&c, "static").expect("schedulable");
        assert_eq!(chosen, "n2");
        let node = c.node("n2").expect("n2");
        assert_eq!(
            VolumeBinding::pre_bind(&state, node),
            vec![PreBind::BindVolume {
                volume: "big-n2".into(),
                namespace: "ns".into(),
                claim: "static".into(),
                uid: "uid-static".into(),
                resource_version: "7".into(),
            }]
        );
        // While that bind is in flight the volume is taken: another claim that
        // only it could hold finds none, until the bind fails and gives it back.
        c.assume_volume("big-n2", "7");
        let err = schedule(&c, "static-too").expect_err("the only fitting volume is taken");
        assert!(err.contains(NO_VOLUME), "{err}");
        c.forget_volume("big-n2");
        assert_eq!(schedule(&c, "static-too").as_deref(), Ok("n2"));
        // An assumption the store has already moved past takes nothing.
        c.assume_volume("big-n2", "6");
        assert_eq!(schedule(&c, "static-too").as_deref(), Ok("n2"));
        // A provisioner can make one anywhere: the claim gets the chosen node.
        let (chosen, state) = schedule_with_state(&c, "later").expect("schedulable");
        let node = c.node(&chosen).expect("node");
        assert_eq!(
            VolumeBinding::pre_bind(&state, node),
            vec![PreBind::Provision {
                namespace: "ns".into(),
                claim: "later".into(),
                node: chosen.clone(),
                provisioner: "rancher.io/local-path".into(),
            }]
        );
    }

    #[test]
    fn no_fitting_static_volume_is_reported_per_node() {
        let c = cluster(
            vec![claim("static", "manual", None)],
            vec![local_pv("small-n1", "n1", "manual", "Available", "100Mi")],
        );
        let err = schedule(&c, "static").expect_err("nothing fits");
        assert!(
            err.contains("2 node(s) didn't find available persistent volumes to bind"),
            "{err}"
        );
    }
}
