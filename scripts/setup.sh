#!/bin/bash
# Install what berth's build, demo and tests need on Debian 12 (run as root).
# Idempotent: packages already present are not reinstalled.
set -euo pipefail
need=(busybox-static runc libseccomp-dev pkg-config file procps python3 iproute2 nftables bsdutils
      docker-registry skopeo umoci openssl bc jq curl ca-certificates python3-venv python3-dev gcc tini)
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
# A second, older client for the API tests: Debian's docker 20.10 (API 1.41), kept
# apart from the one on PATH so tests can run both.
ci=/opt/berth-ci
if [ ! -x "$ci/docker-20.10/docker" ]; then
  echo "setup: extracting Debian's docker 20.10 client to $ci/docker-20.10" >&2
  d=$(mktemp -d)
  (cd "$d" && apt-get download -qq docker.io >/dev/null && dpkg-deb -x docker.io_*.deb root)
  install -D -m 0755 "$d/root/usr/bin/docker" "$ci/docker-20.10/docker"
  rm -rf "$d"
fi
# The Docker SDK for Python and docker-compose 1.29.2, each in its own venv (compose
# needs docker<7 and requests<2.32; its PyYAML 5.4.1 only builds with Cython<3).
py=/usr/bin/python3
if [ ! -x "$ci/sdk/bin/python" ] || ! "$ci/sdk/bin/python" -c 'import docker' 2>/dev/null; then
  echo "setup: installing the Docker SDK for Python in $ci/sdk" >&2
  rm -rf "$ci/sdk" && "$py" -m venv "$ci/sdk"
  "$ci/sdk/bin/pip" install -q 'docker>=7,<8'
fi
if [ ! -x "$ci/compose/bin/docker-compose" ]; then
  echo "setup: installing docker-compose 1.29.2 in $ci/compose" >&2
  rm -rf "$ci/compose" && "$py" -m venv "$ci/compose"
  "$ci/compose/bin/pip" install -q 'cython<3' wheel setuptools
  "$ci/compose/bin/pip" install -q --no-build-isolation 'pyyaml==5.4.1'
  "$ci/compose/bin/pip" install -q 'docker-compose==1.29.2' 'docker<7' 'requests<2.32'
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
