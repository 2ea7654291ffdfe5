//! The built-in service load balancer's status writer (k3s's klipper-lb role, without
//! its pods): every `LoadBalancer` Service without a `loadBalancerClass` gets the
//! addresses of the Ready nodes (ExternalIP, else InternalIP) as
//! `status.loadBalancer.ingress`, so `kubectl get svc` shows an EXTERNAL-IP. The
//! proxies then treat those IPs like external IPs. Run it once per cluster.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use tokio::sync::{Notify, watch};

use crate::Error;
use crate::cache::{Cache, stopped};

/// How often statuses are rechecked without changes (and after a failed write).
const RESYNC: Duration = Duration::from_secs(30);

/// Keeps `status.loadBalancer.ingress` of LoadBalancer Services equal to the Ready
/// nodes' addresses, until `shutdown` turns true.
pub async fn run_load_balancer_status(
    client: kube::Client,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let changed = Arc::new(Notify::new());
    let services: Cache<Service> = Cache::start(
        Api::all(client.clone()),
        watcher::Config::default(),
        changed.clone(),
    );
    let nodes: Cache<Node> = Cache::start(
        Api::all(client.clone()),
        watcher::Config::default(),
        changed.clone(),
    );
    tokio::select! {
        _ = stopped(&mut shutdown) => return Ok(()),
        _ = async { services.synced().await; nodes.synced().await } => {}
    }
    loop {
        let nodes_now = nodes.state();
        let want = ingress_ips(nodes_now.iter().map(AsRef::as_ref));
        for service in services.state() {
            if let Err(e) = reconcile(&client, &service, &want).await {
                tracing::warn!(error = %e, "cannot set a load balancer status");
            }
        }
        tokio::select! {
            _ = stopped(&mut shutdown) => return Ok(()),
            _ = changed.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// The ingress IPs for this cluster: each Ready node's IPv4 ExternalIP, else its
/// InternalIP, sorted.
pub(crate) fn ingress_ips<'a>(nodes: impl Iterator<Item = &'a Node>) -> Vec<Ipv4Addr> {
    let mut ips = BTreeSet::new();
    for node in nodes {
        let Some(status) = node.status.as_ref() else {
            continue;
        };
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if !ready {
            continue;
        }
        let addresses = status.addresses.iter().flatten();
        let pick = |kind: &str| {
            addresses
                .clone()
                .filter(|a| a.type_ == kind)
                .find_map(|a| a.address.parse::<Ipv4Addr>().ok())
        };
        if let Some(ip) = pick("ExternalIP").or_else(|| pick("InternalIP")) {
            ips.insert(ip);
        }
    }
    ips.into_iter().collect()
}

/// The merge patch that sets `service`'s ingress to `want`, or `None` when it is
/// not ours or already right.
pub(crate) fn status_patch(service: &Service, want: &[Ipv4Addr]) -> Option<serde_json::Value> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() != Some("LoadBalancer") || spec.load_balancer_class.is_some() {
        return None;
    }
    let have: Vec<Ipv4Addr> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if have == want {
        return None;
    }
    let ingress = if want.is_empty() {
        serde_json::Value::Null
    } else {
        want.iter()
            .map(|ip| serde_json::json!({ "ip": ip.to_string(), "ipMode": "VIP" }))
            .collect()
    };
    Some(serde_json::json!({ "status": { "loadBalancer": { "ingress": ingress } } }))
}

async fn reconcile(
    client: &kube::Client,
    service: &Service,
    want: &[Ipv4Addr],
) -> Result<(), Error> {
    let Some(patch) = status_patch(service, want) else {
        return Ok(());
    };
    let (Some(namespace), Some(name)) = (
        service.metadata.namespace.as_deref(),
        service.metadata.name.as_deref(),
    ) else {
        return Ok(());
    };
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Api {
            what: format!("setting the load balancer status of service {namespace}/{name}"),
            source,
        })?;
    tracing::info!(service = %format!("{namespace}/{name}"), ingress = ?want, "load balancer ingress set");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeCondition, NodeStatus, ServiceSpec};

    fn node(ready: bool, addresses: &[(&str, &str)]) -> Node {
        Node {
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(t, a)| NodeAddress {
                            type_: (*t).into(),
                            address: (*a).into(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_nodes_give_their_external_else_internal_ip() {
        let nodes = [
            node(
                true,
                &[("InternalIP", "10.0.0.2"), ("ExternalIP", "192.0.2.7")],
            ),
            node(true, &[("InternalIP", "10.0.0.3"), ("Hostname", "b")]),
            node(false, &[("InternalIP", "10.0.0.4")]),
        ];
        assert_eq!(
            ingress_ips(nodes.iter()),
            [
                "10.0.0.3".parse::<Ipv4Addr>().unwrap(),
                "192.0.2.7".parse().unwrap()
            ]
        );
    }

    #[test]
    fn only_load_balancers_without_a_class_are_patched_and_only_when_wrong() {
        let want = ["10.0.0.2".parse::<Ipv4Addr>().unwrap()];
        let mut service = Service {
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let patch = status_patch(&service, &want).expect("a patch");
        assert_eq!(
            patch,
            serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.2", "ipMode": "VIP"}]}}})
        );
        let applied: Service = serde_json::from_value(patch).unwrap();
        service.status = applied.status;
        assert_eq!(status_patch(&service, &want), None);

        service.spec.as_mut().unwrap().load_balancer_class = Some("example.com/lb".into());
        service.status = None;
        assert_eq!(status_patch(&service, &want), None);
        service.spec.as_mut().unwrap().load_balancer_class = None;
        service.spec.as_mut().unwrap().type_ = Some("NodePort".into());
        assert_eq!(status_patch(&service, &want), None);
    }
}
