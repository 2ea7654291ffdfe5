//! Baseline `sysctls` (v1.0+): only sysctls that are namespaced and isolated from
//! other pods may be set. The safe set grows in v1.27, v1.29, v1.32 and v1.37.

use super::{Check, Pod, Versioned};
use crate::level::Level;
use crate::violation::Violation;

pub(crate) const CHECK: Check = Check {
    id: "sysctls",
    level: Level::Baseline,
    versions: &[
        Versioned {
            since: 0,
            check: sysctls_1_0,
            overrides: &[],
        },
        Versioned {
            since: 27,
            check: sysctls_1_27,
            overrides: &[],
        },
        Versioned {
            since: 29,
            check: sysctls_1_29,
            overrides: &[],
        },
        Versioned {
            since: 32,
            check: sysctls_1_32,
            overrides: &[],
        },
        Versioned {
            since: 37,
            check: sysctls_1_37,
            overrides: &[],
        },
    ],
};

/// Safe sysctls, each with the version that first allowed it.
const SAFE: &[(&str, u32)] = &[
    ("kernel.shm_rmid_forced", 0),
    ("net.ipv4.ip_local_port_range", 0),
    ("net.ipv4.tcp_syncookies", 0),
    ("net.ipv4.ping_group_range", 0),
    ("net.ipv4.ip_unprivileged_port_start", 0),
    ("net.ipv4.ip_local_reserved_ports", 27),
    ("net.ipv4.tcp_keepalive_time", 29),
    ("net.ipv4.tcp_fin_timeout", 29),
    ("net.ipv4.tcp_keepalive_intvl", 29),
    ("net.ipv4.tcp_keepalive_probes", 29),
    ("net.ipv4.tcp_rmem", 32),
    ("net.ipv4.tcp_wmem", 32),
    ("net.ipv4.tcp_slow_start_after_idle", 37),
    ("net.ipv4.tcp_notsent_lowat", 37),
];

fn sysctls_1_0(pod: &Pod<'_>) -> Option<Violation> {
    sysctls(pod, 0)
}

fn sysctls_1_27(pod: &Pod<'_>) -> Option<Violation> {
    sysctls(pod, 27)
}

fn sysctls_1_29(pod: &Pod<'_>) -> Option<Violation> {
    sysctls(pod, 29)
}

fn sysctls_1_32(pod: &Pod<'_>) -> Option<Violation> {
    sysctls(pod, 32)
}

fn sysctls_1_37(pod: &Pod<'_>) -> Option<Violation> {
    sysctls(pod, 37)
}

fn sysctls(pod: &Pod<'_>, minor: u32) -> Option<Violation> {
    let safe = |name: &str| SAFE.iter().any(|(s, since)| *s == name && *since <= minor);
    let forbidden: Vec<&str> = pod
        .security_context()
        .and_then(|sc| sc.sysctls.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|s| s.name.as_str())
        .filter(|name| !safe(name))
        .collect();
    if forbidden.is_empty() {
        return None;
    }
    Some(Violation::new(
        CHECK.id,
        "forbidden sysctls",
        forbidden.join(", "),
    ))
}
