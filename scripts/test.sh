#!/bin/bash
# The whole test suite: unit tests and end-to-end tests (real namespaces, mounts,
# cgroups; run as root). Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "test.sh: the end-to-end tests need root (namespaces, mounts, cgroups)" >&2; exit 1; }
# Two at a time: the machine has two cores and the tests start real containers.
cargo test --workspace "$@" -- --test-threads=2
