//! Release builds place the functions the node agent runs together at the start of
//! the binary's code, in the order `agent-code.order` lists them (lld's
//! `--symbol-ordering-file`). The kernel maps code in whole page-cache folios, so an
//! agent whose code is spread over the 55 MB of the binary keeps 20+ MB of it
//! resident; packed, about 6 MB. `scripts/agent-code-order.sh` regenerates the list;
//! names it lists that a build no longer has are skipped, so a stale list costs
//! memory, never correctness.

fn main() {
    let order = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("agent-code.order");
    println!("cargo:rerun-if-changed={}", order.display());
    if std::env::var("PROFILE").as_deref() == Ok("release") && order.exists() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
