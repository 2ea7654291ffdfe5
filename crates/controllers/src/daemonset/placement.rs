//! Which nodes a DaemonSet's pod belongs on (`NodeShouldRunDaemonPod`): node
//! selector, required node affinity, and taints against the pod's tolerations,
//! including the tolerations every daemon pod gets.

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec,
    Taint, Toleration,
};
use kube::ResourceExt;

/// Whether a daemon pod should be created on a node, and whether one already there
/// may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fit {
    /// Create a pod here if there is none.
    pub should_run: bool,
    /// A pod already here may keep running.
    pub should_continue_running: bool,
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    }
}

/// Adds the tolerations every daemon pod gets (`util.AddOrUpdateDaemonPodTolerations`).
pub(crate) fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    let tols = spec.tolerations.get_or_insert_with(Vec::new);
    for w in wanted {
        tols.retain(|t| !(t.key == w.key && t.effect == w.effect));
        tols.push(w);
    }
}

/// Requires the pod to run on `node` through required node affinity
/// `matchFields metadata.name In [node]`, keeping preferred terms.
pub(crate) fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    });
}

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref()
        && !e.is_empty()
        && e != taint.effect
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// Decides whether a daemon pod with `spec` (tolerations already added) belongs on
/// `node`.
pub(crate) fn fit(spec: &PodSpec, node: &Node) -> Fit {
    let no = Fit {
        should_run: false,
        should_continue_running: false,
    };
    if let Some(n) = &spec.node_name
        && *n != node.name_any()
    {
        return no;
    }
    let labels = node.labels();
    if spec
        .node_selector
        .iter()
        .flatten()
        .any(|(k, v)| labels.get(k) != Some(v))
    {
        return no;
    }
    if let Some(sel) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        && !api::selector::node::selector_matches(sel, node.labels(), &node.name_any())
    {
        return no;
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    let mut fit = Fit {
        should_run: true,
        should_continue_running: true,
    };
    for taint in node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
    {
        if !matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute") {
            continue;
        }
        if tolerations.iter().any(|t| tolerates(t, taint)) {
            continue;
        }
        fit.should_run = false;
        if taint.effect == "NoExecute" {
            fit.should_continue_running = false;
        }
    }
    fit
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}}),
        )
        .expect("node")
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut s: PodSpec = serde_json::from_value(v).expect("spec");
        add_daemon_tolerations(&mut s);
        s
    }

    #[test]
    fn untolerated_no_schedule_taint_keeps_new_pods_off_but_lets_old_ones_stay() {
        let n = node(
            json!({}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        let f = fit(&spec(json!({"containers": []})), &n);
        assert_eq!(
            f,
            Fit {
                should_run: false,
                should_continue_running: true
            }
        );
        let tolerant = spec(
            json!({"containers": [], "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}),
        );
        assert!(fit(&tolerant, &n).should_run);
        let evicting = node(json!({}), json!([{"key": "gone", "effect": "NoExecute"}]));
        assert!(!fit(&spec(json!({"containers": []})), &evicting).should_continue_running);
    }

    #[test]
    fn daemon_pods_tolerate_not_ready_and_unschedulable_nodes() {
        let n = node(
            json!({}),
            json!([
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        );
        assert!(fit(&spec(json!({"containers": []})), &n).should_run);
    }

    #[test]
    fn node_selector_and_required_affinity_must_match() {
        let n = node(json!({"disk": "ssd", "zone": "a"}), json!([]));
        assert!(
            fit(
                &spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}})),
                &n
            )
            .should_run
        );
        assert!(
            !fit(
                &spec(json!({"containers": [], "nodeSelector": {"disk": "hdd"}})),
                &n
            )
            .should_run
        );
        let aff = |op: &str| {
            spec(
                json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": op, "values": ["a"]}]}]}}}}),
            )
        };
        assert!(fit(&aff("In"), &n).should_run);
        assert!(!fit(&aff("NotIn"), &n).should_run);
    }

    #[test]
    fn pinned_pods_name_their_node_in_match_fields() {
        let mut s = spec(json!({"containers": []}));
        pin_to_node(&mut s, "n1");
        assert!(fit(&s, &node(json!({}), json!([]))).should_run);
        let term = &s
            .affinity
            .expect("affinity")
            .node_affinity
            .expect("na")
            .required_during_scheduling_ignored_during_execution
            .expect("req")
            .node_selector_terms[0];
        let f = &term.match_fields.as_ref().expect("fields")[0];
        assert_eq!(
            (f.key.as_str(), f.operator.as_str()),
            ("metadata.name", "In")
        );
        assert_eq!(f.values.as_deref(), Some(&["n1".to_string()][..]));
    }
}
