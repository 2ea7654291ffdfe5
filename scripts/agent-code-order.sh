#!/bin/sh
# Regenerates crates/skiff/agent-code.order: the functions the node agent runs while
# it starts, idles, and starts and stops pods, as callgrind sees them in
# `skiff bench pods` with a few pods. Release builds place them together (see
# crates/skiff/build.rs), which keeps the idle agent's resident code small.
# Run it as root after changes to the agent or its dependencies; it takes about
# 10 minutes. Then rebuild and check `skiff bench pods`'s RSS figures.
set -eu
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || apt-get install -y --no-install-recommends valgrind
echo "==> building the release binary" >&2
cargo build --release -p skiff
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "==> skiff bench pods with the agent under callgrind (slow)" >&2
./target/release/skiff bench pods --burst 3 --sequential 3 --floor-runs 1 \
    --agent-wrapper "valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file=$work/callgrind.out" \
    >/dev/null
export LC_ALL=C
# Every function callgrind names (fn= and cfn= lines; "'2" marks a recursion level).
sed -nE "s/^c?fn=\([0-9]+\) (.*)$/\1/p" "$work/callgrind.out" | sed -E "s/'[0-9]+$//" |
    sort -u >"$work/ran"
# The binary's code symbols as "name address", first address per name.
nm --defined-only target/release/skiff | awk '$2 ~ /^[tTwW]$/ { print $3, $1 }' |
    sort -k1,1 -u >"$work/symbols"
# The names that ran, in the binary's present order.
join "$work/symbols" "$work/ran" | sort -k2,2 | cut -d' ' -f1 >crates/skiff/agent-code.order
echo "==> $(wc -l <crates/skiff/agent-code.order) functions in crates/skiff/agent-code.order" >&2
