//! The rules of one proxy instance: the complete contents of its chains in the nat
//! and filter tables, and the jump rules ("hooks") from the built-in chains into
//! them. Rules are kept as `iptables-save` prints them, so what is applied can be
//! compared with what the kernel reports line by line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// An iptables table the proxy writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableKind {
    /// `filter`: REJECT/DROP for services without (local) endpoints.
    Filter,
    /// `nat`: the service, endpoint and masquerade chains.
    Nat,
}

impl TableKind {
    /// Both tables, in the order they are restored.
    pub const ALL: [TableKind; 2] = [TableKind::Filter, TableKind::Nat];

    /// The table's name for `-t`.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Filter => "filter",
            TableKind::Nat => "nat",
        }
    }

    /// The built-in chains the proxy hooks into in this table.
    pub(crate) fn builtin_chains(self) -> &'static [&'static str] {
        match self {
            TableKind::Filter => &["INPUT", "FORWARD", "OUTPUT"],
            TableKind::Nat => &["PREROUTING", "OUTPUT", "POSTROUTING"],
        }
    }
}

/// The chains of one table: name -> rules (the arguments after `-A <chain>`).
pub(crate) type Chains = BTreeMap<String, Vec<String>>;

/// A jump from a built-in chain into one of our chains.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hook {
    pub(crate) table: TableKind,
    pub(crate) chain: &'static str,
    pub(crate) args: Vec<String>,
}

impl Hook {
    /// The table of the built-in chain.
    pub fn table(&self) -> TableKind {
        self.table
    }

    /// The built-in chain, e.g. `PREROUTING`.
    pub fn chain(&self) -> &str {
        self.chain
    }

    /// The rule's arguments (unquoted, for `iptables -C/-I/-D`).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The rule as `iptables -S` prints it, e.g. `-A OUTPUT -d 10.43.0.0/16 ... -j X`.
    pub fn line(&self) -> String {
        let mut line = format!("-A {}", self.chain);
        let mut previous = "";
        for arg in &self.args {
            line.push(' ');
            // iptables quotes string options (comments) only.
            if previous == "--comment" {
                line.push_str(&quote(arg));
            } else {
                line.push_str(arg);
            }
            previous = arg;
        }
        line
    }
}

/// A UDP service port as the rules send it, for conntrack cleanup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UdpService {
    /// Cluster, external and load-balancer IPs.
    pub(crate) vips: Vec<Ipv4Addr>,
    pub(crate) port: u16,
    pub(crate) node_port: Option<u16>,
    /// Endpoint IPs the rules can send to.
    pub(crate) endpoints: BTreeSet<Ipv4Addr>,
}

/// Everything one proxy instance wants in iptables, computed by [`crate::desired`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub(crate) prefix: String,
    pub(crate) filter: Chains,
    pub(crate) nat: Chains,
    pub(crate) hooks: Vec<Hook>,
    /// UDP service ports by name, for conntrack cleanup.
    pub(crate) udp: BTreeMap<String, UdpService>,
    /// Service ports with rules of their own.
    pub(crate) service_ports: usize,
    /// Endpoint chains.
    pub(crate) endpoints: usize,
}

impl Ruleset {
    pub(crate) fn table(&self, table: TableKind) -> &Chains {
        match table {
            TableKind::Filter => &self.filter,
            TableKind::Nat => &self.nat,
        }
    }

    pub(crate) fn table_mut(&mut self, table: TableKind) -> &mut Chains {
        match table {
            TableKind::Filter => &mut self.filter,
            TableKind::Nat => &mut self.nat,
        }
    }

    /// The chain prefix of the instance.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The names of our chains in `table`, sorted.
    pub fn chains(&self, table: TableKind) -> impl Iterator<Item = &str> {
        self.table(table).keys().map(String::as_str)
    }

    /// The rules of `chain` as `iptables-save` prints them (`-A <chain> ...`), or
    /// `None` when the chain is not ours.
    pub fn rules(&self, table: TableKind, chain: &str) -> Option<Vec<String>> {
        self.table(table)
            .get(chain)
            .map(|rules| rules.iter().map(|r| format!("-A {chain} {r}")).collect())
    }

    /// Every rule of our chains in `table`, as `iptables-save` prints them.
    pub fn lines(&self, table: TableKind) -> Vec<String> {
        self.table(table)
            .iter()
            .flat_map(|(chain, rules)| rules.iter().map(move |r| format!("-A {chain} {r}")))
            .collect()
    }

    /// How many rules our chains in `table` hold.
    pub fn rule_count(&self, table: TableKind) -> usize {
        self.table(table).values().map(Vec::len).sum()
    }

    /// The jumps from built-in chains into ours.
    pub fn hooks(&self) -> &[Hook] {
        &self.hooks
    }

    /// Service ports with rules of their own.
    pub fn service_ports(&self) -> usize {
        self.service_ports
    }

    /// Endpoint chains over all service ports.
    pub fn endpoint_chains(&self) -> usize {
        self.endpoints
    }

    /// The complete `iptables-restore --noflush` input that sets our chains (without
    /// deleting stale ones or touching the hooks).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for table in TableKind::ALL {
            let chains = self.table(table);
            render_table(
                &mut out,
                table,
                chains.iter().map(|(c, r)| (c.as_str(), r.as_slice())),
                std::iter::empty(),
            );
        }
        out
    }
}

/// Appends `*table`, chain declarations (which flush existing chains under
/// `--noflush`), the rules, `-X` for `deleted` and `COMMIT`.
pub(crate) fn render_table<'a>(
    out: &mut String,
    table: TableKind,
    written: impl Iterator<Item = (&'a str, &'a [String])> + Clone,
    deleted: impl Iterator<Item = &'a str> + Clone,
) {
    let _ = writeln!(out, "*{}", table.name());
    for (chain, _) in written.clone() {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    for chain in deleted.clone() {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    for (chain, rules) in written {
        for rule in rules {
            let _ = writeln!(out, "-A {chain} {rule}");
        }
    }
    for chain in deleted {
        let _ = writeln!(out, "-X {chain}");
    }
    out.push_str("COMMIT\n");
}

/// Quotes an argument as `iptables-save` does: bare when it is only letters, digits,
/// `_` and `-`, else in double quotes with `"`, `\` and `'` escaped.
pub(crate) fn quote(arg: &str) -> String {
    let bare = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The probability of the `i`-th of `n` endpoint rules (1/n, 1/(n-1), ...) as the
/// kernel stores it (a 31-bit fraction) and `iptables-save` prints it: 1/3 is
/// `0.33333333349`, 1/2 `0.50000000000`.
pub(crate) fn probability(remaining: usize) -> String {
    const SCALE: f64 = 2_147_483_648.0; // 2^31
    let stored = (SCALE / remaining as f64).round();
    format!("{:.11}", stored / SCALE)
}

/// Splits an `iptables -S` line into arguments, undoing [`quote`].
pub(crate) fn split_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut has_token = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quotes => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '"' => {
                in_quotes = !in_quotes;
                has_token = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if has_token || !current.is_empty() {
                    args.push(std::mem::take(&mut current));
                    has_token = false;
                }
            }
            c => current.push(c),
        }
    }
    if has_token || !current.is_empty() {
        args.push(current);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_are_printed_as_iptables_save_does() {
        assert_eq!(probability(3), "0.33333333349");
        assert_eq!(probability(2), "0.50000000000");
        assert_eq!(probability(4), "0.25000000000");
        assert_eq!(probability(5), "0.20000000019");
    }

    #[test]
    fn quoting_round_trips_through_split() {
        assert_eq!(quote("abc-1_2"), "abc-1_2");
        assert_eq!(quote("ns/svc:p80"), "\"ns/svc:p80\"");
        assert_eq!(quote("a \"b\""), "\"a \\\"b\\\"\"");
        let line = format!("-A X -m comment --comment {} -j Y", quote("a \"b\" c"));
        assert_eq!(
            split_args(&line),
            [
                "-A",
                "X",
                "-m",
                "comment",
                "--comment",
                "a \"b\" c",
                "-j",
                "Y"
            ]
        );
    }
}
