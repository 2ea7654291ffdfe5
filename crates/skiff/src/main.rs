//! `skiff`: one binary for the Skiff control plane, node agent and tools.

mod agent;
mod bench;
mod bench_apf;
mod bench_dns;
mod bench_pods;
mod bench_proxy;
mod bench_scheduler;
mod components;
mod dns;
mod image;
mod killall;
mod kubeconfig;
mod pidlock;
mod server;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the API server allocates and frees many
/// small JSON values from several threads, where glibc's arenas spent about a
/// quarter of the server's CPU (locks, consolidation) under `skiff bench scheduler`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Skiff: a Kubernetes-compatible container orchestrator in one binary.
#[derive(Parser)]
#[command(name = "skiff", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server on an embedded datastore).
    Server(Box<server::ServerArgs>),
    /// Run a node agent against an API server (`--kubeconfig`).
    Agent(Box<agent::AgentArgs>),
    /// Stop every pod and container of a data dir's node agent and remove what it
    /// set up on this machine (mounts, cgroups, bridge, iptables chains, routes).
    Killall(killall::KillallArgs),
    /// Import, list and remove the images of a data dir's node agent.
    Image(image::ImageArgs),
    /// Make kubeconfigs for users, signed by a server's cluster CA.
    Kubeconfig(kubeconfig::KubeconfigArgs),
    /// Run the scheduler against an API server (several may run; one leads).
    Scheduler(components::SchedulerArgs),
    /// Run the controller manager against an API server (several may run; one leads).
    ControllerManager(components::ControllerManagerArgs),
    /// Benchmarks whose results go into BENCHMARKS.md.
    Bench(bench::BenchArgs),
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,hickory_server=warn,hickory_proto=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => server::run(*args).await,
            Command::Agent(args) => agent::run(*args).await,
            Command::Killall(args) => killall::run(args).await,
            Command::Image(args) => image::run(args).await,
            Command::Kubeconfig(args) => kubeconfig::run(args),
            Command::Scheduler(args) => components::run_scheduler(args).await,
            Command::ControllerManager(args) => components::run_controller_manager(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
