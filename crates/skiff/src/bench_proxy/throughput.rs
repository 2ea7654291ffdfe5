//! ClusterIP versus pod IP throughput: a client pod and a server pod, each a network
//! namespace on a veth to a node namespace that routes between them and holds our
//! rules.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use service_proxy::{Backend, Commands, NodeView, ProxyConfig, desired};

use super::netns::{Namespaces, Netns, enter};
use super::{Cluster, SERVICE_CIDR, SYSCTL, sync_config};

/// Bytes pushed per transfer.
pub(super) const TRANSFER_BYTES: u64 = 1 << 30;
const NODE_CLIENT_SIDE: Ipv4Addr = Ipv4Addr::new(10, 250, 1, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 1, 2);
const NODE_SERVER_SIDE: Ipv4Addr = Ipv4Addr::new(10, 250, 2, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 2, 2);
const SERVER_PORT: u16 = 8080;
/// The lab's pods: traffic between them is not masqueraded.
const LAB_CLUSTER_CIDR: &str = "10.250.0.0/16";
const TARGET_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 200, 10);
const TARGET_PORT: u16 = 80;

/// Throughput in MB/s (10^6 bytes) per transfer.
pub(super) struct Throughput {
    pub(super) direct: Vec<f64>,
    pub(super) cluster_ip: Vec<f64>,
}

/// Three namespaces: `client` and `server` pods, each on a veth to `node`, which
/// forwards between them and holds our rules for 1,000 services plus the server's
/// (ClusterIP `TARGET_VIP:80` -> `SERVER_IP:8080`).
pub(super) fn throughput(
    namespaces: &Namespaces,
    id: &str,
    prefix: &str,
    runs: usize,
) -> anyhow::Result<Throughput> {
    let client = namespaces.add(&format!("{id}-client"))?;
    let node = namespaces.add(&format!("{id}-node"))?;
    let server_ns = namespaces.add(&format!("{id}-server"))?;
    for (pod, side, node_ip, pod_ip) in [
        (&client, "toclient", NODE_CLIENT_SIDE, CLIENT_IP),
        (&server_ns, "toserver", NODE_SERVER_SIDE, SERVER_IP),
    ] {
        node.ip(&[
            "link", "add", side, "type", "veth", "peer", "name", "eth0", "netns", &pod.name,
        ])?;
        node.ip(&["addr", "add", &format!("{node_ip}/24"), "dev", side])?;
        node.ip(&["link", "set", side, "up"])?;
        pod.ip(&["addr", "add", &format!("{pod_ip}/24"), "dev", "eth0"])?;
        pod.ip(&["link", "set", "eth0", "up"])?;
    }
    // Routes for exactly what the pods talk to: no default route anywhere.
    let via_node = NODE_CLIENT_SIDE.to_string();
    client.ip(&["route", "add", "10.250.2.0/24", "via", &via_node])?;
    client.ip(&["route", "add", SERVICE_CIDR, "via", &via_node])?;
    server_ns.ip(&[
        "route",
        "add",
        "10.250.1.0/24",
        "via",
        &NODE_SERVER_SIDE.to_string(),
    ])?;
    // As on every node: a VIP without a rule goes nowhere.
    node.ip(&["route", "add", "unreachable", SERVICE_CIDR])?;
    node.exec(SYSCTL, &["-q", "-w", "net.ipv4.ip_forward=1"])?;

    let config = ProxyConfig {
        cluster_cidr: Some(LAB_CLUSTER_CIDR.parse()?),
        ..sync_config(prefix)?
    };
    let mut cluster = Cluster::new(1_000);
    cluster.add(
        "bench-target",
        TARGET_VIP,
        TARGET_PORT,
        &[SERVER_IP],
        SERVER_PORT,
    );
    let ruleset = desired(
        &cluster.services,
        &cluster.slices,
        &NodeView::new(&config, None),
        &config,
    );
    node.inside(|| {
        Backend::new(Commands::host(), prefix)?
            .apply(&ruleset, true)
            .context("rules in the lab's node")
    })?;

    let _server = SinkServer::start(&server_ns, SocketAddrV4::new(SERVER_IP, SERVER_PORT))?;
    let direct_addr = SocketAddrV4::new(SERVER_IP, SERVER_PORT);
    let vip_addr = SocketAddrV4::new(TARGET_VIP, TARGET_PORT);
    client.inside(|| {
        // Warm both paths up (ARP, conntrack, caches).
        transfer(direct_addr, 64 << 20)?;
        transfer(vip_addr, 64 << 20)?;
        let mut t = Throughput {
            direct: Vec::new(),
            cluster_ip: Vec::new(),
        };
        for run in 0..runs {
            let direct_first = run % 2 == 0;
            for step in 0..2 {
                if (step == 0) == direct_first {
                    t.direct.push(transfer(direct_addr, TRANSFER_BYTES)?);
                } else {
                    t.cluster_ip.push(transfer(vip_addr, TRANSFER_BYTES)?);
                }
            }
            eprintln!(
                "    run {}: pod IP {:.0} MB/s, ClusterIP {:.0} MB/s",
                run + 1,
                t.direct[run],
                t.cluster_ip[run]
            );
        }
        Ok(t)
    })
}

/// Pushes `bytes` to `addr` and waits for the server's count; MB/s from the first
/// byte written to the count read.
fn transfer(addr: SocketAddrV4, bytes: u64) -> anyhow::Result<f64> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_secs(3))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let chunk = vec![0x5a_u8; 256 * 1024];
    let started = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream
            .write_all(&chunk[..n])
            .with_context(|| format!("sending to {addr}"))?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    let mut count = [0u8; 8];
    stream
        .read_exact(&mut count)
        .with_context(|| format!("reading the byte count from {addr}"))?;
    let took = started.elapsed();
    let received = u64::from_be_bytes(count);
    ensure!(
        received == bytes,
        "{addr} received {received} of {bytes} bytes"
    );
    Ok(bytes as f64 / took.as_secs_f64() / 1e6)
}

/// A TCP server in a namespace that reads each connection to its end and answers
/// with the byte count; stopped and joined on drop.
struct SinkServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SinkServer {
    fn start(ns: &Netns<'_>, addr: SocketAddrV4) -> anyhow::Result<SinkServer> {
        let path = ns.path();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name("bench-sink".into())
            .spawn(move || {
                let listener = enter(&path).and_then(|()| {
                    let listener = TcpListener::bind(addr)?;
                    listener.set_nonblocking(true)?;
                    Ok(listener)
                });
                let listener = match listener {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return;
                    }
                };
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => sink(stream),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })?;
        let server = SinkServer {
            stop,
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(server),
            Ok(Err(e)) => bail!("the sink server on {addr} did not start: {e}"),
            Err(_) => bail!("the sink server on {addr} did not start within 5 s"),
        }
    }
}

fn sink(mut stream: TcpStream) {
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .is_err()
    {
        return;
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    let _ = stream.write_all(&total.to_be_bytes());
}

impl Drop for SinkServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
