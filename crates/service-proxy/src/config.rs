//! What a service proxy is told: its chain prefix, the node it runs on, the address
//! ranges it serves and how often it syncs.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;

use crate::Error;
use crate::metrics::Metrics;

/// The longest chain prefix: `prefix + "SVC-" + 16 hash characters` must fit the 28
/// characters iptables allows.
pub const MAX_PREFIX_LEN: usize = 8;

/// The configuration of one proxy instance.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Every chain of this instance starts with it: 1 to 7 ASCII letters or digits
    /// and a final `-` (e.g. `SKIFF-`, `SKF1a2b-`). Two instances in one network
    /// namespace must have different prefixes.
    pub prefix: String,
    /// The Node this proxy runs on: endpoints with this `nodeName` are local.
    pub node_name: String,
    /// The node's addresses NodePorts answer on. Empty: the IPv4 InternalIP and
    /// ExternalIP addresses of the Node object.
    pub node_ips: Vec<Ipv4Addr>,
    /// The Service CIDR(s): traffic to these addresses is captured by our hooks.
    /// Cluster IPs outside them are captured one by one.
    pub service_cidrs: Vec<Ipv4Cidr>,
    /// The cluster's pod CIDR: traffic to a cluster IP from outside it is
    /// masqueraded (kube-proxy's `--cluster-cidr`). `None`: no such rule.
    pub cluster_cidr: Option<Ipv4Cidr>,
    /// Masquerade all traffic to cluster IPs (kube-proxy's `--masquerade-all`).
    pub masquerade_all: bool,
    /// The firewall mark bit for "needs SNAT" (kube-proxy's `--iptables-masquerade-bit`,
    /// 0..=31, default 14, i.e. `0x4000`).
    pub masquerade_bit: u8,
    /// NodePorts also answer on 127.0.0.1; sets `net.ipv4.conf.all.route_localnet=1`
    /// and adds the localnet firewall rule.
    pub localhost_nodeports: bool,
    /// How often the rules are rewritten completely even without changes.
    pub sync_period: Duration,
    /// The shortest time between two syncs; changes within it are batched.
    pub min_sync_period: Duration,
    /// Prepended to every command the proxy runs, e.g. `["ip", "netns", "exec", "ns1"]`
    /// to program another network namespace. Empty: run on the host.
    pub command_prefix: Vec<String>,
    /// Where sync counters, durations and rule counts are recorded.
    pub metrics: Metrics,
    /// The backend: nftables (default) or iptables.
    pub mode: crate::ProxyMode,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            prefix: "SKIFF-".to_owned(),
            node_name: String::new(),
            node_ips: Vec::new(),
            service_cidrs: vec![Ipv4Cidr::new(Ipv4Addr::new(10, 43, 0, 0), 16)],
            cluster_cidr: Some(Ipv4Cidr::new(Ipv4Addr::new(10, 42, 0, 0), 16)),
            masquerade_all: false,
            masquerade_bit: 14,
            localhost_nodeports: false,
            sync_period: Duration::from_secs(30),
            min_sync_period: Duration::from_millis(100),
            command_prefix: Vec::new(),
            metrics: Metrics::default(),
            mode: crate::ProxyMode::default(),
        }
    }
}

impl ProxyConfig {
    /// Checks the prefix, the mark bit and the periods.
    pub fn validate(&self) -> Result<(), Error> {
        validate_prefix(&self.prefix)?;
        if self.masquerade_bit > 31 {
            return Err(Error::InvalidConfig(format!(
                "masquerade bit {} is not in 0..=31",
                self.masquerade_bit
            )));
        }
        if self.sync_period.is_zero() {
            return Err(Error::InvalidConfig("sync period must not be zero".into()));
        }
        Ok(())
    }

    /// The masquerade mark as iptables prints it, e.g. `0x4000`.
    pub(crate) fn mark(&self) -> String {
        format!("{:#x}", 1u32 << self.masquerade_bit.min(31))
    }
}

/// Checks that `prefix` is 1 to 7 ASCII letters or digits followed by one `-`, so
/// that no instance's chains can start with another instance's prefix.
pub fn validate_prefix(prefix: &str) -> Result<(), Error> {
    let body = prefix.strip_suffix('-').unwrap_or("");
    if body.is_empty()
        || prefix.len() > MAX_PREFIX_LEN
        || !body.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(Error::InvalidConfig(format!(
            "chain prefix {prefix:?} must be 1 to {} ASCII letters or digits followed by '-'",
            MAX_PREFIX_LEN - 1
        )));
    }
    Ok(())
}

/// An IPv4 network, `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Cidr {
    /// The network of `addr` with `len` leading bits (host bits are cleared; `len`
    /// is capped at 32).
    pub fn new(addr: Ipv4Addr, len: u8) -> Self {
        let len = len.min(32);
        Self {
            addr: Ipv4Addr::from(u32::from(addr) & Self::mask(len)),
            len,
        }
    }

    /// A single address, `/32`.
    pub fn host(addr: Ipv4Addr) -> Self {
        Self { addr, len: 32 }
    }

    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.len) == u32::from(self.addr)
    }

    /// Whether all of `other` is inside.
    pub fn covers(&self, other: &Ipv4Cidr) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidConfig(format!("{s:?} is not an IPv4 CIDR"));
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, len.parse::<u8>().map_err(|_| bad())?),
            None => (s, 32),
        };
        if len > 32 {
            return Err(bad());
        }
        Ok(Self::new(addr.parse().map_err(|_| bad())?, len))
    }
}

/// What the proxy needs to know about its own node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    /// The Node's name (endpoints with this `nodeName` are local).
    pub name: String,
    /// The addresses NodePorts answer on (127.0.0.1 is added by the proxy when
    /// `localhost_nodeports` is set).
    pub ips: Vec<Ipv4Addr>,
}

impl NodeView {
    /// The view for `config`: its `node_ips` if set, else the IPv4 InternalIP and
    /// ExternalIP addresses of `node` (when known).
    pub fn new(config: &ProxyConfig, node: Option<&Node>) -> Self {
        let mut ips = config.node_ips.clone();
        if ips.is_empty() {
            ips = node
                .and_then(|n| n.status.as_ref())
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
                .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
                .filter_map(|a| a.address.parse().ok())
                .collect();
        }
        ips.sort();
        ips.dedup();
        Self {
            name: config.node_name.clone(),
            ips,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_letters_or_digits_and_one_final_dash() {
        for good in ["SKIFF-", "SKF1a2b-", "K-", "ABCDEFG-"] {
            assert!(validate_prefix(good).is_ok(), "{good}");
        }
        for bad in ["", "-", "SKIFF", "SK-F-", "ABCDEFGH-", "SK F-", "SKÜ-"] {
            assert!(validate_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let cidr: Ipv4Cidr = "10.43.7.9/16".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.43.0.0/16");
        assert!(cidr.contains(Ipv4Addr::new(10, 43, 255, 1)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 44, 0, 1)));
        assert!(cidr.covers(&Ipv4Cidr::host(Ipv4Addr::new(10, 43, 0, 10))));
        assert_eq!(
            "1.2.3.4".parse::<Ipv4Cidr>().unwrap().to_string(),
            "1.2.3.4/32"
        );
        assert!("10.0.0.0/33".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn the_default_mark_is_kube_proxys() {
        assert_eq!(ProxyConfig::default().mark(), "0x4000");
    }
}
