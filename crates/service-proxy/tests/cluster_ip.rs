//! Root tests against the real kernel: rules applied with iptables-restore inside a
//! network namespace of the test's own ("the node"), backends in a second one, real
//! TCP connections through the virtual IPs.

#[path = "support/netns.rs"]
mod netns;
#[path = "support/objects.rs"]
mod objects;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use netns::{Netns, Server, require_root, unique};
use objects::{service, slice, with_affinity, with_node_port};
use service_proxy::{
    Backend, Commands, NodeView, ProxyConfig, TableKind, cleanup_with, desired, leftovers_with,
};

/// Two namespaces joined by a veth pair: `node` (10.249.X.1, where the rules go, with
/// a route for the Service CIDR 10.248.X.0/24 towards `pods`) and `pods`
/// (10.249.X.2-4, the backends, routing the Service CIDR through `node`).
struct Lab {
    // Dropped first: servers stop before their namespace goes.
    servers: Vec<Server>,
    node: Netns,
    pods: Netns,
    x: u8,
}

impl Lab {
    fn new() -> Self {
        require_root();
        let id = unique();
        let x = (id % 200) as u8 + 20;
        let node = Netns::new(&format!("skf-node-{id:08x}"));
        let pods = Netns::new(&format!("skf-pods-{id:08x}"));
        node.ip(&[
            "link", "add", "vnode", "type", "veth", "peer", "name", "vpods", "netns", &pods.name,
        ]);
        node.ip(&["addr", "add", &format!("10.249.{x}.1/24"), "dev", "vnode"]);
        node.ip(&["link", "set", "vnode", "up"]);
        for host in 2..=4 {
            pods.ip(&[
                "addr",
                "add",
                &format!("10.249.{x}.{host}/24"),
                "dev",
                "vpods",
            ]);
        }
        pods.ip(&["link", "set", "vpods", "up"]);
        // Connecting from the node needs a route for the VIPs (kube-proxy assumes one).
        node.ip(&[
            "route",
            "add",
            &format!("10.248.{x}.0/24"),
            "via",
            &format!("10.249.{x}.2"),
        ]);
        // Pods reach VIPs through the node, which forwards after DNAT.
        pods.ip(&[
            "route",
            "add",
            &format!("10.248.{x}.0/24"),
            "via",
            &format!("10.249.{x}.1"),
        ]);
        node.exec("/usr/sbin/sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
        Self {
            servers: Vec::new(),
            node,
            pods,
            x,
        }
    }

    fn pod_ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 249, self.x, host)
    }

    fn vip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 248, self.x, host)
    }

    fn serve(&mut self, host: u8, port: u16) {
        let server = Server::start(
            &self.pods,
            SocketAddrV4::new(self.pod_ip(host), port),
            &format!("backend-{host}\n"),
        );
        self.servers.push(server);
    }

    fn config(&self, prefix: &str, service_cidr: &str) -> ProxyConfig {
        ProxyConfig {
            prefix: prefix.into(),
            node_name: "node-a".into(),
            node_ips: vec![Ipv4Addr::new(10, 249, self.x, 1)],
            service_cidrs: vec![service_cidr.parse().expect("cidr")],
            cluster_cidr: Some(format!("10.249.{}.0/24", self.x).parse().expect("cidr")),
            localhost_nodeports: true,
            command_prefix: vec![
                "/usr/sbin/ip".into(),
                "netns".into(),
                "exec".into(),
                self.node.name.clone(),
            ],
            ..ProxyConfig::default()
        }
    }
}

/// Removes the instance's rules when the test ends, however it ends.
struct Cleanup {
    netns: String,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = cleanup_with(&Commands::in_netns(&self.netns), &self.prefix);
    }
}

fn prefix() -> String {
    format!("SKF{:04x}-", unique() & 0xffff)
}

fn saved(ns: &Netns) -> Vec<String> {
    ns.exec("/usr/sbin/iptables-save", &[])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_cluster_ip_reaches_every_endpoint_and_an_empty_service_is_refused_at_once() {
    let mut lab = Lab::new();
    for host in 2..=4 {
        lab.serve(host, 8080);
    }
    let prefix = prefix();
    let _cleanup = Cleanup {
        netns: lab.node.name.clone(),
        prefix: prefix.clone(),
    };
    let config = lab.config(&prefix, &format!("10.248.{}.0/24", lab.x));
    let pods: Vec<String> = (2..=4).map(|h| lab.pod_ip(h).to_string()).collect();
    let pods: Vec<&str> = pods.iter().map(String::as_str).collect();

    let services = [
        service("web", &lab.vip(10).to_string(), 80),
        service("empty", &lab.vip(11).to_string(), 80),
        with_affinity(service("sticky", &lab.vip(12).to_string(), 80)),
        with_node_port(service("np", &lab.vip(13).to_string(), 80), 30080),
        service("hairpin", &lab.vip(14).to_string(), 80),
    ];
    let slices = [
        slice("web", 8080, &pods),
        slice("sticky", 8080, &pods),
        slice("np", 8080, &pods[1..2]),
        slice("hairpin", 8080, &pods[0..1]),
    ];
    let node = NodeView::new(&config, None);
    let ruleset = desired(services.iter(), slices.iter(), &node, &config);

    let mut backend = Backend::new(
        Commands::with_prefix(config.command_prefix.clone()),
        &prefix,
    )
    .expect("backend");
    backend
        .prepare(true)
        .expect("sysctls in the node namespace");
    let started = Instant::now();
    let report = backend.apply(&ruleset, true).expect("full sync");
    eprintln!(
        "full sync of {} service ports: {:?} ({report:?})",
        ruleset.service_ports(),
        started.elapsed()
    );
    assert!(report.full && report.restored);
    assert_eq!(report.hooks_added, ruleset.hooks().len());

    // The kernel holds exactly our rules, as iptables-save prints them.
    let lines = saved(&lab.node);
    for table in TableKind::ALL {
        let ours: Vec<String> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("-A {prefix}")))
            .cloned()
            .collect();
        for line in ruleset.lines(table) {
            assert!(
                ours.contains(&line),
                "missing in iptables-save: {line}\n{lines:#?}"
            );
        }
    }
    for hook in ruleset.hooks() {
        assert!(
            lines.contains(&hook.line()),
            "missing hook: {}",
            hook.line()
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("--probability 0.33333333349"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("--probability 0.50000000000"))
    );

    // Every endpoint answers through the cluster IP.
    let web = SocketAddrV4::new(lab.vip(10), 80);
    let seen: BTreeSet<String> = (0..30)
        .map(|_| lab.node.fetch(web).expect("connect to the cluster IP"))
        .collect();
    assert_eq!(seen.len(), 3, "answers: {seen:?}");

    // No endpoints: refused at once, not a timeout.
    let (result, took) = lab.node.try_connect(SocketAddrV4::new(lab.vip(11), 80));
    assert_eq!(
        result.expect_err("must not connect").kind(),
        ErrorKind::ConnectionRefused
    );
    assert!(took < Duration::from_millis(500), "refusal took {took:?}");
    eprintln!("empty service refused after {took:?}");

    // ClientIP affinity: one client, one backend.
    let sticky = SocketAddrV4::new(lab.vip(12), 80);
    let sticky_seen: BTreeSet<String> = (0..10)
        .map(|_| lab.node.fetch(sticky).expect("sticky service"))
        .collect();
    assert_eq!(sticky_seen.len(), 1, "{sticky_seen:?}");

    // NodePort on the node's address and on 127.0.0.1 (route_localnet).
    for ip in [lab.pod_ip(1), Ipv4Addr::LOCALHOST] {
        let reply = lab.node.fetch(SocketAddrV4::new(ip, 30080));
        assert_eq!(reply.expect("node port").trim(), "backend-3", "via {ip}");
    }

    // Hairpin: the pod behind a service reaches itself through the service.
    let hairpin = SocketAddrV4::new(lab.vip(14), 80);
    assert_eq!(
        lab.pods.fetch(hairpin).expect("hairpin").trim(),
        "backend-2"
    );

    // An endpoint goes away: one chain rewritten, its SEP chain deleted, no traffic to it.
    let slices = [
        slice("web", 8080, &pods[0..2]),
        slice("sticky", 8080, &pods),
        slice("np", 8080, &pods[1..2]),
        slice("hairpin", 8080, &pods[0..1]),
    ];
    let smaller = desired(services.iter(), slices.iter(), &node, &config);
    let started = Instant::now();
    let report = backend.apply(&smaller, false).expect("incremental sync");
    eprintln!(
        "incremental sync (one endpoint removed): {:?} ({report:?})",
        started.elapsed()
    );
    assert_eq!(
        (report.full, report.chains_written, report.chains_deleted),
        (false, 1, 1)
    );
    let seen: BTreeSet<String> = (0..20).map(|_| lab.node.fetch(web).expect("web")).collect();
    assert!(!seen.contains("backend-4\n"), "{seen:?}");
    assert_eq!(
        saved(&lab.node)
            .iter()
            .filter(|l| l.starts_with(&format!(":{prefix}SEP-")))
            .count(),
        2 + 3 + 1 + 1
    );

    // Nothing changed: nothing is run.
    assert!(!backend.apply(&smaller, false).expect("no-op sync").restored);

    // Cleanup leaves nothing of ours.
    let exec = Commands::in_netns(&lab.node.name);
    let removed = cleanup_with(&exec, &prefix).expect("cleanup");
    assert!(
        removed
            .iter()
            .any(|r| r.contains("chain nat/") && r.contains("SVC-")),
        "{removed:#?}"
    );
    assert!(
        removed
            .iter()
            .any(|r| r.starts_with("iptables rule nat/-A PREROUTING")),
        "{removed:#?}"
    );
    assert_eq!(
        leftovers_with(&exec, &prefix).expect("leftovers"),
        Vec::<String>::new()
    );
    assert!(!saved(&lab.node).iter().any(|l| l.contains(&prefix)));
}

#[test]
fn two_instances_in_one_namespace_leave_each_other_alone() {
    let mut lab = Lab::new();
    lab.serve(2, 8080);
    lab.serve(3, 8080);
    let (a, b) = (prefix(), format!("SKG{:04x}-", unique() & 0xffff));
    let _cleanup = [
        Cleanup {
            netns: lab.node.name.clone(),
            prefix: a.clone(),
        },
        Cleanup {
            netns: lab.node.name.clone(),
            prefix: b.clone(),
        },
    ];
    // Instance A serves 10.248.X.0/25, instance B 10.248.X.128/25.
    let config_a = lab.config(&a, &format!("10.248.{}.0/25", lab.x));
    let mut config_b = lab.config(&b, &format!("10.248.{}.128/25", lab.x));
    config_b.masquerade_bit = 13;
    config_b.node_ips = vec![];
    config_b.localhost_nodeports = false;
    let pod2 = lab.pod_ip(2).to_string();
    let pod3 = lab.pod_ip(3).to_string();
    let svc_a = service("a", &lab.vip(10).to_string(), 80);
    let svc_b = service("b", &lab.vip(200).to_string(), 80);
    // The same Service name in both clusters must not collide either.
    let rules_a = desired(
        [&svc_a],
        [&slice("a", 8080, &[pod2.as_str()])],
        &NodeView::new(&config_a, None),
        &config_a,
    );
    let rules_b = desired(
        [&svc_b],
        [&slice("b", 8080, &[pod3.as_str()])],
        &NodeView::new(&config_b, None),
        &config_b,
    );
    let mut backend_a = Backend::new(Commands::in_netns(&lab.node.name), &a).expect("a");
    let mut backend_b = Backend::new(Commands::in_netns(&lab.node.name), &b).expect("b");
    backend_a.apply(&rules_a, true).expect("sync a");
    backend_b.apply(&rules_b, true).expect("sync b");
    // Each full sync leaves the other instance's chains and hooks in place.
    let resync = backend_a.apply(&rules_a, true).expect("resync a");
    assert_eq!(
        (
            resync.hooks_added,
            resync.hooks_removed,
            resync.chains_deleted
        ),
        (0, 0, 0)
    );

    let to_a = SocketAddrV4::new(lab.vip(10), 80);
    let to_b = SocketAddrV4::new(lab.vip(200), 80);
    assert_eq!(lab.node.fetch(to_a).expect("a").trim(), "backend-2");
    assert_eq!(lab.node.fetch(to_b).expect("b").trim(), "backend-3");

    let exec = Commands::in_netns(&lab.node.name);
    cleanup_with(&exec, &a).expect("cleanup a");
    assert_eq!(
        leftovers_with(&exec, &a).expect("leftovers a"),
        Vec::<String>::new()
    );
    assert!(!leftovers_with(&exec, &b).expect("leftovers b").is_empty());
    assert_eq!(
        lab.node.fetch(to_b).expect("b after a's cleanup").trim(),
        "backend-3"
    );
    // A's VIP is no longer translated (it goes to the pods namespace, which refuses).
    assert!(lab.node.fetch(to_a).is_err());
    cleanup_with(&exec, &b).expect("cleanup b");
    assert_eq!(
        leftovers_with(&exec, &b).expect("leftovers b"),
        Vec::<String>::new()
    );
}
