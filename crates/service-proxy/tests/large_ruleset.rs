//! A thousand services with five endpoints each, applied in a network namespace of the
//! test's own: a full sync, then a one-endpoint change, timed. (The count can be raised
//! with SKIFF_PROXY_SERVICES for a manual measurement.)

#[path = "support/netns.rs"]
mod netns;
#[path = "support/objects.rs"]
mod objects;

use std::time::Instant;

use netns::{Netns, require_root, unique};
use objects::{service, slice};
use service_proxy::{
    Backend, Commands, NftBackend, NodeView, ProxyConfig, ServiceState, TableKind, desired,
    leftovers_with, nft_table,
};

#[test]
fn a_thousand_services_sync_in_one_restore_and_an_endpoint_change_rewrites_one_chain() {
    require_root();
    let count: usize = std::env::var("SKIFF_PROXY_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let id = unique();
    let ns = Netns::new(&format!("skf-big-{id:08x}"));
    let prefix = format!("SKB{:04x}-", id & 0xffff);
    let config = ProxyConfig {
        prefix: prefix.clone(),
        node_name: "node-a".into(),
        node_ips: vec!["10.249.0.1".parse().expect("ip")],
        service_cidrs: vec!["10.96.0.0/12".parse().expect("cidr")],
        ..ProxyConfig::default()
    };
    let services: Vec<_> = (0..count)
        .map(|i| {
            service(
                &format!("svc-{i}"),
                &format!("10.96.{}.{}", i / 250, i % 250 + 1),
                80,
            )
        })
        .collect();
    let endpoints: Vec<Vec<String>> = (0..count)
        .map(|i| {
            (1..=5)
                .map(|e| format!("10.42.{}.{}", i / 50, (i % 50) * 5 + e))
                .collect()
        })
        .collect();
    let slices: Vec<_> = (0..count)
        .map(|i| {
            let ips: Vec<&str> = endpoints[i].iter().map(String::as_str).collect();
            slice(&format!("svc-{i}"), 8080, &ips)
        })
        .collect();
    let node = NodeView::new(&config, None);

    let started = Instant::now();
    let ruleset = desired(services.iter(), slices.iter(), &node, &config);
    let computed = started.elapsed();
    let mut backend = Backend::new(Commands::in_netns(&ns.name), &prefix).expect("backend");
    let started = Instant::now();
    let full = backend.apply(&ruleset, true).expect("full sync");
    let full_took = started.elapsed();
    assert_eq!(full.chains_written, count * 6 + 7);

    // One endpoint of one service changes.
    let mut changed = slices.clone();
    changed[count / 2].endpoints[0].addresses = vec!["10.42.250.250".into()];
    let started = Instant::now();
    let next = desired(services.iter(), changed.iter(), &node, &config);
    let recomputed = started.elapsed();
    let started = Instant::now();
    let partial = backend.apply(&next, false).expect("incremental sync");
    let partial_took = started.elapsed();
    assert_eq!((partial.chains_written, partial.chains_deleted), (2, 1));

    let saved = ns.exec("/usr/sbin/iptables-save", &["-t", "nat"]);
    let rules = saved
        .lines()
        .filter(|l| l.starts_with(&format!("-A {prefix}")))
        .count();
    assert_eq!(rules, next.rule_count(TableKind::Nat));
    eprintln!(
        "{count} services x 5 endpoints: {} nat rules; desired() {computed:?}, full sync {full_took:?}; \
         one endpoint changed: desired() {recomputed:?}, incremental sync {partial_took:?}",
        next.rule_count(TableKind::Nat)
    );
    service_proxy::cleanup_with(&Commands::in_netns(&ns.name), &prefix).expect("cleanup");
    assert!(
        leftovers_with(&Commands::in_netns(&ns.name), &prefix)
            .expect("leftovers")
            .is_empty()
    );
}

#[test]
fn a_thousand_services_load_into_nftables_and_an_endpoint_change_writes_a_few_elements() {
    require_root();
    let count: usize = std::env::var("SKIFF_PROXY_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let id = unique();
    let ns = Netns::new(&format!("skf-bign-{id:08x}"));
    let prefix = format!("SKN{:04x}-", id & 0xffff);
    let config = ProxyConfig {
        prefix: prefix.clone(),
        node_name: "node-a".into(),
        node_ips: vec!["10.249.0.1".parse().expect("ip")],
        service_cidrs: vec!["10.96.0.0/12".parse().expect("cidr")],
        ..ProxyConfig::default()
    };
    let services: Vec<_> = (0..count)
        .map(|i| {
            service(
                &format!("svc-{i}"),
                &format!("10.96.{}.{}", i / 250, i % 250 + 1),
                80,
            )
        })
        .collect();
    let slices: Vec<_> = (0..count)
        .map(|i| {
            let ips: Vec<String> = (1..=5)
                .map(|e| format!("10.42.{}.{}", i / 50, (i % 50) * 5 + e))
                .collect();
            let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
            slice(&format!("svc-{i}"), 8080, &ips)
        })
        .collect();
    let node = NodeView::new(&config, None);
    let mut state = ServiceState::from_objects(services.iter(), slices.iter(), "node-a");
    let mut backend = NftBackend::new(Commands::in_netns(&ns.name), &config).expect("backend");
    let started = Instant::now();
    let full = backend.apply(&mut state, &node, true).expect("full sync");
    let full_took = started.elapsed();
    assert_eq!(full.counts.service_ports, count);
    assert_eq!(full.counts.endpoints, count * 5);

    // One endpoint of one service changes.
    let mut changed = slices[count / 2].clone();
    changed.endpoints[0].addresses = vec!["10.42.250.250".into()];
    state.apply_slice(std::sync::Arc::new(changed));
    let started = Instant::now();
    let partial = backend
        .apply(&mut state, &node, false)
        .expect("incremental sync");
    let partial_took = started.elapsed();
    assert_eq!((partial.chains_written, partial.chains_deleted), (0, 0));
    assert!(partial.elements_written <= 12, "{partial:?}");
    let listed = ns.exec(
        "/usr/sbin/nft",
        &[
            "list",
            "map",
            "ip",
            &nft_table(&prefix),
            "cluster-endpoints",
        ],
    );
    assert!(listed.contains(": 10.42.250.250 . 8080"));
    eprintln!(
        "{count} services x 5 endpoints in nftables: {} elements; full sync {full_took:?}; \
         one endpoint changed: incremental sync {partial_took:?} ({} elements written)",
        partial.counts.elements, partial.elements_written
    );
    service_proxy::cleanup_with(&Commands::in_netns(&ns.name), &prefix).expect("cleanup");
    assert!(
        leftovers_with(&Commands::in_netns(&ns.name), &prefix)
            .expect("leftovers")
            .is_empty()
    );
}
