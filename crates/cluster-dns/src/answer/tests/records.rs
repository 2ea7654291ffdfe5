//! Positive answers, record kind by record kind.

use std::net::IpAddr;

use hickory_proto::{
    op::ResponseCode,
    rr::{RData, Record, RecordType},
};

use super::*;
#[test]
fn a_cluster_ip_service_answers_its_cluster_ip_with_ttl_5() {
    let r = ask(&cluster(), "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(r.rcode, ResponseCode::NoError);
    assert_eq!(ips(&r.answers), vec![ip("10.43.0.20")]);
    assert_eq!(r.answers[0].ttl, 5);
    assert_eq!(r.answers[0].name, name("web.default.svc.cluster.local."));
    assert!(r.authorities.is_empty());
}

#[test]
fn names_match_in_any_case_and_records_keep_the_case_asked() {
    let r = ask(&cluster(), "WeB.Default.SVC.Cluster.Local.", RecordType::A);
    assert_eq!(ips(&r.answers), vec![ip("10.43.0.20")]);
    assert_eq!(
        r.answers[0].name.to_string(),
        "WeB.Default.SVC.Cluster.Local."
    );
}

#[test]
fn a_dual_stack_service_answers_a_and_aaaa_and_a_v4_only_one_has_no_aaaa() {
    let ix = cluster();
    let a = ask(&ix, "api.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&a.answers), vec![ip("10.43.0.30")]);
    let aaaa = ask(&ix, "api.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(ips(&aaaa.answers), vec![ip("fd00:43::30")]);
    assert_nodata(&ask(
        &ix,
        "web.default.svc.cluster.local.",
        RecordType::AAAA,
    ));
}

#[test]
fn a_headless_service_answers_every_ready_endpoint_once() {
    let r = ask(&cluster(), "db.default.svc.cluster.local.", RecordType::A);
    let mut got = ips(&r.answers);
    got.sort();
    // db-2 is not ready; each address once although slices list ports.
    assert_eq!(got, vec![ip("10.42.1.10"), ip("10.42.1.11")]);
}

#[test]
fn an_endpoint_without_a_ready_condition_counts_as_ready() {
    let r = ask(
        &cluster(),
        "10-42-0-6.web.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(ips(&r.answers), vec![ip("10.42.0.6")]);
}

#[test]
fn a_headless_service_without_ready_endpoints_does_not_exist_as_in_coredns() {
    let ix = cluster();
    assert_nxdomain(&ask(&ix, "empty.default.svc.cluster.local.", RecordType::A));
    assert_nxdomain(&ask(
        &ix,
        "empty.default.svc.cluster.local.",
        RecordType::SRV,
    ));
}

#[test]
fn a_statefulset_pod_resolves_by_hostname_under_its_service() {
    let ix = cluster();
    let r = ask(&ix, "db-1.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&r.answers), vec![ip("10.42.1.11")]);
    // Not ready: gone. Unknown hostname: gone.
    assert_nxdomain(&ask(
        &ix,
        "db-2.db.default.svc.cluster.local.",
        RecordType::A,
    ));
    assert_nxdomain(&ask(
        &ix,
        "db-9.db.default.svc.cluster.local.",
        RecordType::A,
    ));
    // Exists, but no AAAA.
    assert_nodata(&ask(
        &ix,
        "db-1.db.default.svc.cluster.local.",
        RecordType::AAAA,
    ));
}

#[test]
fn endpoints_without_hostname_resolve_by_dashed_address_also_behind_a_cluster_ip() {
    let r = ask(
        &cluster(),
        "10-42-0-5.web.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(ips(&r.answers), vec![ip("10.42.0.5")]);
}

fn srv_of(r: &Response) -> Vec<(u16, u16, u16, String)> {
    r.answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_string())),
            _ => None,
        })
        .collect()
}

#[test]
fn srv_for_a_named_port_points_at_the_service_name_with_its_address_as_additional() {
    let r = ask(
        &cluster(),
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        srv_of(&r),
        vec![(0, 100, 80, "web.default.svc.cluster.local.".to_string())]
    );
    assert_eq!(
        r.answers[0].name,
        name("_http._tcp.web.default.svc.cluster.local.")
    );
    assert_eq!(r.additionals.len(), 1);
    assert_eq!(
        r.additionals[0].name,
        name("web.default.svc.cluster.local.")
    );
    assert_eq!(ips(&r.additionals), vec![ip("10.43.0.20")]);
}

#[test]
fn srv_without_port_labels_lists_every_port_and_wrong_protocols_do_not_exist() {
    let ix = cluster();
    let r = ask(&ix, "web.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        srv_of(&r),
        vec![
            (0, 50, 80, "web.default.svc.cluster.local.".to_string()),
            (0, 50, 53, "web.default.svc.cluster.local.".to_string()),
        ]
    );
    assert_eq!(r.additionals.len(), 1, "one address per target");
    let udp = ask(
        &ix,
        "_dns._udp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(srv_of(&udp)[0].2, 53);
    assert_nxdomain(&ask(
        &ix,
        "_http._udp.web.default.svc.cluster.local.",
        RecordType::SRV,
    ));
    assert_nxdomain(&ask(
        &ix,
        "_nope._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    ));
    // The port name also works for an A question, as in CoreDNS.
    let a = ask(
        &ix,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(ips(&a.answers), vec![ip("10.43.0.20")]);
}

#[test]
fn srv_for_a_headless_service_has_one_record_per_endpoint_with_its_hostname() {
    let r = ask(
        &cluster(),
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    );
    let mut got = srv_of(&r);
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                0,
                50,
                5432,
                "db-0.db.default.svc.cluster.local.".to_string()
            ),
            (
                0,
                50,
                5432,
                "db-1.db.default.svc.cluster.local.".to_string()
            ),
        ]
    );
    let mut extra: Vec<(String, IpAddr)> = r
        .additionals
        .iter()
        .map(|rec| (rec.name.to_string(), ips(std::slice::from_ref(rec))[0]))
        .collect();
    extra.sort();
    assert_eq!(
        extra,
        vec![
            (
                "db-0.db.default.svc.cluster.local.".to_string(),
                ip("10.42.1.10")
            ),
            (
                "db-1.db.default.svc.cluster.local.".to_string(),
                ip("10.42.1.11")
            ),
        ]
    );
}

#[test]
fn a_service_without_ports_has_addresses_but_no_srv() {
    let ix = cluster();
    let a = ask(&ix, "bare.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&a.answers), vec![ip("10.43.0.40")]);
    assert_nodata(&ask(
        &ix,
        "bare.default.svc.cluster.local.",
        RecordType::SRV,
    ));
    assert_nxdomain(&ask(
        &ix,
        "_http._tcp.bare.default.svc.cluster.local.",
        RecordType::SRV,
    ));
}

#[test]
fn ptr_names_the_service_of_a_cluster_ip_and_the_endpoint_of_a_pod_ip() {
    let ix = cluster();
    assert_eq!(
        ptr_of(&ix, "20.0.43.10.in-addr.arpa."),
        Some(vec!["web.default.svc.cluster.local.".to_string()])
    );
    assert_eq!(
        ptr_of(&ix, "11.1.42.10.in-addr.arpa."),
        Some(vec!["db-1.db.default.svc.cluster.local.".to_string()])
    );
    assert_eq!(
        ptr_of(&ix, "5.0.42.10.in-addr.arpa."),
        Some(vec!["10-42-0-5.web.default.svc.cluster.local.".to_string()])
    );
    let v6 = "0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(
        ptr_of(&ix, v6),
        Some(vec!["api.default.svc.cluster.local.".to_string()])
    );
    // Not ready endpoints and unknown addresses are not ours: they go upstream.
    assert_eq!(ptr_of(&ix, "12.1.42.10.in-addr.arpa."), None);
    assert_eq!(ptr_of(&ix, "1.2.0.192.in-addr.arpa."), None);
    assert_eq!(ptr_of(&ix, "42.10.in-addr.arpa."), None);
}

#[test]
fn ptr_of_an_ip_behind_two_services_names_both_endpoints() {
    let mut ix = cluster();
    ix.apply_service(&service(
        "default",
        "web2",
        &["10.43.0.21"],
        &[("http", 80, "TCP")],
    ));
    ix.apply_endpoint_slice(&slice(
        "default",
        "web2-x",
        "web2",
        &[("http", 8080, "TCP")],
        &[("10.42.0.5", None, Some(true))],
    ));
    let mut got = ptr_of(&ix, "5.0.42.10.in-addr.arpa.").unwrap();
    got.sort();
    assert_eq!(
        got,
        vec![
            "10-42-0-5.web.default.svc.cluster.local.".to_string(),
            "10-42-0-5.web2.default.svc.cluster.local.".to_string(),
        ]
    );
}

#[test]
fn an_external_name_service_is_a_cname() {
    let ix = cluster();
    let cname = ask(&ix, "ext.default.svc.cluster.local.", RecordType::CNAME);
    assert_eq!(cname.rcode, ResponseCode::NoError);
    assert!(matches!(&cname.answers[0].data, RData::CNAME(c) if c.0 == name("db.example.com.")));
    // An address question gets the CNAME, and the server may chase the target upstream.
    let a = ask(&ix, "ext.default.svc.cluster.local.", RecordType::A);
    assert!(matches!(
        &a.answers[..],
        [Record {
            data: RData::CNAME(_),
            ..
        }]
    ));
    assert_eq!(a.external_target, Some(name("db.example.com.")));
    // No SRV for ExternalName, and no port or endpoint names under it.
    assert_nodata(&ask(&ix, "ext.default.svc.cluster.local.", RecordType::SRV));
    assert_nxdomain(&ask(
        &ix,
        "_http._tcp.ext.default.svc.cluster.local.",
        RecordType::SRV,
    ));
    assert_nxdomain(&ask(&ix, "x.ext.default.svc.cluster.local.", RecordType::A));
    // A cluster IP service has no CNAME.
    assert_nodata(&ask(
        &ix,
        "web.default.svc.cluster.local.",
        RecordType::CNAME,
    ));
}

#[test]
fn a_cname_into_the_cluster_domain_is_followed_inside_the_answer() {
    let r = ask(
        &cluster(),
        "alias.default.svc.cluster.local.",
        RecordType::A,
    );
    assert!(
        matches!(&r.answers[0].data, RData::CNAME(c) if c.0 == name("web.default.svc.cluster.local."))
    );
    assert_eq!(r.answers[1].name, name("web.default.svc.cluster.local."));
    assert_eq!(ips(&r.answers), vec![ip("10.43.0.20")]);
    assert_eq!(r.external_target, None);
}

#[test]
fn external_names_that_are_addresses_or_point_at_themselves_answer_nothing() {
    let mut ix = cluster();
    ix.apply_service(&external("default", "ipext", "192.0.2.1"));
    ix.apply_service(&external(
        "default",
        "self",
        "self.default.svc.cluster.local",
    ));
    assert_nxdomain(&ask(&ix, "ipext.default.svc.cluster.local.", RecordType::A));
    assert_nodata(&ask(&ix, "self.default.svc.cluster.local.", RecordType::A));
}
