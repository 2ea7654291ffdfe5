//! `skiff bench proxy`: how fast the service proxy turns Services and EndpointSlices
//! into iptables rules, and what its rules cost on the datapath.
//!
//! - Rules sync, for 1,000 and 10,000 Services with 5 endpoints each (objects built
//!   in memory, no API server), for both backends. iptables: `desired()` for the
//!   whole cluster, a full sync with `Backend::apply` in a fresh network namespace, a
//!   periodic full resync over the rules already there, and one endpoint changing
//!   (a `ServiceState` update, `desired_from` + an incremental apply); the floor, in
//!   the same run: the same rendered rule text applied with one `iptables-restore`
//!   call from a file in a fresh namespace. nftables: `NftBackend::apply` from the
//!   objects (full, resync, one endpoint changing); the floor: the backend's complete
//!   input with one `nft -f` from a file in a fresh namespace, and each change's
//!   transaction replayed with one `nft -f` on that table.
//! - Throughput: a client pod pushing 1 GiB over TCP to a server pod through a node
//!   that forwards between them, (a) to the pod IP and (b) to a ClusterIP DNAT'd by
//!   our rules in the node.
//!
//! Everything happens in network namespaces of the run's own: iptables programs run
//! on threads that entered the namespace (checked before anything runs), so they
//! cost what they cost on a node (no `ip netns exec` in the path) and never touch
//! the host's tables. The namespaces are removed at the end, on failure, and on
//! Ctrl-C or SIGTERM. Needs root.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use service_proxy::{
    Backend, Commands, NftBackend, NodeView, ProxyConfig, Ruleset, ServiceState, TableKind,
    desired, desired_from,
};

use crate::bench::percentile;

mod netns;
mod throughput;

use netns::{IP, Namespaces, run_tool};
use throughput::{TRANSFER_BYTES, Throughput, throughput};

const IPTABLES: &str = "/usr/sbin/iptables";
const IPTABLES_RESTORE: &str = "/usr/sbin/iptables-restore";
const IPTABLES_SAVE: &str = "/usr/sbin/iptables-save";
/// For a reference row only, when installed.
const IPTABLES_LEGACY_RESTORE: &str = "/usr/sbin/iptables-legacy-restore";
const IPTABLES_LEGACY_SAVE: &str = "/usr/sbin/iptables-legacy-save";
const NFT: &str = "/usr/sbin/nft";
const SYSCTL: &str = "/usr/sbin/sysctl";

/// The cluster sizes measured.
const SIZES: [usize; 2] = [1_000, 10_000];
/// Endpoints per Service.
const ENDPOINTS: usize = 5;
/// One-endpoint changes measured per run.
const CHANGES_PER_RUN: usize = 5;
/// Goals from issue 5.
const FULL_SYNC_GOAL: Duration = Duration::from_secs(2);
const CHANGE_GOAL: Duration = Duration::from_millis(50);
const THROUGHPUT_GOAL: f64 = 0.95;

/// The Service CIDR (of the sync measurement and of the throughput lab).
const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The pods' network of the sync measurement.
const CLUSTER_CIDR: &str = "10.42.0.0/16";
/// The node's address in the sync measurement (NodePort rules need one).
const NODE_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 250, 1, 1);

/// Runs `skiff bench proxy` with `runs` runs per measurement.
pub async fn proxy(runs: usize) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("skiff bench proxy programs iptables in network namespaces: run it as root");
    }
    for tool in [IP, IPTABLES, IPTABLES_RESTORE, IPTABLES_SAVE, NFT, SYSCTL] {
        if !Path::new(tool).exists() {
            bail!("{tool} is missing (Debian: iproute2, iptables, nftables, procps)");
        }
    }
    let runs = runs.max(1);
    let id = format!("skbp-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let prefix = format!("SKP{:04x}-", rand::random::<u16>());
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-proxy-")
        .tempdir()?;
    let namespaces = Arc::new(Namespaces::default());

    let work = {
        let (namespaces, dir, id, prefix) = (
            namespaces.clone(),
            dir.path().to_path_buf(),
            id.clone(),
            prefix.clone(),
        );
        tokio::task::spawn_blocking(move || measure(&namespaces, &dir, &id, &prefix, runs))
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let measured = tokio::select! {
        done = work => done.context("the bench thread panicked")?,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        _ = terminate.recv() => Err(anyhow!("terminated")),
    };
    // Whatever happened, no namespace of this run stays (the guards remove theirs
    // on the normal and the failure path; this covers a signal).
    namespaces.close();
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&id))
                .collect()
        })
        .unwrap_or_default();
    let m = measured?;
    if !left.is_empty() {
        bail!(
            "network namespaces of the run are still there: {left:?} (remove with `ip netns del`)"
        );
    }
    report(&m, runs, &prefix);
    Ok(())
}

/// Everything one run measured.
struct Measured {
    sizes: Vec<SizeResult>,
    throughput: Throughput,
}

fn measure(
    namespaces: &Namespaces,
    dir: &Path,
    id: &str,
    prefix: &str,
    runs: usize,
) -> anyhow::Result<Measured> {
    let mut sizes = Vec::new();
    for count in SIZES {
        eprintln!("==> {count} services x {ENDPOINTS} endpoints: {runs} runs in fresh namespaces");
        sizes.push(sync_size(namespaces, dir, id, prefix, count, runs)?);
    }
    eprintln!(
        "==> throughput: {} MiB per transfer, pod IP vs ClusterIP, {runs} runs each",
        TRANSFER_BYTES >> 20
    );
    let throughput = throughput(namespaces, id, prefix, runs)?;
    // This thread never entered a namespace: this reads the host's tables.
    let left = service_proxy::leftovers(prefix)?;
    if !left.is_empty() {
        // A bug, not a measurement: remove exactly what carries our prefix.
        let removed = service_proxy::cleanup(prefix);
        bail!(
            "chains of {prefix} appeared in the host's iptables (the bench must never \
             touch them): {left:?}; removed: {removed:?}"
        );
    }
    Ok(Measured { sizes, throughput })
}

/// What one cluster size measured.
struct SizeResult {
    services: usize,
    nat_rules: usize,
    filter_rules: usize,
    chains: usize,
    build: Vec<Duration>,
    full: Vec<Duration>,
    floor: Vec<Duration>,
    legacy: Vec<Duration>,
    resync: Vec<Duration>,
    change_build: Vec<Duration>,
    change_apply: Vec<Duration>,
    change_total: Vec<Duration>,
    /// One restore of just the changed chains, on the same populated tables.
    change_floor: Vec<Duration>,
    /// nftables: the backend's full sync into a fresh namespace.
    nft_full: Vec<Duration>,
    /// nftables: one `nft -f` of the same complete input from a file.
    nft_floor: Vec<Duration>,
    /// nftables: a periodic full sync over the table it wrote.
    nft_resync: Vec<Duration>,
    /// nftables: one endpoint changes (state update + sync), and the same
    /// transaction replayed with one `nft -f` on an identical table.
    nft_change: Vec<Duration>,
    nft_change_floor: Vec<Duration>,
    nft_elements: usize,
    nft_rules: usize,
}

pub(super) fn sync_config(prefix: &str) -> anyhow::Result<ProxyConfig> {
    Ok(ProxyConfig {
        prefix: prefix.to_owned(),
        node_name: "bench-node".into(),
        node_ips: vec![NODE_IP],
        service_cidrs: vec![SERVICE_CIDR.parse()?],
        cluster_cidr: Some(CLUSTER_CIDR.parse()?),
        ..ProxyConfig::default()
    })
}

fn sync_size(
    namespaces: &Namespaces,
    dir: &Path,
    id: &str,
    prefix: &str,
    count: usize,
    runs: usize,
) -> anyhow::Result<SizeResult> {
    let config = sync_config(prefix)?;
    let node = NodeView::new(&config, None);
    let cluster = Cluster::new(count);

    let mut build = Vec::new();
    let mut ruleset = Ruleset::default();
    for _ in 0..runs {
        let started = Instant::now();
        ruleset = desired(&cluster.services, &cluster.slices, &node, &config);
        build.push(started.elapsed());
    }
    let rules_file = dir.join(format!("rules-{count}.txt"));
    std::fs::write(&rules_file, ruleset.render())?;
    let mut result = SizeResult {
        services: count,
        nat_rules: ruleset.rule_count(TableKind::Nat),
        filter_rules: ruleset.rule_count(TableKind::Filter),
        chains: TableKind::ALL
            .iter()
            .map(|t| ruleset.chains(*t).count())
            .sum(),
        build,
        full: Vec::new(),
        floor: Vec::new(),
        legacy: Vec::new(),
        resync: Vec::new(),
        change_build: Vec::new(),
        change_apply: Vec::new(),
        change_total: Vec::new(),
        change_floor: Vec::new(),
        nft_full: Vec::new(),
        nft_floor: Vec::new(),
        nft_resync: Vec::new(),
        nft_change: Vec::new(),
        nft_change_floor: Vec::new(),
        nft_elements: 0,
        nft_rules: 0,
    };
    eprintln!(
        "    {} nat + {} filter rules in {} chains; desired() median {:.1} ms",
        result.nat_rules,
        result.filter_rules,
        result.chains,
        millis(median(&result.build))
    );

    let legacy = Path::new(IPTABLES_LEGACY_RESTORE).exists();
    for run in 0..runs {
        // Rotate the order so that no step always runs after another's namespace
        // teardown.
        let mut steps = vec![Step::Floor, Step::Backend, Step::Nft];
        if legacy {
            steps.push(Step::Legacy);
        }
        let turn = run % steps.len();
        steps.rotate_left(turn);
        for step in steps {
            match step {
                Step::Floor => {
                    let ns = namespaces.add(&format!("{id}-f{count}-{run}"))?;
                    let took = ns.inside(|| {
                        restore_file(IPTABLES_RESTORE, IPTABLES_SAVE, &rules_file, &ruleset, run)
                    })?;
                    result.floor.push(took);
                }
                Step::Legacy => {
                    let ns = namespaces.add(&format!("{id}-l{count}-{run}"))?;
                    let took = ns.inside(|| {
                        restore_file(
                            IPTABLES_LEGACY_RESTORE,
                            IPTABLES_LEGACY_SAVE,
                            &rules_file,
                            &ruleset,
                            run,
                        )
                    })?;
                    result.legacy.push(took);
                }
                Step::Backend => {
                    let ns = namespaces.add(&format!("{id}-b{count}-{run}"))?;
                    ns.inside(|| {
                        backend_run(&cluster, &ruleset, &node, &config, run, &mut result)
                    })?;
                }
                Step::Nft => {
                    let backend_ns = namespaces.add(&format!("{id}-n{count}-{run}"))?;
                    let changes = backend_ns
                        .inside(|| nft_run(&cluster, &node, &config, dir, run, &mut result))?;
                    drop(backend_ns);
                    std::thread::sleep(Duration::from_millis(500));
                    let floor_ns = namespaces.add(&format!("{id}-m{count}-{run}"))?;
                    floor_ns.inside(|| nft_floor(dir, count, &changes, &mut result))?;
                }
            }
            // Let the kernel finish tearing the namespace down before the next one.
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!(
            "    run {}: iptables full sync {:.3} s, floor {:.3} s{}, resync {:.3} s, endpoint change {:.1} ms; \
             nftables full sync {:.3} s, floor {:.3} s, resync {:.3} s, endpoint change {:.1} ms (floor {:.1} ms)",
            run + 1,
            secs(result.full[run]),
            secs(result.floor[run]),
            result
                .legacy
                .get(run)
                .map(|l| format!(" (legacy {:.3} s)", secs(*l)))
                .unwrap_or_default(),
            secs(result.resync[run]),
            millis(median(&result.change_total[run * CHANGES_PER_RUN..])),
            secs(result.nft_full[run]),
            secs(result.nft_floor[run]),
            secs(result.nft_resync[run]),
            millis(median(&result.nft_change[run * CHANGES_PER_RUN..])),
            millis(median(&result.nft_change_floor[run * CHANGES_PER_RUN..])),
        );
    }
    Ok(result)
}

/// The steps of one run, each in a fresh namespace.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// The rendered rules through one `iptables-restore` (the floor).
    Floor,
    /// The same through `iptables-legacy-restore` (a reference).
    Legacy,
    /// The backend: full sync, resync, endpoint changes.
    Backend,
    /// The nftables backend (full sync, resync, endpoint changes) in one namespace,
    /// then its floor in another: the same complete input with one `nft -f`, and
    /// each change's transaction replayed on it.
    Nft,
}

/// Feeds `file` to one `restore --noflush` call on this thread's namespace and
/// returns how long it took; in the first run, checks with `save` that the kernel
/// holds every rule.
fn restore_file(
    restore: &str,
    save: &str,
    file: &Path,
    ruleset: &Ruleset,
    run: usize,
) -> anyhow::Result<Duration> {
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let started = Instant::now();
    let output = std::process::Command::new(restore)
        .arg("--noflush")
        .stdin(input)
        .output()
        .with_context(|| format!("running {restore}"))?;
    let took = started.elapsed();
    ensure!(
        output.status.success(),
        "{restore} --noflush < {} failed ({}): {}",
        file.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    if run == 0 {
        check_rules(save, ruleset)?;
    }
    Ok(took)
}

/// Checks with `save` (an `iptables-save`) that this thread's namespace holds
/// exactly the rules of `ruleset` in our chains.
fn check_rules(save: &str, ruleset: &Ruleset) -> anyhow::Result<()> {
    for table in TableKind::ALL {
        let saved = run_tool(save, &["-t", table.name()])?;
        let ours = saved
            .lines()
            .filter(|l| l.starts_with(&format!("-A {}", ruleset.prefix())))
            .count();
        ensure!(
            ours == ruleset.rule_count(table),
            "{save}: {ours} rules of ours in the {} table, {} wanted",
            table.name(),
            ruleset.rule_count(table)
        );
    }
    Ok(())
}

/// One run of the backend, on a thread inside a fresh namespace: a full sync, a
/// resync over the rules it wrote, then one endpoint changing at a time (on a copy
/// of the slices, so that every run starts from `ruleset`).
fn backend_run(
    cluster: &Cluster,
    ruleset: &Ruleset,
    node: &NodeView,
    config: &ProxyConfig,
    run: usize,
    result: &mut SizeResult,
) -> anyhow::Result<()> {
    let prefix = config.prefix.as_str();
    // The thread is in the bench's namespace (checked by `inside`): programs run
    // here act on it, as the agent's act on the host.
    let mut backend = Backend::new(Commands::host(), prefix)?;
    let started = Instant::now();
    backend.apply(ruleset, true).context("full sync")?;
    result.full.push(started.elapsed());
    if run == 0 {
        check_rules(IPTABLES_SAVE, ruleset)?;
    }
    let started = Instant::now();
    backend.apply(ruleset, true).context("full resync")?;
    result.resync.push(started.elapsed());

    let mut state = ServiceState::from_objects(&cluster.services, &cluster.slices, &node.name);
    let mut current = desired_from(&mut state, node, config);
    ensure!(
        &current == ruleset,
        "the incremental state computes other rules than desired()"
    );
    let count = cluster.services.len();
    for k in 0..CHANGES_PER_RUN {
        let n = run * CHANGES_PER_RUN + k;
        // Spread over the cluster; a fresh address every time.
        let which = (n * 7_919 + count / 2) % count;
        let slice = changed_slice(cluster, which, n);
        // What the agent does on an EndpointSlice event: update the state (only
        // this Service's ports are computed again), render the rules and apply them.
        let started = Instant::now();
        state.apply_slice(Arc::new(slice));
        let next = desired_from(&mut state, node, config);
        let built = started.elapsed();
        // The bench keeps a copy for the floor below (not timed).
        let kept = next.clone();
        let started = Instant::now();
        let report = backend
            .apply_owned(next, false)
            .context("incremental sync")?;
        let total = built + started.elapsed();
        let next = kept;
        ensure!(
            !report.full && (report.chains_written, report.chains_deleted) == (2, 1),
            "one endpoint changing wrote {} chains and deleted {} (want 2 and 1)",
            report.chains_written,
            report.chains_deleted
        );
        result.change_build.push(built);
        result.change_apply.push(total - built);
        result.change_total.push(total);
        // The change's floor: the same chains through one restore, back and forth
        // on the same populated tables (ending where the backend left them).
        let back = diff_text(&next, &current);
        let forth = diff_text(&current, &next);
        result.change_floor.push(restore_text(&back)?);
        result.change_floor.push(restore_text(&forth)?);
        current = next;
    }
    Ok(())
}

/// Service `which`'s slice with its first endpoint moved to a fresh address (change
/// number `n` of the run).
fn changed_slice(cluster: &Cluster, which: usize, n: usize) -> EndpointSlice {
    let mut slice = cluster.slices[which].clone();
    slice.endpoints[0].addresses = vec![format!("10.43.{}.{}", n / 250, n % 250 + 1)];
    slice
}

/// One run of the nftables backend, on a thread inside a fresh namespace: a full
/// sync, a resync, then one endpoint changing at a time. Writes the complete input
/// to `dir` and returns each change's transaction, for the floor.
fn nft_run(
    cluster: &Cluster,
    node: &NodeView,
    config: &ProxyConfig,
    dir: &Path,
    run: usize,
    result: &mut SizeResult,
) -> anyhow::Result<Vec<String>> {
    let count = cluster.services.len();
    let mut state = ServiceState::from_objects(&cluster.services, &cluster.slices, &node.name);
    let mut backend = NftBackend::new(Commands::host(), config)?;
    let started = Instant::now();
    let report = backend
        .apply(&mut state, node, true)
        .context("nftables full sync")?;
    result.nft_full.push(started.elapsed());
    std::fs::write(
        dir.join(format!("nft-{count}.txt")),
        backend.last_transaction(),
    )?;
    result.nft_elements = report.counts.elements;
    result.nft_rules = report.counts.nat_rules + report.counts.filter_rules;
    if run == 0 {
        check_nft(backend.table(), count)?;
    }
    let started = Instant::now();
    backend
        .apply(&mut state, node, true)
        .context("nftables resync")?;
    result.nft_resync.push(started.elapsed());

    let mut transactions = Vec::new();
    for k in 0..CHANGES_PER_RUN {
        let n = run * CHANGES_PER_RUN + k;
        let which = (n * 7_919 + count / 2) % count;
        let slice = changed_slice(cluster, which, n);
        let started = Instant::now();
        state.apply_slice(Arc::new(slice));
        let report = backend
            .apply(&mut state, node, false)
            .context("nftables incremental sync")?;
        result.nft_change.push(started.elapsed());
        ensure!(
            !report.full && report.chains_written == 0 && report.elements_written > 0,
            "one endpoint changing wrote {} chains and {} elements (want 0 and some)",
            report.chains_written,
            report.elements_written
        );
        transactions.push(backend.last_transaction().to_owned());
    }
    Ok(transactions)
}

/// The nftables floor, on a thread inside a fresh namespace: the complete input of
/// the backend's full sync from a file with one `nft -f`, then each change's
/// transaction with one `nft -f` (piped, as the backend does), in the same order on
/// the same table.
fn nft_floor(
    dir: &Path,
    count: usize,
    changes: &[String],
    result: &mut SizeResult,
) -> anyhow::Result<()> {
    let file = dir.join(format!("nft-{count}.txt"));
    let started = Instant::now();
    run_tool(NFT, &["-f", &file.to_string_lossy()])?;
    result.nft_floor.push(started.elapsed());
    for change in changes {
        result
            .nft_change_floor
            .push(pipe(NFT, &["-f", "-"], change)?);
    }
    Ok(())
}

/// Checks with `nft list` that this thread's namespace holds a service-ips element
/// and five endpoints for every Service.
fn check_nft(table: &str, count: usize) -> anyhow::Result<()> {
    let services = run_tool(NFT, &["list", "map", "ip", table, "service-ips"])?;
    let endpoints = run_tool(NFT, &["list", "map", "ip", table, "cluster-endpoints"])?;
    let vips = services.matches(": goto cluster-").count();
    let eps = endpoints.matches(" . 8080").count();
    ensure!(
        vips == count && eps == count * ENDPOINTS,
        "nft list: {vips} service IPs and {eps} endpoints, want {count} and {}",
        count * ENDPOINTS
    );
    Ok(())
}

/// Feeds `text` to `program args` through a pipe; how long it took.
fn pipe(program: &str, args: &[&str], text: &str) -> anyhow::Result<Duration> {
    use std::io::Write as _;
    let started = Instant::now();
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    let took = started.elapsed();
    ensure!(
        output.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(took)
}

/// The `iptables-restore --noflush` input that turns the chains of `from` into
/// those of `to`: changed chains declared (hence flushed) and refilled, chains
/// gone deleted, as the backend writes an incremental sync.
fn diff_text(from: &Ruleset, to: &Ruleset) -> String {
    let mut out = String::new();
    for table in TableKind::ALL {
        let written: Vec<&str> = to
            .chains(table)
            .filter(|c| from.rules(table, c) != to.rules(table, c))
            .collect();
        let deleted: Vec<&str> = from
            .chains(table)
            .filter(|c| to.rules(table, c).is_none())
            .collect();
        if written.is_empty() && deleted.is_empty() {
            continue;
        }
        out.push_str(&format!("*{}\n", table.name()));
        for chain in written.iter().chain(&deleted) {
            out.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for chain in &written {
            for line in to.rules(table, chain).unwrap_or_default() {
                out.push_str(&line);
                out.push('\n');
            }
        }
        for chain in &deleted {
            out.push_str(&format!("-X {chain}\n"));
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// Feeds `text` to one `iptables-restore --noflush -w` through a pipe (as the
/// backend does) on this thread's namespace; how long it took.
fn restore_text(text: &str) -> anyhow::Result<Duration> {
    pipe(IPTABLES_RESTORE, &["--noflush", "-w"], text)
}

/// Services `svc-<i>` with one TCP port each and their EndpointSlices.
pub(super) struct Cluster {
    pub(super) services: Vec<Service>,
    pub(super) slices: Vec<EndpointSlice>,
}

impl Cluster {
    /// `count` services in 10.96.0.0/16 with `ENDPOINTS` ready endpoints each in
    /// 10.42.0.0/16.
    pub(super) fn new(count: usize) -> Cluster {
        let mut cluster = Cluster {
            services: Vec::with_capacity(count + 1),
            slices: Vec::with_capacity(count + 1),
        };
        for i in 0..count {
            let vip = std::net::Ipv4Addr::new(10, 96, (i / 250) as u8, (i % 250 + 1) as u8);
            let endpoints: Vec<std::net::Ipv4Addr> = (0..ENDPOINTS)
                .map(|e| {
                    let n = i * ENDPOINTS + e;
                    std::net::Ipv4Addr::new(10, 42, (n / 250) as u8, (n % 250 + 1) as u8)
                })
                .collect();
            cluster.add(&format!("svc-{i}"), vip, 80, &endpoints, 8080);
        }
        cluster
    }

    pub(super) fn add(
        &mut self,
        name: &str,
        vip: std::net::Ipv4Addr,
        port: u16,
        endpoints: &[std::net::Ipv4Addr],
        target: u16,
    ) {
        let meta = |name: String| ObjectMeta {
            namespace: Some("bench".into()),
            name: Some(name),
            ..ObjectMeta::default()
        };
        self.services.push(Service {
            metadata: meta(name.to_owned()),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                cluster_ip: Some(vip.to_string()),
                cluster_ips: Some(vec![vip.to_string()]),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: i32::from(port),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        });
        let mut metadata = meta(format!("{name}-abcde"));
        metadata.labels = Some(
            [("kubernetes.io/service-name".to_owned(), name.to_owned())]
                .into_iter()
                .collect(),
        );
        self.slices.push(EndpointSlice {
            metadata,
            address_type: "IPv4".into(),
            endpoints: endpoints
                .iter()
                .map(|ip| Endpoint {
                    addresses: vec![ip.to_string()],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        serving: Some(true),
                        terminating: Some(false),
                    }),
                    node_name: Some("bench-node".into()),
                    ..Endpoint::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(i32::from(target)),
                protocol: Some("TCP".into()),
                ..EndpointPort::default()
            }]),
        });
    }
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    percentile(&sorted, 0.5)
}

fn median_f64(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn list(values: &[Duration], f: fn(Duration) -> f64, digits: usize) -> String {
    values
        .iter()
        .map(|d| format!("{:.*}", digits, f(*d)))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

/// Prints the Markdown section for BENCHMARKS.md.
fn report(m: &Measured, runs: usize, prefix: &str) {
    println!(
        "### skiff bench proxy — {}",
        k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC")
    );
    println!();
    println!(
        "Machine: {}; {}. Objects built in memory ({ENDPOINTS} ready endpoints per Service, one \
         TCP port); {runs} runs per size, each in fresh network namespaces; medians, with \
         every run's value. iptables programs run on a thread inside the namespace, as on \
         a node (no `ip netns exec` in the timed path).",
        crate::bench_dns::machine(),
        run_tool(IPTABLES, &["--version"])
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|_| "iptables version unknown".into())
    );
    println!();
    let header: Vec<String> = m
        .sizes
        .iter()
        .map(|s| format!("{} services", thousands(s.services)))
        .collect();
    println!("| measurement | {} | goal |", header.join(" | "));
    println!("| --- |{} --- |", " --- |".repeat(m.sizes.len()));
    let row = |name: &str, cell: &dyn Fn(&SizeResult) -> String, goal: &str| {
        let cells: Vec<String> = m.sizes.iter().map(cell).collect();
        println!("| {name} | {} | {goal} |", cells.join(" | "));
    };
    row(
        "rules (nat + filter) / chains",
        &|s| {
            format!(
                "{} + {} / {}",
                thousands(s.nat_rules),
                thousands(s.filter_rules),
                thousands(s.chains)
            )
        },
        "—",
    );
    row(
        "`desired()`: all rules from the objects",
        &|s| {
            format!(
                "**{:.1} ms** ({})",
                millis(median(&s.build)),
                list(&s.build, millis, 1)
            )
        },
        "—",
    );
    row(
        "floor: one `iptables-restore --noflush` of the rendered rules from a file, fresh namespace",
        &|s| {
            format!(
                "**{:.3} s** ({})",
                secs(median(&s.floor)),
                list(&s.floor, secs, 3)
            )
        },
        "baseline",
    );
    row(
        "full sync: `Backend::apply(full)` in a fresh namespace",
        &|s| {
            format!(
                "**{:.3} s** ({})",
                secs(median(&s.full)),
                list(&s.full, secs, 3)
            )
        },
        "10,000: < 2 s",
    );
    row(
        "full sync ÷ floor (medians)",
        &|s| {
            format!(
                "**{:.2}×**",
                secs(median(&s.full)) / secs(median(&s.floor)).max(f64::EPSILON)
            )
        },
        "—",
    );
    if m.sizes.iter().all(|s| !s.legacy.is_empty()) {
        row(
            "reference: the same file through `iptables-legacy-restore --noflush`, fresh namespace",
            &|s| {
                format!(
                    "{:.3} s ({})",
                    secs(median(&s.legacy)),
                    list(&s.legacy, secs, 3)
                )
            },
            "—",
        );
    }
    row(
        "periodic full resync over the same rules",
        &|s| {
            format!(
                "{:.3} s ({})",
                secs(median(&s.resync)),
                list(&s.resync, secs, 3)
            )
        },
        "—",
    );
    row(
        &format!(
            "one endpoint changes: `desired()` + incremental apply ({} changes)",
            CHANGES_PER_RUN * runs
        ),
        &|s| {
            let mut sorted = s.change_total.clone();
            sorted.sort();
            format!(
                "**{:.1} ms** (= {:.1} + {:.1}; max {:.1})",
                millis(median(&s.change_total)),
                millis(median(&s.change_build)),
                millis(median(&s.change_apply)),
                millis(sorted.last().copied().unwrap_or_default())
            )
        },
        "< 50 ms",
    );
    row(
        "its floor: one `iptables-restore --noflush` of just the changed chains, same tables",
        &|s| format!("{:.1} ms", millis(median(&s.change_floor))),
        "—",
    );
    println!();
    println!(
        "nftables backend (`--proxy-mode nftables`, the default), same objects, same runs, {}:",
        run_tool(NFT, &["--version"])
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|_| "nft version unknown".into())
    );
    println!();
    println!("| measurement | {} | goal |", header.join(" | "));
    println!("| --- |{} --- |", " --- |".repeat(m.sizes.len()));
    row(
        "rules / map and set elements in our table",
        &|s| format!("{} / {}", thousands(s.nft_rules), thousands(s.nft_elements)),
        "—",
    );
    row(
        "floor: one `nft -f` of the backend's complete input from a file, fresh namespace",
        &|s| {
            format!(
                "**{:.3} s** ({})",
                secs(median(&s.nft_floor)),
                list(&s.nft_floor, secs, 3)
            )
        },
        "baseline",
    );
    row(
        "full sync: `NftBackend::apply(full)` from the objects, fresh namespace",
        &|s| {
            format!(
                "**{:.3} s** ({})",
                secs(median(&s.nft_full)),
                list(&s.nft_full, secs, 3)
            )
        },
        "10,000: < 2 s",
    );
    row(
        "full sync ÷ floor (medians)",
        &|s| {
            format!(
                "**{:.2}×**",
                secs(median(&s.nft_full)) / secs(median(&s.nft_floor)).max(f64::EPSILON)
            )
        },
        "—",
    );
    row(
        "periodic full resync (from memory, no listing)",
        &|s| {
            format!(
                "{:.3} s ({})",
                secs(median(&s.nft_resync)),
                list(&s.nft_resync, secs, 3)
            )
        },
        "—",
    );
    row(
        &format!(
            "one endpoint changes: state update + incremental sync ({} changes)",
            CHANGES_PER_RUN * runs
        ),
        &|s| {
            let mut sorted = s.nft_change.clone();
            sorted.sort();
            format!(
                "**{:.1} ms** (max {:.1})",
                millis(median(&s.nft_change)),
                millis(sorted.last().copied().unwrap_or_default())
            )
        },
        "< 50 ms",
    );
    row(
        "its floor: the same transaction replayed with one `nft -f`, same table",
        &|s| format!("{:.1} ms", millis(median(&s.nft_change_floor))),
        "—",
    );
    println!();
    if let Some(big) = m.sizes.iter().find(|s| s.services == 10_000) {
        let full = median(&big.full);
        let change = median(&big.change_total);
        println!(
            "Goals at 10,000 services, iptables: full sync < 2 s — {} ({:.3} s); endpoint change < 50 ms — {} ({:.1} ms, of which the apply {:.1} ms).",
            met(full < FULL_SYNC_GOAL),
            secs(full),
            met(change < CHANGE_GOAL),
            millis(change),
            millis(median(&big.change_apply)),
        );
        let (full, change) = (median(&big.nft_full), median(&big.nft_change));
        println!(
            "nftables: full sync < 2 s — {} ({:.3} s); endpoint change < 50 ms — {} ({:.1} ms).",
            met(full < FULL_SYNC_GOAL),
            secs(full),
            met(change < CHANGE_GOAL),
            millis(change),
        );
        println!();
    }
    let t = &m.throughput;
    let (direct, vip) = (median_f64(&t.direct), median_f64(&t.cluster_ip));
    let ratio = vip / direct.max(f64::EPSILON);
    let values = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    println!(
        "Throughput: a client pod sends {} MiB over one TCP connection to a server pod; \
         both are namespaces on veths to a node namespace that routes between them and \
         holds our rules (1,001 services). Same path both ways except the DNAT.",
        TRANSFER_BYTES >> 20
    );
    println!();
    println!("| measurement | result | goal |");
    println!("| --- | --- | --- |");
    println!(
        "| pod → pod IP | {direct:.0} MB/s ({}) | baseline |",
        values(&t.direct)
    );
    println!(
        "| pod → ClusterIP (DNAT by our rules) | {vip:.0} MB/s ({}) | — |",
        values(&t.cluster_ip)
    );
    println!(
        "| ClusterIP ÷ pod IP (medians) | **{ratio:.3}** | ≥ {THROUGHPUT_GOAL} — {} |",
        met(ratio >= THROUGHPUT_GOAL)
    );
    println!();
    println!(
        "Left behind: nothing (checked: no network namespace of the run, no chain or jump \
         with prefix `{prefix}` in the host's iptables, no table `{}` in its nftables).",
        service_proxy::nft_table(prefix)
    );
}

/// `12345` as `12,345`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
