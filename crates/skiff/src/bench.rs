//! `skiff bench`: measurements recorded in BENCHMARKS.md.

use clap::Args;

/// Flags of `skiff bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure: `api`.
    pub what: String,
}

/// Runs a benchmark.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("skiff bench {}: not built yet", args.what)
}
