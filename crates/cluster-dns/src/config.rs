//! Configuration of the cluster DNS.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{Error, Metrics};

/// Configuration of the cluster DNS server and its index.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Addresses to serve on, each over UDP and TCP. Port 0 picks a free port, the same
    /// one for UDP and TCP. Default `0.0.0.0:53`.
    pub listen: Vec<SocketAddr>,
    /// The cluster domain. Default `cluster.local`.
    pub domain: String,
    /// TTL of every answer, and the SOA minimum that resolvers use as negative-caching
    /// TTL, in seconds. Default 5 (CoreDNS's default).
    pub ttl: u32,
    /// Where questions outside the cluster domain (and unknown reverse names) go.
    /// `None`: they are answered SERVFAIL, as CoreDNS's stock Corefile does without
    /// its `forward` line. Default: the `nameserver`s of `/etc/resolv.conf` (when it
    /// names none but this server, forwarding is off).
    pub upstream: Option<Upstream>,
    /// How long one upstream server may take before the next is tried. Default 2 s.
    pub upstream_timeout: Duration,
    /// Addresses published as `ns.dns.<domain>` and in the apex NS answer: the
    /// `kube-system/kube-dns` Service IP(s). Default none (NS answers are then empty).
    pub nameservers: Vec<IpAddr>,
    /// How long an idle TCP connection is kept. Default 10 s.
    pub tcp_idle_timeout: Duration,
    /// Where the server counts responses and latencies; keep a clone to read them.
    pub metrics: Metrics,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 53)],
            domain: "cluster.local".to_string(),
            ttl: 5,
            upstream: Some(Upstream::ResolvConf(PathBuf::from("/etc/resolv.conf"))),
            upstream_timeout: Duration::from_secs(2),
            nameservers: Vec::new(),
            tcp_idle_timeout: Duration::from_secs(10),
            metrics: Metrics::default(),
        }
    }
}

/// Upstream servers for names outside the cluster domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The `nameserver` lines of this resolv.conf (port 53), read when the server starts.
    ResolvConf(PathBuf),
    /// These servers, tried in order.
    Servers(Vec<SocketAddr>),
}

impl Upstream {
    /// Parses a `--cluster-dns-upstream` value: `none` (no forwarding), a path to a
    /// resolv.conf (starts with `/`), or a comma-separated list of `IP`, `IP:PORT` or
    /// `[IPv6]:PORT` (port 53 when absent).
    pub fn parse_flag(value: &str) -> Result<Option<Upstream>, Error> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        if value.starts_with('/') {
            return Ok(Some(Upstream::ResolvConf(PathBuf::from(value))));
        }
        let invalid = || Error::InvalidUpstream {
            value: value.to_string(),
        };
        let mut servers = Vec::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let addr = match part.parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => SocketAddr::new(part.parse::<IpAddr>().map_err(|_| invalid())?, 53),
            };
            servers.push(addr);
        }
        if servers.is_empty() {
            return Err(invalid());
        }
        Ok(Some(Upstream::Servers(servers)))
    }

    /// The servers to forward to, without any that would loop back to this server
    /// (`ours`: its listen addresses and published nameserver IPs on port 53).
    pub(crate) fn servers(&self, ours: &[SocketAddr]) -> Result<Vec<SocketAddr>, Error> {
        let all = match self {
            Upstream::Servers(servers) => servers.clone(),
            Upstream::ResolvConf(path) => read_resolv_conf(path)?,
        };
        let kept: Vec<SocketAddr> = all.into_iter().filter(|s| !ours.contains(s)).collect();
        if kept.is_empty() {
            return match self {
                Upstream::ResolvConf(path) => Err(Error::ResolvConfEmpty { path: path.clone() }),
                Upstream::Servers(_) => Err(Error::InvalidUpstream {
                    value: "(only this server's own addresses)".to_string(),
                }),
            };
        }
        Ok(kept)
    }
}

/// The `nameserver` addresses of a resolv.conf, port 53.
fn read_resolv_conf(path: &Path) -> Result<Vec<SocketAddr>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ResolvConfUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_resolv_conf(&text))
}

/// The `nameserver` lines of resolv.conf text (IPv6 zone suffixes are dropped).
pub(crate) fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            let addr = words.next()?;
            let addr = addr.split('%').next().unwrap_or(addr);
            addr.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_are_read_on_port_53() {
        let text = "# generated\nsearch example.com\nnameserver 192.0.2.1\nnameserver fe80::1%eth0 # comment\n;nameserver 192.0.2.9\noptions ndots:2\nnameserver bogus\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "192.0.2.1:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn upstream_flag_accepts_none_paths_and_addresses() {
        assert_eq!(Upstream::parse_flag("none").unwrap(), None);
        assert_eq!(
            Upstream::parse_flag("/run/resolv.conf").unwrap(),
            Some(Upstream::ResolvConf("/run/resolv.conf".into()))
        );
        assert_eq!(
            Upstream::parse_flag("192.0.2.1, 192.0.2.2:5353,[2001:db8::1]:54").unwrap(),
            Some(Upstream::Servers(vec![
                "192.0.2.1:53".parse().unwrap(),
                "192.0.2.2:5353".parse().unwrap(),
                "[2001:db8::1]:54".parse().unwrap(),
            ]))
        );
        assert!(Upstream::parse_flag("dns.example").is_err());
        assert!(Upstream::parse_flag("").is_err());
    }

    #[test]
    fn upstreams_pointing_at_this_server_are_dropped() {
        let ours: Vec<SocketAddr> = vec!["10.43.0.10:53".parse().unwrap()];
        let upstream = Upstream::Servers(vec![
            "10.43.0.10:53".parse().unwrap(),
            "192.0.2.1:53".parse().unwrap(),
        ]);
        assert_eq!(
            upstream.servers(&ours).unwrap(),
            vec!["192.0.2.1:53".parse::<SocketAddr>().unwrap()]
        );
        let only_ours = Upstream::Servers(ours.clone());
        assert!(only_ours.servers(&ours).is_err());
    }
}
