//! IPv4 CIDR arithmetic for node IPAM: the cluster CIDR split into equal node blocks.

use std::net::Ipv4Addr;

/// An IPv4 cluster CIDR split into blocks of one prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocks {
    base: u32,
    prefix: u8,
    block_prefix: u8,
}

impl Blocks {
    /// Splits `cidr` (e.g. `10.42.0.0/16`) into `/block_prefix` blocks.
    pub(crate) fn new(cidr: &str, block_prefix: u8) -> Result<Self, String> {
        let (ip, len) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{cidr:?} is not an IPv4 CIDR"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{cidr:?} has a bad prefix length"))?;
        if block_prefix < prefix || block_prefix > 32 {
            return Err(format!(
                "node CIDR mask size {block_prefix} does not fit cluster CIDR {cidr}"
            ));
        }
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Ok(Self {
            base: u32::from(ip) & mask,
            prefix,
            block_prefix,
        })
    }

    /// How many blocks there are.
    pub(crate) fn len(&self) -> u64 {
        1u64 << (self.block_prefix - self.prefix)
    }

    /// Block number `i` as a CIDR string.
    pub(crate) fn block(&self, i: u64) -> String {
        let size = 1u64 << (32 - self.block_prefix);
        let start = u64::from(self.base) + i * size;
        format!("{}/{}", Ipv4Addr::from(start as u32), self.block_prefix)
    }

    /// The index of `cidr` when it is one of the blocks.
    pub(crate) fn index_of(&self, cidr: &str) -> Option<u64> {
        let (ip, len) = cidr.split_once('/')?;
        if len.parse::<u8>().ok()? != self.block_prefix {
            return None;
        }
        let ip = u32::from(ip.parse::<Ipv4Addr>().ok()?);
        let offset = u64::from(ip.checked_sub(self.base)?);
        let shift = 32 - u32::from(self.block_prefix);
        let i = offset >> shift;
        // Only a block's own first address names it (`10.42.7.5/24` does not).
        (i < self.len() && offset & ((1u64 << shift) - 1) == 0).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slash_sixteen_holds_256_slash_24_blocks() {
        let b = Blocks::new("10.42.0.0/16", 24).expect("valid");
        assert_eq!(b.len(), 256);
        assert_eq!(b.block(0), "10.42.0.0/24");
        assert_eq!(b.block(255), "10.42.255.0/24");
        assert_eq!(b.index_of("10.42.7.0/24"), Some(7));
        assert_eq!(b.index_of("10.43.0.0/24"), None);
        assert_eq!(b.index_of("10.42.7.0/25"), None);
        assert_eq!(b.index_of("10.42.7.5/24"), None);
        let whole = Blocks::new("10.0.0.0/8", 32).expect("valid");
        assert_eq!(whole.index_of("10.0.1.2/32"), Some(258));
    }

    #[test]
    fn masks_smaller_than_the_cluster_cidr_are_rejected() {
        assert!(Blocks::new("10.42.0.0/16", 8).is_err());
        assert!(Blocks::new("nonsense", 24).is_err());
    }
}
