//! The nftables backend against a recording fake `nft`: what each sync writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort as KubePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;

use super::NftBackend;
use crate::exec::fake::Recorder;
use crate::{NodeView, ProxyConfig, ServiceState, desired, desired_from};

fn config() -> ProxyConfig {
    ProxyConfig {
        prefix: "T1-".into(),
        node_name: "node-a".into(),
        ..ProxyConfig::default()
    }
}

fn node() -> NodeView {
    NodeView {
        name: "node-a".into(),
        ips: vec!["192.168.5.10".parse().unwrap()],
    }
}

fn service(name: &str, ip: &str, kind: &str, affinity: bool) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(kind.into()),
            cluster_ip: Some(ip.into()),
            ports: Some(vec![KubePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                node_port: (kind == "NodePort").then_some(30000 + i32::from(ip.len() as u8)),
                ..Default::default()
            }]),
            session_affinity: affinity.then(|| "ClientIP".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice(name: &str, service: &str, ips: &[String], local: bool) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_owned(),
                service.to_owned(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                addresses: vec![ip.clone()],
                node_name: Some(if local { "node-a" } else { "node-b" }.into()),
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

fn ips(range: std::ops::Range<u8>) -> Vec<String> {
    range.map(|i| format!("10.42.0.{i}")).collect()
}

fn backend(exec: &Arc<Recorder>) -> NftBackend {
    NftBackend::new(exec.clone(), &config()).unwrap()
}

#[test]
fn the_first_sync_recreates_our_table_in_one_transaction() {
    let exec = Arc::new(Recorder::default());
    let mut state = ServiceState::from_objects(
        [&service("web", "10.43.0.20", "ClusterIP", false)],
        [&slice("web-1", "web", &ips(1..4), false)],
        "node-a",
    );
    let report = backend(&exec).apply(&mut state, &node(), false).unwrap();
    assert!(report.full && report.restored);
    assert_eq!(exec.lines(), ["/usr/sbin/nft -f -"]);
    let input = &exec.stdins()[0];
    assert!(
        input.starts_with(
            "add table ip t1-proxy\ndelete table ip t1-proxy\nadd table ip t1-proxy\n"
        )
    );
    for line in [
        "add element ip t1-proxy service-ips { 10.43.0.20 . tcp . 80 : goto cluster-3 }",
        "add rule ip t1-proxy cluster-3 meta l4proto tcp dnat ip to ip daddr . meta l4proto . tcp dport . numgen random mod 3 map @cluster-endpoints",
        "add element ip t1-proxy hairpin { 10.42.0.1 . 10.42.0.1, 10.42.0.2 . 10.42.0.2, 10.42.0.3 . 10.42.0.3 }",
        "add rule ip t1-proxy services ip daddr . meta l4proto . th dport @cluster-ips-masquerade ip saddr != 10.42.0.0/16 jump mark-for-masquerade",
    ] {
        assert!(input.contains(line), "missing {line:?} in\n{input}");
    }
    assert!(input.contains(
        "10.43.0.20 . tcp . 80 . 0 : 10.42.0.1 . 8080, 10.43.0.20 . tcp . 80 . 1 : 10.42.0.2 . 8080"
    ));
}

#[test]
fn an_endpoint_change_writes_only_elements() {
    let exec = Arc::new(Recorder::default());
    let mut backend = backend(&exec);
    let mut state = ServiceState::from_objects(
        [&service("web", "10.43.0.20", "ClusterIP", false)],
        [&slice("web-1", "web", &ips(1..4), false)],
        "node-a",
    );
    backend.apply(&mut state, &node(), true).unwrap();
    exec.clear();

    let mut changed = ips(1..4);
    changed[0] = "10.42.0.9".into();
    state.apply_slice(Arc::new(slice("web-1", "web", &changed, false)));
    let report = backend.apply(&mut state, &node(), false).unwrap();
    assert!(!report.full);
    assert_eq!((report.chains_written, report.chains_deleted), (0, 0));
    // Endpoints are numbered in address order: .2 and .3 move down one place.
    assert_eq!(
        exec.stdins(),
        ["add table ip t1-proxy\n\
          delete element ip t1-proxy cluster-endpoints { 10.43.0.20 . tcp . 80 . 0, 10.43.0.20 . tcp . 80 . 1, 10.43.0.20 . tcp . 80 . 2 }\n\
          delete element ip t1-proxy hairpin { 10.42.0.1 . 10.42.0.1 }\n\
          add element ip t1-proxy cluster-endpoints { 10.43.0.20 . tcp . 80 . 0 : 10.42.0.2 . 8080, 10.43.0.20 . tcp . 80 . 1 : 10.42.0.3 . 8080, 10.43.0.20 . tcp . 80 . 2 : 10.42.0.9 . 8080 }\n\
          add element ip t1-proxy hairpin { 10.42.0.9 . 10.42.0.9 }\n"]
    );

    // Nothing changed: nothing runs.
    exec.clear();
    let report = backend.apply(&mut state, &node(), false).unwrap();
    assert!(!report.restored);
    assert!(exec.lines().is_empty());

    // The last endpoint goes: rejected at once, the shared chain goes too.
    state.delete_slice("ns", "web-1");
    let report = backend.apply(&mut state, &node(), false).unwrap();
    assert_eq!(report.chains_deleted, 1);
    let input = exec.stdins().concat();
    assert!(input.contains(
        "add element ip t1-proxy no-endpoint-services { 10.43.0.20 . tcp . 80 : goto reject-chain }"
    ));
    assert!(
        input.contains("delete chain ip t1-proxy cluster-3\n"),
        "{input}"
    );
    let delete = input
        .find("delete element ip t1-proxy service-ips")
        .unwrap();
    let flush = input.find("flush chain ip t1-proxy cluster-3").unwrap();
    let gone = input.find("delete chain ip t1-proxy cluster-3").unwrap();
    assert!(delete < flush && flush < gone, "{input}");
}

#[test]
fn a_failed_sync_makes_the_next_one_recreate_the_table() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let failing = fail.clone();
    let exec = Arc::new(Recorder::default().respond(move |line| {
        (line == "/usr/sbin/nft -f -" && failing.load(std::sync::atomic::Ordering::SeqCst))
            .then(|| (1, String::new()))
    }));
    let mut backend = backend(&exec);
    let mut state = ServiceState::from_objects(
        [&service("web", "10.43.0.20", "ClusterIP", false)],
        [&slice("web-1", "web", &ips(1..3), false)],
        "node-a",
    );
    assert!(backend.apply(&mut state, &node(), false).is_err());
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    exec.clear();
    let report = backend.apply(&mut state, &node(), false).unwrap();
    assert!(report.full);
    assert!(exec.stdins()[0].contains("delete table ip t1-proxy\n"));
}

#[test]
fn a_periodic_full_sync_refills_from_memory_but_keeps_affinity_sets() {
    let exec = Arc::new(Recorder::default());
    let mut backend = backend(&exec);
    let mut state = ServiceState::from_objects(
        [&service("sticky", "10.43.0.21", "NodePort", true)],
        [&slice("sticky-1", "sticky", &ips(1..3), false)],
        "node-a",
    );
    backend.apply(&mut state, &node(), true).unwrap();
    exec.clear();
    backend.apply(&mut state, &node(), true).unwrap();
    let input = exec.stdins().concat();
    assert!(!input.contains("delete table"), "{input}");
    assert!(input.contains("flush map ip t1-proxy service-ips\n"));
    assert!(input.contains("flush chain ip t1-proxy services\n"));
    assert!(input.contains("add set ip t1-proxy affinity-"));
    assert!(
        !input.contains("flush set ip t1-proxy affinity-"),
        "{input}"
    );
    assert!(input.contains("update @affinity-"));
}

/// One step of a random history of the cluster.
#[derive(Debug, Clone)]
enum Step {
    /// Service `i` is (re)created with a type, affinity and policies.
    Service(usize, u8, bool, bool),
    /// Service `i` is deleted.
    DeleteService(usize),
    /// Slice `j` of service `i` holds endpoints `from..to`, local or not.
    Slice(usize, usize, u8, u8, bool),
    /// Slice `j` of service `i` is deleted.
    DeleteSlice(usize, usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..6usize, 0..3u8, any::<bool>(), any::<bool>())
            .prop_map(|(i, k, a, l)| Step::Service(i, k, a, l)),
        (0..6usize).prop_map(Step::DeleteService),
        (0..6usize, 0..2usize, 1..20u8, 0..6u8, any::<bool>())
            .prop_map(|(i, j, from, n, local)| Step::Slice(i, j, from, from + n, local)),
        (0..6usize, 0..2usize).prop_map(|(i, j)| Step::DeleteSlice(i, j)),
    ]
}

fn make_service(i: usize, kind: u8, affinity: bool, local: bool) -> Service {
    let kind = ["ClusterIP", "NodePort", "LoadBalancer"][usize::from(kind)];
    let mut s = service(
        &format!("s{i}"),
        &format!("10.43.0.{}", i + 10),
        kind,
        affinity,
    );
    let spec = s.spec.as_mut().unwrap();
    if local {
        spec.external_traffic_policy = Some("Local".into());
        spec.internal_traffic_policy = Some("Local".into());
    }
    if kind == "LoadBalancer" {
        spec.ports.as_mut().unwrap()[0].node_port = Some(31000 + i as i32);
        spec.external_ips = Some(vec![format!("192.0.2.{i}")]);
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The incremental path (only changed Services recomputed, only changed items
    /// written) ends where a full computation from all objects does, for iptables
    /// (the pure `desired`) and for nftables (a fresh backend's table).
    #[test]
    fn incremental_syncs_end_where_a_full_computation_does(steps in proptest::collection::vec(step(), 1..30)) {
        let exec = Arc::new(Recorder::default());
        let mut incremental = backend(&exec);
        let mut state = ServiceState::new("node-a");
        let mut services: BTreeMap<usize, Service> = BTreeMap::new();
        let mut slices: BTreeMap<(usize, usize), EndpointSlice> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Service(i, kind, affinity, local) => {
                    let s = make_service(i, kind, affinity, local);
                    state.apply_service(Arc::new(s.clone()));
                    services.insert(i, s);
                }
                Step::DeleteService(i) => {
                    state.delete_service("ns", &format!("s{i}"));
                    services.remove(&i);
                }
                Step::Slice(i, j, from, to, local) => {
                    let ips: Vec<String> = (from..to).map(|k| format!("10.42.{i}.{k}")).collect();
                    let s = slice(&format!("s{i}-{j}"), &format!("s{i}"), &ips, local);
                    state.apply_slice(Arc::new(s.clone()));
                    slices.insert((i, j), s);
                }
                Step::DeleteSlice(i, j) => {
                    state.delete_slice("ns", &format!("s{i}-{j}"));
                    slices.remove(&(i, j));
                }
            }
            incremental.apply(&mut state, &node(), false).unwrap();
            let mut everything = ServiceState::from_objects(services.values(), slices.values(), "node-a");
            let mut fresh = backend(&Arc::new(Recorder::default()));
            fresh.apply(&mut everything, &node(), true).unwrap();
            let got: Vec<_> = incremental.aggregate.wanted().collect();
            let want: Vec<_> = fresh.aggregate.wanted().collect();
            prop_assert_eq!(got, want);
            let mut copy = state.clone();
            prop_assert_eq!(
                desired_from(&mut copy, &node(), &config()),
                desired(services.values(), slices.values(), &node(), &config())
            );
        }
    }
}
