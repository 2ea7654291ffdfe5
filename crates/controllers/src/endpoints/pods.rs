//! Pure rules shared by the endpoints and endpointslice controllers: which pods a
//! Service selects, whether a pod belongs in its endpoints, and which port a Service
//! port reaches on a pod (Kubernetes' `endpointsliceutil.ShouldPodBeInEndpoints`,
//! `podutil.FindPort`).

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The Service's selector, when it has a non-empty one (services without one are
/// left to whoever manages their endpoints).
pub(crate) fn selector(svc: &Service) -> Option<&std::collections::BTreeMap<String, String>> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
}

/// Whether `pod` (in the Service's namespace) matches the Service's selector.
pub(crate) fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(sel) = selector(svc) else {
        return false;
    };
    if svc.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's primary IP, if it has one.
pub(crate) fn ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
}

/// Whether the pod is in endpoints at all: it has an IP, is not terminal (as far as
/// its restart policy lets it finish) and, unless `include_terminating`, is not
/// being deleted.
pub(crate) fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if ip(pod).is_none() {
        return false;
    }
    if !include_terminating && pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    match policy {
        "Never" => !matches!(phase, Some("Succeeded" | "Failed")),
        "OnFailure" => phase != Some("Succeeded"),
        _ => !matches!(phase, Some("Succeeded" | "Failed")),
    }
}

/// The container port a Service port reaches on `pod`: a number as is, a name looked
/// up among the pod's container ports of the same protocol.
pub(crate) fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.as_ref()?.iter().find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                        .then_some(p.container_port)
                })
            })
        }
    }
}

/// The `targetRef` pointing at the pod.
pub(crate) fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The pod's hostname in the Service's DNS subdomain, when it sets both.
pub(crate) fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_ref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()).then(|| host.clone())
}

/// Whether the Service is headless (`clusterIP: None`).
pub(crate) fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Whether the Service publishes pods that are not ready.
pub(crate) fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn pod(name: &str, ip: Option<&str>, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .expect("pod")
    }

    pub(crate) fn service(ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.5", "ports": ports}
        }))
        .expect("service")
    }

    #[test]
    fn named_target_ports_resolve_to_the_container_port() {
        let svc = service(json!([{"name": "web", "port": 80, "targetPort": "http"}]));
        let p = pod("a", Some("10.42.0.2"), true);
        let port = &svc
            .spec
            .as_ref()
            .expect("spec")
            .ports
            .as_ref()
            .expect("ports")[0];
        assert_eq!(find_port(&p, port), Some(8080));
        let missing = service(json!([{"port": 80, "targetPort": "grpc"}]));
        let port = &missing
            .spec
            .as_ref()
            .expect("spec")
            .ports
            .as_ref()
            .expect("ports")[0];
        assert_eq!(find_port(&p, port), None);
    }

    #[test]
    fn pods_without_ip_or_finished_are_not_endpoints() {
        assert!(!should_be_in_endpoints(&pod("a", None, true), false));
        let mut done = pod("a", Some("10.42.0.2"), false);
        done.status.as_mut().expect("status").phase = Some("Succeeded".into());
        assert!(!should_be_in_endpoints(&done, false));
        assert!(should_be_in_endpoints(
            &pod("a", Some("10.42.0.2"), false),
            false
        ));
    }

    #[test]
    fn selector_must_match_every_label_in_the_same_namespace() {
        let svc = service(json!([]));
        assert!(selects(&svc, &pod("a", None, true)));
        let mut other = pod("a", None, true);
        other.metadata.namespace = Some("other".into());
        assert!(!selects(&svc, &other));
    }
}
