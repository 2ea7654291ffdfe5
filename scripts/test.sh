#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, checks formatting and
# lints, builds once, and runs every test with cargo-nextest in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
# CI builds once: incremental artifacts would only cost disk and time.
export CARGO_INCREMENTAL=0
scripts/setup.sh --deps-only
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> building tests"
cargo nextest run --workspace --locked --no-run
echo "==> running tests"
cargo nextest run --workspace --locked --no-fail-fast "$@"
# Every fuzz target for a bounded time (SKIFF_FUZZ_SECONDS each, default 20).
scripts/fuzz.sh "${SKIFF_FUZZ_SECONDS:-20}"
