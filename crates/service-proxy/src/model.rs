//! Services and EndpointSlices as the proxy sees them: one [`ServicePort`] per port of
//! a proxied Service, with its endpoints sorted into kube-proxy's categories.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Services with this label belong to another proxy.
const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// kube-proxy's default ClientIP affinity timeout (3 hours).
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// A transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(value: Option<&str>) -> Option<Self> {
        match value.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// The name for `-p` and `-m`.
    pub(crate) fn lower(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// One endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) ip: Ipv4Addr,
    pub(crate) port: u16,
    pub(crate) ready: bool,
    pub(crate) serving: bool,
    pub(crate) terminating: bool,
    pub(crate) local: bool,
}

impl Endpoint {
    /// `ip:port`.
    pub(crate) fn address(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    fn serving_terminating(&self) -> bool {
        self.serving && self.terminating
    }
}

/// A port of a Service the proxy writes rules for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServicePort {
    /// `namespace/name:port` (or `namespace/name` for an unnamed port).
    pub(crate) name: String,
    pub(crate) protocol: Protocol,
    pub(crate) cluster_ip: Ipv4Addr,
    pub(crate) port: u16,
    pub(crate) node_port: Option<u16>,
    pub(crate) external_ips: Vec<Ipv4Addr>,
    pub(crate) load_balancer_ips: Vec<Ipv4Addr>,
    /// ClientIP session affinity timeout, when affinity is on.
    pub(crate) affinity_timeout: Option<u32>,
    pub(crate) internal_local: bool,
    /// externalTrafficPolicy Local (only when externally accessible).
    pub(crate) external_local: bool,
    pub(crate) endpoints: Vec<Endpoint>,
}

/// The endpoints a service port's rules use (kube-proxy's `CategorizeEndpoints`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Categorized {
    /// For Cluster policy: ready endpoints, else serving-and-terminating ones.
    pub(crate) cluster: Vec<Endpoint>,
    /// For Local policy: local ready endpoints, else local serving-and-terminating.
    pub(crate) local: Vec<Endpoint>,
    /// Every endpoint some rule may send to (each gets a SEP chain).
    pub(crate) reachable: Vec<Endpoint>,
    /// Whether the service has usable endpoints anywhere in the cluster.
    pub(crate) has_any: bool,
}

impl ServicePort {
    /// Reachable by NodePort, external IP or load-balancer IP.
    pub(crate) fn externally_accessible(&self) -> bool {
        self.node_port.is_some()
            || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }

    /// Cluster endpoints are needed for Cluster internal policy, and for any
    /// external traffic (short-circuiting pod and node traffic under Local).
    pub(crate) fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_local || self.externally_accessible()
    }

    pub(crate) fn uses_local_endpoints(&self) -> bool {
        self.internal_local || self.external_local
    }

    pub(crate) fn categorize(&self) -> Categorized {
        let mut out = Categorized::default();
        if self.uses_cluster_endpoints() {
            out.cluster = self.endpoints.iter().filter(|e| e.ready).cloned().collect();
            if out.cluster.is_empty() {
                out.cluster = self
                    .endpoints
                    .iter()
                    .filter(|e| e.serving_terminating())
                    .cloned()
                    .collect();
            }
            out.has_any = !out.cluster.is_empty();
        }
        if !self.uses_local_endpoints() {
            out.reachable = out.cluster.clone();
            return out;
        }
        let mut local_ready = false;
        let mut local_terminating = false;
        for e in &self.endpoints {
            if e.ready {
                out.has_any = true;
                local_ready |= e.local;
            } else if e.serving_terminating() {
                out.has_any = true;
                local_terminating |= e.local;
            }
        }
        if local_ready {
            out.local = self
                .endpoints
                .iter()
                .filter(|e| e.local && e.ready)
                .cloned()
                .collect();
        } else if local_terminating {
            out.local = self
                .endpoints
                .iter()
                .filter(|e| e.local && e.serving_terminating())
                .cloned()
                .collect();
        }
        if !self.uses_cluster_endpoints() {
            out.reachable = out.local.clone();
            return out;
        }
        let mut reachable = out.cluster.clone();
        for e in &out.local {
            if !reachable.iter().any(|r| r.ip == e.ip && r.port == e.port) {
                reachable.push(e.clone());
            }
        }
        reachable.sort_by_key(|e| (e.ip, e.port));
        out.reachable = reachable;
        out
    }
}

/// The service ports to proxy, with their endpoints, sorted by name and protocol.
/// Headless and ExternalName services, services of another proxy and non-IPv4
/// cluster IPs yield nothing.
pub(crate) fn service_ports<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    node_name: &str,
) -> Vec<ServicePort> {
    // EndpointSlices by (namespace, service name).
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        if let Some(key) = slice_service(slice) {
            by_service.entry(key).or_default().push(slice);
        }
    }

    let mut ports = Vec::new();
    for service in services {
        let key = service
            .metadata
            .namespace
            .as_deref()
            .zip(service.metadata.name.as_deref());
        let slices = key
            .and_then(|k| by_service.get(&k))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        ports.extend(ports_of(service, slices, node_name));
    }
    ports.sort_by(|a, b| (&a.name, a.protocol).cmp(&(&b.name, b.protocol)));
    ports
}

/// The Service (namespace, name) an IPv4 EndpointSlice belongs to; `None` for other
/// slices.
pub(crate) fn slice_service(slice: &EndpointSlice) -> Option<(&str, &str)> {
    if slice.address_type != "IPv4" {
        return None;
    }
    let namespace = slice.metadata.namespace.as_deref()?;
    let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((namespace, service.as_str()))
}

/// The service ports of one Service with its endpoints from `slices` (the Service's
/// own EndpointSlices), sorted by name and protocol; empty for Services the proxy
/// does not handle.
pub(crate) fn ports_of(
    service: &Service,
    slices: &[&EndpointSlice],
    node_name: &str,
) -> Vec<ServicePort> {
    let (Some(namespace), Some(name)) = (
        service.metadata.namespace.as_deref(),
        service.metadata.name.as_deref(),
    ) else {
        return Vec::new();
    };
    if service
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL))
    {
        return Vec::new();
    }
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    if type_ == "ExternalName" {
        return Vec::new();
    }
    let cluster_ip = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .find_map(|ip| ip.parse::<Ipv4Addr>().ok());
    let Some(cluster_ip) = cluster_ip else {
        // Headless ("None"), unallocated or IPv6-only.
        return Vec::new();
    };
    let external_ips: Vec<Ipv4Addr> = sorted(
        spec.external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok()),
    );
    let load_balancer_ips: Vec<Ipv4Addr> = if type_ == "LoadBalancer" {
        sorted(
            service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
                .filter_map(|i| i.ip.as_deref()?.parse().ok()),
        )
    } else {
        Vec::new()
    };
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let mut ports = Vec::new();
    let wants_external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    for port in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
            continue;
        };
        let Ok(port_number) = u16::try_from(port.port) else {
            continue;
        };
        let port_name = port.name.clone().unwrap_or_default();
        let node_port = match type_ {
            "NodePort" | "LoadBalancer" => port
                .node_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0),
            _ => None,
        };
        let mut service_port = ServicePort {
            name: if port_name.is_empty() {
                format!("{namespace}/{name}")
            } else {
                format!("{namespace}/{name}:{port_name}")
            },
            protocol,
            cluster_ip,
            port: port_number,
            node_port,
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            affinity_timeout,
            internal_local,
            external_local: false,
            endpoints: endpoints(slices, &port_name, protocol, node_name),
        };
        service_port.external_local = wants_external_local && service_port.externally_accessible();
        ports.push(service_port);
    }
    ports.sort_by(|a, b| (&a.name, a.protocol).cmp(&(&b.name, b.protocol)));
    ports
}

fn sorted<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut items: Vec<T> = items.collect();
    items.sort();
    items.dedup();
    items
}

/// The endpoints of the port named `port_name` over `protocol` in `slices`, one per
/// `ip:port` (a ready copy wins over a not-ready one), sorted by address.
fn endpoints(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Protocol,
    node_name: &str,
) -> Vec<Endpoint> {
    let mut found: BTreeMap<(Ipv4Addr, u16), Endpoint> = BTreeMap::new();
    for slice in slices {
        let port = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        });
        let Some(port) = port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let Some(ip) = endpoint
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let candidate = Endpoint {
                ip,
                port,
                ready,
                serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
                terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
                local: !node_name.is_empty() && endpoint.node_name.as_deref() == Some(node_name),
            };
            match found.get(&(ip, port)) {
                Some(existing) if existing.ready || !candidate.ready => {}
                _ => {
                    found.insert((ip, port), candidate);
                }
            }
        }
    }
    found.into_values().collect()
}
