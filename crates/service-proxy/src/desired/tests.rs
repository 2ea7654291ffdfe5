//! The rules for each kind of Service, checked as text a user would read in
//! `iptables-save`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort as KubePort,
    ServiceSpec, ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::desired;
use crate::names::Names;
use crate::{NodeView, ProxyConfig, Ruleset, TableKind};

const NODE: &str = "node-a";

fn config() -> ProxyConfig {
    ProxyConfig {
        prefix: "T1-".into(),
        node_name: NODE.into(),
        service_cidrs: vec!["10.43.0.0/16".parse().unwrap()],
        cluster_cidr: Some("10.42.0.0/16".parse().unwrap()),
        ..ProxyConfig::default()
    }
}

fn node() -> NodeView {
    NodeView {
        name: NODE.into(),
        ips: vec![Ipv4Addr::new(192, 168, 5, 10)],
    }
}

fn service(name: &str, cluster_ip: &str, port: i32) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            ports: Some(vec![KubePort {
                name: Some("http".into()),
                port,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn spec(s: &mut Service) -> &mut ServiceSpec {
    s.spec.as_mut().unwrap()
}

/// An endpoint: `(ip, node, ready, serving, terminating)`.
type Ep<'a> = (&'a str, &'a str, bool, bool, bool);

fn ready(ip: &str) -> Ep<'_> {
    (ip, "node-b", true, true, false)
}

fn slice(service: &str, port: i32, protocol: &str, endpoints: &[Ep<'_>]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(format!("{service}-abc")),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_owned(),
                service.to_owned(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: endpoints
            .iter()
            .map(|(ip, node, ready, serving, terminating)| Endpoint {
                addresses: vec![(*ip).into()],
                node_name: Some((*node).into()),
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    serving: Some(*serving),
                    terminating: Some(*terminating),
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(port),
            protocol: Some(protocol.into()),
            ..Default::default()
        }]),
    }
}

fn rules(ruleset: &Ruleset, table: TableKind, chain: &str) -> Vec<String> {
    ruleset
        .rules(table, chain)
        .unwrap_or_else(|| panic!("no chain {chain} in {}", table.name()))
}

fn nat_chains(ruleset: &Ruleset, kind: &str) -> Vec<String> {
    ruleset
        .chains(TableKind::Nat)
        .filter(|c| c.starts_with(&format!("T1-{kind}-")))
        .map(str::to_owned)
        .collect()
}

fn names() -> Names {
    Names::new("T1-")
}

#[test]
fn a_cluster_ip_with_three_endpoints_balances_with_kube_proxys_probabilities() {
    let svc = service("web", "10.43.0.20", 80);
    let eps = slice(
        "web",
        8080,
        "TCP",
        &[ready("10.42.1.3"), ready("10.42.1.1"), ready("10.42.1.2")],
    );
    let r = desired([&svc], [&eps], &node(), &config());

    let svc_chain = names().svc("ns/web:http", "tcp");
    let sep = |ip: &str| names().sep("ns/web:http", "tcp", &format!("{ip}:8080"));
    assert_eq!(
        rules(&r, TableKind::Nat, "T1-SERVICES"),
        [
            format!(
                "-A T1-SERVICES -d 10.43.0.20/32 -p tcp -m comment --comment \"ns/web:http cluster IP\" -m tcp --dport 80 -j {svc_chain}"
            ),
            "-A T1-SERVICES -d 192.168.5.10/32 -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -j T1-NODEPORTS".to_owned(),
        ]
    );
    assert_eq!(
        rules(&r, TableKind::Nat, &svc_chain),
        [
            format!(
                "-A {svc_chain} ! -s 10.42.0.0/16 -d 10.43.0.20/32 -p tcp -m comment --comment \"ns/web:http cluster IP\" -m tcp --dport 80 -j T1-MARK-MASQ"
            ),
            format!(
                "-A {svc_chain} -m comment --comment \"ns/web:http -> 10.42.1.1:8080\" -m statistic --mode random --probability 0.33333333349 -j {}",
                sep("10.42.1.1")
            ),
            format!(
                "-A {svc_chain} -m comment --comment \"ns/web:http -> 10.42.1.2:8080\" -m statistic --mode random --probability 0.50000000000 -j {}",
                sep("10.42.1.2")
            ),
            format!(
                "-A {svc_chain} -m comment --comment \"ns/web:http -> 10.42.1.3:8080\" -j {}",
                sep("10.42.1.3")
            ),
        ]
    );
    let first = sep("10.42.1.1");
    assert_eq!(
        rules(&r, TableKind::Nat, &first),
        [
            format!(
                "-A {first} -s 10.42.1.1/32 -m comment --comment \"ns/web:http\" -j T1-MARK-MASQ"
            ),
            format!(
                "-A {first} -p tcp -m comment --comment \"ns/web:http\" -m tcp -j DNAT --to-destination 10.42.1.1:8080"
            ),
        ]
    );
    assert_eq!(nat_chains(&r, "SEP").len(), 3);
    assert!(nat_chains(&r, "SVL").is_empty());
    assert!(nat_chains(&r, "EXT").is_empty());
    assert!(
        r.lines(TableKind::Filter)
            .iter()
            .all(|l| !l.contains("REJECT"))
    );
    assert_eq!(r.service_ports(), 1);
    assert_eq!(r.endpoint_chains(), 3);
}

#[test]
fn the_masquerade_chains_mark_and_snat_like_kube_proxy() {
    let r = desired([], [], &node(), &config());
    assert_eq!(
        r.lines(TableKind::Nat)
            .into_iter()
            .filter(|l| !l.starts_with("-A T1-SERVICES"))
            .collect::<Vec<_>>(),
        [
            "-A T1-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
            "-A T1-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
            "-A T1-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
            "-A T1-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
        ]
    );
}

#[test]
fn a_service_without_endpoints_is_rejected_at_once_and_gets_no_nat_chains() {
    let svc = service("empty", "10.43.0.21", 80);
    let mut udp = service("dns", "10.43.0.22", 53);
    spec(&mut udp).ports.as_mut().unwrap()[0].protocol = Some("UDP".into());
    let not_ready = slice(
        "empty",
        8080,
        "TCP",
        &[("10.42.1.9", "node-b", false, false, false)],
    );
    let r = desired([&svc, &udp], [&not_ready], &node(), &config());
    assert_eq!(
        rules(&r, TableKind::Filter, "T1-SERVICES"),
        [
            "-A T1-SERVICES -d 10.43.0.22/32 -p udp -m comment --comment \"ns/dns:http has no endpoints\" -m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable",
            "-A T1-SERVICES -d 10.43.0.21/32 -p tcp -m comment --comment \"ns/empty:http has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with tcp-reset",
        ]
    );
    assert!(nat_chains(&r, "SVC").is_empty());
    assert!(nat_chains(&r, "SEP").is_empty());
    assert!(
        !r.lines(TableKind::Nat)
            .iter()
            .any(|l| l.contains("10.43.0.21"))
    );
}

#[test]
fn client_ip_affinity_checks_and_sets_recent_lists_with_the_timeout() {
    let mut svc = service("sticky", "10.43.0.23", 80);
    spec(&mut svc).session_affinity = Some("ClientIP".into());
    spec(&mut svc).session_affinity_config = Some(SessionAffinityConfig {
        client_ip: Some(ClientIPConfig {
            timeout_seconds: Some(600),
        }),
    });
    let eps = slice(
        "sticky",
        8080,
        "TCP",
        &[ready("10.42.1.1"), ready("10.42.1.2")],
    );
    let r = desired([&svc], [&eps], &node(), &config());
    let svc_chain = names().svc("ns/sticky:http", "tcp");
    let sep1 = names().sep("ns/sticky:http", "tcp", "10.42.1.1:8080");
    let sep2 = names().sep("ns/sticky:http", "tcp", "10.42.1.2:8080");
    let lines = rules(&r, TableKind::Nat, &svc_chain);
    assert_eq!(
        lines[1],
        format!(
            "-A {svc_chain} -m comment --comment \"ns/sticky:http -> 10.42.1.1:8080\" -m recent --rcheck --seconds 600 --reap --name {sep1} --mask 255.255.255.255 --rsource -j {sep1}"
        )
    );
    assert!(lines[2].contains(&format!("--rcheck --seconds 600 --reap --name {sep2} ")));
    assert!(lines[3].contains("--probability 0.50000000000"));
    assert!(lines[4].ends_with(&format!("-j {sep2}")));
    assert_eq!(
        rules(&r, TableKind::Nat, &sep1)[1],
        format!(
            "-A {sep1} -p tcp -m comment --comment \"ns/sticky:http\" -m recent --set --name {sep1} --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.42.1.1:8080"
        )
    );

    // Without a timeout, kube-proxy's default of three hours.
    spec(&mut svc).session_affinity_config = None;
    let r = desired([&svc], [&eps], &node(), &config());
    assert!(rules(&r, TableKind::Nat, &svc_chain)[1].contains("--seconds 10800 "));
}

#[test]
fn internal_traffic_policy_local_uses_only_this_nodes_endpoints() {
    let mut svc = service("local", "10.43.0.24", 80);
    spec(&mut svc).internal_traffic_policy = Some("Local".into());
    let eps = slice(
        "local",
        8080,
        "TCP",
        &[("10.42.0.5", NODE, true, true, false), ready("10.42.1.5")],
    );
    let r = desired([&svc], [&eps], &node(), &config());
    let svl = names().svl("ns/local:http", "tcp");
    assert!(rules(&r, TableKind::Nat, "T1-SERVICES")[0].ends_with(&format!("-j {svl}")));
    let lines = rules(&r, TableKind::Nat, &svl);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].ends_with("-j T1-MARK-MASQ"));
    assert!(lines[1].contains("10.42.0.5:8080"));
    assert!(nat_chains(&r, "SVC").is_empty());
    assert_eq!(nat_chains(&r, "SEP").len(), 1);

    // No local endpoint: the cluster IP drops (it has endpoints elsewhere).
    let remote = slice("local", 8080, "TCP", &[ready("10.42.1.5")]);
    let r = desired([&svc], [&remote], &node(), &config());
    assert_eq!(
        rules(&r, TableKind::Filter, "T1-SERVICES"),
        [
            "-A T1-SERVICES -d 10.43.0.24/32 -p tcp -m comment --comment \"ns/local:http has no local endpoints\" -m tcp --dport 80 -j DROP"
        ]
    );
    assert!(nat_chains(&r, "SVL").is_empty());
}

fn node_port(name: &str, ip: &str, node_port: i32) -> Service {
    let mut svc = service(name, ip, 80);
    spec(&mut svc).type_ = Some("NodePort".into());
    spec(&mut svc).ports.as_mut().unwrap()[0].node_port = Some(node_port);
    svc
}

#[test]
fn a_node_port_is_captured_on_the_node_addresses_and_masqueraded() {
    let svc = node_port("np", "10.43.0.25", 30080);
    let eps = slice("np", 8080, "TCP", &[ready("10.42.1.1")]);
    let r = desired([&svc], [&eps], &node(), &config());
    let ext = names().ext("ns/np:http", "tcp");
    let svc_chain = names().svc("ns/np:http", "tcp");
    assert_eq!(
        rules(&r, TableKind::Nat, "T1-NODEPORTS"),
        [format!(
            "-A T1-NODEPORTS -p tcp -m comment --comment \"ns/np:http\" -m tcp --dport 30080 -j {ext}"
        )]
    );
    assert_eq!(
        rules(&r, TableKind::Nat, &ext),
        [
            format!(
                "-A {ext} -m comment --comment \"masquerade traffic for ns/np:http external destinations\" -j T1-MARK-MASQ"
            ),
            format!("-A {ext} -j {svc_chain}"),
        ]
    );
    let services = rules(&r, TableKind::Nat, "T1-SERVICES");
    assert!(
        services
            .last()
            .unwrap()
            .starts_with("-A T1-SERVICES -d 192.168.5.10/32 ")
    );
    assert!(!r.hooks().iter().any(|h| h.line().contains("127.0.0.")));
    assert!(!r.chains(TableKind::Filter).any(|c| c == "T1-FIREWALL"));

    // Without endpoints: REJECT on every local address at that port.
    let r = desired([&svc], [], &node(), &config());
    assert_eq!(
        rules(&r, TableKind::Filter, "T1-EXTERNAL-SERVICES"),
        [
            "-A T1-EXTERNAL-SERVICES -p tcp -m comment --comment \"ns/np:http has no endpoints\" -m addrtype --dst-type LOCAL -m tcp --dport 30080 -j REJECT --reject-with tcp-reset"
        ]
    );
    assert_eq!(
        rules(&r, TableKind::Nat, "T1-NODEPORTS"),
        Vec::<String>::new()
    );
}

#[test]
fn localhost_node_ports_add_127_0_0_1_and_the_localnet_firewall() {
    let svc = node_port("np", "10.43.0.25", 30080);
    let eps = slice("np", 8080, "TCP", &[ready("10.42.1.1")]);
    let config = ProxyConfig {
        localhost_nodeports: true,
        ..config()
    };
    let r = desired([&svc], [&eps], &node(), &config);
    let services = rules(&r, TableKind::Nat, "T1-SERVICES");
    assert!(
        services
            .last()
            .unwrap()
            .starts_with("-A T1-SERVICES -d 127.0.0.1/32 ")
    );
    assert_eq!(
        rules(&r, TableKind::Filter, "T1-FIREWALL"),
        [
            "-A T1-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
        ]
    );
    let hooks: Vec<String> = r.hooks().iter().map(|h| h.line()).collect();
    assert!(hooks.contains(
        &"-A OUTPUT -d 127.0.0.1/32 -m comment --comment \"skiff T1- service portals\" -j T1-SERVICES".to_owned()
    ));
    // Pods cannot reach 127.0.0.1 of the node: no PREROUTING hook for it.
    assert!(!hooks.iter().any(|h| h.starts_with("-A PREROUTING -d 127.")));
}

#[test]
fn external_traffic_policy_local_keeps_the_client_ip_and_uses_local_endpoints() {
    let mut svc = node_port("etp", "10.43.0.26", 30081);
    spec(&mut svc).external_traffic_policy = Some("Local".into());
    let eps = slice(
        "etp",
        8080,
        "TCP",
        &[("10.42.0.7", NODE, true, true, false), ready("10.42.1.7")],
    );
    let r = desired([&svc], [&eps], &node(), &config());
    let ext = names().ext("ns/etp:http", "tcp");
    let svc_chain = names().svc("ns/etp:http", "tcp");
    let svl = names().svl("ns/etp:http", "tcp");
    assert_eq!(
        rules(&r, TableKind::Nat, &ext),
        [
            format!(
                "-A {ext} -s 10.42.0.0/16 -m comment --comment \"pod traffic for ns/etp:http external destinations\" -j {svc_chain}"
            ),
            format!(
                "-A {ext} -m comment --comment \"masquerade LOCAL traffic for ns/etp:http external destinations\" -m addrtype --src-type LOCAL -j T1-MARK-MASQ"
            ),
            format!(
                "-A {ext} -m comment --comment \"route LOCAL traffic for ns/etp:http external destinations\" -m addrtype --src-type LOCAL -j {svc_chain}"
            ),
            format!("-A {ext} -j {svl}"),
        ]
    );
    // No SNAT for external clients: nothing in EXT marks their traffic.
    assert!(
        !rules(&r, TableKind::Nat, &ext)
            .iter()
            .any(|l| l.contains("masquerade traffic"))
    );
    let local = rules(&r, TableKind::Nat, &svl);
    assert_eq!(local.len(), 1);
    assert!(local[0].contains("10.42.0.7:8080"));
    // The cluster chain still balances over both (internal policy Cluster).
    assert_eq!(rules(&r, TableKind::Nat, &svc_chain).len(), 3);

    // No local endpoint: external traffic drops, pod and node traffic still reach
    // the service through the short-circuits.
    let remote = slice("etp", 8080, "TCP", &[ready("10.42.1.7")]);
    let r = desired([&svc], [&remote], &node(), &config());
    assert_eq!(
        rules(&r, TableKind::Filter, "T1-EXTERNAL-SERVICES"),
        [
            "-A T1-EXTERNAL-SERVICES -p tcp -m comment --comment \"ns/etp:http has no local endpoints\" -m addrtype --dst-type LOCAL -m tcp --dport 30081 -j DROP"
        ]
    );
    let ext_rules = rules(&r, TableKind::Nat, &ext);
    assert_eq!(ext_rules.len(), 3);
    assert!(!ext_rules.iter().any(|l| l.contains(&svl)));
}

#[test]
fn terminating_endpoints_are_used_only_when_none_is_ready() {
    let svc = service("roll", "10.43.0.27", 80);
    let terminating = ("10.42.1.8", "node-b", false, true, true);
    let gone = ("10.42.1.9", "node-b", false, false, true);
    let both = slice(
        "roll",
        8080,
        "TCP",
        &[ready("10.42.1.1"), terminating, gone],
    );
    let r = desired([&svc], [&both], &node(), &config());
    let sep_ips: Vec<String> = r
        .lines(TableKind::Nat)
        .into_iter()
        .filter(|l| l.contains("DNAT"))
        .collect();
    assert_eq!(sep_ips.len(), 1);
    assert!(sep_ips[0].ends_with("10.42.1.1:8080"));

    let only_terminating = slice("roll", 8080, "TCP", &[terminating, gone]);
    let r = desired([&svc], [&only_terminating], &node(), &config());
    let dnat: Vec<String> = r
        .lines(TableKind::Nat)
        .into_iter()
        .filter(|l| l.contains("DNAT"))
        .collect();
    assert_eq!(dnat.len(), 1);
    assert!(dnat[0].ends_with("10.42.1.8:8080"));
    assert!(
        !r.lines(TableKind::Filter)
            .iter()
            .any(|l| l.contains("REJECT"))
    );
}

#[test]
fn headless_and_external_name_services_get_no_rules() {
    let headless = service("headless", "None", 80);
    let mut external = service("ext", "", 80);
    spec(&mut external).type_ = Some("ExternalName".into());
    spec(&mut external).external_name = Some("example.com".into());
    spec(&mut external).cluster_ip = None;
    spec(&mut external).cluster_ips = None;
    let eps = slice("headless", 8080, "TCP", &[ready("10.42.1.1")]);
    let r = desired([&headless, &external], [&eps], &node(), &config());
    let empty = desired([], [], &node(), &config());
    assert_eq!(r, empty);
    assert_eq!(r.service_ports(), 0);
}

#[test]
fn load_balancer_ingress_ips_are_treated_like_external_ips() {
    let mut svc = node_port("lb", "10.43.0.28", 30082);
    spec(&mut svc).type_ = Some("LoadBalancer".into());
    spec(&mut svc).external_ips = Some(vec!["192.0.2.50".into()]);
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some("192.168.5.10".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    let eps = slice("lb", 8080, "TCP", &[ready("10.42.1.1")]);
    let r = desired([&svc], [&eps], &node(), &config());
    let ext = names().ext("ns/lb:http", "tcp");
    let services = rules(&r, TableKind::Nat, "T1-SERVICES");
    assert!(services.contains(&format!(
        "-A T1-SERVICES -d 192.0.2.50/32 -p tcp -m comment --comment \"ns/lb:http external IP\" -m tcp --dport 80 -j {ext}"
    )));
    assert!(services.contains(&format!(
        "-A T1-SERVICES -d 192.168.5.10/32 -p tcp -m comment --comment \"ns/lb:http loadbalancer IP\" -m tcp --dport 80 -j {ext}"
    )));
    let hooks: Vec<String> = r.hooks().iter().map(|h| h.line()).collect();
    assert!(hooks.contains(
        &"-A PREROUTING -d 192.0.2.50/32 -m comment --comment \"skiff T1- service portals\" -j T1-SERVICES".to_owned()
    ));

    // Without endpoints both addresses reject.
    let r = desired([&svc], [], &node(), &config());
    let rejects = rules(&r, TableKind::Filter, "T1-EXTERNAL-SERVICES");
    assert_eq!(rejects.len(), 3, "{rejects:#?}");
    assert!(rejects[0].starts_with("-A T1-EXTERNAL-SERVICES -d 192.0.2.50/32 -p tcp"));
    assert!(rejects[1].starts_with("-A T1-EXTERNAL-SERVICES -d 192.168.5.10/32 -p tcp"));
}

#[test]
fn udp_and_sctp_ports_use_their_protocol_matches() {
    let mut svc = service("multi", "10.43.0.29", 53);
    spec(&mut svc).ports = Some(vec![
        KubePort {
            name: Some("http".into()),
            port: 53,
            protocol: Some("UDP".into()),
            ..Default::default()
        },
        KubePort {
            name: Some("http".into()),
            port: 53,
            protocol: Some("SCTP".into()),
            ..Default::default()
        },
    ]);
    let udp = slice("multi", 5353, "UDP", &[ready("10.42.1.1")]);
    let mut sctp = slice("multi", 5354, "SCTP", &[ready("10.42.1.1")]);
    sctp.metadata.name = Some("multi-sctp".into());
    let r = desired([&svc], [&udp, &sctp], &node(), &config());
    let lines = r.lines(TableKind::Nat);
    assert!(lines.iter().any(|l| l.ends_with("-p udp -m comment --comment \"ns/multi:http\" -m udp -j DNAT --to-destination 10.42.1.1:5353")));
    assert!(lines.iter().any(|l| l.ends_with("-p sctp -m comment --comment \"ns/multi:http\" -m sctp -j DNAT --to-destination 10.42.1.1:5354")));
    assert_ne!(
        names().svc("ns/multi:http", "udp"),
        names().svc("ns/multi:http", "sctp")
    );
    assert_eq!(r.udp.len(), 1);
}

#[test]
fn a_pod_reaching_itself_through_its_service_is_masqueraded() {
    let svc = service("self", "10.43.0.30", 80);
    let eps = slice("self", 8080, "TCP", &[ready("10.42.0.9")]);
    let r = desired([&svc], [&eps], &node(), &config());
    let sep = names().sep("ns/self:http", "tcp", "10.42.0.9:8080");
    assert_eq!(
        rules(&r, TableKind::Nat, &sep)[0],
        format!("-A {sep} -s 10.42.0.9/32 -m comment --comment \"ns/self:http\" -j T1-MARK-MASQ")
    );
}

#[test]
fn every_hook_is_restricted_to_this_instances_addresses_or_mark() {
    let svc = node_port("np", "10.43.0.25", 30080);
    let stray = service("stray", "10.99.0.1", 80);
    let r = desired([&svc, &stray], [], &node(), &config());
    let lines: Vec<String> = r
        .hooks()
        .iter()
        .map(|h| format!("{} {}", h.table().name(), h.line()))
        .collect();
    for line in &lines {
        assert!(
            line.contains(" -d 10.43.0.0/16 ")
                || line.contains(" -d 10.99.0.1/32 ")
                || line.contains(" -d 192.168.5.10/32 ")
                || line.contains(" --mark 0x4000/0x4000 "),
            "unrestricted hook: {line}"
        );
        assert!(line.contains("-j T1-"), "{line}");
    }
    assert_eq!(
        lines,
        [
            "nat -A PREROUTING -d 10.43.0.0/16 -m comment --comment \"skiff T1- service portals\" -j T1-SERVICES",
            "nat -A PREROUTING -d 10.99.0.1/32 -m comment --comment \"skiff T1- service portals\" -j T1-SERVICES",
            "nat -A PREROUTING -d 192.168.5.10/32 -m comment --comment \"skiff T1- service portals\" -j T1-SERVICES",
            "nat -A OUTPUT -d 10.43.0.0/16 -m comment --comment \"skiff T1- service portals\" -j T1-SERVICES",
            "nat -A OUTPUT -d 10.99.0.1/32 -m comment --comment \"skiff T1- service portals\" -j T1-SERVICES",
            "nat -A OUTPUT -d 192.168.5.10/32 -m comment --comment \"skiff T1- service portals\" -j T1-SERVICES",
            "nat -A POSTROUTING -m comment --comment \"skiff T1- postrouting rules\" -m mark --mark 0x4000/0x4000 -j T1-POSTROUTING",
            "filter -A FORWARD -d 10.43.0.0/16 -m comment --comment \"skiff T1- service portals\" -m conntrack --ctstate NEW -j T1-SERVICES",
            "filter -A FORWARD -d 10.99.0.1/32 -m comment --comment \"skiff T1- service portals\" -m conntrack --ctstate NEW -j T1-SERVICES",
            "filter -A OUTPUT -d 10.43.0.0/16 -m comment --comment \"skiff T1- service portals\" -m conntrack --ctstate NEW -j T1-SERVICES",
            "filter -A OUTPUT -d 10.99.0.1/32 -m comment --comment \"skiff T1- service portals\" -m conntrack --ctstate NEW -j T1-SERVICES",
            "filter -A INPUT -d 192.168.5.10/32 -m comment --comment \"skiff T1- externally-visible service portals\" -m conntrack --ctstate NEW -j T1-EXTERNAL-SERVICES",
            "filter -A FORWARD -d 192.168.5.10/32 -m comment --comment \"skiff T1- externally-visible service portals\" -m conntrack --ctstate NEW -j T1-EXTERNAL-SERVICES",
            "filter -A OUTPUT -d 192.168.5.10/32 -m comment --comment \"skiff T1- externally-visible service portals\" -m conntrack --ctstate NEW -j T1-EXTERNAL-SERVICES",
            "filter -A FORWARD -m comment --comment \"skiff T1- forwarding rules\" -m mark --mark 0x4000/0x4000 -j T1-FORWARD",
        ]
    );
}

#[test]
fn chain_names_fit_iptables_and_differ_between_prefixes() {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..20 {
        let name = format!("service-with-a-rather-long-name-{i}");
        let mut svc = node_port(&name, &format!("10.43.1.{i}"), 30000 + i);
        spec(&mut svc).external_traffic_policy = Some("Local".into());
        services.push(svc);
        slices.push(slice(
            &name,
            8080,
            "TCP",
            &[("10.42.0.1", NODE, true, true, false), ready("10.42.1.1")],
        ));
    }
    let a = desired(services.iter(), slices.iter(), &node(), &config());
    let b = desired(
        services.iter(),
        slices.iter(),
        &node(),
        &ProxyConfig {
            prefix: "SKF9f3c-".into(),
            ..config()
        },
    );
    for table in TableKind::ALL {
        let a_chains: Vec<&str> = a.chains(table).collect();
        let b_chains: Vec<&str> = b.chains(table).collect();
        assert_eq!(a_chains.len(), b_chains.len());
        for chain in a_chains.iter().chain(&b_chains) {
            assert!(chain.len() <= 28, "{chain} is {} characters", chain.len());
        }
        assert!(a_chains.iter().all(|c| c.starts_with("T1-")));
        assert!(b_chains.iter().all(|c| c.starts_with("SKF9f3c-")));
        assert!(!a_chains.iter().any(|c| b_chains.contains(c)));
    }
    // 20 x (SVC, SVL, EXT, 2 SEP) + 4 top-level chains.
    assert_eq!(a.chains(TableKind::Nat).count(), 20 * 5 + 4);
}

#[test]
fn services_of_another_proxy_and_non_ipv4_slices_are_ignored() {
    let mut other = service("other", "10.43.0.31", 80);
    other.metadata.labels = Some(BTreeMap::from([(
        "service.kubernetes.io/service-proxy-name".to_owned(),
        "someone-else".to_owned(),
    )]));
    let svc = service("v4", "10.43.0.32", 80);
    let mut v6 = slice("v4", 8080, "TCP", &[ready("fd00::1")]);
    v6.address_type = "IPv6".into();
    let r = desired([&other, &svc], [&v6], &node(), &config());
    assert_eq!(r.service_ports(), 1);
    assert_eq!(
        rules(&r, TableKind::Filter, "T1-SERVICES").len(),
        1,
        "the IPv4 service has no endpoints"
    );
}
