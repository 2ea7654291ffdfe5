//! The service proxy's errors.

/// What can go wrong in the service proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work (a bad prefix, CIDR or period).
    #[error("invalid service proxy configuration: {0}")]
    InvalidConfig(String),
    /// A program could not be started at all.
    #[error("running {program}: {source}")]
    SpawnFailed {
        /// The program (with its command prefix, if any).
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line, shortened to its program and first arguments.
        command: String,
        /// The exit status as printed by the OS.
        status: String,
        /// What the program wrote to stderr.
        stderr: String,
    },
    /// `iptables-restore` refused the rules; the line it names is included.
    #[error("iptables-restore failed ({status}): {stderr}{context}")]
    RestoreFailed {
        /// The exit status as printed by the OS.
        status: String,
        /// What iptables-restore wrote to stderr.
        stderr: String,
        /// The offending input line(s), when iptables-restore named one.
        context: String,
    },
    /// An API request failed.
    #[error("{what}: {source}")]
    Api {
        /// What the proxy was doing, e.g. `updating status of service default/web`.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A blocking sync task panicked or was cancelled.
    #[error("sync task: {0}")]
    TaskFailed(String),
}
