//! The node agent's container runtime layer.
//!
//! This crate owns three things:
//!
//! - [`Runtime`]: a CRI v1 client over a unix socket (containerd's CRI plugin), standing
//!   on the [`k8s_cri`] bindings. Requests and responses are the `k8s_cri::v1` types,
//!   re-exported as [`v1`]; the handle only adds connection setup, request timeouts,
//!   errors that name the method, and a few helpers a kubelet calls all the time.
//! - [`containerd`]: a supervisor that runs the agent's private containerd as a child
//!   process with a config of its own, restarts it when it dies and stops it on shutdown,
//!   leaving containers (their shims) running.
//! - [`image`]: deterministic OCI image-layout archives built from the machine's static
//!   binaries (the pause image from catatonit, a busybox image), and their import into
//!   containerd, so pods run with no registry.
//! - [`cgroup`]: removal of a pod's cgroup directories, which no runtime removes.
//! - [`host`]: the mounts and processes containers leave on the host, found and removed.

pub mod cgroup;
pub mod containerd;
pub mod host;
pub mod image;
mod runtime;

pub use k8s_cri::v1;
pub use runtime::{DefaultDeadline, Error, ImageClient, Rpc, Runtime, RuntimeClient};
