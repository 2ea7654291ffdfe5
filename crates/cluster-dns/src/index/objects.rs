//! What the index keeps of a Service or an EndpointSlice: only what answers need.

use std::net::IpAddr;

use hickory_proto::rr::Name;
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

/// The label EndpointSlices carry naming their Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Service as the index keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceEntry {
    pub(crate) kind: ServiceKind,
    /// Never empty: a Service without ports has one port-less entry (CoreDNS's `-1`
    /// sentinel), which matches any question but yields no SRV record.
    pub(crate) ports: Vec<PortEntry>,
}

/// How a Service is answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ServiceKind {
    /// Answered with its cluster IPs (ClusterIP, NodePort, LoadBalancer). May be empty
    /// while no IP is allocated yet.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: answered with its ready endpoints.
    Headless,
    /// Answered with a CNAME; `None` when `externalName` is empty or an IP address
    /// (CoreDNS answers nothing for those, so the name does not exist).
    ExternalName(Option<Name>),
}

/// One port of a Service or an EndpointSlice.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PortEntry {
    pub(crate) name: Box<str>,
    pub(crate) protocol: Box<str>,
    /// `None` for the port-less sentinel (or a slice port without a number).
    pub(crate) port: Option<u16>,
}

impl PortEntry {
    fn sentinel() -> Self {
        Self {
            name: "".into(),
            protocol: "".into(),
            port: None,
        }
    }

    /// Whether a question's `_port._proto` labels (absent = any) select this port;
    /// names and protocols compare case-insensitively.
    pub(crate) fn matches(&self, port: Option<&str>, protocol: Option<&str>) -> bool {
        port.is_none_or(|p| p.eq_ignore_ascii_case(&self.name))
            && protocol.is_none_or(|p| p.eq_ignore_ascii_case(&self.protocol))
    }
}

/// A ready endpoint address of a slice.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EndpointEntry {
    pub(crate) ip: IpAddr,
    /// The endpoint's DNS label: its `hostname`, else its address with dashes
    /// (`10-42-0-5`, `fd00--5`), lowercase.
    pub(crate) label: Box<str>,
}

/// An EndpointSlice as the index keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SliceEntry {
    /// The Service it belongs to (its `kubernetes.io/service-name` label).
    pub(crate) service: Box<str>,
    /// Never empty (see [`ServiceEntry::ports`]).
    pub(crate) ports: Vec<PortEntry>,
    /// Ready addresses only (`ready` unset counts as ready, as the API says).
    pub(crate) endpoints: Vec<EndpointEntry>,
}

impl ServiceEntry {
    pub(crate) fn from_service(svc: &Service) -> Self {
        let spec = svc.spec.as_ref();
        let ports = spec
            .and_then(|s| s.ports.as_ref())
            .filter(|p| !p.is_empty())
            .map(|ports| {
                ports
                    .iter()
                    .map(|p| PortEntry {
                        name: p.name.as_deref().unwrap_or("").into(),
                        protocol: p.protocol.as_deref().unwrap_or("TCP").into(),
                        port: u16::try_from(p.port).ok(),
                    })
                    .collect()
            })
            .unwrap_or_else(|| vec![PortEntry::sentinel()]);
        let kind = if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            ServiceKind::ExternalName(
                spec.and_then(|s| s.external_name.as_deref())
                    .and_then(external_target),
            )
        } else {
            let ips: Vec<&str> = match spec {
                Some(s) if s.cluster_ips.as_ref().is_some_and(|ips| !ips.is_empty()) => {
                    s.cluster_ips.iter().flatten().map(String::as_str).collect()
                }
                Some(s) => s.cluster_ip.as_deref().into_iter().collect(),
                None => Vec::new(),
            };
            if ips.first() == Some(&"None") {
                ServiceKind::Headless
            } else {
                ServiceKind::ClusterIp(ips.iter().filter_map(|ip| ip.parse().ok()).collect())
            }
        };
        Self { kind, ports }
    }

    /// The cluster IPs (empty unless [`ServiceKind::ClusterIp`]).
    pub(crate) fn cluster_ips(&self) -> &[IpAddr] {
        match &self.kind {
            ServiceKind::ClusterIp(ips) => ips,
            _ => &[],
        }
    }
}

/// The CNAME target of an `externalName`: a valid DNS name that is not an IP address.
fn external_target(value: &str) -> Option<Name> {
    if value.is_empty() || value.parse::<IpAddr>().is_ok() {
        return None;
    }
    let mut name = Name::from_ascii(value).ok()?;
    name.set_fqdn(true);
    Some(name)
}

impl SliceEntry {
    /// `None` for slices the DNS ignores: without a service-name label, or of
    /// address type FQDN.
    pub(crate) fn from_slice(slice: &EndpointSlice) -> Option<Self> {
        if slice.address_type == "FQDN" {
            return None;
        }
        let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        if service.is_empty() {
            return None;
        }
        let ports = slice
            .ports
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(|ports| {
                ports
                    .iter()
                    .map(|p| PortEntry {
                        name: p.name.as_deref().unwrap_or("").into(),
                        protocol: p.protocol.as_deref().unwrap_or("").into(),
                        port: p.port.and_then(|p| u16::try_from(p).ok()),
                    })
                    .collect()
            })
            .unwrap_or_else(|| vec![PortEntry::sentinel()]);
        let mut endpoints = Vec::new();
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            for addr in &ep.addresses {
                let Ok(ip) = addr.parse::<IpAddr>() else {
                    continue;
                };
                let label = match ep.hostname.as_deref() {
                    Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
                    _ => dashed(addr),
                };
                endpoints.push(EndpointEntry {
                    ip,
                    label: label.into(),
                });
            }
        }
        Some(Self {
            service: service.to_ascii_lowercase().into(),
            ports,
            endpoints,
        })
    }
}

/// An address as a DNS label, as CoreDNS writes it: `10.42.0.5` → `10-42-0-5`,
/// `fd00::5` → `fd00--5`, `fd00::` → `fd00--0`.
fn dashed(addr: &str) -> String {
    if addr.contains('.') {
        return addr.replace('.', "-");
    }
    let mut label = addr.replace(':', "-").to_ascii_lowercase();
    if label.ends_with('-') {
        label.push('0');
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_labels_like_coredns_writes_them() {
        assert_eq!(dashed("10.42.0.5"), "10-42-0-5");
        assert_eq!(dashed("fd00::5"), "fd00--5");
        assert_eq!(dashed("FD00::"), "fd00--0");
    }

    #[test]
    fn external_names_that_are_ip_addresses_have_no_target() {
        assert_eq!(external_target("192.0.2.1"), None);
        assert_eq!(external_target(""), None);
        assert_eq!(
            external_target("db.example.com"),
            Some(Name::from_ascii("db.example.com.").unwrap())
        );
    }
}
