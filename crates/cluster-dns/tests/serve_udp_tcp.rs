//! The server answers A, SRV, PTR, CNAME and NXDOMAIN over UDP and over TCP on
//! loopback, from a hand-filled index.

mod support;

use cluster_dns::proto::{
    op::ResponseCode,
    rr::{RData, RecordType},
};
use support::*;

#[tokio::test]
async fn service_names_answer_over_udp_and_tcp() {
    let config = test_config();
    let server = serve(cluster(&config), &config).await;
    for transport in ["udp", "tcp"] {
        let mut client = match transport {
            "udp" => udp_client(server.addr).await,
            _ => tcp_client(server.addr).await,
        };

        let a = query(&mut client, "web.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(rcode(&a), ResponseCode::NoError, "{transport}");
        assert!(a.metadata.authoritative, "{transport}");
        assert_eq!(ips(&a.answers), vec![ip("10.43.0.20")], "{transport}");
        assert_eq!(a.answers[0].ttl, 5);

        let headless = query(&mut client, "db.default.svc.cluster.local.", RecordType::A).await;
        let mut got = ips(&headless.answers);
        got.sort();
        assert_eq!(got, vec![ip("10.42.1.10"), ip("10.42.1.11")], "{transport}");

        let srv = query(
            &mut client,
            "_pg._tcp.db.default.svc.cluster.local.",
            RecordType::SRV,
        )
        .await;
        let mut targets: Vec<(u16, String)> = srv
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(s) => Some((s.port, s.target.to_string())),
                _ => None,
            })
            .collect();
        targets.sort();
        assert_eq!(
            targets,
            vec![
                (5432, "db-0.db.default.svc.cluster.local.".to_string()),
                (5432, "db-1.db.default.svc.cluster.local.".to_string()),
            ],
            "{transport}"
        );
        assert_eq!(
            srv.additionals
                .iter()
                .filter(|r| matches!(r.data, RData::A(_)))
                .count(),
            2
        );

        let ptr = query(&mut client, "20.0.43.10.in-addr.arpa.", RecordType::PTR).await;
        assert!(
            matches!(&ptr.answers[..], [r] if matches!(&r.data, RData::PTR(p) if p.0.to_string() == "web.default.svc.cluster.local.")),
            "{transport}: {ptr:?}"
        );
        let pod_ptr = query(&mut client, "11.1.42.10.in-addr.arpa.", RecordType::PTR).await;
        assert!(
            matches!(&pod_ptr.answers[..], [r] if matches!(&r.data, RData::PTR(p) if p.0.to_string() == "db-1.db.default.svc.cluster.local.")),
            "{transport}: {pod_ptr:?}"
        );

        let cname = query(
            &mut client,
            "ext.default.svc.cluster.local.",
            RecordType::CNAME,
        )
        .await;
        assert!(
            matches!(&cname.answers[..], [r] if matches!(&r.data, RData::CNAME(c) if c.0.to_string() == "db.example.com.")),
            "{transport}: {cname:?}"
        );

        let nx = query(
            &mut client,
            "nope.default.svc.cluster.local.",
            RecordType::A,
        )
        .await;
        assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{transport}");
        assert!(nx.answers.is_empty());
        assert!(
            matches!(&nx.authorities[..], [r] if matches!(r.data, RData::SOA(_))),
            "{transport}: {nx:?}"
        );

        let nodata = query(&mut client, "default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(rcode(&nodata), ResponseCode::NoError, "{transport}");
        assert!(nodata.answers.is_empty());
        assert!(matches!(&nodata.authorities[..], [r] if matches!(r.data, RData::SOA(_))));

        let outside = query(&mut client, "example.com.", RecordType::A).await;
        assert_eq!(
            rcode(&outside),
            ResponseCode::ServFail,
            "{transport}: no upstream"
        );
    }
    let snapshot = test_config().metrics.snapshot();
    assert_eq!(
        snapshot.latency.count, 0,
        "a fresh config has fresh metrics"
    );
    server.stop().await.expect("server ends cleanly");
}

#[tokio::test]
async fn responses_are_counted_by_rcode_with_latencies() {
    let config = test_config();
    let server = serve(cluster(&config), &config).await;
    let mut client = udp_client(server.addr).await;
    for _ in 0..3 {
        query(&mut client, "web.default.svc.cluster.local.", RecordType::A).await;
    }
    query(
        &mut client,
        "nope.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    query(&mut client, "example.com.", RecordType::A).await;
    let snapshot = config.metrics.snapshot();
    assert_eq!(snapshot.responses_with("NOERROR"), 3);
    assert_eq!(snapshot.responses_with("NXDOMAIN"), 1);
    assert_eq!(snapshot.responses_with("SERVFAIL"), 1);
    assert_eq!(snapshot.latency.count, 5);
    assert!(
        snapshot
            .render_prometheus()
            .contains("skiff_dns_responses_total{rcode=\"NOERROR\"} 3\n")
    );
    server.stop().await.expect("server ends cleanly");
}

#[tokio::test]
async fn cluster_names_are_servfail_until_the_index_is_synced() {
    let config = test_config();
    let mut index = cluster(&config);
    index.set_synced(false);
    let server = serve(index, &config).await;
    let mut client = udp_client(server.addr).await;
    let before = query(&mut client, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(rcode(&before), ResponseCode::ServFail);
    server.index.write().unwrap().set_synced(true);
    let after = query(&mut client, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(ips(&after.answers), vec![ip("10.43.0.20")]);
}

#[tokio::test]
async fn the_server_also_listens_on_ipv6_loopback() {
    let mut config = test_config();
    config.listen = vec!["[::1]:0".parse().unwrap()];
    let server = serve(cluster(&config), &config).await;
    let mut client = tcp_client(server.addr).await;
    let a = query(&mut client, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(ips(&a.answers), vec![ip("10.43.0.20")]);
}
