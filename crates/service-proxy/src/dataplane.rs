//! The trait both backends implement, and the choice between them.

use std::fmt;
use std::str::FromStr;

use crate::state::ServiceState;
use crate::{Backend, Error, NftBackend, NodeView, ProxyConfig, SyncReport, desired_from};

/// Which kernel interface the proxy programs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyMode {
    /// Chains in the iptables nat and filter tables (kube-proxy's iptables mode).
    Iptables,
    /// One nftables table of our own with verdict maps (kube-proxy's nftables mode,
    /// in our own layout); much faster with many Services.
    #[default]
    Nftables,
}

impl fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyMode::Iptables => "iptables",
            ProxyMode::Nftables => "nftables",
        })
    }
}

impl FromStr for ProxyMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "iptables" => Ok(ProxyMode::Iptables),
            "nftables" => Ok(ProxyMode::Nftables),
            other => Err(Error::InvalidConfig(format!(
                "proxy mode {other:?}: want iptables or nftables"
            ))),
        }
    }
}

/// Makes the kernel hold the rules for the Services of a [`ServiceState`].
pub trait Dataplane: Send {
    /// Syncs the rules for `state` on `node`: what changed since the last success,
    /// or everything when `full`.
    fn sync(
        &mut self,
        state: &mut ServiceState,
        node: &NodeView,
        full: bool,
    ) -> Result<SyncReport, Error>;
}

/// The iptables backend with the configuration it computes rules for.
#[derive(Debug)]
pub struct IptablesDataplane {
    backend: Backend,
    config: ProxyConfig,
}

impl IptablesDataplane {
    /// The iptables dataplane of `config`, running commands through `backend`.
    pub fn new(backend: Backend, config: &ProxyConfig) -> Self {
        Self {
            backend,
            config: config.clone(),
        }
    }
}

impl Dataplane for IptablesDataplane {
    fn sync(
        &mut self,
        state: &mut ServiceState,
        node: &NodeView,
        full: bool,
    ) -> Result<SyncReport, Error> {
        let ruleset = desired_from(state, node, &self.config);
        self.backend.apply_owned(ruleset, full)
    }
}

impl Dataplane for NftBackend {
    fn sync(
        &mut self,
        state: &mut ServiceState,
        node: &NodeView,
        full: bool,
    ) -> Result<SyncReport, Error> {
        self.apply(state, node, full)
    }
}
