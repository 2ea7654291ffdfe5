//! The Endpoints subsets a Service should have, packed like Kubernetes'
//! `endpoints.RepackSubsets`: addresses that share the same set of ports form one
//! subset; ready pods go to `addresses`, others to `notReadyAddresses`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Pod, Service};

use super::pods;

/// A port as it appears in a subset, ordered for grouping.
type PortKey = (String, i32, String, Option<String>);

/// The subsets for `svc` from the pods it selects (in any order).
pub(crate) fn desired(svc: &Service, selected: &[&Pod]) -> Vec<EndpointSubset> {
    let tolerate_unready = pods::publish_not_ready(svc);
    let ports: &[k8s_openapi::api::core::v1::ServicePort] = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    // address identity -> (address, ready, ports)
    let mut addrs: BTreeMap<(String, String), (EndpointAddress, bool, Vec<PortKey>)> =
        BTreeMap::new();
    for pod in selected {
        if !pods::should_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(ip) = pods::ip(pod) else { continue };
        let address = EndpointAddress {
            ip: ip.to_string(),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pods::target_ref(pod)),
            hostname: pods::hostname(pod, svc),
        };
        let ready = tolerate_unready || pods::is_ready(pod);
        let key = (ip.to_string(), pod.metadata.uid.clone().unwrap_or_default());
        let mut port_keys = Vec::new();
        if ports.is_empty() && pods::is_headless(svc) {
            // Headless without ports: addresses only.
        } else {
            for sp in ports {
                let Some(n) = pods::find_port(pod, sp) else {
                    tracing::debug!(pod = ?pod.metadata.name, port = ?sp.name, "pod has no such port");
                    continue;
                };
                port_keys.push((
                    sp.name.clone().unwrap_or_default(),
                    n,
                    sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    sp.app_protocol.clone(),
                ));
            }
            if port_keys.is_empty() {
                continue;
            }
        }
        port_keys.sort();
        port_keys.dedup();
        addrs.insert(key, (address, ready, port_keys));
    }
    let mut groups: BTreeMap<Vec<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for (_, (address, ready, ports)) in addrs {
        let g = groups.entry(ports).or_default();
        if ready {
            g.0.push(address);
        } else {
            g.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|(name, port, protocol, app_protocol)| EndpointPort {
                            name: (!name.is_empty()).then_some(name),
                            port,
                            protocol: Some(protocol),
                            app_protocol,
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::pods::tests::{pod, service};
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_and_not_ready_pods_share_a_subset_with_resolved_ports() {
        let svc = service(json!([{"name": "web", "port": 80, "targetPort": "http"}]));
        let a = pod("a", Some("10.42.0.2"), true);
        let b = pod("b", Some("10.42.0.3"), false);
        let c = pod("c", None, true);
        let subsets = desired(&svc, &[&a, &b, &c]);
        assert_eq!(subsets.len(), 1);
        let s = &subsets[0];
        assert_eq!(s.addresses.as_ref().expect("ready").len(), 1);
        assert_eq!(s.addresses.as_ref().expect("ready")[0].ip, "10.42.0.2");
        assert_eq!(
            s.not_ready_addresses.as_ref().expect("not ready")[0].ip,
            "10.42.0.3"
        );
        assert_eq!(s.ports.as_ref().expect("ports")[0].port, 8080);
    }

    #[test]
    fn publish_not_ready_addresses_makes_every_pod_ready() {
        let mut svc = service(json!([{"port": 80}]));
        svc.spec.as_mut().expect("spec").publish_not_ready_addresses = Some(true);
        let b = pod("b", Some("10.42.0.3"), false);
        let subsets = desired(&svc, &[&b]);
        assert_eq!(subsets[0].addresses.as_ref().expect("ready").len(), 1);
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn pods_lacking_a_named_port_are_left_out() {
        let svc = service(json!([{"port": 80, "targetPort": "grpc"}]));
        let a = pod("a", Some("10.42.0.2"), true);
        assert!(desired(&svc, &[&a]).is_empty());
    }
}
