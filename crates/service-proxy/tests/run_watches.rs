//! `run` and `run_load_balancer_status` against a real API server (in this process,
//! memory store), programming a network namespace of the test's own: the rules follow
//! Services and EndpointSlices as they are created and deleted.

#[path = "support/netns.rs"]
mod netns;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use netns::{Netns, require_root, unique};
use serde_json::json;
use service_proxy::{Commands, ProxyConfig, ProxyMode, cleanup_with, leftovers_with, nft_table};

async fn client(dir: &std::path::Path) -> (kube::Client, apiserver::RunningApiServer) {
    let pki = apiserver::Pki::load_or_create(&apiserver::PkiConfig {
        dir: dir.join("tls"),
        sans: vec!["127.0.0.1".into()],
    })
    .expect("the test PKI");
    let config = apiserver::ApiServerConfig {
        port: 0,
        tls_dir: dir.join("tls"),
        ..Default::default()
    };
    let api = apiserver::ApiServer::build(config, Arc::new(store::MemoryStore::new()), &pki)
        .await
        .expect("the API server builds")
        .spawn()
        .expect("the API server runs");
    let path = dir.join("kubeconfig");
    apiserver::write_kubeconfig(
        &path,
        &format!("https://127.0.0.1:{}", api.addr.port()),
        &pki.ca_cert,
        &pki.admin_cert,
        &pki.admin_key,
        0o600,
    )
    .expect("a kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("read");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a client config");
    (kube::Client::try_from(config).expect("a client"), api)
}

/// Waits until the rules in `ns` (`iptables-save`, or `nft list ruleset`) satisfy
/// `check` (10 s at most).
async fn eventually(ns: &Netns, mode: ProxyMode, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let saved = match mode {
            ProxyMode::Iptables => ns.exec("/usr/sbin/iptables-save", &[]),
            ProxyMode::Nftables => ns.exec("/usr/sbin/nft", &["list", "ruleset"]),
        };
        if check(&saved) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}; rules:\n{saved}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_follow_services_and_endpoint_slices_through_watches() {
    follow(ProxyMode::Iptables).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nftables_rules_follow_services_and_endpoint_slices_through_watches() {
    follow(ProxyMode::Nftables).await;
}

async fn follow(mode: ProxyMode) {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let (client, _api) = client(dir.path()).await;
    let id = unique();
    let ns = Netns::new(&format!("skf-run-{id:08x}"));
    let prefix = format!("SKR{:04x}-", id & 0xffff);

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "proxy-e2e"}})).expect("namespace");
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = namespaces.create(&PostParams::default(), &namespace).await {
        assert!(
            Instant::now() < deadline,
            "the API server becomes ready: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The node, Ready, for the load balancer status.
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "node-a"}})).expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "addresses": [{"type": "InternalIP", "address": "10.249.0.1"}],
    }});
    nodes
        .patch_status("node-a", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");

    let config = ProxyConfig {
        prefix: prefix.clone(),
        node_name: "node-a".into(),
        service_cidrs: vec!["10.43.0.0/16".parse().expect("cidr")],
        command_prefix: vec![
            "/usr/sbin/ip".into(),
            "netns".into(),
            "exec".into(),
            ns.name.clone(),
        ],
        mode,
        ..ProxyConfig::default()
    };
    let metrics = config.metrics.clone();
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let proxy = tokio::spawn(service_proxy::run(client.clone(), config, rx.clone()));
    let lb = tokio::spawn(service_proxy::run_load_balancer_status(client.clone(), rx));

    let services: Api<Service> = Api::namespaced(client.clone(), "proxy-e2e");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }))
    .expect("service");
    let service = services
        .create(&PostParams::default(), &service)
        .await
        .expect("create service");
    let spec = service.spec.expect("spec");
    let cluster_ip: Ipv4Addr = spec.cluster_ip.expect("cluster IP").parse().expect("IPv4");
    let node_port = spec.ports.expect("ports")[0].node_port.expect("node port");

    // What each mode shows for the states the Service goes through.
    let (reject, cluster, node_port_rule, lb_rule) = match mode {
        ProxyMode::Iptables => (
            format!(
                "-A {prefix}SERVICES -d {cluster_ip}/32 -p tcp -m comment --comment \"proxy-e2e/web:http has no endpoints\""
            ),
            format!(
                "-A {prefix}SERVICES -d {cluster_ip}/32 -p tcp -m comment --comment \"proxy-e2e/web:http cluster IP\""
            ),
            format!("--dport {node_port} -j {prefix}EXT-"),
            "-d 10.249.0.1/32 -p tcp -m comment --comment \"proxy-e2e/web:http loadbalancer IP\""
                .to_owned(),
        ),
        ProxyMode::Nftables => (
            format!("{cluster_ip} . tcp . 80 : goto reject-chain"),
            format!("{cluster_ip} . tcp . 80 : goto cluster-2"),
            format!("tcp . {node_port} : goto external-cluster-2"),
            "10.249.0.1 . tcp . 80 : goto external-cluster-2".to_owned(),
        ),
    };
    let endpoint = |ip: &str| match mode {
        ProxyMode::Iptables => format!("--to-destination {ip}:8080"),
        ProxyMode::Nftables => format!(": {ip} . 8080"),
    };
    // No endpoints yet: rejected.
    eventually(
        &ns,
        mode,
        "the service without endpoints is rejected",
        |s| s.contains(&reject),
    )
    .await;

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "proxy-e2e");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.42.0.5"], "conditions": {"ready": true}, "nodeName": "node-a"},
            {"addresses": ["10.42.1.5"], "conditions": {"ready": true}, "nodeName": "node-b"},
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }))
    .expect("slice");
    slices
        .create(&PostParams::default(), &slice)
        .await
        .expect("create slice");
    eventually(&ns, mode, "the cluster IP is translated", |s| {
        s.contains(&cluster)
            && !s.contains(&reject)
            && s.contains(&endpoint("10.42.0.5"))
            && s.contains(&endpoint("10.42.1.5"))
            && s.contains(&node_port_rule)
    })
    .await;
    // The built-in load balancer gives the Service the node's IP, which the proxy
    // then captures.
    eventually(&ns, mode, "the load balancer IP is captured", |s| {
        s.contains(&lb_rule)
    })
    .await;
    let ingress = services.get_status("web").await.expect("status").status;
    assert_eq!(
        ingress
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .and_then(|i| i.first().cloned())
            .and_then(|i| i.ip),
        Some("10.249.0.1".to_owned())
    );

    // The endpoints go away: rejected again, the endpoint chains are gone.
    slices
        .delete("web-1", &DeleteParams::default())
        .await
        .expect("delete slice");
    eventually(&ns, mode, "the emptied service is rejected", |s| {
        s.contains(&reject) && !s.contains(&endpoint("10.42.0.5"))
    })
    .await;
    // The Service goes away: nothing of it is left.
    services
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete service");
    let vip = format!("{cluster_ip} . tcp");
    eventually(&ns, mode, "the deleted service has no rules", |s| {
        !s.contains("proxy-e2e/web") && !s.contains(&vip)
    })
    .await;

    let snapshot = metrics.snapshot();
    assert!(snapshot.full_syncs >= 1, "{snapshot:?}");
    // Changes that come within the minimum sync period are applied together, so
    // how many partial syncs ran depends on timing; at least one did.
    assert!(snapshot.partial_syncs >= 1, "{snapshot:?}");
    assert_eq!(snapshot.sync_failures, 0);
    let text = snapshot.to_prometheus();
    assert!(text.contains("kubeproxy_sync_proxy_rules_iptables_total{table=\"nat\"} "));
    if mode == ProxyMode::Nftables {
        assert!(text.contains("skiff_proxy_nftables_elements "));
    }
    eprintln!(
        "syncs: {} full, {} partial; last took {:?}",
        snapshot.full_syncs, snapshot.partial_syncs, snapshot.last_duration
    );

    shutdown.send_replace(true);
    proxy
        .await
        .expect("proxy task")
        .expect("proxy stops cleanly");
    lb.await.expect("lb task").expect("lb writer stops cleanly");
    let exec = Commands::in_netns(&ns.name);
    cleanup_with(&exec, &prefix).expect("cleanup");
    assert_eq!(
        leftovers_with(&exec, &prefix).expect("leftovers"),
        Vec::<String>::new()
    );
    assert!(
        !ns.exec("/usr/sbin/nft", &["list", "tables"])
            .contains(&nft_table(&prefix))
    );
}
