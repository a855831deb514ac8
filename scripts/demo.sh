#!/bin/bash
# Demo: build berth, make a busybox OCI bundle, run it under berth-runtime (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== building (release)"
cargo build --release --quiet -p berth-runtime
export PATH="$PWD/target/release:$PATH"
work=$(mktemp -d /tmp/berth-demo-XXXXXX)
trap 'berth-runtime delete --force demo >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
echo "== making a busybox bundle in $work/bundle"
BERTH_RUNTIME=berth-runtime scripts/make-bundle.sh "$work/bundle" sh -c \
  'echo "hello from pid $$ on $(hostname)"; echo "network: $(ls /sys/class/net)"; grep CapEff /proc/self/status'
echo "== berth-runtime run"
berth-runtime run --bundle "$work/bundle" demo
echo "== create / state / start / delete"
berth-runtime create --bundle "$work/bundle" demo
berth-runtime state demo | grep -E '"(id|status)"'
berth-runtime start demo
sleep 0.2
berth-runtime state demo | grep '"status"'
berth-runtime delete demo
echo "== done"
