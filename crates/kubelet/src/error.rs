//! The agent's errors.

/// What can go wrong in the agent. Add a variant only when none of these fits.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CRI call or the runtime supervisor failed.
    #[error("container runtime: {0}")]
    Runtime(#[from] cri::Error),
    /// An API request failed.
    #[error("{what}: {source}")]
    Api {
        /// What the agent was doing, e.g. `updating status of pod default/web-1`.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the agent was doing, naming the path or program.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Pod networking (CNI configuration, routes) failed.
    #[error("pod network: {0}")]
    Network(String),
    /// A pod spec or configuration asks for something the agent cannot do; the
    /// message is what a user sees in an event.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An API error while doing `what`.
    pub fn api(what: impl Into<String>, source: kube::Error) -> Self {
        Self::Api {
            what: what.into(),
            source,
        }
    }

    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
