//! Errors of building and running the API server (request errors are `api::status::ApiError`).

/// Why the API server could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// Creating or loading certificates failed.
    #[error("certificates: {0}")]
    Pki(String),
    /// TLS configuration failed.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {source} (is another server running on this port? pick another with --https-listen-port)"
    )]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The datastore failed.
    #[error("datastore: {0}")]
    Store(#[from] store::StoreError),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}
