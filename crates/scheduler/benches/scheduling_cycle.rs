//! `cargo bench -p scheduler`: scheduling decisions per second of the cycle alone
//! (5,000 nodes, 50,000 pods by default; `SKIFF_BENCH_NODES` / `SKIFF_BENCH_PODS`
//! override). Prints the median of three runs and the three values.

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let nodes = env_or("SKIFF_BENCH_NODES", 5_000);
    let pods = env_or("SKIFF_BENCH_PODS", 50_000);
    let mut runs = Vec::new();
    for _ in 0..3 {
        let r = scheduler::perf::decisions_per_second(nodes, pods).expect("bench objects");
        assert_eq!(r.placed, pods, "every pod fits in the bench cluster");
        runs.push(r.decisions_per_second);
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "scheduling cycle, {pods} pods over {nodes} nodes: median {:.0} decisions/s (runs: {})",
        sorted[1],
        runs.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" · ")
    );
}
