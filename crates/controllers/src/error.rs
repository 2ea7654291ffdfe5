//! Errors of the controller manager.

/// Why a controller or the manager stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--controllers` named a controller that does not exist.
    #[error("unknown controller {0:?}; known: see `skiff controller-manager --help`")]
    UnknownController(String),
    /// An API call failed.
    #[error("{context}: {source}")]
    Api {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// A watch stream failed for good.
    #[error("watching {what}: {source}")]
    Watch {
        /// What was watched.
        what: String,
        /// Cause.
        #[source]
        source: kube::runtime::watcher::Error,
    },
    /// An object could not be interpreted.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An API call that failed while doing `context`.
    pub(crate) fn api(context: &str, source: kube::Error) -> Self {
        Error::Api {
            context: context.into(),
            source,
        }
    }
}
