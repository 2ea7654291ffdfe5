//! `skiff bench dns`: queries per second and latency of the cluster DNS.
//!
//! The server (`cluster_dns::DnsServer`, hickory-server) answers from an index
//! filled in memory with 10,000 services (and with 10, for the comparison) on
//! 127.0.0.1:<free port>, on a current-thread tokio runtime: one thread, at most one
//! core. A load generator on another thread keeps a fixed number of UDP queries in
//! flight over a mix of A names of existing services, SRV names and NXDOMAIN names,
//! checks every answer's rcode and answer count, and records each round trip. The
//! server thread's CPU time (from /proc) tells whether the server was the limit.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use cluster_dns::proto::op::{Message, Query};
use cluster_dns::proto::rr::{Name, RecordType};
use cluster_dns::{DnsConfig, DnsServer, Index};
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::bench::percentile;
use crate::bench_proxy::thousands;

/// Index sizes measured.
const SIZES: [usize; 2] = [10, 10_000];
/// Namespaces the services are spread over (fewer when there are fewer services).
const NAMESPACES: usize = 100;
/// Queries kept in flight by the load generator.
const IN_FLIGHT: usize = 64;
/// Distinct questions cycled through.
const QUESTIONS: usize = 4_096;
const RUN: Duration = Duration::from_secs(2);
const WARM_UP: Duration = Duration::from_millis(500);
/// How long the generator waits for an answer before it counts the window lost.
const LOSS_TIMEOUT: Duration = Duration::from_millis(50);
/// Clock ticks per second of /proc/<pid>/task/<tid>/stat (USER_HZ on Linux).
const USER_HZ: f64 = 100.0;
const QPS_GOAL: f64 = 50_000.0;

/// Runs `skiff bench dns` with `runs` timed runs per index size.
pub async fn dns(runs: usize) -> anyhow::Result<()> {
    let runs = runs.max(1);
    let rows = tokio::task::spawn_blocking(move || {
        SIZES
            .iter()
            .map(|&services| measure(services, runs))
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await
    .context("the bench thread panicked")??;
    report(&rows, runs);
    Ok(())
}

/// One index size's results.
struct Row {
    services: usize,
    fill: Duration,
    runs: Vec<RunResult>,
}

/// One timed run of the load generator.
struct RunResult {
    qps: f64,
    p50: Duration,
    p99: Duration,
    /// Share of one core the server thread used.
    server_cpu: f64,
    answered: u64,
    wrong: u64,
    lost: u64,
}

fn measure(services: usize, runs: usize) -> anyhow::Result<Row> {
    eprintln!("==> {services} services: filling the index");
    let config = DnsConfig {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        upstream: None,
        ..DnsConfig::default()
    };
    let started = Instant::now();
    let index = fill(&config, services)?;
    let fill = started.elapsed();
    let questions = questions(services)?;
    let server = ServerThread::start(Arc::new(RwLock::new(index)), &config)?;
    eprintln!(
        "    filled in {:.1} ms; serving on {} (one thread); {IN_FLIGHT} queries in flight",
        fill.as_secs_f64() * 1e3,
        server.addr
    );
    load(server.addr, &questions, WARM_UP, server.tid)?;
    let mut results = Vec::new();
    for run in 0..runs {
        let r = load(server.addr, &questions, RUN, server.tid)?;
        eprintln!(
            "    run {}: {:.0} queries/s, p50 {:.0} µs, p99 {:.0} µs, server thread {:.0}% of a core, {} wrong, {} lost",
            run + 1,
            r.qps,
            micros(r.p50),
            micros(r.p99),
            r.server_cpu * 100.0,
            r.wrong,
            r.lost
        );
        results.push(r);
    }
    server.stop()?;
    Ok(Row {
        services,
        fill,
        runs: results,
    })
}

/// `services` services `svc<i>` over up to `NAMESPACES` namespaces `ns<n>`, every
/// tenth headless, each with a named TCP port `http` and a slice of 3 ready
/// endpoints.
fn fill(config: &DnsConfig, services: usize) -> anyhow::Result<Index> {
    let mut index = Index::new(config)?;
    let namespaces = services.clamp(1, NAMESPACES);
    for n in 0..namespaces {
        index.apply_namespace(&Namespace {
            metadata: meta(None, format!("ns{n}")),
            ..Namespace::default()
        });
    }
    for i in 0..services {
        let ns = format!("ns{}", i % namespaces);
        let name = format!("svc{i}");
        let cluster_ip = if i % 10 == 9 {
            "None".to_owned()
        } else {
            format!("10.43.{}.{}", i / 250, i % 250 + 1)
        };
        index.apply_service(&Service {
            metadata: meta(Some(&ns), name.clone()),
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
        let mut metadata = meta(Some(&ns), format!("{name}-x1y2z"));
        metadata.labels = Some(
            [("kubernetes.io/service-name".to_owned(), name)]
                .into_iter()
                .collect(),
        );
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
    Ok(index)
}

fn meta(namespace: Option<&str>, name: String) -> ObjectMeta {
    ObjectMeta {
        namespace: namespace.map(str::to_owned),
        name: Some(name),
        ..ObjectMeta::default()
    }
}

/// What a correct answer looks like.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// NOERROR with at least one answer record.
    Records,
    /// NXDOMAIN.
    NxDomain,
}

/// A query on the wire (its ID is set when sent) and what it must get back.
struct Question {
    wire: Vec<u8>,
    expect: Expect,
}

/// `QUESTIONS` questions over random services: 80% A of an existing service (a
/// tenth of them headless), 10% SRV of its named port, 10% a name that does not
/// exist in an existing namespace.
fn questions(services: usize) -> anyhow::Result<Vec<Question>> {
    let namespaces = services.clamp(1, NAMESPACES);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..QUESTIONS)
        .map(|q| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = (state % services as u64) as usize;
            let ns = i % namespaces;
            let (text, qtype, expect) = match q % 10 {
                0 => (
                    format!("missing{i}.ns{ns}.svc.cluster.local."),
                    RecordType::A,
                    Expect::NxDomain,
                ),
                1 => (
                    format!("_http._tcp.svc{i}.ns{ns}.svc.cluster.local."),
                    RecordType::SRV,
                    Expect::Records,
                ),
                _ => (
                    format!("svc{i}.ns{ns}.svc.cluster.local."),
                    RecordType::A,
                    Expect::Records,
                ),
            };
            let mut message = Message::query();
            message.metadata.recursion_desired = true;
            message.add_query(Query::query(Name::from_ascii(&text)?, qtype));
            Ok(Question {
                wire: message.to_vec()?,
                expect,
            })
        })
        .collect()
}

/// The DNS server on a thread of its own with a current-thread runtime.
struct ServerThread {
    addr: SocketAddr,
    tid: u32,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ServerThread {
    fn start(index: cluster_dns::SharedIndex, config: &DnsConfig) -> anyhow::Result<Self> {
        let config = config.clone();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(SocketAddr, u32), String>>();
        let thread = std::thread::Builder::new()
            .name("dns-server".into())
            .spawn(move || {
                let started = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|runtime| {
                        let server = runtime.block_on(DnsServer::bind(index, &config))?;
                        let addr = *server
                            .local_addrs()
                            .first()
                            .ok_or_else(|| anyhow!("the server bound no address"))?;
                        Ok((runtime, server, addr, thread_id()?))
                    });
                match started {
                    Ok((runtime, server, addr, tid)) => {
                        let _ = ready_tx.send(Ok((addr, tid)));
                        runtime.block_on(server.run(stopped))?;
                        Ok(())
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        Err(e)
                    }
                }
            })?;
        let (addr, tid) = match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => bail!("the DNS server did not start: {e}"),
            Err(_) => bail!("the DNS server did not start within 10 s"),
        };
        Ok(Self {
            addr,
            tid,
            stop,
            thread: Some(thread),
        })
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result.context("the DNS server failed"),
            Some(Err(_)) => bail!("the DNS server thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The calling thread's kernel id, from /proc/thread-self (`<pid>/task/<tid>`).
fn thread_id() -> anyhow::Result<u32> {
    let link = std::fs::read_link("/proc/thread-self")?;
    link.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("cannot read a thread id from {}", link.display()))
}

/// CPU time (user + system) of thread `tid` of this process, in clock ticks.
fn cpu_ticks(tid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/self/task/{tid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command's closing parenthesis: state is the first, utime
    // and stime the 12th and 13th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("unexpected {path}: {stat}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("unexpected {path}: {stat}"))
    };
    Ok(tick(11)? + tick(12)?)
}

/// Keeps `IN_FLIGHT` questions in flight for `duration` from one socket.
fn load(
    server: SocketAddr,
    questions: &[Question],
    duration: Duration,
    server_tid: u32,
) -> anyhow::Result<RunResult> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(LOSS_TIMEOUT))?;
    let mut generator = Generator {
        socket: &socket,
        questions,
        slots: vec![None; 1 << 16],
        next_id: 0,
        next_question: 0,
        in_flight: 0,
        buf: Vec::with_capacity(512),
    };
    let mut latencies = Vec::with_capacity(400_000);
    let (mut wrong, mut lost) = (0u64, 0u64);
    let mut reply = [0u8; 4096];
    let cpu_before = cpu_ticks(server_tid)?;
    let started = Instant::now();
    let deadline = started + duration;
    generator.fill()?;
    while Instant::now() < deadline {
        match socket.recv(&mut reply) {
            Ok(n) if n >= 12 => {
                let id = usize::from(u16::from_be_bytes([reply[0], reply[1]]));
                let Some((sent, expect)) = generator.slots[id].take() else {
                    continue; // an answer to a query already counted lost
                };
                latencies.push(sent.elapsed());
                generator.in_flight -= 1;
                let rcode = reply[3] & 0x0f;
                let answers = u16::from_be_bytes([reply[6], reply[7]]);
                let right = match expect {
                    Expect::Records => rcode == 0 && answers > 0,
                    Expect::NxDomain => rcode == 3,
                };
                if !right {
                    wrong += 1;
                }
                generator.fill()?;
            }
            Ok(_) => wrong += 1,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Nothing came back in time: what is in flight is lost.
                lost += generator.in_flight as u64;
                generator.slots.iter_mut().for_each(|s| *s = None);
                generator.in_flight = 0;
                generator.fill()?;
            }
            Err(e) => return Err(e).context("receiving answers"),
        }
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu_ticks(server_tid)?;
    // Let what is still in flight come back before the next run.
    while socket.recv(&mut reply).is_ok() {}
    latencies.sort();
    let answered = latencies.len() as u64;
    Ok(RunResult {
        qps: answered as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        server_cpu: (cpu_after.saturating_sub(cpu_before)) as f64 / USER_HZ / elapsed.as_secs_f64(),
        answered,
        wrong,
        lost,
    })
}

/// The sending side of the load generator.
struct Generator<'a> {
    socket: &'a UdpSocket,
    questions: &'a [Question],
    /// By query ID: when it was sent and what it must get back.
    slots: Vec<Option<(Instant, Expect)>>,
    next_id: u16,
    next_question: usize,
    in_flight: usize,
    buf: Vec<u8>,
}

impl Generator<'_> {
    /// Sends questions until `IN_FLIGHT` are outstanding.
    fn fill(&mut self) -> anyhow::Result<()> {
        while self.in_flight < IN_FLIGHT {
            let question = &self.questions[self.next_question % self.questions.len()];
            self.next_question += 1;
            self.next_id = self.next_id.wrapping_add(1);
            self.buf.clear();
            self.buf.extend_from_slice(&question.wire);
            self.buf[..2].copy_from_slice(&self.next_id.to_be_bytes());
            self.slots[usize::from(self.next_id)] = Some((Instant::now(), question.expect));
            self.socket
                .send(&self.buf)
                .context("sending a query to the DNS server")?;
            self.in_flight += 1;
        }
        Ok(())
    }
}

/// A rate as a whole number with thousands separators.
fn qps(rate: f64) -> String {
    thousands(rate.round() as usize)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The run's median by queries/s.
fn median_run(runs: &[RunResult]) -> Option<&RunResult> {
    let mut sorted: Vec<&RunResult> = runs.iter().collect();
    sorted.sort_by(|a, b| a.qps.total_cmp(&b.qps));
    sorted.get(sorted.len() / 2).copied()
}

/// The machine in one line: cores, CPU, memory, kernel, load at the time.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "? GiB".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{} cores, {cpu}, {memory}, kernel {kernel}; load average {load} at the end of the run",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    )
}

/// Prints the Markdown section for BENCHMARKS.md.
fn report(rows: &[Row], runs: usize) {
    println!(
        "### skiff bench dns — {}",
        k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC")
    );
    println!();
    println!(
        "Machine: {}. Server: `cluster_dns::DnsServer` on 127.0.0.1 on a current-thread \
         runtime (one thread). Load: one thread, one UDP socket, {IN_FLIGHT} queries in \
         flight over {} distinct questions (80% A of existing services, a tenth of them \
         headless; 10% SRV of a named port; 10% NXDOMAIN), every answer's rcode and \
         answer count checked. {runs} runs of {:.0} s after a {:.1} s warm-up; the run \
         with the median queries/s, and every run's queries/s.",
        machine(),
        thousands(QUESTIONS),
        RUN.as_secs_f64(),
        WARM_UP.as_secs_f64()
    );
    println!();
    let header: Vec<String> = rows
        .iter()
        .map(|r| format!("{} services", thousands(r.services)))
        .collect();
    println!("| measurement | {} | goal |", header.join(" | "));
    println!("| --- |{} --- |", " --- |".repeat(rows.len()));
    let row = |name: &str, cell: &dyn Fn(&Row, &RunResult) -> String, goal: &str| {
        let cells: Vec<String> = rows
            .iter()
            .map(|r| median_run(&r.runs).map_or_else(|| "—".into(), |m| cell(r, m)))
            .collect();
        println!("| {name} | {} | {goal} |", cells.join(" | "));
    };
    row(
        "index filled (in memory)",
        &|r, _| format!("{:.1} ms", r.fill.as_secs_f64() * 1e3),
        "—",
    );
    row(
        "queries/s",
        &|r, m| {
            let all: Vec<String> = r.runs.iter().map(|x| qps(x.qps)).collect();
            format!("**{}** ({})", qps(m.qps), all.join(" · "))
        },
        "≥ 50,000 on one core",
    );
    row(
        "latency p50 / p99",
        &|_, m| format!("{:.0} / {:.0} µs", micros(m.p50), micros(m.p99)),
        "—",
    );
    row(
        "server thread CPU during the run",
        &|_, m| format!("{:.0}% of a core", m.server_cpu * 100.0),
        "—",
    );
    row(
        "queries per CPU-second of the server thread",
        &|_, m| qps(m.qps / m.server_cpu.max(f64::EPSILON)),
        "—",
    );
    row(
        "answers checked / wrong / lost (all runs)",
        &|r, _| {
            let sum = |f: fn(&RunResult) -> u64| r.runs.iter().map(f).sum::<u64>();
            format!(
                "{} / {} / {}",
                thousands(sum(|x| x.answered) as usize),
                sum(|x| x.wrong),
                sum(|x| x.lost)
            )
        },
        "0 wrong",
    );
    println!();
    if let Some((r, m)) = rows
        .last()
        .and_then(|r| median_run(&r.runs).map(|m| (r, m)))
    {
        println!(
            "Latency here is mostly waiting in line: with {IN_FLIGHT} queries in flight, \
             in-flight ÷ rate is {:.0} µs at {} services, while the server thread spends \
             {:.1} µs of CPU per query.",
            IN_FLIGHT as f64 / m.qps.max(f64::EPSILON) * 1e6,
            thousands(r.services),
            m.server_cpu / m.qps.max(f64::EPSILON) * 1e6
        );
        println!();
    }
    let medians: Vec<f64> = rows
        .iter()
        .filter_map(|r| median_run(&r.runs).map(|m| m.qps))
        .collect();
    if let (Some(small), Some(big)) = (medians.first(), medians.last()) {
        println!(
            "10,000 ÷ 10 services: {:.2}× the queries/s. Goal ≥ 50,000 queries/s with \
             10,000 services on one core: {} ({}/s).",
            big / small.max(f64::EPSILON),
            if *big >= QPS_GOAL {
                "met"
            } else {
                "**not met**"
            },
            qps(*big)
        );
    }
}
