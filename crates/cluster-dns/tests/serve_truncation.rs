//! A headless answer too large for UDP is truncated there, and a resolver falls back to
//! TCP and gets every address.

mod support;

use std::collections::BTreeSet;

use cluster_dns::proto::{
    op::ResponseCode,
    rr::{Name, RecordType},
};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_resolver::{
    Resolver,
    config::{NameServerConfig, ResolverConfig, ResolverOpts},
};
use support::*;

#[tokio::test]
async fn a_large_headless_answer_is_truncated_over_udp_and_complete_over_tcp() {
    let config = test_config();
    let server = serve(cluster(&config), &config).await;
    let name = "big.default.svc.cluster.local.";

    // UDP: the 200 addresses do not fit the client's buffer: TC set, a partial answer.
    let mut udp = udp_client(server.addr).await;
    let truncated = query(&mut udp, name, RecordType::A).await;
    assert_eq!(rcode(&truncated), ResponseCode::NoError);
    assert!(truncated.metadata.truncation, "UDP answer is truncated");
    assert!(truncated.answers.len() < 200, "{}", truncated.answers.len());

    // TCP: all of them.
    let mut tcp = tcp_client(server.addr).await;
    let full = query(&mut tcp, name, RecordType::A).await;
    assert!(!full.metadata.truncation);
    assert_eq!(full.answers.len(), 200);

    // A resolver asking over UDP first retries over TCP by itself.
    let mut ns = NameServerConfig::udp_and_tcp(server.addr.ip());
    for connection in &mut ns.connections {
        connection.port = server.addr.port();
    }
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.attempts = 1;
    let resolver = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    )
    .with_options(opts)
    .build()
    .expect("resolver");
    let lookup = resolver
        .lookup(Name::from_ascii(name).unwrap(), RecordType::A)
        .await
        .expect("lookup");
    let got: BTreeSet<_> = ips(lookup.answers()).into_iter().collect();
    let want: BTreeSet<_> = (0..200).map(|i| ip(&format!("10.42.2.{i}"))).collect();
    assert_eq!(got, want);
    // It asked twice, UDP then TCP: 2 responses besides the two clients' above.
    assert_eq!(config.metrics.snapshot().latency.count, 4);
    server.stop().await.expect("server ends cleanly");
}
