//! The pure core: Services + EndpointSlices + the node -> the complete contents of our
//! chains (kube-proxy's iptables layout) and the hooks into them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::config::{Ipv4Cidr, NodeView, ProxyConfig};
use crate::model::{Endpoint, Protocol, ServicePort, service_ports};
use crate::names::Names;
use crate::ruleset::{Hook, Ruleset, TableKind, UdpService, probability, quote};
use crate::state::ServiceState;

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Computes every rule of our chains and every hook for `services` and
/// `endpoint_slices` on `node`. Pure: the same input gives the same [`Ruleset`].
pub fn desired<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    endpoint_slices: impl IntoIterator<Item = &'a EndpointSlice>,
    node: &NodeView,
    config: &ProxyConfig,
) -> Ruleset {
    let ports = service_ports(services, endpoint_slices, &node.name);
    from_ports(ports.iter(), node, config)
}

/// [`desired`] for the Services and EndpointSlices held in `state`, computing again
/// only the Services that changed since the state was last asked.
pub fn desired_from(state: &mut ServiceState, node: &NodeView, config: &ProxyConfig) -> Ruleset {
    state.set_node_name(&node.name);
    state.refresh();
    from_ports(state.sorted_ports().into_iter(), node, config)
}

fn from_ports<'a>(
    ports: impl Iterator<Item = &'a ServicePort>,
    node: &NodeView,
    config: &ProxyConfig,
) -> Ruleset {
    let mut builder = Builder::new(config, node);
    for port in ports {
        builder.service_port(port);
    }
    builder.finish()
}

/// A rule under construction, in `iptables-save` order.
struct Rule(String);

impl Rule {
    fn new() -> Self {
        Rule(String::with_capacity(96))
    }

    fn arg(mut self, arg: &str) -> Self {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(arg);
        self
    }

    fn args(self, args: &[&str]) -> Self {
        args.iter().fold(self, |rule, arg| rule.arg(arg))
    }

    fn comment(self, comment: &str) -> Self {
        let quoted = quote(comment);
        self.args(&["-m", "comment", "--comment", &quoted])
    }

    fn jump(self, target: &str) -> String {
        self.arg("-j").arg(target).0
    }
}

struct Builder<'c> {
    config: &'c ProxyConfig,
    names: Names,
    mark: String,
    cluster_cidr: Option<String>,
    nodeport_ips: Vec<Ipv4Addr>,
    rules: Ruleset,
    /// Cluster IPs outside every Service CIDR (each needs a hook of its own).
    stray_cluster_ips: BTreeSet<Ipv4Addr>,
    /// External and load-balancer IPs.
    external_ips: BTreeSet<Ipv4Addr>,
}

impl<'c> Builder<'c> {
    fn new(config: &'c ProxyConfig, node: &NodeView) -> Self {
        let names = Names::new(&config.prefix);
        let mark = config.mark();
        let mut nodeport_ips = node.ips.clone();
        if config.localhost_nodeports && !nodeport_ips.contains(&LOCALHOST) {
            nodeport_ips.push(LOCALHOST);
        } else if !config.localhost_nodeports {
            nodeport_ips.retain(|ip| !ip.is_loopback());
        }
        let mut rules = Ruleset {
            prefix: config.prefix.clone(),
            ..Ruleset::default()
        };
        for chain in [
            names.services(),
            names.nodeports(),
            names.mark_masq(),
            names.postrouting(),
        ] {
            rules.nat.insert(chain, Vec::new());
        }
        for chain in [names.services(), names.external_services(), names.forward()] {
            rules.filter.insert(chain, Vec::new());
        }
        let masked = format!("{mark}/{mark}");
        rules.nat.insert(
            names.mark_masq(),
            vec![Rule::new().args(&["-j", "MARK", "--set-xmark", &masked]).0],
        );
        rules.nat.insert(
            names.postrouting(),
            vec![
                Rule::new()
                    .args(&["-m", "mark", "!", "--mark", &masked])
                    .jump("RETURN"),
                Rule::new()
                    .args(&["-j", "MARK", "--set-xmark", &format!("{mark}/0x0")])
                    .0,
                Rule::new()
                    .comment("kubernetes service traffic requiring SNAT")
                    .args(&["-j", "MASQUERADE", "--random-fully"])
                    .0,
            ],
        );
        rules.filter.insert(
            names.forward(),
            vec![
                Rule::new()
                    .comment("kubernetes forwarding rules")
                    .args(&["-m", "mark", "--mark", &masked])
                    .jump("ACCEPT"),
            ],
        );
        if config.localhost_nodeports {
            rules.filter.insert(
                names.firewall(),
                vec![
                    Rule::new()
                        .args(&["!", "-s", "127.0.0.0/8", "-d", "127.0.0.0/8"])
                        .comment("block incoming localnet connections")
                        .args(&[
                            "-m",
                            "conntrack",
                            "!",
                            "--ctstate",
                            "RELATED,ESTABLISHED,DNAT",
                        ])
                        .jump("DROP"),
                ],
            );
        }
        Self {
            config,
            names,
            mark,
            cluster_cidr: config.cluster_cidr.map(|c| c.to_string()),
            nodeport_ips,
            rules,
            stray_cluster_ips: BTreeSet::new(),
            external_ips: BTreeSet::new(),
        }
    }

    fn push(&mut self, table: TableKind, chain: &str, rule: String) {
        self.rules
            .table_mut(table)
            .entry(chain.to_owned())
            .or_default()
            .push(rule);
    }

    /// The rules of one service port (kube-proxy's `syncProxyRules` loop body).
    fn service_port(&mut self, sp: &ServicePort) {
        let names = self.names.clone();
        let proto = sp.protocol.lower();
        let name = sp.name.as_str();
        let categorized = sp.categorize();
        let svc_chain = names.svc(name, proto);
        let svl_chain = names.svl(name, proto);
        let ext_chain = names.ext(name, proto);
        let uses_cluster_chain = !categorized.cluster.is_empty() && sp.uses_cluster_endpoints();
        let uses_local_chain = !categorized.local.is_empty() && sp.uses_local_endpoints();
        let has_any = categorized.has_any;

        let (internal_chain, has_internal) = if sp.internal_local {
            (&svl_chain, has_any && !categorized.local.is_empty())
        } else {
            (&svc_chain, has_any)
        };
        let (external_policy_chain, has_external) = if sp.external_local {
            (&svl_chain, has_any && !categorized.local.is_empty())
        } else {
            (&svc_chain, has_any)
        };
        let uses_ext_chain = has_any && sp.externally_accessible();

        let reject = match sp.protocol {
            Protocol::Tcp => ["REJECT", "--reject-with", "tcp-reset"],
            Protocol::Udp | Protocol::Sctp => ["REJECT", "--reject-with", "icmp-port-unreachable"],
        };
        let no_endpoints = format!("{name} has no endpoints");
        let no_local = format!("{name} has no local endpoints");
        let (internal_filter, internal_filter_comment): (&[&str], &str) = if !has_any {
            (&reject, &no_endpoints)
        } else {
            (&["DROP"], &no_local)
        };
        let (external_filter, external_filter_comment) = (internal_filter, internal_filter_comment);

        let port = sp.port.to_string();
        let cluster_ip = format!("{}/32", sp.cluster_ip);
        if !self
            .config
            .service_cidrs
            .iter()
            .any(|c| c.contains(sp.cluster_ip))
        {
            self.stray_cluster_ips.insert(sp.cluster_ip);
        }
        let services = names.services();
        let cluster_ip_comment = format!("{name} cluster IP");

        // Cluster IP.
        if has_internal {
            let rule = Rule::new()
                .args(&["-d", &cluster_ip, "-p", proto])
                .comment(&cluster_ip_comment)
                .args(&["-m", proto, "--dport", &port])
                .jump(internal_chain);
            self.push(TableKind::Nat, &services, rule);
        } else {
            let rule = Rule::new()
                .args(&["-d", &cluster_ip, "-p", proto])
                .comment(internal_filter_comment)
                .args(&["-m", proto, "--dport", &port, "-j"])
                .args(internal_filter)
                .0;
            self.push(TableKind::Filter, &services, rule);
        }

        // External IPs and load-balancer IPs.
        let external_services = names.external_services();
        for (ips, what) in [
            (&sp.external_ips, "external IP"),
            (&sp.load_balancer_ips, "loadbalancer IP"),
        ] {
            for ip in ips {
                self.external_ips.insert(*ip);
                let dst = format!("{ip}/32");
                if has_any {
                    let rule = Rule::new()
                        .args(&["-d", &dst, "-p", proto])
                        .comment(&format!("{name} {what}"))
                        .args(&["-m", proto, "--dport", &port])
                        .jump(&ext_chain);
                    self.push(TableKind::Nat, &services, rule);
                }
                if !has_external {
                    let rule = Rule::new()
                        .args(&["-d", &dst, "-p", proto])
                        .comment(external_filter_comment)
                        .args(&["-m", proto, "--dport", &port, "-j"])
                        .args(external_filter)
                        .0;
                    self.push(TableKind::Filter, &external_services, rule);
                }
            }
        }

        // NodePort.
        if let Some(node_port) = sp.node_port {
            let node_port = node_port.to_string();
            if has_any {
                let rule = Rule::new()
                    .args(&["-p", proto])
                    .comment(name)
                    .args(&["-m", proto, "--dport", &node_port])
                    .jump(&ext_chain);
                self.push(TableKind::Nat, &names.nodeports(), rule);
            }
            if !has_external {
                let rule = Rule::new()
                    .args(&["-p", proto])
                    .comment(external_filter_comment)
                    .args(&["-m", "addrtype", "--dst-type", "LOCAL"])
                    .args(&["-m", proto, "--dport", &node_port, "-j"])
                    .args(external_filter)
                    .0;
                self.push(TableKind::Filter, &external_services, rule);
            }
        }

        // Masquerade off-cluster traffic to the cluster IP.
        if has_internal {
            let base = if self.config.masquerade_all {
                Some(Rule::new())
            } else {
                self.cluster_cidr
                    .as_deref()
                    .map(|cidr| Rule::new().args(&["!", "-s", cidr]))
            };
            if let Some(base) = base {
                let rule = base
                    .args(&["-d", &cluster_ip, "-p", proto])
                    .comment(&cluster_ip_comment)
                    .args(&["-m", proto, "--dport", &port])
                    .jump(&names.mark_masq());
                self.push(TableKind::Nat, internal_chain, rule);
            }
        }

        // The external-traffic chain.
        if uses_ext_chain {
            let mut rules = Vec::new();
            if !sp.external_local {
                rules.push(
                    Rule::new()
                        .comment(&format!(
                            "masquerade traffic for {name} external destinations"
                        ))
                        .jump(&names.mark_masq()),
                );
            } else if uses_cluster_chain {
                if let Some(cidr) = &self.cluster_cidr {
                    rules.push(
                        Rule::new()
                            .args(&["-s", cidr])
                            .comment(&format!("pod traffic for {name} external destinations"))
                            .jump(&svc_chain),
                    );
                }
                rules.push(
                    Rule::new()
                        .comment(&format!(
                            "masquerade LOCAL traffic for {name} external destinations"
                        ))
                        .args(&["-m", "addrtype", "--src-type", "LOCAL"])
                        .jump(&names.mark_masq()),
                );
                rules.push(
                    Rule::new()
                        .comment(&format!(
                            "route LOCAL traffic for {name} external destinations"
                        ))
                        .args(&["-m", "addrtype", "--src-type", "LOCAL"])
                        .jump(&svc_chain),
                );
            }
            if has_external {
                rules.push(Rule::new().jump(external_policy_chain));
            }
            self.rules
                .nat
                .entry(ext_chain.clone())
                .or_default()
                .extend(rules);
        }

        if uses_cluster_chain {
            self.endpoint_jumps(sp, &svc_chain, &categorized.cluster);
        }
        if uses_local_chain {
            self.endpoint_jumps(sp, &svl_chain, &categorized.local);
        }
        for endpoint in &categorized.reachable {
            self.endpoint_chain(sp, endpoint);
        }
        self.rules.service_ports += 1;
        self.rules.endpoints += categorized.reachable.len();

        if sp.protocol == Protocol::Udp {
            let mut vips = vec![sp.cluster_ip];
            vips.extend(&sp.external_ips);
            vips.extend(&sp.load_balancer_ips);
            self.rules.udp.insert(
                name.to_owned(),
                UdpService {
                    vips,
                    port: sp.port,
                    node_port: sp.node_port,
                    endpoints: categorized.reachable.iter().map(|e| e.ip).collect(),
                },
            );
        }
    }

    /// The jumps from a SVC/SVL chain to its endpoints: affinity first, then random
    /// balancing with kube-proxy's probabilities (the last one unconditional).
    fn endpoint_jumps(&mut self, sp: &ServicePort, chain: &str, endpoints: &[Endpoint]) {
        let proto = sp.protocol.lower();
        let mut rules = self.rules.nat.remove(chain).unwrap_or_default();
        let seps: Vec<(String, String)> = endpoints
            .iter()
            .map(|e| {
                let address = e.address();
                (self.names.sep(&sp.name, proto, &address), address)
            })
            .collect();
        if let Some(timeout) = sp.affinity_timeout {
            let seconds = timeout.to_string();
            for (sep, address) in &seps {
                rules.push(
                    Rule::new()
                        .comment(&format!("{} -> {address}", sp.name))
                        .args(&["-m", "recent", "--rcheck", "--seconds", &seconds, "--reap"])
                        .args(&["--name", sep, "--mask", "255.255.255.255", "--rsource"])
                        .jump(sep),
                );
            }
        }
        let n = seps.len();
        for (i, (sep, address)) in seps.iter().enumerate() {
            let mut rule = Rule::new().comment(&format!("{} -> {address}", sp.name));
            if i + 1 < n {
                rule = rule
                    .args(&["-m", "statistic", "--mode", "random", "--probability"])
                    .arg(&probability(n - i));
            }
            rules.push(rule.jump(sep));
        }
        self.rules.nat.insert(chain.to_owned(), rules);
    }

    /// A SEP chain: hairpin masquerade, affinity bookkeeping, DNAT.
    fn endpoint_chain(&mut self, sp: &ServicePort, endpoint: &Endpoint) {
        let proto = sp.protocol.lower();
        let address = endpoint.address();
        let sep = self.names.sep(&sp.name, proto, &address);
        let source = format!("{}/32", endpoint.ip);
        let hairpin = Rule::new()
            .args(&["-s", &source])
            .comment(&sp.name)
            .jump(&self.names.mark_masq());
        let mut dnat = Rule::new().args(&["-p", proto]).comment(&sp.name);
        if sp.affinity_timeout.is_some() {
            dnat = dnat
                .args(&["-m", "recent", "--set", "--name", &sep])
                .args(&["--mask", "255.255.255.255", "--rsource"]);
        }
        let dnat = dnat
            .args(&["-m", proto, "-j", "DNAT", "--to-destination", &address])
            .0;
        self.rules.nat.insert(sep, vec![hairpin, dnat]);
    }

    fn finish(mut self) -> Ruleset {
        let names = self.names.clone();
        // NodePorts: last in the services chain, one jump per node address.
        for ip in self.nodeport_ips.clone() {
            let rule = Rule::new()
                .args(&["-d", &format!("{ip}/32")])
                .comment(
                    "kubernetes service nodeports; NOTE: this must be the last rule in this chain",
                )
                .jump(&names.nodeports());
            self.push(TableKind::Nat, &names.services(), rule);
        }
        self.rules.hooks = self.hooks();
        self.rules
    }

    /// The jumps from the built-in chains, each restricted to this instance's traffic:
    /// its Service CIDRs (and stray cluster IPs), node, external and load-balancer IPs,
    /// its masquerade mark.
    fn hooks(&self) -> Vec<Hook> {
        let names = &self.names;
        let prefix = names.prefix();
        let mut service_dsts: Vec<Ipv4Cidr> = self.config.service_cidrs.clone();
        service_dsts.extend(self.stray_cluster_ips.iter().map(|ip| Ipv4Cidr::host(*ip)));
        service_dsts.sort();
        service_dsts.dedup();
        let mut external: BTreeSet<Ipv4Addr> = self.external_ips.clone();
        external.extend(self.nodeport_ips.iter().filter(|ip| !ip.is_loopback()));
        let external_dsts: Vec<Ipv4Cidr> = external.iter().map(|ip| Ipv4Cidr::host(*ip)).collect();
        let masked = format!("{0}/{0}", self.mark);

        let portals = format!("skiff {prefix} service portals");
        let mut hooks = Vec::new();
        let hook = |table, chain, args: Vec<String>| Hook { table, chain, args };
        let owned = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();

        // nat: capture traffic to our addresses.
        let mut nat_dsts: Vec<Ipv4Cidr> = service_dsts.clone();
        for dst in &external_dsts {
            if !service_dsts.iter().any(|s| s.covers(dst)) {
                nat_dsts.push(*dst);
            }
        }
        for chain in ["PREROUTING", "OUTPUT"] {
            let mut dsts = nat_dsts.clone();
            if chain == "OUTPUT" && self.config.localhost_nodeports {
                dsts.push(Ipv4Cidr::host(LOCALHOST));
            }
            for dst in dsts {
                hooks.push(hook(
                    TableKind::Nat,
                    chain,
                    owned(&[
                        "-d",
                        &dst.to_string(),
                        "-m",
                        "comment",
                        "--comment",
                        &portals,
                        "-j",
                        &names.services(),
                    ]),
                ));
            }
        }
        hooks.push(hook(
            TableKind::Nat,
            "POSTROUTING",
            owned(&[
                "-m",
                "comment",
                "--comment",
                &format!("skiff {prefix} postrouting rules"),
                "-m",
                "mark",
                "--mark",
                &masked,
                "-j",
                &names.postrouting(),
            ]),
        ));

        // filter: rejects for cluster IPs ...
        for chain in ["FORWARD", "OUTPUT"] {
            for dst in &service_dsts {
                hooks.push(hook(
                    TableKind::Filter,
                    chain,
                    owned(&[
                        "-d",
                        &dst.to_string(),
                        "-m",
                        "comment",
                        "--comment",
                        &portals,
                        "-m",
                        "conntrack",
                        "--ctstate",
                        "NEW",
                        "-j",
                        &names.services(),
                    ]),
                ));
            }
        }
        // ... and for external addresses and NodePorts.
        let external_portals = format!("skiff {prefix} externally-visible service portals");
        for chain in ["INPUT", "FORWARD", "OUTPUT"] {
            let mut dsts = external_dsts.clone();
            if chain != "FORWARD" && self.config.localhost_nodeports {
                dsts.push(Ipv4Cidr::host(LOCALHOST));
            }
            for dst in dsts {
                hooks.push(hook(
                    TableKind::Filter,
                    chain,
                    owned(&[
                        "-d",
                        &dst.to_string(),
                        "-m",
                        "comment",
                        "--comment",
                        &external_portals,
                        "-m",
                        "conntrack",
                        "--ctstate",
                        "NEW",
                        "-j",
                        &names.external_services(),
                    ]),
                ));
            }
        }
        hooks.push(hook(
            TableKind::Filter,
            "FORWARD",
            owned(&[
                "-m",
                "comment",
                "--comment",
                &format!("skiff {prefix} forwarding rules"),
                "-m",
                "mark",
                "--mark",
                &masked,
                "-j",
                &names.forward(),
            ]),
        ));
        if self.config.localhost_nodeports {
            for chain in ["INPUT", "OUTPUT"] {
                hooks.push(hook(
                    TableKind::Filter,
                    chain,
                    owned(&[
                        "!",
                        "-s",
                        "127.0.0.0/8",
                        "-d",
                        "127.0.0.0/8",
                        "-m",
                        "comment",
                        "--comment",
                        &format!("skiff {prefix} localnet firewall"),
                        "-j",
                        &names.firewall(),
                    ]),
                ));
            }
        }
        hooks
    }
}

#[cfg(test)]
mod tests;
