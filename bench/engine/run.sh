#!/bin/bash
# Engine benchmark, side by side with Debian's docker.io on the same busybox image:
#  1. `berth run --rm IMG true` vs `docker run --rm IMG true`, alternating, medians;
#  2. memory (PSS) of N idle `sleep` containers: berth's per-container supervisors versus
#     docker's containerd-shims (plus dockerd + containerd idle RSS, berth has no daemon yet).
# Needs root, docker.io (dockerd is started here on a private socket and data root,
# no bridge, no iptables). Usage: bench/engine/run.sh [runs] [containers]
set -euo pipefail
RUNS=${1:-20}
N=${2:-20}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
T=$(mktemp -d /tmp/berth-test-bench-engine.XXXXXX)
export BERTH_DATA_ROOT=$T/berth
DPID=
cleanup() {
    for i in $(seq 1 "$N"); do "$BERTH" rm -f "bb$i" >/dev/null 2>&1 || true; done
    [ -n "$DPID" ] && { docker rm -f $(docker ps -aq) >/dev/null 2>&1 || true; kill "$DPID"; wait "$DPID" 2>/dev/null || true; }
    umount -R "$T"/docker 2>/dev/null || true
    rm -rf "$T"
}
command -v dockerd >/dev/null || { echo "dockerd is needed for the comparison: apt-get install -y docker.io" >&2; exit 1; }
echo "building berth (release)..." >&2
(cd "$HERE" && CARGO_TARGET_DIR=$TARGET cargo build -q --release -j2 -p berth -p berthd)
BERTH=$TARGET/release/berth
trap cleanup EXIT

# the image: a busybox-static rootfs, imported into berth, saved and loaded into docker
mkdir -p "$T/rootfs/bin" "$T/rootfs/etc"
cp "$(command -v busybox)" "$T/rootfs/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$T/rootfs/bin/$a"; done
tar -C "$T/rootfs" -cf "$T/rootfs.tar" .
"$BERTH" image import --change 'ENV PATH=/bin' "$T/rootfs.tar" bench/busybox:1 >/dev/null
"$BERTH" image save -o "$T/img.tar" bench/busybox:1

dockerd --data-root "$T/docker" --exec-root "$T/docker-exec" -H "unix://$T/docker.sock" \
    --pidfile "$T/docker.pid" --iptables=false --ip6tables=false --bridge=none >"$T/dockerd.log" 2>&1 &
DPID=$!
export DOCKER_HOST=unix://$T/docker.sock
for _ in $(seq 1 300); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
docker load -q -i "$T/img.tar" >/dev/null

ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
B=(); D=()
"$BERTH" run --rm --network none bench/busybox:1 true; docker run --rm --network none bench/busybox:1 true
for i in $(seq 1 "$RUNS"); do
    if (( i % 2 )); then
        B+=("$(ms "$BERTH" run --rm --network none bench/busybox:1 true)")
        D+=("$(ms docker run --rm --network none bench/busybox:1 true)")
    else
        D+=("$(ms docker run --rm --network none bench/busybox:1 true)")
        B+=("$(ms "$BERTH" run --rm --network none bench/busybox:1 true)")
    fi
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mb=$(median "${B[@]}"); md=$(median "${D[@]}")
printf 'run --rm true   berth %8.2f ms   docker %8.2f ms   ratio %.3f   (medians of %s alternating runs)\n' \
    "$(echo "$mb/1000" | bc -l)" "$(echo "$md/1000" | bc -l)" "$(echo "$mb/$md" | bc -l)" "$RUNS"

rss_of() { # total PSS (kB) of processes whose command line matches $1: their real
    # memory, with pages shared between them (the binary) counted once overall
    local total=0 p
    for p in $(pgrep -f "$1" || true); do
        total=$(( total + $(awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup 2>/dev/null || echo 0) ))
    done
    echo $total
}
daemon=$(( $(rss_of "^dockerd --data-root $T/docker") + $(rss_of "containerd --config $T/docker-exec") ))
for i in $(seq 1 "$N"); do
    "$BERTH" run -d --name "bb$i" --network none bench/busybox:1 sleep 600 >/dev/null
    docker run -d --name "bb$i" --network none bench/busybox:1 sleep 600 >/dev/null
done
sleep 1
shim_b=$(rss_of "container-shim")
shim_d=$(rss_of "containerd-shim")
printf 'idle daemons    berth %8d kB   docker %8d kB (dockerd + containerd)\n' 0 "$daemon"
printf 'supervisors     berth %8d kB   docker %8d kB for %s sleeping containers: per container %d vs %d kB, ratio %.3f\n' \
    "$shim_b" "$shim_d" "$N" $(( shim_b / N )) $(( shim_d / N )) "$(echo "$shim_b/$shim_d" | bc -l)"
