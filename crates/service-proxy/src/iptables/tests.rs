//! The backend's command sequence, against a recording fake.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::exec::fake::Recorder;
use crate::{NodeView, ProxyConfig, desired};

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
        ips: vec![Ipv4Addr::new(192, 168, 5, 10)],
    }
}

fn service(protocol: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some("web".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.43.0.20".into()),
            ports: Some(vec![ServicePort {
                port: 80,
                protocol: Some(protocol.into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice(protocol: &str, ips: &[&str]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some("web-1".into()),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_owned(),
                "web".to_owned(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                addresses: vec![(*ip).into()],
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            port: Some(8080),
            protocol: Some(protocol.into()),
            ..Default::default()
        }]),
    }
}

fn rules(protocol: &str, ips: &[&str]) -> Ruleset {
    desired(
        [&service(protocol)],
        [&slice(protocol, ips)],
        &node(),
        &config(),
    )
}

/// The fake kernel: one stale chain of ours and one of someone else in nat, a stale
/// hook of ours and a foreign rule in PREROUTING; `-C` finds nothing.
fn kernel() -> Recorder {
    Recorder::default()
        .respond(|line| {
            (line == "/usr/sbin/iptables-save -t nat").then(|| {
                (
                    0,
                    "*nat\n:PREROUTING ACCEPT [0:0]\n:T1-SEP-STALE - [0:0]\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"
                        .to_owned(),
                )
            })
        })
        .respond(|line| {
            (line == "/usr/sbin/iptables -w -t nat -S PREROUTING").then(|| {
                (
                    0,
                    "-P PREROUTING ACCEPT\n-A PREROUTING -d 10.99.0.0/16 -m comment --comment \"skiff T1- service portals\" -j T1-SERVICES\n-A PREROUTING -j KUBE-SERVICES\n"
                        .to_owned(),
                )
            })
        })
        .respond(|line| line.contains(" -C ").then(|| (1, String::new())))
}

#[test]
fn the_first_sync_is_full_deletes_stale_chains_and_hooks_and_adds_every_hook() {
    let exec = Arc::new(kernel());
    let ruleset = rules("TCP", &["10.42.1.1", "10.42.1.2"]);
    let report = apply_with(&exec, &ruleset, false);
    assert!(report.full);
    assert_eq!(report.chains_deleted, 1);
    assert_eq!(report.hooks_removed, 1);
    assert_eq!(report.hooks_added, ruleset.hooks().len());

    let lines = exec.lines();
    let delete = lines
        .iter()
        .position(|l| l.contains(" -D PREROUTING -d 10.99.0.0/16 -m comment --comment skiff T1- service portals -j T1-SERVICES"))
        .expect("the stale hook is deleted");
    let restore = lines
        .iter()
        .position(|l| l == "/usr/sbin/iptables-restore --noflush -w")
        .expect("one restore");
    let first_insert = lines
        .iter()
        .position(|l| l.contains(" -I "))
        .expect("hooks inserted");
    assert!(delete < restore && restore < first_insert, "{lines:#?}");
    assert!(
        !lines.iter().any(|l| l.contains("KUBE-SERVICES")),
        "foreign rules are left alone"
    );

    let input = &exec.stdins()[0];
    assert!(input.contains(":T1-SEP-STALE - [0:0]\n"));
    assert!(input.contains("-X T1-SEP-STALE\n"));
    assert!(!input.contains("KUBE-"));
    for table in TableKind::ALL {
        for chain in ruleset.chains(table) {
            assert!(input.contains(&format!(":{chain} - [0:0]\n")), "{chain}");
        }
    }
}

#[test]
fn an_endpoint_change_rewrites_only_the_chains_that_changed() {
    let exec = Arc::new(kernel());
    let mut backend = Backend::new(exec.clone(), "T1-").unwrap();
    let before = rules("TCP", &["10.42.1.1", "10.42.1.2"]);
    backend.apply(&before, true).unwrap();
    exec.clear();

    let after = rules("TCP", &["10.42.1.1"]);
    let report = backend.apply(&after, false).unwrap();
    assert!(!report.full);
    assert_eq!((report.chains_written, report.chains_deleted), (1, 1));
    assert_eq!((report.hooks_added, report.hooks_removed), (0, 0));
    let lines = exec.lines();
    assert_eq!(
        lines,
        ["/usr/sbin/iptables-restore --noflush -w"],
        "no save, no hook checks"
    );
    let svc = crate::names::Names::new("T1-").svc("ns/web", "tcp");
    let gone = crate::names::Names::new("T1-").sep("ns/web", "tcp", "10.42.1.2:8080");
    assert_eq!(
        exec.stdins()[0],
        format!(
            "*nat\n:{svc} - [0:0]\n:{gone} - [0:0]\n-A {svc} ! -s 10.42.0.0/16 -d 10.43.0.20/32 -p tcp -m comment --comment \"ns/web cluster IP\" -m tcp --dport 80 -j T1-MARK-MASQ\n-A {svc} -m comment --comment \"ns/web -> 10.42.1.1:8080\" -j {}\n-X {gone}\nCOMMIT\n",
            crate::names::Names::new("T1-").sep("ns/web", "tcp", "10.42.1.1:8080")
        )
    );

    // Nothing changed: nothing runs.
    exec.clear();
    let report = backend.apply(&after, false).unwrap();
    assert!(!report.restored);
    assert!(exec.lines().is_empty());
}

#[test]
fn removed_udp_endpoints_are_flushed_from_conntrack_only_when_the_tool_exists() {
    for (tool, expected) in [(false, 0), (true, 1)] {
        let exec = Arc::new(kernel().respond(move |line| {
            (line == "/usr/sbin/conntrack --version")
                .then(|| (if tool { 0 } else { 127 }, String::new()))
        }));
        let mut backend = Backend::new(exec.clone(), "T1-").unwrap();
        backend
            .apply(&rules("UDP", &["10.42.1.1", "10.42.1.2"]), true)
            .unwrap();
        exec.clear();
        let report = backend.apply(&rules("UDP", &["10.42.1.1"]), false).unwrap();
        assert_eq!(report.conntrack_flushes, expected);
        let deletes: Vec<String> = exec
            .lines()
            .into_iter()
            .filter(|l| l.contains("conntrack -D"))
            .collect();
        if tool {
            assert_eq!(
                deletes,
                ["/usr/sbin/conntrack -D -p udp --orig-dst 10.43.0.20 --dst-nat 10.42.1.2"]
            );
        } else {
            assert!(deletes.is_empty());
        }
    }
}

#[test]
fn cleanup_removes_our_hooks_and_chains_and_nothing_else() {
    let exec = Arc::new(kernel());
    let removed = cleanup_with(exec.as_ref(), "T1-").unwrap();
    assert_eq!(
        removed,
        [
            "iptables rule nat/-A PREROUTING -d 10.99.0.0/16 -m comment --comment \"skiff T1- service portals\" -j T1-SERVICES",
            "iptables chain nat/T1-SEP-STALE",
        ]
    );
    assert_eq!(
        exec.stdins(),
        ["*nat\n:T1-SEP-STALE - [0:0]\n-X T1-SEP-STALE\nCOMMIT\n"]
    );
}

fn apply_with(exec: &Arc<Recorder>, ruleset: &Ruleset, full: bool) -> SyncReport {
    let mut backend = Backend::new(exec.clone(), "T1-").unwrap();
    backend.apply(ruleset, full).unwrap()
}
