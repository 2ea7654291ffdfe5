//! Baseline `hostPorts`: containers must not bind host ports (v1.0+).
//!
//! Restricted fields: `ports[*].hostPort` of every container. Allowed: unset, `0`.

use std::collections::BTreeSet;

use super::{Check, Pod, Versioned, containers_phrase};
use crate::level::Level;
use crate::violation::{Violation, pluralize};

pub(crate) const CHECK: Check = Check {
    id: "hostPorts",
    level: Level::Baseline,
    versions: &[Versioned {
        since: 0,
        check: host_ports_1_0,
        overrides: &[],
    }],
};

fn host_ports_1_0(pod: &Pod<'_>) -> Option<Violation> {
    let mut bad = Vec::new();
    // Kubernetes lists the ports as a sorted set of strings ("10", "8080", "9").
    let mut ports = BTreeSet::new();
    for c in pod.containers() {
        let mut uses_host_port = false;
        for p in c.ports {
            if let Some(port) = p.host_port.filter(|port| *port != 0) {
                uses_host_port = true;
                ports.insert(port.to_string());
            }
        }
        if uses_host_port {
            bad.push(c.name);
        }
    }
    if bad.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    Some(Violation::new(
        CHECK.id,
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    ))
}
