//! Queries per second for 10 services versus 10,000 services: `Index::answer` alone,
//! and the whole server over UDP on loopback with the server on one thread (one
//! core). Median of several runs. Run with `cargo bench -p cluster-dns`.

use std::{
    collections::BTreeMap,
    hint::black_box,
    net::{SocketAddr, UdpSocket},
    sync::{Arc, RwLock},
    thread,
    time::{Duration, Instant},
};

use cluster_dns::{
    DnsConfig, DnsServer, Index,
    proto::{
        op::{Message, Query},
        rr::{Name, RecordType},
    },
};
use k8s_openapi::{
    api::{
        core::v1::{Namespace, Service, ServicePort, ServiceSpec},
        discovery::v1::{Endpoint, EndpointPort, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

const RUNS: usize = 5;
const ANSWER_QUERIES: usize = 200_000;
const UDP_SECONDS: f64 = 1.5;
const UDP_WINDOW: usize = 64;

fn main() {
    println!("cluster-dns benchmark: median of {RUNS} runs");
    let mut rows = Vec::new();
    for services in [10usize, 10_000] {
        let config = DnsConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            upstream: None,
            ..DnsConfig::default()
        };
        let started = Instant::now();
        let index = cluster(&config, services);
        let fill = started.elapsed();
        let questions = questions(services);

        let mut answer_qps: Vec<f64> = (0..RUNS).map(|_| answer_run(&index, &questions)).collect();
        answer_qps.sort_by(f64::total_cmp);

        let index = Arc::new(RwLock::new(index));
        let server = start_server(index, &config);
        let mut udp: Vec<(f64, Duration, Duration)> = (0..RUNS)
            .map(|_| udp_run(server.addr, &questions))
            .collect();
        udp.sort_by(|a, b| a.0.total_cmp(&b.0));
        server.stop();

        let (qps, p50, p99) = udp[RUNS / 2];
        println!(
            "{services:>6} services: index filled in {:>7.1} ms; answer() {:>10.0} queries/s; \
             UDP loopback {:>8.0} queries/s (p50 {:>6.0} us, p99 {:>6.0} us, window {UDP_WINDOW})",
            fill.as_secs_f64() * 1e3,
            answer_qps[RUNS / 2],
            qps,
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
        );
        rows.push((services, answer_qps[RUNS / 2], qps));
    }
    if let [(_, a10, u10), (_, a10k, u10k)] = rows[..] {
        println!(
            "ratio 10,000 / 10 services: answer() {:.2}, UDP {:.2}",
            a10k / a10,
            u10k / u10
        );
    }
}

/// `services` services over 100 namespaces (fewer when fewer services), every tenth
/// headless; each with a slice of 3 ready endpoints and a named port.
fn cluster(config: &DnsConfig, services: usize) -> Index {
    let mut index = Index::new(config).expect("index");
    let namespaces = services.clamp(1, 100);
    for n in 0..namespaces {
        index.apply_namespace(&Namespace {
            metadata: meta(None, &format!("ns{n}")),
            ..Namespace::default()
        });
    }
    for i in 0..services {
        let ns = format!("ns{}", i % namespaces);
        let name = format!("svc{i}");
        let headless = i % 10 == 9;
        let cluster_ip = if headless {
            "None".to_string()
        } else {
            format!("10.43.{}.{}", i / 250, i % 250 + 1)
        };
        index.apply_service(&Service {
            metadata: meta(Some(&ns), &name),
            spec: Some(ServiceSpec {
                cluster_ip: Some(cluster_ip.clone()),
                cluster_ips: Some(vec![cluster_ip]),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        });
        let mut metadata = meta(Some(&ns), &format!("{name}-abcde"));
        metadata.labels = Some(BTreeMap::from([(
            "kubernetes.io/service-name".to_string(),
            name.clone(),
        )]));
        index.apply_endpoint_slice(&EndpointSlice {
            metadata,
            address_type: "IPv4".into(),
            endpoints: (0..3)
                .map(|e| Endpoint {
                    addresses: vec![format!("10.{}.{}.{}", 100 + e, i / 250, i % 250 + 1)],
                    ..Endpoint::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                ..EndpointPort::default()
            }]),
        });
    }
    index.set_synced(true);
    index
}

fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: ns.map(str::to_string),
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

/// 1,000 questions spread over the services: 70% A of a service (a tenth of them
/// headless), 10% NXDOMAIN, 10% SRV, 10% PTR of a cluster IP.
fn questions(services: usize) -> Vec<(Name, RecordType)> {
    let namespaces = services.clamp(1, 100);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..1000)
        .map(|q| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = (state % services as u64) as usize;
            let ns = i % namespaces;
            let (text, qtype) = match q % 10 {
                0 => (format!("nope{i}.ns{ns}.svc.cluster.local."), RecordType::A),
                1 => (
                    format!("_http._tcp.svc{i}.ns{ns}.svc.cluster.local."),
                    RecordType::SRV,
                ),
                2 => {
                    let i = i - i % 10; // never headless
                    (
                        format!("{}.{}.43.10.in-addr.arpa.", i % 250 + 1, i / 250),
                        RecordType::PTR,
                    )
                }
                _ => (format!("svc{i}.ns{ns}.svc.cluster.local."), RecordType::A),
            };
            (Name::from_ascii(text).expect("name"), qtype)
        })
        .collect()
}

fn answer_run(index: &Index, questions: &[(Name, RecordType)]) -> f64 {
    let started = Instant::now();
    for n in 0..ANSWER_QUERIES {
        let (name, qtype) = &questions[n % questions.len()];
        black_box(index.answer(black_box(name), *qtype));
    }
    ANSWER_QUERIES as f64 / started.elapsed().as_secs_f64()
}

struct Server {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    thread: thread::JoinHandle<()>,
}

impl Server {
    fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

/// The server on a current-thread runtime: one core.
fn start_server(index: cluster_dns::SharedIndex, config: &DnsConfig) -> Server {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime
        .block_on(DnsServer::bind(index, config))
        .expect("bind");
    let addr = server.local_addrs()[0];
    let (stop, rx) = tokio::sync::watch::channel(false);
    let thread = thread::spawn(move || {
        let _ = runtime.block_on(server.run(rx));
    });
    Server { addr, stop, thread }
}

/// One UDP run: `UDP_WINDOW` questions in flight from one socket for `UDP_SECONDS`.
/// Returns answers per second and the p50/p99 round trip.
fn udp_run(server: SocketAddr, questions: &[(Name, RecordType)]) -> (f64, Duration, Duration) {
    let wire: Vec<Vec<u8>> = questions
        .iter()
        .map(|(name, qtype)| {
            let mut message = Message::query();
            message.metadata.recursion_desired = true;
            message.add_query(Query::query(name.clone(), *qtype));
            message.to_vec().expect("encode")
        })
        .collect();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(server).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut sent_at: Vec<Option<Instant>> = vec![None; 65536];
    let mut next_id: u16 = 0;
    let mut next_q = 0usize;
    let mut send = |sent_at: &mut Vec<Option<Instant>>| {
        let mut bytes = wire[next_q % wire.len()].clone();
        next_q += 1;
        next_id = next_id.wrapping_add(1);
        bytes[..2].copy_from_slice(&next_id.to_be_bytes());
        sent_at[usize::from(next_id)] = Some(Instant::now());
        let _ = socket.send(&bytes);
    };
    for _ in 0..UDP_WINDOW {
        send(&mut sent_at);
    }
    let mut latencies = Vec::with_capacity(200_000);
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(UDP_SECONDS);
    while Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(n) if n >= 2 => {
                let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                if let Some(at) = sent_at[id].take() {
                    latencies.push(at.elapsed());
                }
                send(&mut sent_at);
            }
            Ok(_) => {}
            // A lost datagram: refill the window.
            Err(_) => {
                for _ in 0..UDP_WINDOW {
                    send(&mut sent_at);
                }
            }
        }
    }
    let elapsed = started.elapsed();
    // Drain what is still in flight so the next run starts clean.
    while socket.recv(&mut buf).is_ok() {}
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pick(0.5),
        pick(0.99),
    )
}
