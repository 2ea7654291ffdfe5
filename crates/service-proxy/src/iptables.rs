//! The iptables backend: applies a [`Ruleset`] with one `iptables-restore --noflush`
//! call over our chains only (declared, hence flushed, and refilled; stale ones
//! deleted), and keeps our jump rules in the built-in chains (`-C` before `-I`).
//!
//! A full sync rewrites every chain and finds stale chains with `iptables-save`; an
//! incremental sync writes only chains whose rules changed since the last success.

use std::collections::{BTreeMap, BTreeSet};

use crate::exec::{Exec, checked, succeeds};
use crate::names::Names;
use crate::ruleset::{Hook, Ruleset, TableKind, render_table, split_args};
use crate::{Error, config};

/// `iptables`, as Debian installs it.
pub(crate) const IPTABLES: &str = "/usr/sbin/iptables";
const IPTABLES_RESTORE: &str = "/usr/sbin/iptables-restore";
const IPTABLES_SAVE: &str = "/usr/sbin/iptables-save";
const SYSCTL: &str = "/usr/sbin/sysctl";
const MODPROBE: &str = "/usr/sbin/modprobe";

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Whether every chain was rewritten (else only changed ones).
    pub full: bool,
    /// Chains declared and refilled.
    pub chains_written: usize,
    /// Stale chains deleted.
    pub chains_deleted: usize,
    /// Jump rules added to built-in chains.
    pub hooks_added: usize,
    /// Jump rules of ours removed from built-in chains.
    pub hooks_removed: usize,
    /// Whether `iptables-restore` ran (nothing to write: it does not).
    pub restored: bool,
    /// `conntrack -D` calls for UDP endpoints that went away.
    pub conntrack_flushes: usize,
    /// nftables: elements added or deleted.
    pub elements_written: usize,
    /// What the kernel holds of ours after the sync.
    pub counts: RuleCounts,
}

/// How much of ours the kernel holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleCounts {
    /// Rules in our nat chains (nftables: in every chain but the filter ones).
    pub nat_rules: usize,
    /// Rules in our filter chains.
    pub filter_rules: usize,
    /// nftables: elements of our maps and sets.
    pub elements: usize,
    /// Service ports with rules of their own.
    pub service_ports: usize,
    /// Endpoints rules can send to, over all service ports.
    pub endpoints: usize,
}

impl RuleCounts {
    /// The counts of an iptables ruleset.
    pub fn of(ruleset: &Ruleset) -> Self {
        Self {
            nat_rules: ruleset.rule_count(TableKind::Nat),
            filter_rules: ruleset.rule_count(TableKind::Filter),
            elements: 0,
            service_ports: ruleset.service_ports(),
            endpoints: ruleset.endpoint_chains(),
        }
    }
}

/// Applies rulesets of one proxy instance and remembers the last one applied.
pub struct Backend {
    exec: Box<dyn Exec>,
    names: Names,
    applied: Option<Ruleset>,
    conntrack: crate::conntrack::Conntrack,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("prefix", &self.names.prefix())
            .field("applied", &self.applied.is_some())
            .finish()
    }
}

impl Backend {
    /// A backend for the chains of `prefix`, running commands through `exec`.
    pub fn new(exec: impl Exec + 'static, prefix: &str) -> Result<Self, Error> {
        config::validate_prefix(prefix)?;
        Ok(Self {
            exec: Box::new(exec),
            names: Names::new(prefix),
            applied: None,
            conntrack: crate::conntrack::Conntrack::default(),
        })
    }

    /// Sets the sysctls the rules need: `net.bridge.bridge-nf-call-iptables=1` (so
    /// bridged pod traffic traverses iptables; a warning when br_netfilter is
    /// missing) and, for NodePorts on 127.0.0.1, `net.ipv4.conf.all.route_localnet=1`.
    pub fn prepare(&self, localhost_nodeports: bool) -> Result<(), Error> {
        const BRIDGE: &str = "net.bridge.bridge-nf-call-iptables";
        if !self.set_sysctl(BRIDGE) {
            let _ = self.exec.run(MODPROBE, &["br_netfilter"], None);
            if !self.set_sysctl(BRIDGE) {
                tracing::warn!(
                    sysctl = BRIDGE,
                    "cannot enable br_netfilter: pod-to-service traffic on a bridge may bypass the rules"
                );
            }
        }
        if localhost_nodeports {
            const LOCALNET: &str = "net.ipv4.conf.all.route_localnet";
            if !self.set_sysctl(LOCALNET) {
                return Err(Error::CommandFailed {
                    command: format!("{SYSCTL} -w {LOCALNET}=1"),
                    status: "failed".into(),
                    stderr: "NodePorts on 127.0.0.1 need route_localnet".into(),
                });
            }
        }
        Ok(())
    }

    /// Sets `key` to 1 unless it is already; whether it is 1 now.
    fn set_sysctl(&self, key: &str) -> bool {
        let current = checked(self.exec.as_ref(), SYSCTL, &["-n", key]);
        if current.is_ok_and(|v| v.trim() == "1") {
            return true;
        }
        succeeds(self.exec.as_ref(), SYSCTL, &["-w", &format!("{key}=1")])
    }

    /// Makes iptables hold `desired`: everything when `full` (or nothing was applied
    /// yet), else the chains that changed since the last successful apply.
    pub fn apply(&mut self, desired: &Ruleset, full: bool) -> Result<SyncReport, Error> {
        self.apply_owned(desired.clone(), full)
    }

    /// [`Backend::apply`], keeping `desired` as the applied state without a copy.
    ///
    /// A full sync after a successful one takes the chains to delete from what was
    /// applied rather than from `iptables-save` (which takes longer than the restore
    /// itself with many chains); only the first sync, and the one after a failure,
    /// read the kernel's chains.
    pub fn apply_owned(&mut self, desired: Ruleset, full: bool) -> Result<SyncReport, Error> {
        let previous = self.applied.take();
        let full = full || previous.is_none();
        let incremental_base = if full { None } else { previous.as_ref() };
        // On failure the kernel's state is unknown: `applied` stays empty, so the
        // next sync is a full one that reads the kernel.
        let mut report = self.apply_inner(&desired, incremental_base, previous.as_ref(), full)?;
        report.conntrack_flushes = self.flush_conntrack(previous.as_ref(), &desired);
        report.counts = RuleCounts::of(&desired);
        self.applied = Some(desired);
        Ok(report)
    }

    fn apply_inner(
        &mut self,
        desired: &Ruleset,
        base: Option<&Ruleset>,
        known: Option<&Ruleset>,
        full: bool,
    ) -> Result<SyncReport, Error> {
        let exec = self.exec.as_ref();
        let mut report = SyncReport {
            full,
            ..SyncReport::default()
        };
        let mut input = String::new();
        for table in TableKind::ALL {
            let wanted = desired.table(table);
            let written: Vec<(&str, &[String])> = wanted
                .iter()
                .filter(|(chain, rules)| {
                    base.is_none_or(|b| b.table(table).get(chain.as_str()) != Some(*rules))
                })
                .map(|(chain, rules)| (chain.as_str(), rules.as_slice()))
                .collect();
            let saved: BTreeSet<String>;
            let existing: Box<dyn Iterator<Item = &String>> = match known {
                Some(known) => Box::new(known.table(table).keys()),
                None => {
                    saved = our_chains(exec, &self.names, table)?;
                    Box::new(saved.iter())
                }
            };
            let deleted: Vec<&str> = existing
                .filter(|c| !wanted.contains_key(c.as_str()))
                .map(String::as_str)
                .collect();
            report.chains_written += written.len();
            report.chains_deleted += deleted.len();
            if !written.is_empty() || !deleted.is_empty() {
                render_table(
                    &mut input,
                    table,
                    written.iter().copied(),
                    deleted.iter().copied(),
                );
            }
        }

        let hooks_changed = base.is_none_or(|b| b.hooks != desired.hooks);
        let mut present = BTreeMap::new();
        if hooks_changed {
            let wanted: BTreeSet<(TableKind, String)> =
                desired.hooks.iter().map(|h| (h.table, h.line())).collect();
            let (kept, removed) = remove_hooks(exec, &self.names, |table, line| {
                wanted.contains(&(table, line.to_owned()))
            })?;
            report.hooks_removed = removed.len();
            present = kept;
        }

        if !input.is_empty() {
            restore(exec, &input)?;
            report.restored = true;
        }

        if hooks_changed {
            for hook in &desired.hooks {
                if present
                    .get(&hook.table)
                    .is_some_and(|lines: &BTreeSet<String>| lines.contains(&hook.line()))
                {
                    continue;
                }
                if add_hook(exec, hook)? {
                    report.hooks_added += 1;
                }
            }
        }
        Ok(report)
    }

    /// Deletes conntrack entries of UDP flows whose endpoint went away, and of UDP
    /// services that got their first endpoints (entries made while they had none),
    /// when the `conntrack` tool exists. Returns the number of deletions run.
    fn flush_conntrack(&mut self, previous: Option<&Ruleset>, desired: &Ruleset) -> usize {
        let Some(previous) = previous else {
            return 0;
        };
        let names: BTreeSet<&String> = previous.udp.keys().chain(desired.udp.keys()).collect();
        let commands = crate::conntrack::flush_commands(
            names
                .into_iter()
                .map(|name| (name.as_str(), previous.udp.get(name), desired.udp.get(name))),
        );
        self.conntrack.run(self.exec.as_ref(), &commands)
    }

    /// Forgets what was applied: the next [`Backend::apply`] is a full sync.
    pub fn invalidate(&mut self) {
        self.applied = None;
    }
}

/// Our chains in `table`, from `iptables-save`.
fn our_chains(exec: &dyn Exec, names: &Names, table: TableKind) -> Result<BTreeSet<String>, Error> {
    let saved = checked(exec, IPTABLES_SAVE, &["-t", table.name()])?;
    Ok(saved
        .lines()
        .filter_map(|line| line.strip_prefix(':'))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|chain| names.owns(chain))
        .map(str::to_owned)
        .collect())
}

/// Feeds `input` to `iptables-restore --noflush -w`.
fn restore(exec: &dyn Exec, input: &str) -> Result<(), Error> {
    let output = exec.run(
        IPTABLES_RESTORE,
        &["--noflush", "-w"],
        Some(input.as_bytes()),
    )?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    // "iptables-restore: line 12 failed" names the line of the input.
    let context = stderr
        .split("line ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .map(|n| {
            let lines: Vec<&str> = input.lines().collect();
            let from = n.saturating_sub(2);
            let to = (n + 1).min(lines.len());
            format!(
                "; input lines {}..={}: {}",
                from + 1,
                to,
                lines[from..to].join(" | ")
            )
        })
        .unwrap_or_default();
    Err(Error::RestoreFailed {
        status: output.status.to_string(),
        stderr,
        context,
    })
}

/// Hook lines found in the kernel, per table.
type HookLines = BTreeMap<TableKind, BTreeSet<String>>;

/// Deletes every jump of ours from the built-in chains for which `keep` is false.
/// Returns the kept lines per table and the removed ones (`table/line`).
fn remove_hooks(
    exec: &dyn Exec,
    names: &Names,
    keep: impl Fn(TableKind, &str) -> bool,
) -> Result<(HookLines, Vec<String>), Error> {
    let mut kept: BTreeMap<TableKind, BTreeSet<String>> = BTreeMap::new();
    let mut removed = Vec::new();
    for table in TableKind::ALL {
        for chain in table.builtin_chains() {
            for line in our_hook_lines(exec, names, table, chain) {
                if keep(table, &line) {
                    kept.entry(table).or_default().insert(line);
                    continue;
                }
                let args = split_args(&line);
                let mut delete: Vec<&str> = vec!["-w", "-t", table.name(), "-D"];
                delete.extend(args.iter().skip(1).map(String::as_str));
                checked(exec, IPTABLES, &delete)?;
                removed.push(format!("{}/{line}", table.name()));
            }
        }
    }
    Ok((kept, removed))
}

/// The rules of built-in `chain` that jump to one of our chains, as `-S` prints them.
fn our_hook_lines(exec: &dyn Exec, names: &Names, table: TableKind, chain: &str) -> Vec<String> {
    // A table that does not exist yet has no rules of ours.
    let Ok(listing) = checked(exec, IPTABLES, &["-w", "-t", table.name(), "-S", chain]) else {
        return Vec::new();
    };
    listing
        .lines()
        .filter(|line| line.starts_with(&format!("-A {chain} ")))
        .filter(|line| {
            let args = split_args(line);
            args.iter()
                .position(|a| a == "-j")
                .and_then(|i| args.get(i + 1))
                .is_some_and(|target| names.owns(target))
        })
        .map(str::to_owned)
        .collect()
}

/// Inserts `hook` at the top of its chain unless `-C` finds it; whether it was added.
fn add_hook(exec: &dyn Exec, hook: &Hook) -> Result<bool, Error> {
    let mut check: Vec<&str> = vec!["-w", "-t", hook.table.name(), "-C", hook.chain];
    check.extend(hook.args.iter().map(String::as_str));
    if succeeds(exec, IPTABLES, &check) {
        return Ok(false);
    }
    let mut insert: Vec<&str> = vec!["-w", "-t", hook.table.name(), "-I", hook.chain];
    insert.extend(hook.args.iter().map(String::as_str));
    checked(exec, IPTABLES, &insert)?;
    Ok(true)
}

/// Removes every jump and chain of the instance `prefix` from the host's iptables,
/// and its nftables table; returns what was removed, one line each.
pub fn cleanup(prefix: &str) -> Result<Vec<String>, Error> {
    cleanup_with(&crate::Commands::host(), prefix)
}

/// [`cleanup`] through `exec` (e.g. inside a network namespace).
pub fn cleanup_with(exec: &dyn Exec, prefix: &str) -> Result<Vec<String>, Error> {
    let mut removed = cleanup_iptables(exec, prefix)?;
    removed.extend(crate::nft::cleanup_table(exec, prefix)?);
    Ok(removed)
}

/// Removes the iptables jumps and chains of the instance `prefix` (not its
/// nftables table).
pub(crate) fn cleanup_iptables(exec: &dyn Exec, prefix: &str) -> Result<Vec<String>, Error> {
    config::validate_prefix(prefix)?;
    let names = Names::new(prefix);
    let (_, mut removed) = remove_hooks(exec, &names, |_, _| false)?;
    removed
        .iter_mut()
        .for_each(|r| r.insert_str(0, "iptables rule "));
    let mut input = String::new();
    for table in TableKind::ALL {
        let chains = our_chains(exec, &names, table)?;
        if chains.is_empty() {
            continue;
        }
        render_table(
            &mut input,
            table,
            std::iter::empty(),
            chains.iter().map(String::as_str),
        );
        removed.extend(
            chains
                .iter()
                .map(|c| format!("iptables chain {}/{c}", table.name())),
        );
    }
    if !input.is_empty() {
        restore(exec, &input)?;
    }
    Ok(removed)
}

/// What of the instance `prefix` is still in the host's iptables (jumps and chains)
/// and nftables (its table).
pub fn leftovers(prefix: &str) -> Result<Vec<String>, Error> {
    leftovers_with(&crate::Commands::host(), prefix)
}

/// [`leftovers`] through `exec`.
pub fn leftovers_with(exec: &dyn Exec, prefix: &str) -> Result<Vec<String>, Error> {
    config::validate_prefix(prefix)?;
    let names = Names::new(prefix);
    let mut left = Vec::new();
    for table in TableKind::ALL {
        for chain in table.builtin_chains() {
            left.extend(
                our_hook_lines(exec, &names, table, chain)
                    .into_iter()
                    .map(|l| format!("iptables rule {}/{l}", table.name())),
            );
        }
        left.extend(
            our_chains(exec, &names, table)?
                .into_iter()
                .map(|c| format!("iptables chain {}/{c}", table.name())),
        );
    }
    left.extend(crate::nft::leftover_table(exec, prefix)?);
    Ok(left)
}

#[cfg(test)]
mod tests;
