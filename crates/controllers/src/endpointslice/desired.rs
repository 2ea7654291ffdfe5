//! What EndpointSlices a Service should have and how to get there from the slices
//! that exist: endpoints grouped by their resolved port set, at most
//! [`MAX_ENDPOINTS`] per slice, existing slices of the same port set reused in name
//! order, a placeholder slice when there are no endpoints (Kubernetes'
//! `pkg/controller/endpointslice/reconciler.go`, simplified churn minimisation).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::endpoints::pods;

/// Endpoints per slice, as kube-controller-manager's `--max-endpoints-per-slice` default.
pub(crate) const MAX_ENDPOINTS: usize = 100;
/// The `endpointslice.kubernetes.io/managed-by` value of this controller.
pub(crate) const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Label naming the Service of a slice.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller managing a slice.
pub(crate) const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

type PortKey = Vec<(String, i32, String, Option<String>)>;

/// Writes that bring the slices of a Service to what it should have.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan {
    /// Slices to create (named by `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Existing slices with new content (resourceVersion kept).
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut k: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone(),
            )
        })
        .collect();
    k.sort();
    k
}

fn ports_of(key: &PortKey) -> Vec<EndpointPort> {
    key.iter()
        .map(|(name, port, protocol, app)| EndpointPort {
            name: Some(name.clone()),
            port: Some(*port),
            protocol: Some(protocol.clone()),
            app_protocol: app.clone(),
        })
        .collect()
}

/// The endpoints of `svc`'s pods grouped by resolved port set.
pub(crate) fn endpoint_groups(
    svc: &Service,
    selected: &[&Pod],
) -> BTreeMap<PortKey, Vec<Endpoint>> {
    let publish = pods::publish_not_ready(svc);
    let svc_ports: &[k8s_openapi::api::core::v1::ServicePort] = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let mut groups: BTreeMap<PortKey, Vec<Endpoint>> = BTreeMap::new();
    for pod in selected {
        if !pods::should_be_in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = pods::ip(pod) else { continue };
        if ip.contains(':') {
            // IPv6 slices are not written yet.
            continue;
        }
        let mut key: PortKey = Vec::new();
        for sp in svc_ports {
            if let Some(n) = pods::find_port(pod, sp) {
                key.push((
                    sp.name.clone().unwrap_or_default(),
                    n,
                    sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    sp.app_protocol.clone(),
                ));
            }
        }
        if key.is_empty() && !svc_ports.is_empty() {
            continue;
        }
        key.sort();
        let serving = publish || pods::is_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ready = publish || (serving && !terminating);
        groups.entry(key).or_default().push(Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: pods::hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pods::target_ref(pod)),
            ..Default::default()
        });
    }
    for eps in groups.values_mut() {
        eps.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    }
    groups
}

/// Labels every slice of `svc` carries.
pub(crate) fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l = svc.metadata.labels.clone().unwrap_or_default();
    l.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    l.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if pods::is_headless(svc) {
        l.insert("service.kubernetes.io/headless".into(), String::new());
    } else {
        l.remove("service.kubernetes.io/headless");
    }
    l
}

fn new_slice(svc: &Service, key: &PortKey, endpoints: Vec<Endpoint>) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels(svc)),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name,
                uid: svc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(ports_of(key)),
    }
}

/// The plan from `existing` slices (managed by this controller for `svc`) to the
/// slices `svc` should have for `selected` pods.
pub(crate) fn plan(svc: &Service, selected: &[&Pod], existing: &[&EndpointSlice]) -> Plan {
    let mut groups = endpoint_groups(svc, selected);
    if groups.is_empty() {
        // A placeholder slice, so that consumers see the Service has no endpoints.
        groups.insert(Vec::new(), Vec::new());
    }
    let mut by_key: BTreeMap<PortKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for s in existing {
        if s.address_type != "IPv4" {
            continue;
        }
        by_key
            .entry(port_key(s.ports.as_deref().unwrap_or_default()))
            .or_default()
            .push(s);
    }
    for v in by_key.values_mut() {
        v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }
    let want_labels = labels(svc);
    let mut plan = Plan::default();
    for (key, endpoints) in groups {
        let chunks: Vec<Vec<Endpoint>> = if endpoints.is_empty() {
            vec![Vec::new()]
        } else {
            endpoints
                .chunks(MAX_ENDPOINTS)
                .map(<[Endpoint]>::to_vec)
                .collect()
        };
        let mut olds = by_key.remove(&key).unwrap_or_default().into_iter();
        for chunk in chunks {
            match olds.next() {
                Some(old) => {
                    let same_labels = old.metadata.labels.as_ref() == Some(&want_labels);
                    if old.endpoints != chunk || !same_labels {
                        let mut s = old.clone();
                        s.endpoints = chunk;
                        s.metadata.labels = Some(want_labels.clone());
                        plan.update.push(s);
                    }
                }
                None => plan.create.push(new_slice(svc, &key, chunk)),
            }
        }
        plan.delete
            .extend(olds.filter_map(|s| s.metadata.name.clone()));
    }
    plan.delete.extend(
        by_key
            .into_values()
            .flatten()
            .filter_map(|s| s.metadata.name.clone()),
    );
    // Other address types are never written here.
    plan.delete.extend(
        existing
            .iter()
            .filter(|s| s.address_type != "IPv4")
            .filter_map(|s| s.metadata.name.clone()),
    );
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::pods::tests::{pod, service};
    use serde_json::json;

    #[test]
    fn a_service_without_pods_gets_one_empty_placeholder_slice() {
        let svc = service(json!([{"name": "web", "port": 80}]));
        let p = plan(&svc, &[], &[]);
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].endpoints.is_empty());
        assert_eq!(
            p.create[0].metadata.labels.as_ref().expect("labels")[SERVICE_NAME_LABEL],
            "web"
        );
    }

    #[test]
    fn endpoints_carry_ready_serving_and_terminating_conditions() {
        let svc = service(json!([{"name": "web", "port": 80, "targetPort": "http"}]));
        let a = pod("a", Some("10.42.0.2"), true);
        let b = pod("b", Some("10.42.0.3"), false);
        let p = plan(&svc, &[&a, &b], &[]);
        assert_eq!(p.create.len(), 1);
        let s = &p.create[0];
        assert_eq!(s.ports.as_ref().expect("ports")[0].port, Some(8080));
        let c: Vec<_> = s
            .endpoints
            .iter()
            .map(|e| e.conditions.clone().expect("c").ready)
            .collect();
        assert_eq!(c, vec![Some(true), Some(false)]);
    }

    #[test]
    fn more_than_a_hundred_endpoints_are_split_and_unchanged_slices_kept() {
        let svc = service(json!([{"port": 80}]));
        let pods: Vec<Pod> = (0..150)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    Some(&format!("10.42.{}.{}", i / 200, i % 200 + 1)),
                    true,
                )
            })
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let p = plan(&svc, &refs, &[]);
        assert_eq!(p.create.len(), 2);
        let mut existing = p.create.clone();
        existing[0].metadata.name = Some("web-a".into());
        existing[1].metadata.name = Some("web-b".into());
        let olds: Vec<&EndpointSlice> = existing.iter().collect();
        assert_eq!(plan(&svc, &refs, &olds), Plan::default());
        let fewer: Vec<&Pod> = refs[..50].to_vec();
        let p = plan(&svc, &fewer, &olds);
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.delete, vec!["web-b".to_string()]);
    }
}
