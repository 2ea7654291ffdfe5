//! Chain names: kube-proxy's layout under a per-instance prefix. Top-level chains are
//! `<prefix>SERVICES`, `<prefix>NODEPORTS`, ...; per service port and endpoint chains
//! carry kube-proxy's hash (`<prefix>SVC-<16 base32 chars of sha256>`), so a chain
//! name fits iptables' 28 characters for every valid prefix.

use sha2::{Digest, Sha256};

/// The length of the hash part of per-service chain names (kube-proxy's).
const HASH_LEN: usize = 16;

/// The names of one instance's chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn top(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// nat and filter: the services chain.
    pub(crate) fn services(&self) -> String {
        self.top("SERVICES")
    }
    /// nat: NodePorts.
    pub(crate) fn nodeports(&self) -> String {
        self.top("NODEPORTS")
    }
    /// nat: marks packets for SNAT.
    pub(crate) fn mark_masq(&self) -> String {
        self.top("MARK-MASQ")
    }
    /// nat: SNATs marked packets.
    pub(crate) fn postrouting(&self) -> String {
        self.top("POSTROUTING")
    }
    /// filter: rejects for external addresses and NodePorts.
    pub(crate) fn external_services(&self) -> String {
        self.top("EXTERNAL-SERVICES")
    }
    /// filter: accepts forwarded service traffic.
    pub(crate) fn forward(&self) -> String {
        self.top("FORWARD")
    }
    /// filter: the localnet protection when NodePorts answer on 127.0.0.1.
    pub(crate) fn firewall(&self) -> String {
        self.top("FIREWALL")
    }

    /// nat: the Cluster-policy chain of a service port.
    pub(crate) fn svc(&self, port_name: &str, protocol: &str) -> String {
        format!("{}SVC-{}", self.prefix, hash(&[port_name, protocol]))
    }
    /// nat: the Local-policy chain of a service port.
    pub(crate) fn svl(&self, port_name: &str, protocol: &str) -> String {
        format!("{}SVL-{}", self.prefix, hash(&[port_name, protocol]))
    }
    /// nat: the external-traffic chain of a service port.
    pub(crate) fn ext(&self, port_name: &str, protocol: &str) -> String {
        format!("{}EXT-{}", self.prefix, hash(&[port_name, protocol]))
    }
    /// nat: the chain of one endpoint (`ip:port`) of a service port.
    pub(crate) fn sep(&self, port_name: &str, protocol: &str, endpoint: &str) -> String {
        format!(
            "{}SEP-{}",
            self.prefix,
            hash(&[port_name, protocol, endpoint])
        )
    }

    /// Whether `chain` belongs to this instance.
    pub(crate) fn owns(&self, chain: &str) -> bool {
        chain.starts_with(&self.prefix)
    }
}

/// kube-proxy's chain hash: sha256 of the concatenation, base32 (RFC 4648), first 16
/// characters.
pub(crate) fn hash(parts: &[&str]) -> String {
    let mut sha = Sha256::new();
    for part in parts {
        sha.update(part.as_bytes());
    }
    let digest = sha.finalize();
    base32_prefix(&digest, HASH_LEN)
}

/// The first `len` characters of the standard base32 encoding of `bytes`.
fn base32_prefix(bytes: &[u8], len: usize) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(len);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
            if out.len() == len {
                return out;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc_4648() {
        // RFC 4648 test vector: "foobar" -> "MZXW6YTBOI======".
        assert_eq!(base32_prefix(b"foobar", 9), "MZXW6YTBO");
    }

    #[test]
    fn service_chains_hash_like_kube_proxy() {
        // kube-proxy names `ns1/svc1:p80` over TCP `KUBE-SVC-XPGD46QRK7WJZT7O` (its
        // unit tests), and the endpoint 10.180.0.1:80 `KUBE-SEP-SXIVWICOYRO3J4NJ`.
        let names = Names::new("KUBE-");
        assert_eq!(
            names.svc("ns1/svc1:p80", "tcp"),
            "KUBE-SVC-XPGD46QRK7WJZT7O"
        );
        assert_eq!(
            names.sep("ns1/svc1:p80", "tcp", "10.180.0.1:80"),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
    }

    #[test]
    fn every_chain_name_fits_28_characters_for_the_longest_prefix() {
        let names = Names::new("ABCDEFG-");
        let all = [
            names.services(),
            names.nodeports(),
            names.mark_masq(),
            names.postrouting(),
            names.external_services(),
            names.forward(),
            names.firewall(),
            names.svc("a/b:c", "tcp"),
            names.svl("a/b:c", "tcp"),
            names.ext("a/b:c", "tcp"),
            names.sep("a/b:c", "tcp", "10.0.0.1:80"),
        ];
        for name in all {
            assert!(name.len() <= 28, "{name} is {} characters", name.len());
        }
    }
}
