//! Root tests of the nftables backend against the real kernel: our table in a
//! network namespace of the test's own ("the node"), backends in a second one, real
//! TCP connections through the virtual IPs.

#[path = "support/lab.rs"]
mod lab;
#[path = "support/netns.rs"]
mod netns;
#[path = "support/objects.rs"]
mod objects;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lab::{Cleanup, Lab, prefix};
use netns::{Netns, unique};
use objects::{service, slice, with_affinity, with_node_port};
use service_proxy::{
    Commands, NftBackend, NodeView, ServiceState, cleanup_with, leftovers_with, nft_table,
};

/// `nft list table ip TABLE` in the namespace.
fn listed(ns: &Netns, table: &str) -> String {
    ns.exec("/usr/sbin/nft", &["list", "table", "ip", table])
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
    let table = nft_table(&prefix);
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
    let mut state = ServiceState::from_objects(services.iter(), slices.iter(), &node.name);
    let exec = Commands::with_prefix(config.command_prefix.clone());
    let mut backend = NftBackend::new(exec, &config).expect("backend");
    // The iptables backend's preparation sets the sysctls both modes need.
    service_proxy::Backend::new(
        Commands::with_prefix(config.command_prefix.clone()),
        &prefix,
    )
    .expect("backend")
    .prepare(true)
    .expect("sysctls in the node namespace");

    let started = Instant::now();
    let report = backend.apply(&mut state, &node, true).expect("full sync");
    eprintln!("full sync: {:?} ({report:?})", started.elapsed());
    assert!(report.full && report.restored);
    let text = listed(&lab.node, &table);
    assert!(text.contains("goto cluster-3"), "{text}");
    assert!(
        text.contains(&format!(
            "{} . tcp . 80 . 2 : {}",
            lab.vip(10),
            SocketAddrV4::new(lab.pod_ip(4), 8080)
                .to_string()
                .replace(':', " . ")
        )),
        "{text}"
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

    // An endpoint goes away: no chain is written (the pick chain for two endpoints
    // is new, the one for three goes), a few elements change, no traffic to it.
    state.apply_slice(Arc::new(slice("web", 8080, &pods[0..2])));
    let started = Instant::now();
    let report = backend
        .apply(&mut state, &node, false)
        .expect("incremental sync");
    eprintln!(
        "incremental sync (one endpoint removed): {:?} ({report:?})",
        started.elapsed()
    );
    assert!(!report.full && report.restored);
    assert!(report.elements_written <= 8, "{report:?}");
    let seen: BTreeSet<String> = (0..20).map(|_| lab.node.fetch(web).expect("web")).collect();
    assert!(!seen.contains("backend-4\n"), "{seen:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");

    // Nothing changed: nothing is run.
    let report = backend.apply(&mut state, &node, false).expect("no-op sync");
    assert!(!report.restored, "{report:?}");

    // A periodic full sync rewrites from memory and keeps the affinity.
    let report = backend.apply(&mut state, &node, true).expect("resync");
    assert!(report.full && report.restored);
    let again: BTreeSet<String> = (0..5)
        .map(|_| lab.node.fetch(sticky).expect("sticky after resync"))
        .collect();
    assert_eq!(again, sticky_seen);
    // A fresh backend writing the same state from nothing gives the same table (but
    // for the order of chains and the affinity sets' contents, which it empties).
    let lines = |text: String| -> BTreeSet<String> {
        text.lines()
            .filter(|l| !l.contains("expires"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(lines(listed(&lab.node, &table)), {
        let mut fresh = NftBackend::new(
            Commands::with_prefix(config.command_prefix.clone()),
            &config,
        )
        .expect("backend");
        let mut copy = state.clone();
        fresh.apply(&mut copy, &node, true).expect("fresh sync");
        lines(listed(&lab.node, &table))
    });

    // The service goes away: nothing of it is left; then cleanup leaves nothing.
    state.delete_service("default", "web");
    backend.apply(&mut state, &node, false).expect("delete");
    assert!(
        !listed(&lab.node, &table).contains(&lab.vip(10).to_string()),
        "{}",
        listed(&lab.node, &table)
    );
    let exec = Commands::in_netns(&lab.node.name);
    let removed = cleanup_with(&exec, &prefix).expect("cleanup");
    assert_eq!(removed, [format!("nftables table ip {table}")]);
    assert_eq!(
        leftovers_with(&exec, &prefix).expect("leftovers"),
        Vec::<String>::new()
    );
}

#[test]
fn two_instances_in_one_namespace_leave_each_other_alone() {
    let mut lab = Lab::new();
    lab.serve(2, 8080);
    lab.serve(3, 8080);
    let (a, b) = (prefix(), format!("SKH{:04x}-", unique() & 0xffff));
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
    let config_a = lab.config(&a, &format!("10.248.{}.0/25", lab.x));
    let mut config_b = lab.config(&b, &format!("10.248.{}.128/25", lab.x));
    config_b.masquerade_bit = 13;
    config_b.node_ips = vec![];
    config_b.localhost_nodeports = false;
    let pod2 = lab.pod_ip(2).to_string();
    let pod3 = lab.pod_ip(3).to_string();
    let mut state_a = ServiceState::from_objects(
        [&service("a", &lab.vip(10).to_string(), 80)],
        [&slice("a", 8080, &[pod2.as_str()])],
        "node-a",
    );
    let mut state_b = ServiceState::from_objects(
        [&service("b", &lab.vip(200).to_string(), 80)],
        [&slice("b", 8080, &[pod3.as_str()])],
        "node-a",
    );
    let exec = || Commands::in_netns(&lab.node.name);
    let mut backend_a = NftBackend::new(exec(), &config_a).expect("a");
    let mut backend_b = NftBackend::new(exec(), &config_b).expect("b");
    let (node_a, node_b) = (
        NodeView::new(&config_a, None),
        NodeView::new(&config_b, None),
    );
    backend_a
        .apply(&mut state_a, &node_a, true)
        .expect("sync a");
    backend_b
        .apply(&mut state_b, &node_b, true)
        .expect("sync b");
    // A fresh instance A (a restart) recreates only its own table.
    let mut restarted = NftBackend::new(exec(), &config_a).expect("a again");
    restarted
        .apply(&mut state_a.clone(), &node_a, true)
        .expect("resync a");

    let to_a = SocketAddrV4::new(lab.vip(10), 80);
    let to_b = SocketAddrV4::new(lab.vip(200), 80);
    assert_eq!(lab.node.fetch(to_a).expect("a").trim(), "backend-2");
    assert_eq!(lab.node.fetch(to_b).expect("b").trim(), "backend-3");

    cleanup_with(&exec(), &a).expect("cleanup a");
    assert_eq!(
        leftovers_with(&exec(), &a).expect("leftovers a"),
        Vec::<String>::new()
    );
    assert!(!leftovers_with(&exec(), &b).expect("leftovers b").is_empty());
    assert_eq!(
        lab.node.fetch(to_b).expect("b after a's cleanup").trim(),
        "backend-3"
    );
    assert!(lab.node.fetch(to_a).is_err());
    cleanup_with(&exec(), &b).expect("cleanup b");
    assert_eq!(
        leftovers_with(&exec(), &b).expect("leftovers b"),
        Vec::<String>::new()
    );
}
