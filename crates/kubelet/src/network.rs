//! Pod networking on this node: the CNI configuration containerd reads (a bridge with
//! host-local IPAM over the Node's `spec.podCIDR`, portmap for hostPorts), the local
//! route of the Service CIDR into loopback (so a virtual IP without a DNAT rule never
//! leaves the machine), when egress masquerading is on, a NAT chain of our own, and
//! host-gw routes: `<podCIDR> via <InternalIP>` for every other node whose address is
//! on a link of this machine ([`peer_routes`]).
//!
//! What was added to the machine is written to `<dir>/network.json`, which
//! [`remove`] (used by `skiff killall`) reads to take it away again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{AgentConfig, Error};

/// Serializes changes to `network.json` within the agent.
static STATE_LOCK: Mutex<()> = Mutex::new(());
/// How often host-gw routes are checked even without Node changes (a link may have
/// come up, a route may have been removed by someone).
const PEER_ROUTES_RESYNC: Duration = Duration::from_secs(30);

/// The conflist's file name in the CNI conf dir.
const CONFLIST: &str = "10-skiff.conflist";
/// The record of what the agent added to the machine.
const STATE_FILE: &str = "network.json";
/// `ip`, as Debian installs it.
const IP: &str = "/usr/sbin/ip";
/// `iptables`, as Debian installs it.
const IPTABLES: &str = "/usr/sbin/iptables";

/// Where containerd's CNI plugin finds our configuration: `<dir>/cni/net.d`.
pub(crate) fn cni_conf_dir(dir: &Path) -> PathBuf {
    dir.join("cni").join("net.d")
}

/// host-local's allocations: `<dir>/cni/ipam`.
fn ipam_dir(dir: &Path) -> PathBuf {
    dir.join("cni").join("ipam")
}

/// What the agent added to the machine for pod networking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    /// The bridge CNI creates for pods.
    pub bridge: String,
    /// The node's pod CIDR the configuration was written for.
    pub pod_cidr: String,
    /// NAT chains of ours (hooked from POSTROUTING).
    pub nat_chains: Vec<String>,
    /// Routes we added (`10.43.0.0/16 dev lo`), as `ip route` arguments.
    pub routes: Vec<String>,
    /// host-local's allocation directory.
    pub ipam_dir: PathBuf,
    /// Routes to other nodes' pods we added (host-gw).
    #[serde(default)]
    pub peer_routes: Vec<PeerRoute>,
}

/// A route to another node's pods through its InternalIP.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeerRoute {
    /// The node's name.
    pub node: String,
    /// Its `spec.podCIDR`.
    pub pod_cidr: String,
    /// Its InternalIP, the gateway.
    pub via: Ipv4Addr,
}

impl PeerRoute {
    fn args(&self) -> [String; 3] {
        [self.pod_cidr.clone(), "via".into(), self.via.to_string()]
    }
}

impl NetworkState {
    fn load(dir: &Path) -> Option<NetworkState> {
        let bytes = std::fs::read(dir.join(STATE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn save(&self, dir: &Path) -> Result<(), Error> {
        let path = dir.join(STATE_FILE);
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Network(format!("encoding {}: {e}", path.display())))?;
        std::fs::write(&path, bytes)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
}

/// Writes the CNI configuration for `pod_cidr` and adds the Service CIDR route (and the
/// masquerading chain when configured). Idempotent: run at every start.
pub(crate) fn setup(config: &AgentConfig, pod_cidr: &str) -> Result<(), Error> {
    parse_cidr(pod_cidr)?;
    parse_cidr(&config.cluster_cidr)?;
    parse_cidr(&config.service_cidr)?;
    for dst in &config.pod_routes {
        parse_cidr(dst)?;
    }
    let _guard = STATE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let previous = NetworkState::load(&config.dir).unwrap_or_default();
    let mut state = NetworkState {
        bridge: config.cni_bridge.clone(),
        pod_cidr: pod_cidr.to_owned(),
        nat_chains: Vec::new(),
        routes: Vec::new(),
        ipam_dir: ipam_dir(&config.dir),
        peer_routes: previous.peer_routes.clone(),
    };

    // The Service CIDR is never routed off the machine: it is routed into loopback,
    // where a packet to a virtual IP that no DNAT rule rewrote is dropped. (An
    // `unreachable` route would do that too, but it also fails the route lookup of
    // connections the node itself opens, before the service proxy's OUTPUT rules
    // could rewrite them, so hostNetwork pods and `curl <ClusterIP>` on the node
    // could not reach Services.)
    let route = service_route(&config.service_cidr);
    for old in previous.routes.iter().filter(|r| **r != route) {
        // A route of an earlier start (another CIDR, or the earlier `unreachable` form).
        let args: Vec<&str> = ["route", "del"]
            .into_iter()
            .chain(old.split_whitespace())
            .collect();
        succeeds(IP, &args);
    }
    let exists = route_exists(&config.service_cidr)?;
    if !exists {
        let args: Vec<&str> = ["route", "replace"]
            .into_iter()
            .chain(route.split_whitespace())
            .collect();
        run(IP, &args)?;
        state.routes.push(route);
    } else if previous.routes.contains(&route) {
        state.routes.push(route);
    }

    if config.egress_masquerade {
        let chain = masquerade_chain(&config.dir);
        ensure_masquerade(&chain, pod_cidr, &config.cluster_cidr)?;
        state.nat_chains.push(chain);
    } else {
        // Switched off since the last start: take the chain away.
        for chain in &previous.nat_chains {
            remove_chain(chain);
        }
    }
    // Written before the conflist: killall must know the bridge once pods can exist.
    state.save(&config.dir)?;

    let conf_dir = cni_conf_dir(&config.dir);
    std::fs::create_dir_all(&conf_dir)
        .map_err(|e| Error::io(format!("creating {}", conf_dir.display()), e))?;
    let path = conf_dir.join(CONFLIST);
    let text = conflist(config, pod_cidr);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        let tmp = conf_dir.join(format!(".{CONFLIST}.tmp"));
        std::fs::write(&tmp, &text)
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        tracing::info!(pod_cidr, bridge = %config.cni_bridge, "CNI configuration written");
    }
    Ok(())
}

/// The CNI conflist for this node.
fn conflist(config: &AgentConfig, pod_cidr: &str) -> String {
    let mut routes = vec![
        serde_json::json!({ "dst": config.cluster_cidr }),
        serde_json::json!({ "dst": config.service_cidr }),
    ];
    for dst in &config.pod_routes {
        routes.push(serde_json::json!({ "dst": dst }));
    }
    if config.egress_masquerade {
        routes.push(serde_json::json!({ "dst": "0.0.0.0/0" }));
    }
    let value = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "skiff",
        "plugins": [
            {
                "type": "bridge",
                "bridge": config.cni_bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": routes,
                    "dataDir": ipam_dir(&config.dir),
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// Whether the configuration for pods is in place (containerd picks it up itself).
pub(crate) fn configured(dir: &Path) -> bool {
    cni_conf_dir(dir).join(CONFLIST).is_file()
}

/// The route that keeps the Service CIDR on the machine, as `ip route` arguments.
fn service_route(service_cidr: &str) -> String {
    format!("{service_cidr} dev lo")
}

/// A NAT chain name unique to this agent directory (iptables allows 28 characters).
fn masquerade_chain(dir: &Path) -> String {
    // FNV-1a of the directory: stable across restarts, distinct between agents.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in dir.as_os_str().as_encoded_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("SKIFF-POSTROUTING-{hash:08X}")
}

fn ensure_masquerade(chain: &str, pod_cidr: &str, cluster_cidr: &str) -> Result<(), Error> {
    if !succeeds(IPTABLES, &["-w", "-t", "nat", "-L", chain, "-n"]) {
        run(IPTABLES, &["-w", "-t", "nat", "-N", chain])?;
    }
    let rule = [
        "-s",
        pod_cidr,
        "!",
        "-d",
        cluster_cidr,
        "-m",
        "comment",
        "--comment",
        "skiff pod egress",
        "-j",
        "MASQUERADE",
    ];
    ensure_rule("nat", chain, &rule)?;
    ensure_rule("nat", "POSTROUTING", &["-j", chain])
}

fn ensure_rule(table: &str, chain: &str, rule: &[&str]) -> Result<(), Error> {
    let mut check = vec!["-w", "-t", table, "-C", chain];
    check.extend_from_slice(rule);
    if succeeds(IPTABLES, &check) {
        return Ok(());
    }
    let mut append = vec!["-w", "-t", table, "-A", chain];
    append.extend_from_slice(rule);
    run(IPTABLES, &append)
}

/// Unhooks and deletes a NAT chain of ours; returns whether it existed.
fn remove_chain(chain: &str) -> bool {
    while succeeds(
        IPTABLES,
        &["-w", "-t", "nat", "-D", "POSTROUTING", "-j", chain],
    ) {}
    let existed = succeeds(IPTABLES, &["-w", "-t", "nat", "-F", chain]);
    succeeds(IPTABLES, &["-w", "-t", "nat", "-X", chain]);
    existed
}

/// Whether the main table has a route for exactly `cidr`.
fn route_exists(cidr: &str) -> Result<bool, Error> {
    let output = Command::new(IP)
        .args(["-4", "route", "show", "exact", cidr, "table", "main"])
        .output()
        .map_err(|e| Error::io(format!("running {IP}"), e))?;
    Ok(!String::from_utf8_lossy(&output.stdout).trim().is_empty())
}

/// Removes what `<dir>/network.json` says the agent added: the bridge, its NAT chains,
/// its routes, host-local's allocations. Returns what was removed, one line each.
pub fn remove(dir: &Path) -> Vec<String> {
    let Some(state) = NetworkState::load(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    if !state.bridge.is_empty()
        && link_exists(&state.bridge)
        && succeeds(IP, &["link", "del", &state.bridge])
    {
        removed.push(format!("bridge {}", state.bridge));
    }
    for chain in &state.nat_chains {
        if remove_chain(chain) {
            removed.push(format!("iptables chain nat/{chain}"));
        }
    }
    for route in &state.routes {
        let args: Vec<&str> = std::iter::once("route")
            .chain(std::iter::once("del"))
            .chain(route.split_whitespace())
            .collect();
        if succeeds(IP, &args) {
            removed.push(format!("route {route}"));
        }
    }
    for route in &state.peer_routes {
        let [cidr, via, gateway] = route.args();
        if succeeds(IP, &["route", "del", &cidr, &via, &gateway]) {
            removed.push(format!("route {cidr} via {gateway} (node {})", route.node));
        }
    }
    if state.ipam_dir.starts_with(dir) && state.ipam_dir.exists() {
        match std::fs::remove_dir_all(&state.ipam_dir) {
            Ok(()) => removed.push(format!("IPAM state {}", state.ipam_dir.display())),
            Err(e) => tracing::warn!(error = %e, "cannot remove host-local's state"),
        }
    }
    removed
}

/// What of the recorded network is still on the machine (for `killall`'s check).
pub fn leftovers(dir: &Path) -> Vec<String> {
    let Some(state) = NetworkState::load(dir) else {
        return Vec::new();
    };
    let mut left = Vec::new();
    if !state.bridge.is_empty() && link_exists(&state.bridge) {
        left.push(format!("bridge {}", state.bridge));
    }
    for chain in &state.nat_chains {
        if succeeds(IPTABLES, &["-w", "-t", "nat", "-L", chain, "-n"]) {
            left.push(format!("iptables chain nat/{chain}"));
        }
    }
    for route in &state.routes {
        if let Some(cidr) = route.split_whitespace().last()
            && route_exists(cidr).unwrap_or(false)
        {
            left.push(format!("route {route}"));
        }
    }
    for route in &state.peer_routes {
        if route_via_exists(&route.pod_cidr, route.via) {
            left.push(format!("route {} via {}", route.pod_cidr, route.via));
        }
    }
    left
}

/// Whether a network interface of this network namespace has this name (`/sys` may
/// show another namespace's, e.g. under `nsenter --net`).
fn link_exists(name: &str) -> bool {
    succeeds(IP, &["link", "show", "dev", name])
}

/// Whether the main table routes exactly `cidr` through `via`.
fn route_via_exists(cidr: &str, via: Ipv4Addr) -> bool {
    Command::new(IP)
        .args(["-4", "route", "show", "exact", cidr, "table", "main"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout).lines().any(|l| {
                l.split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .any(|w| w == ["via", via.to_string().as_str()])
            })
        })
}

/// Whether `ip` is on a link of this machine (another host on it, not a gateway away,
/// not one of our own addresses).
fn directly_reachable(ip: Ipv4Addr) -> bool {
    let Ok(output) = Command::new(IP)
        .args(["-4", "-o", "route", "get", &ip.to_string()])
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    output.status.success()
        && words.first() == Some(&ip.to_string().as_str())
        && words.contains(&"dev")
        && !words.contains(&"via")
}

/// Keeps host-gw routes to the other nodes' pod CIDRs in step with the Nodes, until
/// shutdown: a route `<podCIDR> via <InternalIP>` for every other node with both,
/// when that IP is on a link of this machine (else it is logged once), and the routes
/// of nodes gone or changed removed. Routes are recorded in `network.json` before
/// they are added.
pub(crate) async fn peer_routes(
    client: kube::Client,
    config: AgentConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let mut events = watcher(nodes, watcher::Config::default()).boxed();
    let mut known: BTreeMap<String, Node> = BTreeMap::new();
    let mut initial: BTreeMap<String, Node> = BTreeMap::new();
    let mut synced = false;
    let mut warned = BTreeSet::new();
    let mut resync = tokio::time::interval(PEER_ROUTES_RESYNC);
    loop {
        let changed = tokio::select! {
            _ = crate::stopped(&mut shutdown) => return,
            _ = resync.tick() => synced,
            event = events.next() => match event {
                None => return,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "watching nodes for routes");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    false
                }
                Some(Ok(watcher::Event::Init)) => {
                    initial.clear();
                    false
                }
                Some(Ok(watcher::Event::InitApply(node))) => {
                    if let Some(name) = node.metadata.name.clone() {
                        initial.insert(name, node);
                    }
                    false
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    known = std::mem::take(&mut initial);
                    synced = true;
                    true
                }
                Some(Ok(watcher::Event::Apply(node))) => {
                    if let Some(name) = node.metadata.name.clone() {
                        known.insert(name, node);
                    }
                    synced
                }
                Some(Ok(watcher::Event::Delete(node))) => {
                    if let Some(name) = &node.metadata.name {
                        known.remove(name);
                    }
                    synced
                }
            },
        };
        if !changed {
            continue;
        }
        let wanted = wanted_routes(&config, known.values());
        let dir = config.dir.clone();
        let node_ip = config.node_ip;
        let unreachable = match tokio::task::spawn_blocking(move || {
            reconcile_peer_routes(&dir, node_ip, &wanted)
        })
        .await
        {
            Ok(Ok(unreachable)) => unreachable,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot update the routes to other nodes' pods");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(error = %e, "the route update failed");
                Vec::new()
            }
        };
        for route in unreachable {
            if warned.insert(route.clone()) {
                tracing::warn!(
                    node = %route.node,
                    pod_cidr = %route.pod_cidr,
                    internal_ip = %route.via,
                    "the node's InternalIP is not on a link of this machine: no route to its pods (host-gw needs the nodes on one network)"
                );
            }
        }
    }
}

/// The routes this node wants: one per other node with a pod CIDR and an IPv4
/// InternalIP.
fn wanted_routes<'a>(
    config: &AgentConfig,
    nodes: impl Iterator<Item = &'a Node>,
) -> Vec<PeerRoute> {
    let mut wanted: Vec<PeerRoute> = nodes
        .filter(|n| n.metadata.name.as_deref() != Some(config.node_name.as_str()))
        .filter_map(|n| {
            let pod_cidr = n
                .spec
                .as_ref()?
                .pod_cidr
                .clone()
                .filter(|c| !c.is_empty())?;
            parse_cidr(&pod_cidr).ok()?;
            let via = n
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .filter(|a| a.type_ == "InternalIP")
                .find_map(|a| a.address.parse::<Ipv4Addr>().ok())?;
            let node = n.metadata.name.clone()?;
            (IpAddr::V4(via) != config.node_ip).then_some(PeerRoute {
                node,
                pod_cidr,
                via,
            })
        })
        .collect();
    wanted.sort();
    wanted
}

/// Brings the recorded host-gw routes to `wanted`; returns the wanted routes whose
/// gateway is not on a local link.
fn reconcile_peer_routes(
    dir: &Path,
    node_ip: IpAddr,
    wanted: &[PeerRoute],
) -> Result<Vec<PeerRoute>, Error> {
    let _guard = STATE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut state = NetworkState::load(dir).unwrap_or_default();
    let mut unreachable = Vec::new();
    // Routes of nodes gone or changed.
    let (keep, gone): (Vec<PeerRoute>, Vec<PeerRoute>) = state
        .peer_routes
        .drain(..)
        .partition(|r| wanted.contains(r) && directly_reachable(r.via));
    for route in &gone {
        let [cidr, via, gateway] = route.args();
        if succeeds(IP, &["route", "del", &cidr, &via, &gateway]) {
            tracing::info!(node = %route.node, pod_cidr = %cidr, %gateway, "route to the node's pods removed");
        }
    }
    state.peer_routes = keep;
    state.save(dir)?;
    for route in wanted {
        if route.pod_cidr == state.pod_cidr || IpAddr::V4(route.via) == node_ip {
            continue;
        }
        if !directly_reachable(route.via) {
            unreachable.push(route.clone());
            continue;
        }
        let [cidr, via, gateway] = route.args();
        if state.peer_routes.contains(route) {
            if !route_via_exists(&cidr, route.via) {
                run(IP, &["route", "replace", &cidr, &via, &gateway])?;
                tracing::info!(node = %route.node, pod_cidr = %cidr, %gateway, "route to the node's pods restored");
            }
            continue;
        }
        if route_exists(&cidr)? {
            tracing::warn!(node = %route.node, pod_cidr = %cidr, "a route for the node's pod CIDR exists that this agent did not add; leaving it");
            continue;
        }
        // Recorded before it exists: killall must know every route we may have added.
        state.peer_routes.push(route.clone());
        state.save(dir)?;
        if let Err(e) = run(IP, &["route", "add", &cidr, &via, &gateway]) {
            state.peer_routes.retain(|r| r != route);
            state.save(dir)?;
            return Err(e);
        }
        tracing::info!(node = %route.node, pod_cidr = %cidr, %gateway, "route to the node's pods added");
    }
    Ok(unreachable)
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(program: &str, args: &[&str]) -> Result<(), Error> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::io(format!("running {program}"), e))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Network(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// An IPv4 CIDR's network address and prefix length.
pub(crate) fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8), Error> {
    let invalid = || Error::Network(format!("{cidr:?} is not an IPv4 CIDR"));
    let (addr, len) = cidr.split_once('/').ok_or_else(invalid)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
    let len: u8 = len.parse().map_err(|_| invalid())?;
    if len > 32 {
        return Err(invalid());
    }
    Ok((addr, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AgentConfig {
        let mut config = crate::config::tests::example();
        config.dir = PathBuf::from("/var/lib/skiff/agent");
        config
    }

    #[test]
    fn the_conflist_routes_the_cluster_and_services_but_not_the_world_without_egress() {
        let mut config = config();
        config.egress_masquerade = false;
        let value: serde_json::Value =
            serde_json::from_str(&conflist(&config, "10.42.3.0/24")).expect("json");
        let bridge = &value["plugins"][0];
        assert_eq!(bridge["bridge"], config.cni_bridge.as_str());
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.3.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/skiff/agent/cni/ipam");
        let routes: Vec<&str> = bridge["ipam"]["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .filter_map(|r| r["dst"].as_str())
            .collect();
        assert_eq!(
            routes,
            [config.cluster_cidr.as_str(), config.service_cidr.as_str()]
        );
        assert_eq!(value["plugins"][1]["capabilities"]["portMappings"], true);

        config.egress_masquerade = true;
        let value: serde_json::Value =
            serde_json::from_str(&conflist(&config, "10.42.3.0/24")).expect("json");
        assert!(value.to_string().contains("0.0.0.0/0"));
    }

    #[test]
    fn masquerade_chains_are_short_enough_and_differ_between_agents() {
        let a = masquerade_chain(Path::new("/var/lib/skiff/agent"));
        let b = masquerade_chain(Path::new("/tmp/x/agent"));
        assert!(a.len() <= 28, "{a}");
        assert_ne!(a, b);
        assert_eq!(a, masquerade_chain(Path::new("/var/lib/skiff/agent")));
    }

    fn node(name: &str, pod_cidr: Option<&str>, internal_ip: Option<&str>) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": name },
            "spec": { "podCIDR": pod_cidr },
            "status": { "addresses": internal_ip.map(|ip| vec![
                serde_json::json!({ "type": "Hostname", "address": name }),
                serde_json::json!({ "type": "InternalIP", "address": ip }),
            ]) },
        }))
        .expect("node")
    }

    #[test]
    fn routes_go_to_every_other_node_with_a_pod_cidr_and_an_internal_ip() {
        let mut config = config();
        config.node_name = "a".into();
        config.node_ip = IpAddr::from([192, 168, 1, 10]);
        let nodes = [
            node("a", Some("10.42.0.0/24"), Some("192.168.1.10")),
            node("b", Some("10.42.1.0/24"), Some("192.168.1.11")),
            node("c", None, Some("192.168.1.12")),
            node("d", Some("10.42.3.0/24"), None),
            node("e", Some("10.42.4.0/24"), Some("192.168.1.10")),
        ];
        assert_eq!(
            wanted_routes(&config, nodes.iter()),
            [PeerRoute {
                node: "b".into(),
                pod_cidr: "10.42.1.0/24".into(),
                via: Ipv4Addr::new(192, 168, 1, 11),
            }]
        );
    }

    #[test]
    fn older_state_files_without_peer_routes_still_load() {
        let state: NetworkState = serde_json::from_str(
            r#"{"bridge":"skiff0","pod_cidr":"10.42.0.0/24","nat_chains":[],"routes":[],"ipam_dir":"/x"}"#,
        )
        .expect("loads");
        assert!(state.peer_routes.is_empty());
    }

    #[test]
    fn cidrs_are_parsed() {
        assert_eq!(
            parse_cidr("10.42.0.0/16").expect("valid"),
            (Ipv4Addr::new(10, 42, 0, 0), 16)
        );
        assert!(parse_cidr("10.42.0.0").is_err());
        assert!(parse_cidr("10.42.0.0/40").is_err());
    }
}
