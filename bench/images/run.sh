#!/bin/bash
# Pull benchmark: a 5-layer (~50 MB compressed) image from a loopback docker-registry,
# pulled cold by berth, by `docker pull` (Debian docker.io daemon, started here on a
# private socket and data root), by `skopeo copy` and by skopeo + `umoci unpack`.
# Prints per-run seconds, medians and ratios. Needs root and the packages
# docker-registry, docker.io, skopeo, umoci. Usage: bench/images/run.sh [runs]
set -euo pipefail
RUNS=${1:-5}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-/work/target-images}
T=$(mktemp -d /tmp/berth-test-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    umount -R "$T"/docker 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
for t in docker-registry dockerd skopeo umoci; do
    command -v "$t" >/dev/null || { echo "missing $t: apt-get install docker-registry docker.io skopeo umoci" >&2; exit 1; }
done

echo "building berth (release)..." >&2
(cd "$HERE" && CARGO_TARGET_DIR=$TARGET cargo build -q --release -j2 -p berth)
BERTH=$TARGET/release/berth

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s/registry\nhttp:\n  addr: 127.0.0.1:%s\n' "$T" "$PORT" > "$T/registry.yml"
docker-registry serve "$T/registry.yml" >/dev/null 2>&1 &
PIDS+=($!)

# Five layers: ~10 MB of incompressible data plus some text each.
mkdir -p "$T/img"
DIFFS=()
for i in 1 2 3 4 5; do
    mkdir -p "$T/layer$i/data$i"
    head -c $((10 * 1000 * 1000)) /dev/urandom > "$T/layer$i/data$i/blob"
    for j in $(seq 1 200); do seq 1 500 > "$T/layer$i/data$i/text$j"; done
    tar -C "$T/layer$i" -cf "$T/img/layer$i.tar" .
    DIFFS+=("\"sha256:$(sha256sum "$T/img/layer$i.tar" | cut -d' ' -f1)\"")
done
printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$(IFS=,; echo "${DIFFS[*]}")" > "$T/img/config.json"
printf '[{"Config":"config.json","RepoTags":["bench/five:1"],"Layers":["layer1.tar","layer2.tar","layer3.tar","layer4.tar","layer5.tar"]}]' > "$T/img/manifest.json"
tar -C "$T/img" -cf "$T/five.tar" manifest.json config.json layer1.tar layer2.tar layer3.tar layer4.tar layer5.tar
REF=127.0.0.1:$PORT/bench/five:1
until curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null; do sleep 0.1; done
skopeo copy -q --dest-tls-verify=false --dest-compress --format v2s2 "docker-archive:$T/five.tar" "docker://$REF"
SIZE=$(du -sb "$T/registry" | cut -f1)

dockerd --data-root "$T/docker" --exec-root "$T/docker-exec" -H "unix://$T/docker.sock" \
    --pidfile "$T/docker.pid" --iptables=false --ip6tables=false --bridge=none >"$T/dockerd.log" 2>&1 &
PIDS+=($!)
export DOCKER_HOST=unix://$T/docker.sock
for _ in $(seq 1 300); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
docker version >/dev/null || { echo "dockerd did not start; see $T/dockerd.log" >&2; exit 1; }

now() { date +%s.%N; }
declare -A TIMES
run() { # name command...
    local name=$1; shift
    local s e; s=$(now); "$@" >/dev/null; e=$(now)
    TIMES[$name]+="$(echo "$e - $s" | bc) "
}
for r in $(seq 1 "$RUNS"); do
    rm -rf "$T/berth"; sync
    run berth "$BERTH" --data-root "$T/berth" pull -q "$REF"
    docker rmi -f "$REF" >/dev/null 2>&1 || true; sync
    run docker docker pull -q "$REF"
    rm -rf "$T/oci" "$T/bundle"; sync
    run skopeo skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$T/oci:five"
    rm -rf "$T/oci" "$T/bundle"; sync
    run skopeo+umoci bash -c "skopeo copy -q --src-tls-verify=false docker://$REF oci:$T/oci:five && umoci unpack --image $T/oci:five $T/bundle"
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "image: 5 layers, $((SIZE / 1000000)) MB in the registry; $RUNS cold pulls each"
printf '%-14s %-8s %s\n' TOOL MEDIAN RUNS
declare -A MED
for k in berth docker skopeo skopeo+umoci; do
    MED[$k]=$(echo "${TIMES[$k]}" | median)
    printf '%-14s %-8.3f %s\n' "$k" "${MED[$k]}" "${TIMES[$k]}"
done
for k in docker skopeo skopeo+umoci; do
    printf 'berth/%-12s %.2f\n' "$k" "$(echo "${MED[berth]} / ${MED[$k]}" | bc -l)"
done
