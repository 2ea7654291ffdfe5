//! The answers, record kind by record kind, and the NXDOMAIN/NODATA cases, on a
//! hand-filled index: fixtures here, tests in `records` and `negative`.

use std::{collections::BTreeMap, net::IpAddr};

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, RData, Record, RecordType},
};
use k8s_openapi::{
    api::{
        core::v1::{Namespace, Service, ServicePort, ServiceSpec},
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::{Answer, Response};
use crate::{DnsConfig, Index};

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: ns.map(str::to_string),
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: meta(None, name),
        ..Namespace::default()
    }
}

fn ports(list: &[(&str, i32, &str)]) -> Option<Vec<ServicePort>> {
    Some(
        list.iter()
            .map(|(name, port, proto)| ServicePort {
                name: (!name.is_empty()).then(|| name.to_string()),
                port: *port,
                protocol: Some(proto.to_string()),
                ..ServicePort::default()
            })
            .collect(),
    )
}

fn service(ns: &str, name: &str, ips: &[&str], port_list: &[(&str, i32, &str)]) -> Service {
    Service {
        metadata: meta(Some(ns), name),
        spec: Some(ServiceSpec {
            cluster_ip: ips.first().map(|s| s.to_string()),
            cluster_ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            ports: ports(port_list),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn external(ns: &str, name: &str, target: &str) -> Service {
    Service {
        metadata: meta(Some(ns), name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".to_string()),
            external_name: Some(target.to_string()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// An endpoint: address, hostname, ready.
type Ep<'a> = (&'a str, Option<&'a str>, Option<bool>);

fn slice(
    ns: &str,
    name: &str,
    svc: &str,
    port_list: &[(&str, i32, &str)],
    eps: &[Ep],
) -> EndpointSlice {
    let mut metadata = meta(Some(ns), name);
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_string(),
        svc.to_string(),
    )]));
    let v6 = eps.first().is_some_and(|(ip, _, _)| ip.contains(':'));
    EndpointSlice {
        metadata,
        address_type: if v6 { "IPv6" } else { "IPv4" }.to_string(),
        endpoints: eps
            .iter()
            .map(|(ip, host, ready)| Endpoint {
                addresses: vec![ip.to_string()],
                hostname: host.map(str::to_string),
                conditions: Some(EndpointConditions {
                    ready: *ready,
                    ..EndpointConditions::default()
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(
            port_list
                .iter()
                .map(|(name, port, proto)| EndpointPort {
                    name: Some(name.to_string()),
                    port: Some(*port),
                    protocol: Some(proto.to_string()),
                    ..EndpointPort::default()
                })
                .collect(),
        ),
    }
}

/// The cluster of most tests: namespaces default and kube-system with
/// - web: ClusterIP 10.43.0.20, ports http/80/TCP and dns/53/UDP, endpoints 10.42.0.5, 10.42.0.6
/// - db: headless, port pg/5432, StatefulSet endpoints db-0, db-1 (ready), db-2 (not ready)
/// - api: dual-stack ClusterIP 10.43.0.30 + fd00:43::30, port https/443
/// - ext: ExternalName db.example.com.
/// - alias: ExternalName web.default.svc.cluster.local
/// - empty: headless with no endpoints
/// - bare: ClusterIP 10.43.0.40 without ports
/// - kube-system/kube-dns: 10.43.0.10
fn cluster() -> Index {
    let config = DnsConfig {
        nameservers: vec!["10.43.0.10".parse().unwrap()],
        ..DnsConfig::default()
    };
    let mut ix = Index::new(&config).unwrap();
    ix.apply_namespace(&namespace("default"));
    ix.apply_namespace(&namespace("kube-system"));
    ix.apply_service(&service(
        "default",
        "web",
        &["10.43.0.20"],
        &[("http", 80, "TCP"), ("dns", 53, "UDP")],
    ));
    ix.apply_endpoint_slice(&slice(
        "default",
        "web-abc",
        "web",
        &[("http", 8080, "TCP"), ("dns", 5353, "UDP")],
        &[("10.42.0.5", None, Some(true)), ("10.42.0.6", None, None)],
    ));
    ix.apply_service(&service("default", "db", &["None"], &[("pg", 5432, "TCP")]));
    ix.apply_endpoint_slice(&slice(
        "default",
        "db-1",
        "db",
        &[("pg", 5432, "TCP")],
        &[
            ("10.42.1.10", Some("db-0"), Some(true)),
            ("10.42.1.11", Some("db-1"), Some(true)),
        ],
    ));
    ix.apply_endpoint_slice(&slice(
        "default",
        "db-2",
        "db",
        &[("pg", 5432, "TCP")],
        &[("10.42.1.12", Some("db-2"), Some(false))],
    ));
    ix.apply_service(&service(
        "default",
        "api",
        &["10.43.0.30", "fd00:43::30"],
        &[("https", 443, "TCP")],
    ));
    ix.apply_service(&external("default", "ext", "db.example.com"));
    ix.apply_service(&external(
        "default",
        "alias",
        "web.default.svc.cluster.local",
    ));
    ix.apply_service(&service("default", "empty", &["None"], &[]));
    ix.apply_service(&service("default", "bare", &["10.43.0.40"], &[]));
    ix.apply_service(&service(
        "kube-system",
        "kube-dns",
        &["10.43.0.10"],
        &[("dns", 53, "UDP")],
    ));
    ix.set_synced(true);
    ix
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn ask(ix: &Index, qname: &str, qtype: RecordType) -> Response {
    match ix.answer(&name(qname), qtype) {
        Answer::Authoritative(r) => r,
        Answer::NotAuthoritative => panic!("{qname} {qtype}: not authoritative"),
    }
}

fn ips(records: &[Record]) -> Vec<IpAddr> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[track_caller]
fn assert_nodata(r: &Response) {
    assert_eq!(r.rcode, ResponseCode::NoError, "{r:?}");
    assert!(r.answers.is_empty(), "{r:?}");
    assert!(
        matches!(
            r.authorities[..],
            [Record {
                data: RData::SOA(_),
                ..
            }]
        ),
        "{r:?}"
    );
}

#[track_caller]
fn assert_nxdomain(r: &Response) {
    assert_eq!(r.rcode, ResponseCode::NXDomain, "{r:?}");
    assert!(r.answers.is_empty(), "{r:?}");
    assert!(
        matches!(
            r.authorities[..],
            [Record {
                data: RData::SOA(_),
                ..
            }]
        ),
        "{r:?}"
    );
}

fn ptr_of(ix: &Index, qname: &str) -> Option<Vec<String>> {
    match ix.answer(&name(qname), RecordType::PTR) {
        Answer::Authoritative(r) => Some(
            r.answers
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::PTR(p) => Some(p.0.to_string()),
                    _ => None,
                })
                .collect(),
        ),
        Answer::NotAuthoritative => None,
    }
}

mod negative;
mod records;
