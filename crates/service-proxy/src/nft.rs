//! The nftables backend: one table of our own (`ip <prefix>proxy`, e.g.
//! `ip skiff-proxy`), written with one `nft -f -` transaction per sync.
//!
//! The first sync (and the one after a failure) deletes and recreates the table in
//! the same transaction. After that the backend trusts what it applied: an
//! incremental sync writes only the elements, chains and sets whose value changed,
//! and the periodic full sync re-declares and refills everything it knows without
//! reading the kernel's ruleset back (listing 10,000 services takes longer than
//! loading them). Nothing outside our table is ever touched.

mod aggregate;
mod layout;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::conntrack::Conntrack;
use crate::exec::{Exec, checked};
use crate::nft::aggregate::{Aggregate, Change};
use crate::nft::layout::{Context, ItemKind};
use crate::ruleset::UdpService;
use crate::state::ServiceState;
use crate::{Error, NodeView, ProxyConfig, SyncReport, config};

/// `nft`, as Debian's nftables package installs it.
pub(crate) const NFT: &str = "/usr/sbin/nft";

/// The name of the nftables table of the instance with chain prefix `prefix`:
/// `skiff-proxy` for `SKIFF-`.
pub fn nft_table(prefix: &str) -> String {
    format!("{}proxy", prefix.to_ascii_lowercase())
}

/// Applies the Services of a [`ServiceState`] to our nftables table and remembers
/// what it applied.
pub struct NftBackend {
    exec: Box<dyn Exec>,
    table: String,
    config: ProxyConfig,
    aggregate: Aggregate,
    /// The context the owners' items were computed for.
    context: Option<Context>,
    /// Owners (service ports) by Service key.
    owners: BTreeMap<String, Vec<String>>,
    /// UDP service ports by owner, for conntrack cleanup.
    udp: BTreeMap<String, UdpService>,
    /// Endpoints by owner, for the counts.
    endpoints: BTreeMap<String, usize>,
    /// Whether the kernel holds what `aggregate` says was applied.
    known: bool,
    /// Rules and elements the kernel holds of ours (kept up to date per change).
    counts: crate::RuleCounts,
    /// The input of the last successful `nft -f`.
    last_transaction: String,
    conntrack: Conntrack,
}

impl std::fmt::Debug for NftBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftBackend")
            .field("table", &self.table)
            .field("known", &self.known)
            .finish()
    }
}

impl NftBackend {
    /// A backend for the instance `config` (its prefix names the table), running
    /// `nft` through `exec`.
    pub fn new(exec: impl Exec + 'static, config: &ProxyConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self {
            exec: Box::new(exec),
            table: nft_table(&config.prefix),
            config: config.clone(),
            aggregate: Aggregate::default(),
            context: None,
            owners: BTreeMap::new(),
            udp: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            known: false,
            counts: crate::RuleCounts::default(),
            last_transaction: String::new(),
            conntrack: Conntrack::default(),
        })
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The `nft -f` input of the last sync that wrote something (e.g. to replay it
    /// by hand as a measurement's floor).
    pub fn last_transaction(&self) -> &str {
        &self.last_transaction
    }

    /// Makes our table hold the rules for `state` on `node`: the changed Services
    /// only, or everything when `full` (or when nothing is known yet).
    pub fn apply(
        &mut self,
        state: &mut ServiceState,
        node: &NodeView,
        full: bool,
    ) -> Result<SyncReport, Error> {
        state.set_node_name(&node.name);
        let changed = state.refresh();
        let previous_udp = self.update(state, node, &changed);
        let fresh = !self.known;
        let full = full || fresh;
        let (input, mut report, counts) = self.transaction(fresh, full);
        report.full = full;
        if !input.is_empty() {
            if let Err(e) = self.run(&input) {
                self.known = false;
                self.aggregate.forget_applied();
                return Err(e);
            }
            report.restored = true;
            self.last_transaction = input;
        }
        self.aggregate.applied(full);
        self.known = true;
        if full {
            self.counts = crate::RuleCounts::default();
        }
        self.counts.nat_rules = add(self.counts.nat_rules, counts.0);
        self.counts.filter_rules = add(self.counts.filter_rules, counts.1);
        self.counts.elements = add(self.counts.elements, counts.2);
        let commands = crate::conntrack::flush_commands(
            previous_udp
                .iter()
                .map(|(owner, old)| (owner.as_str(), old.as_ref(), self.udp.get(owner))),
        );
        report.conntrack_flushes = self.conntrack.run(self.exec.as_ref(), &commands);
        self.count(&mut report);
        Ok(report)
    }

    /// Recomputes the items of the changed Services (all of them when the node or
    /// configuration changed); returns the previous UDP data of every owner touched.
    fn update(
        &mut self,
        state: &ServiceState,
        node: &NodeView,
        changed: &BTreeSet<String>,
    ) -> BTreeMap<String, Option<UdpService>> {
        let context = Context::new(&self.config, node);
        let all = self.context.as_ref() != Some(&context);
        if all {
            self.aggregate.set_owner("", layout::base(&context));
        }
        let keys: Vec<String> = if all {
            state
                .ports()
                .keys()
                .chain(self.owners.keys())
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        } else {
            changed.iter().cloned().collect()
        };
        let mut previous_udp = BTreeMap::new();
        for key in keys {
            let old_owners = self.owners.remove(&key).unwrap_or_default();
            let mut new_owners = Vec::new();
            for sp in state.ports().get(&key).map(|p| p.as_slice()).unwrap_or(&[]) {
                let owner = layout::owner(sp);
                let contribution = layout::service_port(sp, &context);
                self.aggregate.set_owner(&owner, contribution.items);
                previous_udp
                    .entry(owner.clone())
                    .or_insert_with(|| self.udp.get(&owner).cloned());
                match contribution.udp {
                    Some(udp) => self.udp.insert(owner.clone(), udp),
                    None => self.udp.remove(&owner),
                };
                self.endpoints.insert(owner.clone(), contribution.endpoints);
                new_owners.push(owner);
            }
            for owner in old_owners {
                if !new_owners.contains(&owner) {
                    self.aggregate.set_owner(&owner, Vec::new());
                    previous_udp
                        .entry(owner.clone())
                        .or_insert_with(|| self.udp.get(&owner).cloned());
                    self.udp.remove(&owner);
                    self.endpoints.remove(&owner);
                }
            }
            if !new_owners.is_empty() {
                self.owners.insert(key, new_owners);
            }
        }
        self.context = Some(context);
        previous_udp
    }

    /// The `nft -f` input for this sync, what it does, and how it changes the nat
    /// rule, filter rule and element counts (everything it writes, for a full sync).
    fn transaction(&self, fresh: bool, full: bool) -> (String, SyncReport, Delta) {
        let table = &self.table;
        let mut report = SyncReport::default();
        let mut delta: Delta = (0, 0, 0);
        let changes = self.aggregate.changes(full);
        if changes.is_empty() {
            return (String::new(), report, delta);
        }
        let mut t = Transaction::default();
        let _ = writeln!(t.head, "add table ip {table}");
        if fresh {
            let _ = writeln!(t.head, "delete table ip {table}");
            let _ = writeln!(t.head, "add table ip {table}");
        }
        let mut added_elements: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut deleted_elements: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for Change {
            item,
            before,
            after,
        } in changes
        {
            // A fresh table holds nothing; a full sync rewrites everything wanted.
            let before = if fresh { None } else { before };
            let name = item.name.as_str();
            let weight = |value: Option<&str>| -> Delta {
                match (item.kind, value) {
                    (_, None) | (ItemKind::Set, _) => (0, 0, 0),
                    (ItemKind::Element, Some(_)) => (0, 0, 1),
                    (ItemKind::Chain, Some(v)) => {
                        let rules = v.split('\n').skip(1).count() as isize;
                        if name.starts_with("filter-") {
                            (0, rules, 0)
                        } else {
                            (rules, 0, 0)
                        }
                    }
                }
            };
            let (plus, minus) = (weight(after), if full { (0, 0, 0) } else { weight(before) });
            delta = (
                delta.0 + plus.0 - minus.0,
                delta.1 + plus.1 - minus.1,
                delta.2 + plus.2 - minus.2,
            );
            match item.kind {
                ItemKind::Set => match (before, after) {
                    (_, Some(decl)) => {
                        let (keyword, body) = decl.split_once(' ').unwrap_or(("set", decl));
                        let _ = writeln!(t.sets, "add {keyword} ip {table} {name} {body}");
                        // A full sync refills every set but the dynamic ones (their
                        // contents are the kernel's: affinity).
                        if full && !fresh && !body.contains("dynamic") {
                            let _ = writeln!(t.sets, "flush {keyword} ip {table} {name}");
                        }
                    }
                    (Some(decl), None) => {
                        let keyword = decl.split_once(' ').map_or("set", |(k, _)| k);
                        let _ = writeln!(t.delete_sets, "delete {keyword} ip {table} {name}");
                    }
                    (None, None) => {}
                },
                ItemKind::Chain => match (before, after) {
                    (_, Some(value)) => {
                        let mut lines = value.split('\n');
                        let decl = lines.next().unwrap_or("");
                        let _ = writeln!(t.chains, "add chain ip {table} {name} {decl}");
                        if before.is_some() || (full && !fresh) {
                            let _ = writeln!(t.flushes, "flush chain ip {table} {name}");
                        }
                        for rule in lines {
                            let _ = writeln!(t.rules, "add rule ip {table} {name} {rule}");
                        }
                        report.chains_written += 1;
                    }
                    (Some(_), None) => {
                        let _ = writeln!(t.flushes, "flush chain ip {table} {name}");
                        let _ = writeln!(t.delete_chains, "delete chain ip {table} {name}");
                        report.chains_deleted += 1;
                    }
                    (None, None) => {}
                },
                ItemKind::Element => {
                    if before.is_some() && (after.is_none() || before != after) {
                        deleted_elements.entry(name).or_default().push(&item.key);
                        report.elements_written += 1;
                    }
                    if let Some(value) = after
                        && (before != after || full)
                    {
                        let element = if value.is_empty() {
                            item.key.clone()
                        } else {
                            format!("{} : {value}", item.key)
                        };
                        added_elements.entry(name).or_default().push(element);
                        report.elements_written += 1;
                    }
                }
            }
        }
        for (set, keys) in deleted_elements {
            let _ = writeln!(
                t.delete_elements,
                "delete element ip {table} {set} {{ {} }}",
                keys.join(", ")
            );
        }
        for (set, elements) in added_elements {
            for chunk in elements.chunks(4096) {
                let _ = writeln!(
                    t.elements,
                    "add element ip {table} {set} {{ {} }}",
                    chunk.join(", ")
                );
            }
        }
        (t.join(), report, delta)
    }

    fn run(&self, input: &str) -> Result<(), Error> {
        let output = self.exec.run(NFT, &["-f", "-"], Some(input.as_bytes()))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        // "/dev/stdin:12:5-10: Error: ..." names the line of the input.
        let context = stderr
            .split(':')
            .nth(1)
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| input.lines().nth(n.saturating_sub(1)))
            .map(|line| {
                let short: String = line.chars().take(300).collect();
                format!("; input line: {short}")
            })
            .unwrap_or_default();
        Err(Error::RestoreFailed {
            status: output.status.to_string(),
            stderr: stderr.chars().take(2000).collect(),
            context,
        })
    }

    fn count(&self, report: &mut SyncReport) {
        report.counts = crate::RuleCounts {
            service_ports: self.endpoints.len(),
            endpoints: self.endpoints.values().sum(),
            ..self.counts.clone()
        };
    }

    /// Forgets what was applied: the next [`NftBackend::apply`] recreates the table.
    pub fn invalidate(&mut self) {
        self.known = false;
        self.aggregate.forget_applied();
    }

    /// The complete `nft -f` input that creates the table from nothing for `state`
    /// (what the first sync writes), e.g. to measure it by hand.
    pub fn render(&mut self, state: &mut ServiceState, node: &NodeView) -> String {
        state.set_node_name(&node.name);
        let changed = state.refresh();
        self.update(state, node, &changed);
        self.transaction(true, true).0
    }
}

/// Changes of the nat rule, filter rule and element counts.
type Delta = (isize, isize, isize);

fn add(count: usize, delta: isize) -> usize {
    count.saturating_add_signed(delta)
}

/// The parts of one transaction, in the order they must run: declarations before
/// anything refers to them, deletions of references before what they refer to.
#[derive(Default)]
struct Transaction {
    head: String,
    sets: String,
    chains: String,
    delete_elements: String,
    flushes: String,
    rules: String,
    elements: String,
    delete_chains: String,
    delete_sets: String,
}

impl Transaction {
    fn join(self) -> String {
        [
            self.head,
            self.sets,
            self.chains,
            self.delete_elements,
            self.flushes,
            self.rules,
            self.elements,
            self.delete_chains,
            self.delete_sets,
        ]
        .concat()
    }
}

/// Whether our table exists, through `exec`.
fn table_exists(exec: &dyn Exec, table: &str) -> Result<bool, Error> {
    let listing = match checked(exec, NFT, &["list", "tables", "ip"]) {
        Ok(listing) => listing,
        // No nft on this machine: nothing of ours can be in nftables.
        Err(Error::SpawnFailed { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(listing
        .lines()
        .any(|l| l.trim() == format!("table ip {table}")))
}

/// Deletes the nftables table of the instance `prefix`; what was removed.
pub(crate) fn cleanup_table(exec: &dyn Exec, prefix: &str) -> Result<Vec<String>, Error> {
    config::validate_prefix(prefix)?;
    let table = nft_table(prefix);
    if !table_exists(exec, &table)? {
        return Ok(Vec::new());
    }
    checked(exec, NFT, &["delete", "table", "ip", &table])?;
    Ok(vec![format!("nftables table ip {table}")])
}

/// The nftables table of the instance `prefix`, if it is there.
pub(crate) fn leftover_table(exec: &dyn Exec, prefix: &str) -> Result<Vec<String>, Error> {
    config::validate_prefix(prefix)?;
    let table = nft_table(prefix);
    Ok(if table_exists(exec, &table)? {
        vec![format!("nftables table ip {table}")]
    } else {
        Vec::new()
    })
}

#[cfg(test)]
mod tests;
