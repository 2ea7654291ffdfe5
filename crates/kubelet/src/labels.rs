//! The CRI labels and annotations that tie sandboxes and containers to pods — the
//! kubelet's own keys, so tools like crictl show what users expect. The pod workers
//! set them; the node API and adoption at start find containers by them.

/// Sandbox and container label: the pod's name.
pub(crate) const POD_NAME: &str = "io.kubernetes.pod.name";
/// Sandbox and container label: the pod's namespace.
pub(crate) const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Sandbox and container label: the pod's UID.
pub(crate) const POD_UID: &str = "io.kubernetes.pod.uid";
/// Container label: the container's name in the pod spec.
pub(crate) const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Container annotation: how many times this container was restarted (0 first).
pub(crate) const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Label on every sandbox and container this agent made, so cleanup never touches
/// anything else in a shared runtime.
pub(crate) const MANAGED_BY: &str = "skiff.io/managed-by";
/// Value of [`MANAGED_BY`].
pub(crate) const MANAGED_BY_VALUE: &str = "skiff-agent";
