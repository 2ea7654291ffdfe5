//! Skiff's service proxy, kube-proxy's role with an nftables and an iptables backend.
//!
//! It owns the node's service rules. [`ServiceState`] holds Services and
//! EndpointSlices and recomputes only the Services that changed; each backend
//! ([`Dataplane`]) renders only those and writes the difference in one atomic call.
//! iptables: [`desired`] turns Services and EndpointSlices into the complete contents
//! of our chains (a pure function, kube-proxy's layout: services, SVC/SVL/EXT per
//! service port, SEP per endpoint, nodeports, mark-masq, postrouting; REJECT in the
//! filter table for services without endpoints), and [`Backend`] applies them with
//! `iptables-restore --noflush`, touching nothing but chains named with the
//! instance's prefix and its own jump rules ("hooks") in the built-in chains.
//! nftables: [`NftBackend`] keeps one table of our own (verdict maps from service
//! address to a chain that picks an endpoint from a map) and writes it with `nft -f`.
//! [`run`] keeps the rules in step with the API through watches.
//!
//! Layout: `config` what an instance is told; `model` Services and EndpointSlices as
//! service ports with categorized endpoints; `desired` the rules; `names` chain
//! names; `ruleset` the rules' representation; `iptables` the backend, cleanup and
//! leftovers; `nft` the nftables backend; `state` the incremental cluster view;
//! `dataplane` the backend trait and mode; `conntrack` UDP flow cleanup; `exec` how
//! programs run (optionally inside a network namespace);
//! `metrics` sync figures; `run` the watch-driven loop; `load_balancer` the
//! LoadBalancer status writer.

mod cache;
mod config;
mod conntrack;
mod dataplane;
mod desired;
mod error;
mod exec;
mod iptables;
mod load_balancer;
mod metrics;
mod model;
mod names;
mod nft;
mod ruleset;
mod run;
mod state;

pub use config::{Ipv4Cidr, MAX_PREFIX_LEN, NodeView, ProxyConfig, validate_prefix};
pub use dataplane::{Dataplane, IptablesDataplane, ProxyMode};
pub use desired::{desired, desired_from};
pub use error::Error;
pub use exec::{Commands, Exec};
pub use iptables::{
    Backend, RuleCounts, SyncReport, cleanup, cleanup_with, leftovers, leftovers_with,
};
pub use load_balancer::run_load_balancer_status;
pub use metrics::{Metrics, MetricsSnapshot};
pub use nft::{NftBackend, nft_table};
pub use ruleset::{Hook, Ruleset, TableKind};
pub use run::run;
pub use state::ServiceState;
