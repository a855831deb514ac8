#!/bin/bash
# Install what berth's build, demo and tests need on Debian 12 (run as root).
# Idempotent: packages already present are not reinstalled.
set -euo pipefail
need=(busybox-static runc libseccomp-dev pkg-config file procps python3 iproute2 nftables bsdutils
      docker-registry skopeo umoci openssl bc jq curl ca-certificates)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The docker CLI drives berthd in the API tests. Take only the client out of Debian's
# docker.io package: installing the package would start dockerd and change the host.
if ! command -v docker >/dev/null 2>&1; then
  echo "setup: extracting the docker client from Debian's docker.io package" >&2
  d=$(mktemp -d)
  (cd "$d" && apt-get download -qq docker.io >/dev/null && dpkg-deb -x docker.io_*.deb root)
  install -m 0755 "$d/root/usr/bin/docker" /usr/local/bin/docker
  rm -rf "$d"
fi
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing the Rust toolchain with rustup" >&2
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
