//! Baseline `hostProbesAndHostLifecycle`: probes and lifecycle handlers must not
//! target another host (v1.34+), which would let the node agent reach arbitrary
//! addresses on the pod's behalf.
//!
//! Restricted fields: `host` of `httpGet`/`tcpSocket` in the liveness, readiness
//! and startup probes and the postStart/preStop handlers of every container.
//! Allowed: unset, empty.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction};

use super::{Check, Pod, Versioned, containers_phrase};
use crate::level::Level;
use crate::violation::{Violation, join_quote, pluralize};

pub(crate) const CHECK: Check = Check {
    id: "hostProbesAndHostLifecycle",
    level: Level::Baseline,
    versions: &[Versioned {
        since: 34,
        check: host_probes_1_34,
        overrides: &[],
    }],
};

fn host_probes_1_34(pod: &Pod<'_>) -> Option<Violation> {
    // Both lists are sorted sets in Kubernetes' message.
    let mut bad = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    for c in pod.containers() {
        let probes = [c.liveness_probe, c.readiness_probe, c.startup_probe];
        let handlers = c
            .lifecycle
            .map(|l| [l.post_start.as_ref(), l.pre_stop.as_ref()])
            .unwrap_or_default();
        let mut found: Vec<&str> = Vec::new();
        for p in probes.into_iter().flatten() {
            found.extend(probe_hosts(p));
        }
        for h in handlers.into_iter().flatten() {
            found.extend(handler_hosts(h));
        }
        if !found.is_empty() {
            bad.insert(c.name);
            hosts.extend(found);
        }
    }
    if bad.is_empty() {
        return None;
    }
    let bad: Vec<&str> = bad.into_iter().collect();
    let hosts: Vec<&str> = hosts.into_iter().collect();
    Some(Violation::new(
        CHECK.id,
        "probe or lifecycle host",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "probe or lifecycle host",
                "probe or lifecycle hosts",
                hosts.len()
            ),
            join_quote(&hosts)
        ),
    ))
}

fn probe_hosts(p: &Probe) -> impl Iterator<Item = &str> {
    hosts(p.http_get.as_ref(), p.tcp_socket.as_ref())
}

fn handler_hosts(h: &LifecycleHandler) -> impl Iterator<Item = &str> {
    hosts(h.http_get.as_ref(), h.tcp_socket.as_ref())
}

fn hosts<'a>(
    http: Option<&'a HTTPGetAction>,
    tcp: Option<&'a TCPSocketAction>,
) -> impl Iterator<Item = &'a str> {
    let http = http.and_then(|a| a.host.as_deref());
    let tcp = tcp.and_then(|a| a.host.as_deref());
    [http, tcp].into_iter().flatten().filter(|h| !h.is_empty())
}
