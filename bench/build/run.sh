#!/bin/bash
# Build benchmark: berth vs Debian's docker.io (dockerd 20.10 with BuildKit) on one
# 3-stage Dockerfile: two independent stages that COPY sources and RUN a shell step
# each, and a final stage that COPYs from both. Both tools get the same busybox-static
# rootfs as their base image (`docker import` / `berth image import`).
#
# Three cases, RUNS times each (default 5), medians and berth/docker ratios:
#   cold     every step executed (--no-cache), base image present
#   warm     one source file of one stage changed, everything else cached
#   nochange nothing changed: every step a cache hit
#
# Cold builds use --no-cache rather than emptying the caches: deleting a data
# root (or `docker builder prune`) right before a timed build makes ext4's
# inode allocator skip the just-freed inodes (`recently_deleted`), which
# dominated the figures of whichever tool deleted last.
#
# dockerd is started here on a private socket and data root, and berthd by the berth CLI
# for its private data root; both are stopped on exit.
# Needs root and the packages docker.io, busybox-static, bc.
# Usage: bench/build/run.sh [runs]   (BERTH=path/to/berth to skip the cargo build)
# MODE=lib times the builder library alone (crates/build/examples/build.rs, what
# `berth image build` ran before it went through berthd); MODE=cli (default) the
# CLI through the daemon, context transfer included.
set -euo pipefail
RUNS=${1:-5}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-/work/target-build}
T=$(mktemp -d /tmp/berth-bench-build.XXXXXX)
DOCKER=/usr/bin/docker # docker.io's 20.10 client: BuildKit built in, no buildx plugin needed
PIDS=()
cleanup() {
    # the berth daemon the CLI started for this data root
    if [ -f "$T/berth/berthd.pid" ]; then
        bp=$(cat "$T/berth/berthd.pid")
        kill "$bp" 2>/dev/null || true
        for _ in $(seq 1 100); do [ -d "/proc/$bp" ] || break; sleep 0.05; done
        kill -9 "$bp" 2>/dev/null || true
    fi
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    # what dockerd's containerd left mounted
    # (`|| true`: with pipefail, a grep that finds nothing would end the cleanup here)
    { grep -o " $T[^ ]*" /proc/self/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    for _ in 1 2 3 4 5; do rm -rf "$T" 2>/dev/null && break; sleep 1; done
}
trap cleanup EXIT
for t in dockerd "$DOCKER" busybox bc; do
    command -v "$t" >/dev/null || { echo "missing $t: apt-get install docker.io busybox-static bc" >&2; exit 1; }
done

if [ -z "${BERTH:-}" ]; then
    echo "building berth and berthd (release)..." >&2
    (cd "$HERE" && CARGO_TARGET_DIR=$TARGET cargo build -q --release -p berth -p berthd)
    BERTH=$TARGET/release/berth
fi
# The CLI builds through berthd (started on demand next to the CLI, one per data
# root, on <data root>/berthd.sock); RUN containers' state under $T too.
export BERTH_RUNTIME_ROOT=$T/berth-runtime
unset BERTH_HOST

# The base image: busybox-static with every applet linked.
mkdir -p "$T/rootfs"/{bin,etc,proc,sys,dev,tmp,root}
cp /bin/busybox "$T/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$T/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$T/rootfs/etc/passwd"
printf 'root:x:0:\n' > "$T/rootfs/etc/group"
tar -C "$T/rootfs" -cf "$T/rootfs.tar" .

# The context: two source trees of 300 small files each, plus unrelated files.
CTX=$T/ctx
mkdir -p "$CTX/gen" "$CTX/lib" "$CTX/docs"
for i in $(seq 1 300); do
    seq "$i" $((i + 400)) > "$CTX/gen/g$i.txt"
    seq $((i * 3)) $((i * 3 + 200)) > "$CTX/lib/l$i.txt"
done
for i in $(seq 1 50); do seq 1 100 > "$CTX/docs/d$i.md"; done
cat > "$CTX/Dockerfile" <<'EOF'
FROM bench/base:1 AS gen
WORKDIR /src/gen
COPY gen/ ./
RUN for f in *.txt; do md5sum "$f"; done > /gen.sum && cat *.txt | gzip > /gen.gz

FROM bench/base:1 AS lib
WORKDIR /src/lib
COPY lib/ ./
RUN sort -n *.txt | uniq -c > /lib.count && wc -l /lib.count

FROM bench/base:1
COPY --from=gen /gen.sum /gen.gz /out/
COPY --from=lib /lib.count /out/
ENV APP=bench
CMD ["cat", "/out/gen.sum"]
EOF
printf 'docs\n' > "$CTX/.dockerignore"

dockerd --data-root "$T/docker" --exec-root "$T/docker-exec" -H "unix://$T/docker.sock" \
    --pidfile "$T/docker.pid" --iptables=false --ip6tables=false --bridge=none >"$T/dockerd.log" 2>&1 &
PIDS+=($!)
export DOCKER_HOST=unix://$T/docker.sock DOCKER_BUILDKIT=1
for _ in $(seq 1 300); do $DOCKER version >/dev/null 2>&1 && break; sleep 0.1; done
$DOCKER version >/dev/null || { echo "dockerd did not start; see $T/dockerd.log" >&2; exit 1; }
$DOCKER import "$T/rootfs.tar" bench/base:1 >/dev/null

B="$BERTH --data-root $T/berth"
$B image import "$T/rootfs.tar" bench/base:1 >/dev/null
if [ "${MODE:-cli}" = lib ]; then
    (cd "$HERE" && CARGO_TARGET_DIR=$TARGET cargo build -q --release -p berth-build --example build)
    berth_build() { "$TARGET/release/examples/build" "$T/berth" "$CTX" bench/out:1 quiet "$@"; }
else
    berth_build() { $B image build -q -t bench/out:1 "$@" "$CTX"; }
fi
# dockerd runs without a bridge here; berth's RUN has no network by default either.
docker_build() { $DOCKER build -q --network=none -t bench/out:1 "$@" "$CTX"; }

now() { date +%s.%N; }
declare -A TIMES
timed() { # name command...
    local name=$1; shift
    local s e; s=$(now); "$@" >/dev/null; e=$(now)
    TIMES[$name]+="$(echo "$e - $s" | bc) "
}
touch_source() { echo "changed $1" >> "$CTX/lib/l7.txt"; }

# One untimed round first so page cache and lazily created state are warm for both.
berth_build >/dev/null
docker_build >/dev/null
for r in $(seq 1 "$RUNS"); do
    timed berth-cold berth_build --no-cache
    timed docker-cold docker_build --no-cache
    touch_source "$r"
    timed berth-warm berth_build
    timed docker-warm docker_build
    timed berth-nochange berth_build
    timed docker-nochange docker_build
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "3-stage Dockerfile, 600 source files; berth mode ${MODE:-cli}; $RUNS runs per case; load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %-10s %-10s %-7s %-6s %s\n' CASE BERTH DOCKER RATIO GOAL "RUNS (berth | docker)"
status=0
for c in cold:0.90 warm:0.50 nochange:0.30; do
    k=${c%%:*} goal=${c##*:}
    mb=$(echo "${TIMES[berth-$k]}" | median)
    md=$(echo "${TIMES[docker-$k]}" | median)
    ratio=$(echo "$mb / $md" | bc -l)
    ok=$(echo "$ratio <= $goal" | bc -l)
    [ "$ok" = 1 ] || status=1
    printf '%-9s %-10.3f %-10.3f %-7.2f %-6s %s| %s\n' "$k" "$mb" "$md" "$ratio" "$goal" "${TIMES[berth-$k]}" "${TIMES[docker-$k]}"
done
exit $status
