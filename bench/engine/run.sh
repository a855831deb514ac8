#!/bin/bash
# Engine benchmark, side by side with Debian's docker.io on the same busybox rootfs
# (imported into both), release builds:
#  1. `run --rm IMG true` through each daemon with the same docker CLI (berthd vs
#     dockerd), alternating, medians; and berth's own CLI for reference;
#  2. idle daemon memory: berthd vs dockerd + containerd (RSS and PSS);
#  3. per-container supervisor: berth-shim (static-pie) vs containerd-shim-runc-v2
#     (RSS and PSS);
#  4. N idle `sleep` containers, total memory (PSS of daemons + supervisors +
#     containers' processes) for berth vs docker.
# Needs root and docker.io (dockerd is started here on a private socket and data root,
# no bridge, no iptables, and stopped at the end; it is never enabled as a service).
# Usage: bench/engine/run.sh [runs] [containers]   (defaults 20 and 200)
set -euo pipefail
RUNS=${1:-20}
N=${2:-200}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
T=$(mktemp -d /tmp/berth-test-bench-engine.XXXXXX)
export BERTH_DATA_ROOT=$T/berth
export BERTH_RUNTIME_ROOT=$T/berth-run
DPID=
BERTHD_PID=
cleanup() {
    set +e
    if [ -S "$T/berth/berthd.sock" ]; then
        ids=$(DOCKER_HOST=unix://$T/berth/berthd.sock docker ps -aq 2>/dev/null)
        [ -n "$ids" ] && DOCKER_HOST=unix://$T/berth/berthd.sock docker rm -f $ids >/dev/null 2>&1
    fi
    for id in $("$BERTH" ps -aq 2>/dev/null); do "$BERTH" rm -f "$id" >/dev/null 2>&1; done
    [ -f "$T/berth/berthd.pid" ] && kill "$(cat "$T/berth/berthd.pid")" 2>/dev/null
    if [ -n "$DPID" ]; then
        ids=$(docker ps -aq 2>/dev/null)
        [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1
        kill "$DPID"; wait "$DPID" 2>/dev/null
    fi
    umount -R "$T"/docker 2>/dev/null
    grep -o " $T[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
    rm -rf "$T"
}
command -v dockerd >/dev/null || { echo "dockerd is needed for the comparison: apt-get install -y docker.io (then: systemctl disable --now docker containerd, if systemd runs)" >&2; exit 1; }
echo "building berth (release)..." >&2
(cd "$HERE" && CARGO_TARGET_DIR=$TARGET cargo build -q --release -j2 -p berth -p berthd -p berth-shim)
BERTH=$TARGET/release/berth
trap cleanup EXIT
# the slim supervisor linked statically (static-pie): no ld.so and no shared libc
# mapped per container; cargo cannot set this per package, so it is built on its own
(cd "$HERE" && CARGO_TARGET_DIR=$TARGET/static-shim cargo rustc -q --release -j2 -p berth-shim \
    --bin berth-shim -- -C target-feature=+crt-static)
cp "$TARGET/static-shim/release/berth-shim" "$T/berth-shim"
sync "$T/berth-shim" # a just-written binary's page-cache pages would count as dirty
export BERTH_SHIM_BIN=$T/berth-shim

# the image: a busybox-static rootfs imported into both
mkdir -p "$T/rootfs/bin" "$T/rootfs/etc"
cp "$(command -v busybox)" "$T/rootfs/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$T/rootfs/bin/$a"; done
tar -C "$T/rootfs" -cf "$T/rootfs.tar" .
"$BERTH" image import --change 'ENV PATH=/bin' "$T/rootfs.tar" bench/busybox:1 >/dev/null
"$BERTH" version >/dev/null 2>&1 # starts berthd for this data root
BERTHD_SOCK=unix://$T/berth/berthd.sock

dockerd --data-root "$T/docker" --exec-root "$T/docker-exec" -H "unix://$T/docker.sock" \
    --pidfile "$T/docker.pid" --iptables=false --ip6tables=false --bridge=none >"$T/dockerd.log" 2>&1 &
DPID=$!
export DOCKER_HOST=unix://$T/docker.sock
for _ in $(seq 1 300); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
docker import --change 'ENV PATH=/bin' "$T/rootfs.tar" bench/busybox:1 >/dev/null

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
us() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
on_berthd() { DOCKER_HOST=$BERTHD_SOCK "$@"; }

# 1. run --rm true
B=(); D=(); C=()
on_berthd docker run --rm --network none bench/busybox:1 true; docker run --rm --network none bench/busybox:1 true
for i in $(seq 1 "$RUNS"); do
    if (( i % 2 )); then
        B+=("$(us on_berthd docker run --rm --network none bench/busybox:1 true)")
        D+=("$(us docker run --rm --network none bench/busybox:1 true)")
    else
        D+=("$(us docker run --rm --network none bench/busybox:1 true)")
        B+=("$(us on_berthd docker run --rm --network none bench/busybox:1 true)")
    fi
    C+=("$(us "$BERTH" run --rm --network none bench/busybox:1 true)")
done
mb=$(median "${B[@]}"); md=$(median "${D[@]}"); mc=$(median "${C[@]}")
printf 'run --rm true (docker CLI)  berthd %8.2f ms   dockerd %8.2f ms   ratio %.3f   (medians of %s alternating runs)\n' \
    "$(echo "$mb/1000" | bc -l)" "$(echo "$md/1000" | bc -l)" "$(echo "$mb/$md" | bc -l)" "$RUNS"
printf 'run --rm true (berth CLI)   berth  %8.2f ms   ratio to docker %.3f\n' "$(echo "$mc/1000" | bc -l)" "$(echo "$mc/$md" | bc -l)"

# memory probes (kB)
pss() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
children() { cat /proc/"$1"/task/*/children 2>/dev/null; }
sum() { local t=0 p; for p in "$@"; do t=$(( t + $($F "$p") )); done; echo $t; }
total() { F=$1; shift; sum "$@"; }

# 2. idle daemons
berthd=$(cat "$T/berth/berthd.pid")
dockerd_pid=$DPID
containerd_pid=$(pgrep -f "containerd --config $T/docker-exec" | head -1)
printf 'idle daemon RSS   berthd %6d kB   dockerd+containerd %6d kB   ratio %.3f\n' \
    "$(rss $berthd)" "$(( $(rss $dockerd_pid) + $(rss $containerd_pid) ))" \
    "$(echo "$(rss $berthd)/($(rss $dockerd_pid)+$(rss $containerd_pid))" | bc -l)"
printf 'idle daemon PSS   berthd %6d kB   dockerd+containerd %6d kB\n' \
    "$(pss $berthd)" "$(( $(pss $dockerd_pid) + $(pss $containerd_pid) ))"

# 3 and 4. N idle containers
echo "starting $N sleeping containers on each..." >&2
for i in $(seq 1 "$N"); do
    on_berthd docker run -d --name "bb$i" --network none bench/busybox:1 sleep 100000 >/dev/null
    docker run -d --name "bb$i" --network none bench/busybox:1 sleep 100000 >/dev/null
done
sleep 2
bshims=$(pgrep -f "berth-shim --id .*--log $T/" || true)
dshims=$(pgrep -f "containerd-shim-runc-v2 .*$T/" || true)
bkids=$(for p in $bshims; do children "$p"; done)
dkids=$(for p in $dshims; do children "$p"; done)
nb=$(echo $bshims | wc -w); nd=$(echo $dshims | wc -w)
mr() { local a=(); local p; for p in "$@"; do a+=("$($F "$p")"); done; median "${a[@]}"; }
F=rss; rb=$(mr $bshims); rd=$(mr $dshims)
F=pss; pb=$(mr $bshims); pd=$(mr $dshims)
printf 'supervisor RSS    berth-shim %6.0f kB   containerd-shim %6.0f kB   ratio %.3f   (medians over %d / %d)\n' "$rb" "$rd" "$(echo "$rb/$rd" | bc -l)" "$nb" "$nd"
printf 'supervisor PSS    berth-shim %6.0f kB   containerd-shim %6.0f kB   ratio %.3f\n' "$pb" "$pd" "$(echo "$pb/$pd" | bc -l)"
tb=$(( $(total pss $berthd) + $(total pss $bshims) + $(total pss $bkids) ))
td=$(( $(total pss $dockerd_pid $containerd_pid) + $(total pss $dshims) + $(total pss $dkids) ))
printf '%d idle containers, total PSS (daemons + supervisors + containers)   berth %7d kB   docker %7d kB   ratio %.3f\n' \
    "$N" "$tb" "$td" "$(echo "$tb/$td" | bc -l)"
printf '  of which daemons   berth %7d kB   docker %7d kB;  supervisors  berth %7d kB   docker %7d kB\n' \
    "$(total pss $berthd)" "$(total pss $dockerd_pid $containerd_pid)" "$(total pss $bshims)" "$(total pss $dshims)"
