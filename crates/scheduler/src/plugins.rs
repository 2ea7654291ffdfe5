//! The in-tree plugins (pkg/scheduler/framework/plugins), one file each, and the
//! name -> plugin registry with Kubernetes' default score weights.

pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;

use crate::framework::Plugin;

/// A plugin with its score weight.
pub struct Enabled {
    /// The plugin.
    pub plugin: Box<dyn Plugin>,
    /// Weight of its normalized score.
    pub weight: i64,
}

/// Builds a plugin by its Kubernetes name.
pub fn new(name: &str) -> Option<Box<dyn Plugin>> {
    let p: Box<dyn Plugin> = match name {
        "NodeUnschedulable" => Box::new(node_unschedulable::NodeUnschedulable),
        "NodeName" => Box::new(node_name::NodeName),
        "TaintToleration" => Box::new(taint_toleration::TaintToleration),
        "NodeAffinity" => Box::new(node_affinity::NodeAffinity),
        "NodePorts" => Box::new(node_ports::NodePorts),
        "NodeResourcesFit" => Box::new(node_resources_fit::NodeResourcesFit),
        "NodeResourcesBalancedAllocation" => Box::new(node_resources_fit::BalancedAllocation),
        "ImageLocality" => Box::new(image_locality::ImageLocality),
        "InterPodAffinity" => Box::new(inter_pod_affinity::InterPodAffinity),
        "PodTopologySpread" => Box::new(pod_topology_spread::PodTopologySpread),
        "VolumeBinding" => Box::new(volume_binding::VolumeBinding),
        _ => return None,
    };
    Some(p)
}

/// The default profile: plugins in Kubernetes' order with its score weights.
pub fn default_profile() -> Vec<Enabled> {
    [
        ("NodeUnschedulable", 0),
        ("NodeName", 0),
        ("TaintToleration", 3),
        ("NodeAffinity", 2),
        ("NodePorts", 0),
        ("NodeResourcesFit", 1),
        ("VolumeBinding", 0),
        ("PodTopologySpread", 2),
        ("InterPodAffinity", 2),
        ("NodeResourcesBalancedAllocation", 1),
        ("ImageLocality", 1),
    ]
    .into_iter()
    .map(|(name, weight)| Enabled {
        plugin: new(name).expect("registered plugin"),
        weight,
    })
    .collect()
}
