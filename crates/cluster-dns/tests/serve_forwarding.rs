//! Names outside the cluster domain, unknown reverse names and ExternalName targets go
//! to the upstream; here the upstream is a second server on loopback (no real upstream
//! is ever asked).

mod support;

use std::time::{Duration, Instant};

use cluster_dns::{
    Upstream,
    proto::{
        op::ResponseCode,
        rr::{RData, RecordType},
    },
};
use support::*;

/// A second server, authoritative for `upstream.test`, holding default/far at 10.43.9.9
/// and default/web at 10.43.0.20.
async fn upstream() -> Running {
    let mut config = test_config();
    config.domain = "upstream.test".to_string();
    let mut index = cluster_dns::Index::new(&config).expect("index");
    index.apply_namespace(&namespace("default"));
    index.apply_service(&service("default", "far", &["10.43.9.9"], &[("http", 80)]));
    index.apply_service(&service("default", "web", &["10.43.0.20"], &[("http", 80)]));
    index.set_synced(true);
    serve(index, &config).await
}

#[tokio::test]
async fn names_outside_the_cluster_domain_are_answered_by_the_upstream() {
    let upstream = upstream().await;
    let mut config = test_config();
    config.upstream = Some(Upstream::Servers(vec![upstream.addr]));
    let mut index = cluster(&config);
    index.apply_service(&external("default", "ext", "far.default.svc.upstream.test"));
    let server = serve(index, &config).await;

    for transport in ["udp", "tcp"] {
        let mut client = match transport {
            "udp" => udp_client(server.addr).await,
            _ => tcp_client(server.addr).await,
        };
        let far = query(&mut client, "far.default.svc.upstream.test.", RecordType::A).await;
        assert_eq!(ips(&far.answers), vec![ip("10.43.9.9")], "{transport}");

        let nx = query(
            &mut client,
            "nope.default.svc.upstream.test.",
            RecordType::A,
        )
        .await;
        assert_eq!(rcode(&nx), ResponseCode::NXDomain, "{transport}");

        // A reverse name this index does not know.
        let ptr = query(&mut client, "9.9.43.10.in-addr.arpa.", RecordType::PTR).await;
        assert!(
            matches!(&ptr.answers[..], [r] if matches!(&r.data, RData::PTR(p) if p.0.to_string() == "far.default.svc.upstream.test.")),
            "{transport}: {ptr:?}"
        );

        // Cluster names stay local.
        let web = query(&mut client, "web.default.svc.cluster.local.", RecordType::A).await;
        assert_eq!(ips(&web.answers), vec![ip("10.43.0.20")]);
        assert!(web.metadata.authoritative);
    }
    assert_eq!(config.metrics.snapshot().forwarded, 6);
}

#[tokio::test]
async fn an_external_name_target_is_resolved_upstream_after_the_cname() {
    let upstream = upstream().await;
    let mut config = test_config();
    config.upstream = Some(Upstream::Servers(vec![upstream.addr]));
    let mut index = cluster(&config);
    index.apply_service(&external("default", "ext", "far.default.svc.upstream.test"));
    let server = serve(index, &config).await;
    let mut client = udp_client(server.addr).await;
    let a = query(&mut client, "ext.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NoError);
    assert!(
        matches!(&a.answers[0].data, RData::CNAME(c) if c.0.to_string() == "far.default.svc.upstream.test."),
        "{a:?}"
    );
    assert_eq!(
        a.answers[1].name.to_string(),
        "far.default.svc.upstream.test."
    );
    assert_eq!(ips(&a.answers), vec![ip("10.43.9.9")]);
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_gives_servfail_in_time() {
    // A loopback UDP port that swallows everything.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = test_config();
    config.upstream = Some(Upstream::Servers(vec![silent.local_addr().unwrap()]));
    config.upstream_timeout = Duration::from_millis(200);
    let server = serve(cluster(&config), &config).await;
    let mut client = udp_client(server.addr).await;
    let started = Instant::now();
    let r = query(&mut client, "example.com.", RecordType::A).await;
    assert_eq!(rcode(&r), ResponseCode::ServFail);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // ExternalName targets that cannot be resolved still get their CNAME.
    let ext = query(&mut client, "ext.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(rcode(&ext), ResponseCode::NoError);
    assert!(
        matches!(&ext.answers[..], [r] if matches!(r.data, RData::CNAME(_))),
        "{ext:?}"
    );
}
