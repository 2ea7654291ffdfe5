//! The crate's error type.

use std::{io, net::SocketAddr, path::PathBuf};

/// Why the cluster DNS could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster domain is not a valid DNS name.
    #[error("cluster domain {domain:?} is not a valid DNS name: {source}")]
    InvalidDomain {
        /// The configured domain.
        domain: String,
        /// What the parser said.
        source: hickory_proto::ProtoError,
    },
    /// The resolv.conf naming the upstream servers could not be read.
    #[error("reading upstream servers from {path}: {source}")]
    ResolvConfUnreadable {
        /// The file.
        path: PathBuf,
        /// The read error.
        source: io::Error,
    },
    /// The resolv.conf lists no usable `nameserver` (after dropping our own addresses).
    #[error("{path} lists no usable nameserver")]
    ResolvConfEmpty {
        /// The file.
        path: PathBuf,
    },
    /// An upstream given on the command line is neither `none`, a path nor `IP[:port]`s.
    #[error("invalid upstream {value:?}: expected `none`, a resolv.conf path or IP[:PORT],...")]
    InvalidUpstream {
        /// The value given.
        value: String,
    },
    /// No listen address was configured.
    #[error("no listen address configured")]
    NoListenAddress,
    /// A socket could not be bound.
    #[error("binding {protocol} {addr}: {source}")]
    BindFailed {
        /// The address.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        protocol: &'static str,
        /// The bind error.
        source: io::Error,
    },
    /// The DNS server's socket tasks failed.
    #[error("DNS server failed: {0}")]
    ServerFailed(String),
}
