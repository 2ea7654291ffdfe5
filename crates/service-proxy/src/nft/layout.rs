//! The nftables layout, as a pure function: what each service port puts into our
//! table (map and set elements, chains, affinity sets) and what the table always
//! holds (base chains, the dispatch chains, the declarations of maps and sets).
//!
//! Unlike the iptables layout, a service port without session affinity owns no
//! chain at all: its cluster IP is an element of the `service-ips` verdict map that
//! jumps to a chain shared by every service with the same number of endpoints
//! (`cluster-5`), which picks one with `numgen random mod 5` and looks the endpoint
//! up in the `cluster-endpoints` map under the packet's own destination. An endpoint
//! change is then a few element updates, and a full load is mostly elements, which
//! nftables loads far faster than chains. Services with ClientIP affinity keep
//! kube-proxy's per-service and per-endpoint chains, with one dynamic set per
//! endpoint remembering its clients.

use std::net::Ipv4Addr;

use crate::config::{Ipv4Cidr, NodeView, ProxyConfig};
use crate::model::{Endpoint, Protocol, ServicePort};
use crate::names::hash;
use crate::ruleset::UdpService;

/// What an item of our table is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ItemKind {
    /// A set or map: the value is `set { ... }` or `map { ... }`.
    Set,
    /// A chain: the value's first line is its declaration (empty for a regular
    /// chain), the other lines its rules.
    Chain,
    /// An element of the set or map `name`: the key, and the value is its data
    /// (empty in a set).
    Element,
}

/// One thing in our table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Item {
    pub(crate) kind: ItemKind,
    /// The set, map or chain name (for an element: its set or map).
    pub(crate) name: String,
    /// The element's key (empty for sets and chains).
    pub(crate) key: String,
}

impl Item {
    fn set(name: &str) -> Self {
        Self {
            kind: ItemKind::Set,
            name: name.to_owned(),
            key: String::new(),
        }
    }

    fn chain(name: &str) -> Self {
        Self {
            kind: ItemKind::Chain,
            name: name.to_owned(),
            key: String::new(),
        }
    }

    fn element(set: &str, key: String) -> Self {
        Self {
            kind: ItemKind::Element,
            name: set.to_owned(),
            key,
        }
    }
}

/// Items with their values.
pub(crate) type Items = Vec<(Item, String)>;

// Maps and sets of the table.
pub(crate) const SERVICE_IPS: &str = "service-ips";
pub(crate) const SERVICE_NODEPORTS: &str = "service-nodeports";
pub(crate) const MASQUERADE_IPS: &str = "cluster-ips-masquerade";
pub(crate) const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub(crate) const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub(crate) const CLUSTER_ENDPOINTS: &str = "cluster-endpoints";
pub(crate) const LOCAL_ENDPOINTS: &str = "local-endpoints";
pub(crate) const HAIRPIN: &str = "hairpin";
pub(crate) const NODEPORT_IPS: &str = "nodeport-ips";

// Chains every table has.
const SERVICES: &str = "services";
const MASQUERADING: &str = "masquerading";
const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
const REJECT: &str = "reject-chain";

/// What the layout needs from the configuration and the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Context {
    mark: String,
    cluster_cidr: Option<Ipv4Cidr>,
    masquerade_all: bool,
    localhost_nodeports: bool,
    /// The addresses NodePorts answer on.
    nodeport_ips: Vec<Ipv4Addr>,
}

impl Context {
    pub(crate) fn new(config: &ProxyConfig, node: &NodeView) -> Self {
        let mut nodeport_ips = node.ips.clone();
        if config.localhost_nodeports {
            if !nodeport_ips.contains(&Ipv4Addr::LOCALHOST) {
                nodeport_ips.push(Ipv4Addr::LOCALHOST);
            }
        } else {
            nodeport_ips.retain(|ip| !ip.is_loopback());
        }
        nodeport_ips.sort();
        nodeport_ips.dedup();
        Self {
            mark: config.mark(),
            cluster_cidr: config.cluster_cidr,
            masquerade_all: config.masquerade_all,
            localhost_nodeports: config.localhost_nodeports,
            nodeport_ips,
        }
    }
}

/// The items every table holds, whatever the Services.
pub(crate) fn base(ctx: &Context) -> Items {
    let mut items = Items::new();
    let set = |items: &mut Items, name: &str, decl: &str| {
        items.push((Item::set(name), decl.to_owned()));
    };
    let service_map = "map { type ipv4_addr . inet_proto . inet_service : verdict ; }";
    let port_map = "map { type inet_proto . inet_service : verdict ; }";
    // (`tcp dport`, not `th dport`: nft 1.0.6 cannot list a dnat map lookup keyed by
    // `th dport` after a protocol match, and then refuses later transactions.)
    let endpoint_map = "map { typeof ip daddr . meta l4proto . tcp dport . numgen random mod 1 : ip daddr . tcp dport ; }";
    set(&mut items, SERVICE_IPS, service_map);
    set(&mut items, SERVICE_NODEPORTS, port_map);
    set(
        &mut items,
        MASQUERADE_IPS,
        "set { type ipv4_addr . inet_proto . inet_service ; }",
    );
    set(&mut items, NO_ENDPOINT_SERVICES, service_map);
    set(&mut items, NO_ENDPOINT_NODEPORTS, port_map);
    set(&mut items, CLUSTER_ENDPOINTS, endpoint_map);
    set(&mut items, LOCAL_ENDPOINTS, endpoint_map);
    set(&mut items, HAIRPIN, "set { type ipv4_addr . ipv4_addr ; }");
    set(&mut items, NODEPORT_IPS, "set { type ipv4_addr ; }");
    for ip in &ctx.nodeport_ips {
        items.push((Item::element(NODEPORT_IPS, ip.to_string()), String::new()));
    }

    let chain = |items: &mut Items, name: &str, decl: &str, rules: &[String]| {
        let mut value = decl.to_owned();
        for rule in rules {
            value.push('\n');
            value.push_str(rule);
        }
        items.push((Item::chain(name), value));
    };
    let own = |rules: &[&str]| rules.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>();
    chain(
        &mut items,
        "nat-prerouting",
        "{ type nat hook prerouting priority dstnat ; }",
        &own(&["jump services"]),
    );
    chain(
        &mut items,
        "nat-output",
        "{ type nat hook output priority -100 ; }",
        &own(&["jump services"]),
    );
    chain(
        &mut items,
        "nat-postrouting",
        "{ type nat hook postrouting priority srcnat ; }",
        &own(&["jump masquerading"]),
    );
    let checks = [
        format!("ct state new ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"),
        format!(
            "ct state new ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"
        ),
    ];
    // NodePorts on 127.0.0.1 need route_localnet; like kube-proxy, only local
    // processes may reach 127.0.0.1 then (the localnet firewall).
    let firewall = ctx.localhost_nodeports.then(|| {
        "ip saddr != 127.0.0.0/8 ip daddr 127.0.0.0/8 ct state & (established | related) == 0 ct status & dnat == 0 drop".to_owned()
    });
    for (name, hook) in [
        ("filter-input", "input"),
        ("filter-forward", "forward"),
        ("filter-output", "output"),
    ] {
        let mut rules: Vec<String> = Vec::new();
        if hook != "forward" {
            rules.extend(firewall.clone());
        }
        rules.extend(checks.iter().cloned());
        chain(
            &mut items,
            name,
            &format!("{{ type filter hook {hook} priority -1 ; }}"),
            &rules,
        );
    }

    let mut services = Vec::new();
    let masquerade = format!("ip daddr . meta l4proto . th dport @{MASQUERADE_IPS}");
    if ctx.masquerade_all {
        services.push(format!("{masquerade} jump {MARK_FOR_MASQUERADE}"));
    } else if let Some(cidr) = ctx.cluster_cidr {
        services.push(format!(
            "{masquerade} ip saddr != {cidr} jump {MARK_FOR_MASQUERADE}"
        ));
    }
    services.push(format!(
        "ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"
    ));
    services.push(format!(
        "ip daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"
    ));
    chain(&mut items, SERVICES, "", &services);
    let mark = &ctx.mark;
    chain(
        &mut items,
        MASQUERADING,
        "",
        &[
            // A pod reaching itself through its service (hairpin).
            format!("ct status dnat ip saddr . ip daddr @{HAIRPIN} jump {MARK_FOR_MASQUERADE}"),
            format!("meta mark & {mark} == 0 return"),
            format!("meta mark set meta mark ^ {mark}"),
            "masquerade fully-random".to_owned(),
        ],
    );
    chain(
        &mut items,
        MARK_FOR_MASQUERADE,
        "",
        &[format!("meta mark set meta mark | {mark}")],
    );
    chain(
        &mut items,
        REJECT,
        "",
        &own(&["meta l4proto tcp reject with tcp reset", "reject"]),
    );
    items
}

/// The owner name of a service port's items: `namespace/name:port/protocol`.
pub(crate) fn owner(sp: &ServicePort) -> String {
    format!("{}/{}", sp.name, sp.protocol.lower())
}

/// What one service port contributes, and its UDP conntrack data (for UDP ports).
pub(crate) struct Contribution {
    pub(crate) items: Items,
    pub(crate) udp: Option<UdpService>,
    pub(crate) endpoints: usize,
}

/// The items of one service port (kube-proxy's rules for it, in our layout).
pub(crate) fn service_port(sp: &ServicePort, ctx: &Context) -> Contribution {
    let mut items = Items::new();
    let proto = sp.protocol.lower();
    let categorized = sp.categorize();
    let has_any = categorized.has_any;
    let affinity = sp.affinity_timeout;
    let readable = readable(sp);
    let port_hash = hash(&[&sp.name, proto]);

    // The chain that picks a cluster-wide endpoint, and the one that picks a local one.
    let pick = |items: &mut Items, kind: &str, endpoints: &[Endpoint]| -> Option<String> {
        if endpoints.is_empty() {
            return None;
        }
        Some(match affinity {
            Some(timeout) => {
                let name = format!("{kind}-{port_hash}-{readable}");
                let mut rules = Vec::new();
                for e in endpoints {
                    rules.push(format!(
                        "ip saddr @{} goto {}",
                        affinity_set(sp, e, timeout),
                        endpoint_chain(sp, e)
                    ));
                }
                let n = endpoints.len();
                for (i, e) in endpoints.iter().enumerate() {
                    let chain = endpoint_chain(sp, e);
                    if i + 1 < n {
                        rules.push(format!("numgen random mod {} == 0 goto {chain}", n - i));
                    } else {
                        rules.push(format!("goto {chain}"));
                    }
                }
                push_chain(items, &name, "", &rules);
                name
            }
            None => {
                let (name, map) = if kind == "service" {
                    (format!("cluster-{}", endpoints.len()), CLUSTER_ENDPOINTS)
                } else {
                    (format!("local-{}", endpoints.len()), LOCAL_ENDPOINTS)
                };
                let rules: Vec<String> = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
                    .iter()
                    .map(|p| {
                        format!(
                            "meta l4proto {0} dnat ip to ip daddr . meta l4proto . {0} dport . numgen random mod {1} map @{map}",
                            p.lower(),
                            endpoints.len()
                        )
                    })
                    .collect();
                push_chain(items, &name, "", &rules);
                name
            }
        })
    };
    let uses_cluster = sp.uses_cluster_endpoints() && !categorized.cluster.is_empty();
    let uses_local = sp.uses_local_endpoints() && !categorized.local.is_empty();
    let cluster_target = if uses_cluster {
        pick(&mut items, "service", &categorized.cluster)
    } else {
        None
    };
    let local_target = if uses_local {
        pick(&mut items, "local", &categorized.local)
    } else {
        None
    };

    let (internal_target, has_internal) = if sp.internal_local {
        (&local_target, has_any && !categorized.local.is_empty())
    } else {
        (&cluster_target, has_any)
    };
    let (policy_target, has_external) = if sp.external_local {
        (&local_target, has_any && !categorized.local.is_empty())
    } else {
        (&cluster_target, has_any)
    };
    let uses_ext_chain = has_any && sp.externally_accessible();
    let unreachable = if has_any {
        "drop".to_owned()
    } else {
        format!("goto {REJECT}")
    };

    // Traffic from outside the cluster: masquerade, then the policy's endpoints.
    let ext_target: Option<String> = if !uses_ext_chain {
        None
    } else if sp.external_local || affinity.is_some() {
        let name = format!("external-{port_hash}-{readable}");
        let mut rules = Vec::new();
        if !sp.external_local {
            rules.push(format!("jump {MARK_FOR_MASQUERADE}"));
        } else if let Some(cluster) = &cluster_target {
            if let Some(cidr) = ctx.cluster_cidr {
                rules.push(format!("ip saddr {cidr} goto {cluster}"));
            }
            rules.push(format!("fib saddr type local jump {MARK_FOR_MASQUERADE}"));
            rules.push(format!("fib saddr type local goto {cluster}"));
        }
        if let (true, Some(policy)) = (has_external, policy_target) {
            rules.push(format!("goto {policy}"));
        }
        push_chain(&mut items, &name, "", &rules);
        Some(name)
    } else {
        cluster_target.as_ref().map(|cluster| {
            let name = format!("external-{cluster}");
            push_chain(
                &mut items,
                &name,
                "",
                &[
                    format!("jump {MARK_FOR_MASQUERADE}"),
                    format!("goto {cluster}"),
                ],
            );
            name
        })
    };

    // The cluster IP.
    let vip = format!("{} . {proto} . {}", sp.cluster_ip, sp.port);
    match (has_internal, internal_target) {
        (true, Some(target)) => {
            items.push((
                Item::element(SERVICE_IPS, vip.clone()),
                format!("goto {target}"),
            ));
            items.push((Item::element(MASQUERADE_IPS, vip), String::new()));
        }
        _ => items.push((
            Item::element(NO_ENDPOINT_SERVICES, vip),
            unreachable.clone(),
        )),
    }
    // External and load-balancer IPs.
    for ip in sp.external_ips.iter().chain(&sp.load_balancer_ips) {
        let key = format!("{ip} . {proto} . {}", sp.port);
        if let (true, Some(target)) = (has_any, &ext_target) {
            items.push((
                Item::element(SERVICE_IPS, key.clone()),
                format!("goto {target}"),
            ));
        }
        if !has_external {
            items.push((
                Item::element(NO_ENDPOINT_SERVICES, key),
                unreachable.clone(),
            ));
        }
    }
    // The NodePort.
    if let Some(node_port) = sp.node_port {
        let key = format!("{proto} . {node_port}");
        if let (true, Some(target)) = (has_any, &ext_target) {
            items.push((
                Item::element(SERVICE_NODEPORTS, key.clone()),
                format!("goto {target}"),
            ));
        }
        if !has_external {
            items.push((Item::element(NO_ENDPOINT_NODEPORTS, key), unreachable));
        }
    }

    // The endpoints, under every address and port the service is reached at.
    if affinity.is_none() {
        let mut entries: Vec<(Ipv4Addr, u16)> = vec![(sp.cluster_ip, sp.port)];
        entries.extend(
            sp.external_ips
                .iter()
                .chain(&sp.load_balancer_ips)
                .map(|ip| (*ip, sp.port)),
        );
        if let Some(node_port) = sp.node_port {
            entries.extend(ctx.nodeport_ips.iter().map(|ip| (*ip, node_port)));
        }
        for (used, map, endpoints) in [
            (uses_cluster, CLUSTER_ENDPOINTS, &categorized.cluster),
            (uses_local, LOCAL_ENDPOINTS, &categorized.local),
        ] {
            if !used {
                continue;
            }
            for (ip, port) in &entries {
                for (i, e) in endpoints.iter().enumerate() {
                    items.push((
                        Item::element(map, format!("{ip} . {proto} . {port} . {i}")),
                        format!("{} . {}", e.ip, e.port),
                    ));
                }
            }
        }
    } else if let Some(timeout) = affinity {
        for e in &categorized.reachable {
            let set = affinity_set(sp, e, timeout);
            items.push((
                Item::set(&set),
                format!("set {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"),
            ));
            push_chain(
                &mut items,
                &endpoint_chain(sp, e),
                "",
                &[
                    format!("update @{set} {{ ip saddr }}"),
                    format!("meta l4proto {proto} dnat ip to {}:{}", e.ip, e.port),
                ],
            );
        }
    }
    for e in &categorized.reachable {
        items.push((
            Item::element(HAIRPIN, format!("{} . {}", e.ip, e.ip)),
            String::new(),
        ));
    }

    let udp = (sp.protocol == Protocol::Udp).then(|| {
        let mut vips = vec![sp.cluster_ip];
        vips.extend(&sp.external_ips);
        vips.extend(&sp.load_balancer_ips);
        UdpService {
            vips,
            port: sp.port,
            node_port: sp.node_port,
            endpoints: categorized.reachable.iter().map(|e| e.ip).collect(),
        }
    });
    Contribution {
        items,
        udp,
        endpoints: categorized.reachable.len(),
    }
}

fn push_chain(items: &mut Items, name: &str, decl: &str, rules: &[String]) {
    let mut value = decl.to_owned();
    for rule in rules {
        value.push('\n');
        value.push_str(rule);
    }
    items.push((Item::chain(name), value));
}

/// `namespace/name/protocol/port` as kube-proxy's nftables chains spell it.
fn readable(sp: &ServicePort) -> String {
    let proto = sp.protocol.lower();
    match sp.name.split_once(':') {
        Some((service, port)) => format!("{service}/{proto}/{port}"),
        None => format!("{}/{proto}", sp.name),
    }
}

fn endpoint_chain(sp: &ServicePort, e: &Endpoint) -> String {
    let proto = sp.protocol.lower();
    format!(
        "endpoint-{}-{}__{}/{}",
        hash(&[&sp.name, proto, &e.address()]),
        readable(sp),
        e.ip,
        e.port
    )
}

/// The set of clients that stick to endpoint `e`; the timeout is part of the name,
/// so a changed timeout is a new set.
fn affinity_set(sp: &ServicePort, e: &Endpoint, timeout: u32) -> String {
    let proto = sp.protocol.lower();
    format!(
        "affinity-{}-{timeout}",
        hash(&[&sp.name, proto, &e.address()])
    )
}
