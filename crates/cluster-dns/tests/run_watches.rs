//! `run` against a real API server (in this process, memory store): the index follows
//! Services, EndpointSlices and Namespaces as they are created, changed and deleted.

mod support;

use std::{
    net::{SocketAddr, TcpListener, UdpSocket},
    sync::Arc,
    time::{Duration, Instant},
};

use cluster_dns::{
    DnsConfig,
    proto::{
        op::ResponseCode,
        rr::{RData, RecordType},
    },
};
use k8s_openapi::api::{
    core::v1::{Namespace, Service},
    discovery::v1::EndpointSlice,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;

/// A loopback port free for both UDP and TCP right now.
fn free_port() -> u16 {
    for _ in 0..32 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port for UDP and TCP");
}

/// Asks until `check` holds for the response (10 s at most).
async fn eventually(
    addr: SocketAddr,
    name: &str,
    qtype: RecordType,
    what: &str,
    check: impl Fn(&cluster_dns::proto::op::DnsResponse) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = udp_client(addr).await;
    loop {
        let response = query(&mut client, name, qtype).await;
        if check(&response) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: last answer {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_follows_the_api_through_watches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = apiserver::Pki::load_or_create(&apiserver::PkiConfig {
        dir: dir.path().join("tls"),
        sans: vec!["127.0.0.1".into()],
    })
    .expect("the test PKI");
    let api_config = apiserver::ApiServerConfig {
        port: 0,
        tls_dir: dir.path().join("tls"),
        ..Default::default()
    };
    let api = apiserver::ApiServer::build(api_config, Arc::new(store::MemoryStore::new()), &pki)
        .await
        .expect("the API server builds")
        .spawn()
        .expect("the API server runs");
    let kubeconfig_path = dir.path().join("kubeconfig");
    apiserver::write_kubeconfig(
        &kubeconfig_path,
        &format!("https://127.0.0.1:{}", api.addr.port()),
        &pki.ca_cert,
        &pki.admin_cert,
        &pki.admin_key,
        0o600,
    )
    .expect("a kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&kubeconfig_path).expect("read");
    let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a client config");
    let client = kube::Client::try_from(client_config).expect("a client");

    // The namespace, once the API server takes writes.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "dns-e2e"}})).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = namespaces.create(&PostParams::default(), &ns).await {
        assert!(
            Instant::now() < deadline,
            "the API server becomes ready: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = DnsConfig {
        listen: vec![addr],
        upstream: None,
        ..DnsConfig::default()
    };
    let metrics = config.metrics.clone();
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let dns = tokio::spawn(cluster_dns::run(client.clone(), config, rx));

    // A ClusterIP service: its allocated IP answers.
    let services: Api<Service> = Api::namespaced(client.clone(), "dns-e2e");
    let web: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    let web = services
        .create(&PostParams::default(), &web)
        .await
        .expect("create web");
    let cluster_ip = web
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("an allocated cluster IP");
    let want = ip(&cluster_ip);
    eventually(
        addr,
        "web.dns-e2e.svc.cluster.local.",
        RecordType::A,
        "web answers",
        |r| ips(&r.answers) == vec![want],
    )
    .await;

    // A headless service and its slice.
    let db: Service = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &db)
        .await
        .expect("create db");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "dns-e2e");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.42.7.10"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.42.7.11"], "hostname": "db-1", "conditions": {"ready": true}}
        ]
    }))
    .unwrap();
    slices
        .create(&PostParams::default(), &slice)
        .await
        .expect("create slice");
    eventually(
        addr,
        "db.dns-e2e.svc.cluster.local.",
        RecordType::A,
        "db answers",
        |r| {
            let mut got = ips(&r.answers);
            got.sort();
            got == vec![ip("10.42.7.10"), ip("10.42.7.11")]
        },
    )
    .await;
    eventually(
        addr,
        "_pg._tcp.db.dns-e2e.svc.cluster.local.",
        RecordType::SRV,
        "SRV",
        |r| {
            r.answers
                .iter()
                .filter(|a| matches!(a.data, RData::SRV(_)))
                .count()
                == 2
        },
    )
    .await;
    eventually(addr, "11.7.42.10.in-addr.arpa.", RecordType::PTR, "PTR", |r| {
        matches!(&r.answers[..], [a] if matches!(&a.data, RData::PTR(p) if p.0.to_string() == "db-1.db.dns-e2e.svc.cluster.local."))
    })
    .await;

    // An endpoint turns unready: it leaves the answer.
    let patch = json!({"endpoints": [
        {"addresses": ["10.42.7.10"], "hostname": "db-0", "conditions": {"ready": true}},
        {"addresses": ["10.42.7.11"], "hostname": "db-1", "conditions": {"ready": false}}
    ]});
    slices
        .patch("db-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch slice");
    eventually(
        addr,
        "db.dns-e2e.svc.cluster.local.",
        RecordType::A,
        "db-1 leaves",
        |r| ips(&r.answers) == vec![ip("10.42.7.10")],
    )
    .await;

    // The service goes: NXDOMAIN.
    services
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete web");
    eventually(
        addr,
        "web.dns-e2e.svc.cluster.local.",
        RecordType::A,
        "web is gone",
        |r| r.metadata.response_code == ResponseCode::NXDomain,
    )
    .await;
    // The namespace exists: NODATA for it.
    eventually(
        addr,
        "dns-e2e.svc.cluster.local.",
        RecordType::A,
        "namespace NODATA",
        |r| r.metadata.response_code == ResponseCode::NoError && r.answers.is_empty(),
    )
    .await;

    assert!(metrics.snapshot().responses_with("NOERROR") > 0);
    shutdown.send(true).expect("shutdown");
    tokio::time::timeout(Duration::from_secs(10), dns)
        .await
        .expect("run stops within 10 s")
        .expect("run task")
        .expect("run ends cleanly");
    api.stop().await.expect("the API server stops");
}
