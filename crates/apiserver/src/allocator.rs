//! Service cluster IPs and node ports: assigned on create, released on delete,
//! rebuilt from the stored Services at start.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use api::status::FieldError;
use rand::Rng;

/// An IPv4 CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    base: u32,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.43.0.0/16`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (want a.b.c.d/n)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (1..=30).contains(p))
            .ok_or_else(|| format!("{s:?}: prefix must be 1..30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            base: u32::from(ip) & mask,
            prefix,
        })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// The n-th address of the range.
    pub(crate) fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + n)
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        let v = u32::from(ip);
        (v >= self.base && v - self.base < self.size()).then(|| v - self.base)
    }
}

/// Assigns cluster IPs and node ports.
pub(crate) struct Allocator {
    cidr: Cidr,
    ports: (u16, u16),
    ips: Mutex<HashSet<u32>>,
    node_ports: Mutex<HashSet<u16>>,
}

impl Allocator {
    pub(crate) fn new(cidr: Cidr, ports: (u16, u16)) -> Self {
        Self {
            cidr,
            ports,
            ips: Mutex::new(HashSet::new()),
            node_ports: Mutex::new(HashSet::new()),
        }
    }

    /// Allocates a specific IP (`Some`) or a random free one (`None`); offset 1 is the
    /// `kubernetes` service's and is only handed out when asked for by address.
    pub(crate) fn allocate_ip(
        &self,
        wanted: Option<&str>,
        field: &str,
    ) -> Result<String, FieldError> {
        let mut ips = self.ips.lock().expect("allocator lock");
        if let Some(w) = wanted {
            let fail = |why: &str| {
                FieldError::invalid(
                    field,
                    format!("[{w:?}]"),
                    format!("failed to allocate IP {w}: {why}"),
                )
            };
            let ip: Ipv4Addr = w.parse().map_err(|_| {
                FieldError::invalid(
                    field,
                    w,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )
            })?;
            let off = self.cidr.offset(ip).filter(|o| *o != 0 && *o != self.cidr.size() - 1).ok_or_else(|| {
                fail(&format!("the provided IP ({w}) is not in the valid range. The range of valid IPs is {}/{}", self.cidr.nth(0), self.cidr.prefix))
            })?;
            if !ips.insert(off) {
                return Err(fail("provided IP is already allocated"));
            }
            return Ok(w.to_string());
        }
        let size = self.cidr.size();
        let usable = size.saturating_sub(3);
        if ips.len() as u32 >= usable {
            return Err(FieldError::invalid(
                field,
                "",
                "failed to allocate IP: range is full",
            ));
        }
        let mut rng = rand::rng();
        let start = rng.random_range(2..size - 1);
        for i in 0..size {
            let off = 2 + (start - 2 + i) % (size - 3);
            if ips.insert(off) {
                return Ok(self.cidr.nth(off).to_string());
            }
        }
        Err(FieldError::invalid(
            field,
            "",
            "failed to allocate IP: range is full",
        ))
    }

    /// Marks an IP as used (at start) without failing on duplicates.
    pub(crate) fn mark_ip(&self, ip: &str) {
        if let Some(off) = ip.parse().ok().and_then(|ip| self.cidr.offset(ip)) {
            self.ips.lock().expect("allocator lock").insert(off);
        }
    }

    pub(crate) fn release_ip(&self, ip: &str) {
        if let Some(off) = ip.parse().ok().and_then(|ip| self.cidr.offset(ip)) {
            self.ips.lock().expect("allocator lock").remove(&off);
        }
    }

    /// Allocates a specific node port (`Some`) or a random free one.
    pub(crate) fn allocate_port(
        &self,
        wanted: Option<u16>,
        field: &str,
    ) -> Result<u16, FieldError> {
        let mut used = self.node_ports.lock().expect("allocator lock");
        let (lo, hi) = self.ports;
        if let Some(p) = wanted {
            if p < lo || p > hi {
                return Err(FieldError::invalid(
                    field,
                    p,
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                    ),
                ));
            }
            if !used.insert(p) {
                return Err(FieldError::invalid(
                    field,
                    p,
                    "provided port is already allocated",
                ));
            }
            return Ok(p);
        }
        let n = u32::from(hi - lo) + 1;
        let start = rand::rng().random_range(0..n);
        for i in 0..n {
            let p = lo + ((start + i) % n) as u16;
            if used.insert(p) {
                return Ok(p);
            }
        }
        Err(FieldError::invalid(field, 0, "range is full"))
    }

    pub(crate) fn mark_port(&self, p: u16) {
        self.node_ports.lock().expect("allocator lock").insert(p);
    }

    pub(crate) fn release_port(&self, p: u16) {
        self.node_ports.lock().expect("allocator lock").remove(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ips_stay_inside_the_range_and_skip_the_first() {
        let a = Allocator::new(Cidr::parse("10.43.0.0/29").expect("cidr"), (30000, 30001));
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(a.allocate_ip(None, "spec.clusterIPs").expect("free"));
        }
        assert!(!got.contains(&"10.43.0.1".to_string()));
        assert!(!got.contains(&"10.43.0.0".to_string()));
        assert!(!got.contains(&"10.43.0.7".to_string()));
        assert!(
            a.allocate_ip(None, "spec.clusterIPs").is_err(),
            "range of 5 usable is full"
        );
        a.release_ip(&got[0]);
        assert_eq!(a.allocate_ip(None, "x").expect("one free again"), got[0]);
    }

    #[test]
    fn taken_or_foreign_addresses_are_refused() {
        let a = Allocator::new(Cidr::parse("10.43.0.0/16").expect("cidr"), (30000, 30001));
        a.allocate_ip(Some("10.43.0.10"), "f").expect("free");
        let e = a
            .allocate_ip(Some("10.43.0.10"), "spec.clusterIPs")
            .expect_err("taken");
        assert!(
            e.message().contains("provided IP is already allocated"),
            "{}",
            e.message()
        );
        assert!(a.allocate_ip(Some("192.168.0.1"), "f").is_err());
    }

    #[test]
    fn node_ports_honour_the_range() {
        let a = Allocator::new(Cidr::parse("10.43.0.0/16").expect("cidr"), (30000, 30001));
        assert!(a.allocate_port(Some(80), "p").is_err());
        let x = a.allocate_port(None, "p").expect("free");
        let y = a.allocate_port(None, "p").expect("free");
        assert_ne!(x, y);
        assert!(a.allocate_port(None, "p").is_err());
    }
}
