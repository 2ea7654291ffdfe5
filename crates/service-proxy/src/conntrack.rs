//! Stale UDP conntrack entries: when a UDP endpoint goes away its flows are deleted,
//! and when a UDP service gets its first endpoints the entries made while it had none
//! are deleted (kube-proxy's conntrack cleanup), with the `conntrack` tool when it is
//! installed.

use crate::exec::{Exec, succeeds};
use crate::ruleset::UdpService;

const CONNTRACK: &str = "/usr/sbin/conntrack";

/// Whether the `conntrack` tool exists (asked once).
#[derive(Debug, Default)]
pub(crate) struct Conntrack {
    available: Option<bool>,
}

impl Conntrack {
    /// Runs `commands` (`conntrack` arguments) when the tool exists; returns how many
    /// ran.
    pub(crate) fn run(&mut self, exec: &dyn Exec, commands: &[Vec<String>]) -> usize {
        if commands.is_empty() {
            return 0;
        }
        let available = *self
            .available
            .get_or_insert_with(|| succeeds(exec, CONNTRACK, &["--version"]));
        if !available {
            tracing::debug!(
                flows = commands.len(),
                "the conntrack tool is not installed: stale UDP conntrack entries are left to expire"
            );
            return 0;
        }
        for command in commands {
            let refs: Vec<&str> = command.iter().map(String::as_str).collect();
            // Exit status 1 means "no entry matched".
            let _ = exec.run(CONNTRACK, &refs, None);
        }
        commands.len()
    }
}

/// The `conntrack -D` argument lists for UDP service ports that changed from `old`
/// to `new` (either absent when the port came or went), by name.
pub(crate) fn flush_commands<'a>(
    changes: impl Iterator<Item = (&'a str, Option<&'a UdpService>, Option<&'a UdpService>)>,
) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    for (_, old, new) in changes {
        if let Some(old) = old {
            for endpoint in &old.endpoints {
                if new.is_some_and(|n| n.endpoints.contains(endpoint)) {
                    continue;
                }
                for vip in &old.vips {
                    commands.push(args(&[
                        "-D",
                        "-p",
                        "udp",
                        "--orig-dst",
                        &vip.to_string(),
                        "--dst-nat",
                        &endpoint.to_string(),
                    ]));
                }
                if let Some(node_port) = old.node_port {
                    commands.push(args(&[
                        "-D",
                        "-p",
                        "udp",
                        "--orig-port-dst",
                        &node_port.to_string(),
                        "--dst-nat",
                        &endpoint.to_string(),
                    ]));
                }
            }
        }
        let Some(new) = new else {
            continue;
        };
        let had_none = old.is_none_or(|old| old.endpoints.is_empty());
        if new.endpoints.is_empty() || !had_none {
            continue;
        }
        for vip in &new.vips {
            commands.push(args(&[
                "-D",
                "-p",
                "udp",
                "--orig-dst",
                &vip.to_string(),
                "--orig-port-dst",
                &new.port.to_string(),
            ]));
        }
        if let Some(node_port) = new.node_port {
            commands.push(args(&[
                "-D",
                "-p",
                "udp",
                "--orig-port-dst",
                &node_port.to_string(),
            ]));
        }
    }
    commands
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
