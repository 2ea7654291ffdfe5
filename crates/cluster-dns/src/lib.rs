//! Skiff's cluster DNS (CoreDNS's `kubernetes` plugin role), built on `hickory-server`.
//!
//! - [`Index`]: the pure core. Services, EndpointSlices (`discovery.k8s.io/v1`) and
//!   Namespaces are applied to it one watch event at a time (hash maps keyed by name and
//!   by IP; no rebuild per event, no scan per query), and [`Index::answer`] answers one
//!   question without any IO: A/AAAA for ClusterIP and headless services,
//!   `<hostname>.<service>.<ns>.svc.<domain>` for endpoints, SRV for named ports, PTR for
//!   service and endpoint IPs, ExternalName as CNAME, pod names `a-b-c-d.<ns>.pod.<domain>`
//!   (CoreDNS's `pods insecure` mode: synthesised from the name, no pod watch), and
//!   NXDOMAIN/NODATA with the zone's SOA as CoreDNS's plugin decides them.
//! - [`DnsServer`] / [`serve_index`]: UDP and TCP on [`DnsConfig::listen`] answering from
//!   a [`SharedIndex`]; names outside the cluster domain go to [`DnsConfig::upstream`].
//! - [`run`]: the component as `skiff server` starts it: kube-runtime watchers fill the
//!   index and the server answers once every watch has listed (SERVFAIL before that).
//! - [`Metrics`]: responses by rcode and a latency histogram, rendered as Prometheus text
//!   by [`MetricsSnapshot::render_prometheus`].
//!
//! Choices where CoreDNS leaves room (all documented on the items):
//! - Without an upstream ([`DnsConfig::upstream`] `None`), names outside the cluster
//!   domain, and reverse names the index does not know, are answered SERVFAIL — what
//!   CoreDNS's stock Corefile (`kubernetes … { fallthrough in-addr.arpa ip6.arpa }`)
//!   does with its `forward` line removed.
//! - TXT and SOA questions for names other than the apex follow the same
//!   exists/doesn't-exist rule as every other type (NODATA or NXDOMAIN); CoreDNS answers
//!   NXDOMAIN for TXT at empty non-terminals and NODATA for SOA at any name.

mod answer;
mod config;
mod error;
mod forward;
mod index;
mod metrics;
mod server;
mod watch;

pub use answer::{Answer, Response};
pub use config::{DnsConfig, Upstream};
pub use error::Error;
pub use index::{Index, SharedIndex};
pub use metrics::{LatencyHistogram, Metrics, MetricsSnapshot};
pub use server::{DnsServer, serve_index};
pub use watch::run;

/// The DNS types this crate's API speaks in (re-exported `hickory-proto`).
pub use hickory_proto as proto;
