#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ once and runs each for a bounded time.
#   scripts/fuzz.sh [SECONDS] [TARGET...]   SECONDS per target (default 20), all targets by default
#   scripts/fuzz.sh --install-only          install cargo-fuzz if missing (used by scripts/setup.sh)
# Works on the stable toolchain: targets are built with --sanitizer none (our crates
# forbid unsafe code; coverage, overflow checks, per-input timeouts, libFuzzer's RSS
# limit and the allocation cap in fuzz/src/alloc.rs find the bugs). Set
# SKIFF_FUZZ_SANITIZER=address with a nightly toolchain (`cargo +nightly`) for ASan.
# Each target starts from its seeds in fuzz/corpus/<target>/ (never written to) plus
# what earlier runs found in fuzz/target/corpus/<target>/. A crash, a timeout or an
# out-of-memory fails the script after all targets ran; the input is saved under
# fuzz/artifacts/<target>/ and printed with the command that reproduces it.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi
[ "${1:-}" = "--install-only" ] && exit 0

# The fuzz workspace builds into its own target dir, whatever the caller's
# CARGO_TARGET_DIR says (the main workspace's debug artifacts are of no use here).
export CARGO_TARGET_DIR="$PWD/fuzz/target"

SECONDS_PER_TARGET="${1:-20}"
shift || true
case "$SECONDS_PER_TARGET" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
SANITIZER="${SKIFF_FUZZ_SANITIZER:-none}"
# Libfuzzer's limits: an input running longer than this many seconds is a hang, a
# process above this many MB of RSS (or, with a sanitizer, one allocation above
# MALLOC_MB) is an unbounded allocation.
TIMEOUT_S=10
RSS_MB=2048
MALLOC_MB=256

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="fuzz/target/$triple/release"

start=$(date +%s)
echo "==> building ${#targets[@]} fuzz targets (sanitizer: $SANITIZER)"
if [ $# -gt 0 ]; then
  for t in "${targets[@]}"; do cargo fuzz build --fuzz-dir fuzz --sanitizer "$SANITIZER" "$t"; done
else
  cargo fuzz build --fuzz-dir fuzz --sanitizer "$SANITIZER"
fi
for t in "${targets[@]}"; do
  [ -x "$bin_dir/$t" ] || { echo "error: fuzz target $t was not built" >&2; exit 1; }
done
built=$(date +%s)
echo "    built in $((built - start)) s"

# A libFuzzer final statistic from a target's log.
stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }

dict_for() {
  case "$1" in
    label_selector | field_selector | quantity | protobuf_body) echo "fuzz/dict/$1.dict" ;;
    *) echo "fuzz/dict/json.dict" ;;
  esac
}

failed=()
summary=()
for t in "${targets[@]}"; do
  work="fuzz/target/corpus/$t"
  artifacts="fuzz/artifacts/$t/"
  log="fuzz/target/logs/$t.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")" "fuzz/corpus/$t"
  args=(-max_total_time="$SECONDS_PER_TARGET" -timeout="$TIMEOUT_S" -rss_limit_mb="$RSS_MB"
        -malloc_limit_mb="$MALLOC_MB" -print_final_stats=1 -artifact_prefix="$artifacts")
  dict=$(dict_for "$t")
  [ -f "$dict" ] && args+=(-dict="$dict")
  echo "==> fuzzing $t for ${SECONDS_PER_TARGET} s"
  status=0
  "$bin_dir/$t" "${args[@]}" "$work" "fuzz/corpus/$t" >"$log" 2>&1 || status=$?
  runs=$(stat number_of_executed_units)
  rate=$(stat average_exec_per_sec)
  rss=$(stat peak_rss_mb)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  line=$(printf '%-22s %10s runs %8s exec/s  cov %6s  peak rss %5s MB' "$t" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${rss:-?}")
  if [ "$status" -eq 0 ]; then
    summary+=("ok    $line")
  else
    summary+=("FAIL  $line")
    failed+=("$t")
    echo "---- $t failed (exit $status); end of $log:"
    grep -vE '^#[0-9]+\s+(NEW|REDUCE|pulse)|NEW_FUNC' "$log" | tail -40
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [ -n "$artifact" ] && [ -f "$artifact" ]; then
      echo "---- input ($(wc -c <"$artifact") bytes, first 512 shown):"
      head -c 512 "$artifact" | od -An -c | head -20
      echo "---- reproduce: cargo fuzz run --fuzz-dir fuzz --sanitizer $SANITIZER $t $artifact"
    fi
  fi
done
end=$(date +%s)

echo "==> fuzzing summary (${SECONDS_PER_TARGET} s per target; build $((built - start)) s, runs $((end - built)) s, total $((end - start)) s)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
