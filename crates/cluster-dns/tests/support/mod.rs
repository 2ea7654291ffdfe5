//! Helpers shared by the server tests: a hand-filled cluster, a server on a free
//! loopback port that stops when dropped, and hickory clients over UDP and TCP.

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, RwLock},
    time::Duration,
};

use cluster_dns::{
    DnsConfig, DnsServer, Error, Index, SharedIndex,
    proto::{
        op::{DnsResponse, ResponseCode},
        rr::{DNSClass, Name, RData, Record, RecordType},
    },
};
use hickory_net::{
    client::{Client, ClientHandle},
    runtime::TokioRuntimeProvider,
    tcp::TcpClientStream,
    udp::UdpClientStream,
};
use k8s_openapi::{
    api::{
        core::v1::{Namespace, Service, ServicePort, ServiceSpec},
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use tokio::{sync::watch, task::JoinHandle};

/// A running server; dropping it shuts it down.
pub struct Running {
    pub addr: SocketAddr,
    pub index: SharedIndex,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), Error>>>,
}

impl Running {
    /// Stops the server and returns how `run` ended.
    pub async fn stop(mut self) -> Result<(), Error> {
        let _ = self.shutdown.send(true);
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("server stops within 10 s")
            .expect("server task")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A config for tests: loopback, a free port, no upstream.
pub fn test_config() -> DnsConfig {
    DnsConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        upstream: None,
        nameservers: vec!["10.43.0.10".parse().unwrap()],
        ..DnsConfig::default()
    }
}

/// Serves `index` with `config` (its listen addresses are taken as they are).
pub async fn serve(index: Index, config: &DnsConfig) -> Running {
    let index: SharedIndex = Arc::new(RwLock::new(index));
    let server = DnsServer::bind(index.clone(), config).await.expect("bind");
    let addr = server.local_addrs()[0];
    assert!(addr.ip().is_loopback());
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(server.run(rx));
    Running {
        addr,
        index,
        shutdown,
        task: Some(task),
    }
}

pub async fn udp_client(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let stream = UdpClientStream::builder(addr, TokioRuntimeProvider::default())
        .with_timeout(Some(Duration::from_secs(5)))
        .build();
    let (client, background) = Client::from_sender(stream);
    tokio::spawn(background);
    client
}

pub async fn tcp_client(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let (stream, sender) = TcpClientStream::new(
        addr,
        None,
        Some(Duration::from_secs(5)),
        TokioRuntimeProvider::default(),
    );
    let stream = stream.await.expect("tcp connect");
    let (client, background) = Client::new(stream, sender);
    tokio::spawn(background);
    client
}

pub async fn query(
    client: &mut Client<TokioRuntimeProvider>,
    name: &str,
    qtype: RecordType,
) -> DnsResponse {
    client
        .query(Name::from_ascii(name).unwrap(), DNSClass::IN, qtype)
        .await
        .unwrap_or_else(|e| panic!("{name} {qtype}: {e}"))
}

pub fn rcode(response: &DnsResponse) -> ResponseCode {
    response.metadata.response_code
}

pub fn ips(records: &[Record]) -> Vec<IpAddr> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: ns.map(str::to_string),
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

pub fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: meta(None, name),
        ..Namespace::default()
    }
}

/// A ClusterIP (or, with `["None"]`, headless) service with named TCP ports.
pub fn service(ns: &str, name: &str, ips: &[&str], ports: &[(&str, i32)]) -> Service {
    Service {
        metadata: meta(Some(ns), name),
        spec: Some(ServiceSpec {
            cluster_ip: ips.first().map(|s| s.to_string()),
            cluster_ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| ServicePort {
                        name: Some(n.to_string()),
                        port: *p,
                        protocol: Some("TCP".to_string()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn external(ns: &str, name: &str, target: &str) -> Service {
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

/// A slice of ready endpoints `(address, hostname)` with named TCP ports.
pub fn slice(
    ns: &str,
    name: &str,
    svc: &str,
    ports: &[(&str, i32)],
    endpoints: &[(String, Option<String>)],
) -> EndpointSlice {
    let mut metadata = meta(Some(ns), name);
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_string(),
        svc.to_string(),
    )]));
    EndpointSlice {
        metadata,
        address_type: "IPv4".to_string(),
        endpoints: endpoints
            .iter()
            .map(|(ip, host)| Endpoint {
                addresses: vec![ip.clone()],
                hostname: host.clone(),
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..EndpointConditions::default()
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(
            ports
                .iter()
                .map(|(n, p)| EndpointPort {
                    name: Some(n.to_string()),
                    port: Some(*p),
                    protocol: Some("TCP".to_string()),
                    ..EndpointPort::default()
                })
                .collect(),
        ),
    }
}

/// The cluster the server tests ask about:
/// - default/web: ClusterIP 10.43.0.20, port http/80, endpoints 10.42.0.5 and 10.42.0.6
/// - default/db: headless, port pg/5432, endpoints db-0 (10.42.1.10), db-1 (10.42.1.11)
/// - default/ext: ExternalName db.example.com
/// - default/big: headless with 200 endpoints 10.42.2.0 … 10.42.2.199
pub fn cluster(config: &DnsConfig) -> Index {
    let mut ix = Index::new(config).expect("index");
    ix.apply_namespace(&namespace("default"));
    ix.apply_service(&service("default", "web", &["10.43.0.20"], &[("http", 80)]));
    ix.apply_endpoint_slice(&slice(
        "default",
        "web-1",
        "web",
        &[("http", 8080)],
        &[("10.42.0.5".into(), None), ("10.42.0.6".into(), None)],
    ));
    ix.apply_service(&service("default", "db", &["None"], &[("pg", 5432)]));
    ix.apply_endpoint_slice(&slice(
        "default",
        "db-1",
        "db",
        &[("pg", 5432)],
        &[
            ("10.42.1.10".into(), Some("db-0".into())),
            ("10.42.1.11".into(), Some("db-1".into())),
        ],
    ));
    ix.apply_service(&external("default", "ext", "db.example.com"));
    ix.apply_service(&service("default", "big", &["None"], &[("http", 80)]));
    let big: Vec<(String, Option<String>)> =
        (0..200).map(|i| (format!("10.42.2.{i}"), None)).collect();
    ix.apply_endpoint_slice(&slice("default", "big-1", "big", &[("http", 80)], &big));
    ix.set_synced(true);
    ix
}
