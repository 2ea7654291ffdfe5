//! Baseline `hostNamespaces`: no sharing of the host's network, PID or IPC
//! namespace (v1.0+).
//!
//! Restricted fields: `spec.hostNetwork`, `spec.hostPID`, `spec.hostIPC`.
//! Allowed: unset, `false`.

use super::{Check, Pod, Versioned};
use crate::level::Level;
use crate::violation::Violation;

pub(crate) const CHECK: Check = Check {
    id: "hostNamespaces",
    level: Level::Baseline,
    versions: &[Versioned {
        since: 0,
        check: host_namespaces_1_0,
        overrides: &[],
    }],
};

fn host_namespaces_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let spec = pod.spec;
    let shared: Vec<&str> = [
        (spec.host_network, "hostNetwork=true"),
        (spec.host_pid, "hostPID=true"),
        (spec.host_ipc, "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(set, _)| *set == Some(true))
    .map(|(_, text)| text)
    .collect();
    if shared.is_empty() {
        return None;
    }
    Some(Violation::new(
        CHECK.id,
        "host namespaces",
        shared.join(", "),
    ))
}
