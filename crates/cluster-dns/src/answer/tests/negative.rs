//! NXDOMAIN and NODATA, the SOA, sync, and the index following updates.

use hickory_proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};

use super::*;
use crate::{DnsConfig, Index, answer::Answer};
#[test]
fn nxdomain_and_nodata_follow_what_exists() {
    let ix = cluster();
    // Missing service, missing namespace, unknown top label, too many labels.
    assert_nxdomain(&ask(&ix, "nope.default.svc.cluster.local.", RecordType::A));
    assert_nxdomain(&ask(&ix, "web.nope.svc.cluster.local.", RecordType::A));
    assert_nxdomain(&ask(&ix, "nope.svc.cluster.local.", RecordType::A));
    assert_nxdomain(&ask(&ix, "web.default.nodes.cluster.local.", RecordType::A));
    assert_nxdomain(&ask(&ix, "foo.cluster.local.", RecordType::A));
    assert_nxdomain(&ask(
        &ix,
        "a.b.web.default.svc.cluster.local.",
        RecordType::A,
    ));
    // Existing namespace, svc./pod. and the apex: exist, hold no address.
    assert_nodata(&ask(&ix, "default.svc.cluster.local.", RecordType::A));
    assert_nodata(&ask(&ix, "default.pod.cluster.local.", RecordType::A));
    assert_nodata(&ask(&ix, "svc.cluster.local.", RecordType::A));
    assert_nodata(&ask(&ix, "pod.cluster.local.", RecordType::A));
    assert_nodata(&ask(&ix, "cluster.local.", RecordType::A));
    // Existing names asked for types they lack.
    for qtype in [
        RecordType::MX,
        RecordType::TXT,
        RecordType::PTR,
        RecordType::HINFO,
        RecordType::SOA,
        RecordType::NS,
    ] {
        assert_nodata(&ask(&ix, "web.default.svc.cluster.local.", qtype));
        assert_nxdomain(&ask(&ix, "nope.default.svc.cluster.local.", qtype));
    }
    assert_nodata(&ask(&ix, "default.svc.cluster.local.", RecordType::TXT));
}

#[test]
fn services_of_a_namespace_not_seen_do_not_exist() {
    let mut ix = cluster();
    ix.apply_service(&service(
        "ghost",
        "web",
        &["10.43.0.99"],
        &[("http", 80, "TCP")],
    ));
    assert_nxdomain(&ask(&ix, "web.ghost.svc.cluster.local.", RecordType::A));
    ix.apply_namespace(&namespace("ghost"));
    let r = ask(&ix, "web.ghost.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&r.answers), vec![ip("10.43.0.99")]);
}

#[test]
fn the_soa_carries_the_ttl_as_negative_caching_minimum() {
    let ix = cluster();
    let r = ask(&ix, "cluster.local.", RecordType::SOA);
    let RData::SOA(soa) = &r.answers[0].data else {
        panic!("{r:?}")
    };
    assert_eq!(r.answers[0].name, name("cluster.local."));
    assert_eq!(r.answers[0].ttl, 5);
    assert_eq!(soa.mname, name("ns.dns.cluster.local."));
    assert_eq!(soa.rname, name("hostmaster.cluster.local."));
    assert_eq!(soa.minimum, 5);
    assert_eq!((soa.refresh, soa.retry, soa.expire), (7200, 1800, 86400));
    let nx = ask(&ix, "nope.default.svc.cluster.local.", RecordType::A);
    assert_eq!(nx.authorities[0], r.answers[0]);
}

#[test]
fn the_ttl_is_configurable_and_the_soa_ttl_caps_at_300() {
    let config = DnsConfig {
        ttl: 600,
        domain: "Example.Internal".to_string(),
        ..DnsConfig::default()
    };
    let mut ix = Index::new(&config).unwrap();
    ix.apply_namespace(&namespace("default"));
    ix.apply_service(&service(
        "default",
        "web",
        &["10.43.0.20"],
        &[("http", 80, "TCP")],
    ));
    ix.set_synced(true);
    let r = ask(&ix, "web.default.svc.example.internal.", RecordType::A);
    assert_eq!(r.answers[0].ttl, 600);
    let nx = ask(&ix, "nope.default.svc.example.internal.", RecordType::A);
    let RData::SOA(soa) = &nx.authorities[0].data else {
        panic!("{nx:?}")
    };
    assert_eq!((nx.authorities[0].ttl, soa.minimum), (300, 600));
    assert_eq!(
        ix.answer(&name("web.default.svc.cluster.local."), RecordType::A),
        Answer::NotAuthoritative
    );
}

#[test]
fn pod_names_spell_their_address_in_existing_namespaces() {
    let ix = cluster();
    let r = ask(&ix, "10-42-0-77.default.pod.cluster.local.", RecordType::A);
    assert_eq!(ips(&r.answers), vec![ip("10.42.0.77")]);
    assert_nodata(&ask(
        &ix,
        "10-42-0-77.default.pod.cluster.local.",
        RecordType::AAAA,
    ));
    let v6 = ask(&ix, "fd00--42.default.pod.cluster.local.", RecordType::AAAA);
    assert_eq!(ips(&v6.answers), vec![ip("fd00::42")]);
    assert_nxdomain(&ask(
        &ix,
        "10-42-0-77.nope.pod.cluster.local.",
        RecordType::A,
    ));
    assert_nxdomain(&ask(
        &ix,
        "not-an-ip.default.pod.cluster.local.",
        RecordType::A,
    ));
}

#[test]
fn nothing_is_answered_before_the_caches_synced() {
    let mut ix = cluster();
    ix.set_synced(false);
    let r = ask(&ix, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(r.rcode, ResponseCode::ServFail);
    assert!(r.answers.is_empty());
    assert_eq!(ptr_of(&ix, "20.0.43.10.in-addr.arpa."), None);
}

#[test]
fn names_outside_the_cluster_domain_are_not_authoritative() {
    let ix = cluster();
    for qname in ["example.com.", "local.", ".", "cluster.local.example.com."] {
        assert_eq!(
            ix.answer(&name(qname), RecordType::A),
            Answer::NotAuthoritative,
            "{qname}"
        );
    }
    // Reverse names answer PTR only.
    assert_eq!(
        ix.answer(&name("20.0.43.10.in-addr.arpa."), RecordType::A),
        Answer::NotAuthoritative
    );
}

#[test]
fn the_apex_ns_and_ns_dns_name_the_cluster_dns_address() {
    let ix = cluster();
    let ns = ask(&ix, "cluster.local.", RecordType::NS);
    assert!(
        matches!(&ns.answers[..], [Record { data: RData::NS(n), .. }] if n.0 == name("ns.dns.cluster.local."))
    );
    assert_eq!(ips(&ns.additionals), vec![ip("10.43.0.10")]);
    let a = ask(&ix, "ns.dns.cluster.local.", RecordType::A);
    assert_eq!(ips(&a.answers), vec![ip("10.43.0.10")]);
    assert_nodata(&ask(&ix, "ns.dns.cluster.local.", RecordType::AAAA));
    assert_nxdomain(&ask(&ix, "dns.cluster.local.", RecordType::A));
}

#[test]
fn dns_version_is_published_as_txt() {
    let r = ask(&cluster(), "dns-version.cluster.local.", RecordType::TXT);
    assert!(matches!(&r.answers[0].data, RData::TXT(t) if t.to_string() == "1.1.0"));
    assert_eq!(r.answers[0].ttl, 28800);
}

#[test]
fn zone_transfers_are_refused() {
    let r = ask(&cluster(), "cluster.local.", RecordType::AXFR);
    assert_eq!(r.rcode, ResponseCode::Refused);
}

#[test]
fn updates_and_deletes_show_in_the_next_answer() {
    let mut ix = cluster();
    // A new cluster IP replaces the old one, also for PTR.
    ix.apply_service(&service(
        "default",
        "web",
        &["10.43.0.25"],
        &[("http", 80, "TCP")],
    ));
    let r = ask(&ix, "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&r.answers), vec![ip("10.43.0.25")]);
    assert_eq!(ptr_of(&ix, "20.0.43.10.in-addr.arpa."), None);
    assert!(ptr_of(&ix, "25.0.43.10.in-addr.arpa.").is_some());
    // A slice losing an endpoint.
    ix.apply_endpoint_slice(&slice(
        "default",
        "db-1",
        "db",
        &[("pg", 5432, "TCP")],
        &[("10.42.1.10", Some("db-0"), Some(true))],
    ));
    let r = ask(&ix, "db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&r.answers), vec![ip("10.42.1.10")]);
    assert_eq!(ptr_of(&ix, "11.1.42.10.in-addr.arpa."), None);
    // The slice goes: the headless service has no endpoint left.
    ix.delete_endpoint_slice("default", "db-1");
    assert_nxdomain(&ask(&ix, "db.default.svc.cluster.local.", RecordType::A));
    // The service goes.
    ix.delete_service("default", "web");
    assert_nxdomain(&ask(&ix, "web.default.svc.cluster.local.", RecordType::A));
    assert_eq!(ptr_of(&ix, "25.0.43.10.in-addr.arpa."), None);
    // The namespace goes.
    ix.delete_namespace("default");
    assert_nxdomain(&ask(&ix, "api.default.svc.cluster.local.", RecordType::A));
    assert_nxdomain(&ask(&ix, "default.svc.cluster.local.", RecordType::A));
}

#[test]
fn a_slice_moved_to_another_service_leaves_the_first() {
    let mut ix = cluster();
    ix.apply_service(&service("default", "other", &["None"], &[]));
    ix.apply_endpoint_slice(&slice(
        "default",
        "db-1",
        "other",
        &[("pg", 5432, "TCP")],
        &[("10.42.1.10", Some("db-0"), Some(true))],
    ));
    assert_nxdomain(&ask(&ix, "db.default.svc.cluster.local.", RecordType::A));
    let r = ask(&ix, "other.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&r.answers), vec![ip("10.42.1.10")]);
}

#[test]
fn ten_thousand_services_answer_like_ten() {
    let config = DnsConfig::default();
    let mut ix = Index::new(&config).unwrap();
    for n in 0..100 {
        ix.apply_namespace(&namespace(&format!("ns{n}")));
    }
    for i in 0..10_000u32 {
        let addr = format!("10.43.{}.{}", 100 + i / 250, i % 250);
        ix.apply_service(&service(
            &format!("ns{}", i % 100),
            &format!("svc{i}"),
            &[&addr],
            &[("http", 80, "TCP")],
        ));
    }
    ix.set_synced(true);
    assert_eq!(ix.service_count(), 10_000);
    let r = ask(&ix, "svc9999.ns99.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&r.answers), vec![ip("10.43.139.249")]);
    assert_eq!(
        ptr_of(&ix, "249.139.43.10.in-addr.arpa."),
        Some(vec!["svc9999.ns99.svc.cluster.local.".to_string()])
    );
    assert_nxdomain(&ask(&ix, "svc9999.ns98.svc.cluster.local.", RecordType::A));
}
