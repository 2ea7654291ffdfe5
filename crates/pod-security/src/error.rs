//! What can go wrong: unparsable levels and versions, and objects whose pod spec
//! cannot be read.

/// Errors of the PodSecurity library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A level that is not `privileged`, `baseline` or `restricted`.
    #[error("invalid PodSecurity level {value:?}: must be one of privileged, baseline, restricted")]
    InvalidLevel {
        /// The value given.
        value: String,
    },
    /// A version that is neither `latest` nor `v1.N`.
    #[error(r#"invalid PodSecurity version {value:?}: must be "latest" or "v1.x""#)]
    InvalidVersion {
        /// The value given.
        value: String,
    },
    /// The pod spec (of a pod or a pod template) does not decode as a `PodSpec`.
    #[error("decoding the pod spec at {path}: {source}")]
    PodSpecDecodeFailed {
        /// JSON pointer of the spec inside the object (`/spec`, `/spec/template/spec`).
        path: &'static str,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// The pod (template) annotations are not a map of strings.
    #[error("decoding the pod annotations at {path}: {source}")]
    AnnotationsDecodeFailed {
        /// JSON pointer of the annotations inside the object.
        path: &'static str,
        /// The decoding error.
        source: serde_json::Error,
    },
}
