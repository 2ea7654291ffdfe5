#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for Skiff: installs what is missing, builds the
# binary, installs it to /usr/local/bin and starts `skiff server` in the background.
#   scripts/setup.sh              install + build + start
#   scripts/setup.sh --deps-only  install packages only (used by scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(protobuf-compiler etcd-server containerd runc containernetworking-plugins iptables
          busybox-static catatonit iproute2 curl openssl ca-certificates docker-registry skopeo apache2-utils
          nftables g++)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || echo "warning: apt-get update failed; trying with the cached package lists"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's etcd-server package may start a system etcd; Skiff's tests start their own.

if ! command -v cargo-nextest >/dev/null 2>&1 && ! cargo nextest --version >/dev/null 2>&1; then
  echo "==> installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
# cargo-fuzz for scripts/fuzz.sh (stable toolchain; libFuzzer builds with the system g++).
scripts/fuzz.sh --install-only

[ "${1:-}" = "--deps-only" ] && exit 0

echo "==> building skiff (release)"
cargo build --release --locked -p skiff
install -m 0755 target/release/skiff /usr/local/bin/skiff

if pgrep -x skiff >/dev/null 2>&1 && pgrep -af "skiff server" >/dev/null; then
  echo "==> skiff server is already running"
else
  echo "==> starting skiff server (log: /var/log/skiff.log)"
  nohup /usr/local/bin/skiff server >>/var/log/skiff.log 2>&1 &
  for _ in $(seq 1 100); do
    [ -f /var/lib/skiff/kubeconfig.yaml ] && curl -sk https://127.0.0.1:6443/readyz >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
echo
echo "Skiff is up. Try:"
echo "  export KUBECONFIG=/var/lib/skiff/kubeconfig.yaml"
echo "  kubectl get ns"
