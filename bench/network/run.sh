#!/bin/bash
# Networking benchmark, side by side with Debian's docker.io on the same busybox image.
#  1. start time networking adds: `run --rm IMG true` on the default bridge versus
#     `--network none`, through berthd (driven by the docker CLI, the API path berth's
#     containers take), alternating, medians; the same for dockerd;
#     and the latency of the start request alone (precise: no exit polling);
#  2. loopback throughput through a published port: a sink in the container
#     (`nc -ll -e dd of=/dev/null`), a sender on the host (python, 1 MiB writes), to
#     127.0.0.1 (berth: its userland proxy; docker: docker-proxy) and to the bridge's
#     gateway address (berth: kernel DNAT; docker without iptables: docker-proxy).
# Needs root, docker.io, python3. dockerd is started here on a private socket, data root
# and bridge name, with --iptables=false (so it leaves no rules behind), and stopped at
# the end. Usage: bench/network/run.sh [runs] [MiB per transfer]
set -euo pipefail
RUNS=${1:-20}
MIB=${2:-1024}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HERE/target}
T=$(mktemp -d /tmp/berth-test-bench-net.XXXXXX)
DROOT=$T/berth
DSOCK=unix://$T/docker.sock
DPID=
BR=btbench0
cleanup() {
    set +e
    if [ -n "${BERTH:-}" ]; then
        for c in $(DOCKER_HOST=unix://$DROOT/berthd.sock docker ps -aq 2>/dev/null); do
            DOCKER_HOST=unix://$DROOT/berthd.sock docker rm -f "$c" >/dev/null 2>&1
        done
        [ -f "$DROOT/berthd.pid" ] && kill "$(cat "$DROOT/berthd.pid")" 2>/dev/null && sleep 1
    fi
    if [ -n "$DPID" ]; then
        DOCKER_HOST=$DSOCK docker rm -f $(DOCKER_HOST=$DSOCK docker ps -aq) >/dev/null 2>&1
        kill "$DPID"; wait "$DPID" 2>/dev/null
    fi
    ip link del "$BR" 2>/dev/null
    umount -R "$T"/docker 2>/dev/null
    for m in $(grep -o " $T[^ ]*" /proc/self/mountinfo | sort -r); do umount -l "$m" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
for t in dockerd python3; do
    command -v $t >/dev/null || { echo "$t is needed: apt-get install -y docker.io python3" >&2; exit 1; }
done
echo "building berth and berthd (release)..." >&2
(cd "$HERE" && CARGO_TARGET_DIR=$TARGET cargo build -q --release -j2 -p berth -p berthd)
BERTH=$TARGET/release/berth
export BERTH_RUNTIME_ROOT=$T/berth-rt

mkdir -p "$T/rootfs/bin" "$T/rootfs/etc"
cp "$(command -v busybox)" "$T/rootfs/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$T/rootfs/bin/$a"; done
tar -C "$T/rootfs" -cf "$T/rootfs.tar" .
"$BERTH" --data-root "$DROOT" image import --change 'ENV PATH=/bin' "$T/rootfs.tar" bench/busybox:1 >/dev/null
"$BERTH" --data-root "$DROOT" network ls >/dev/null 2>&1 # starts berthd
BSOCK=unix://$DROOT/berthd.sock

ip link add "$BR" type bridge && ip addr add 10.233.200.1/24 dev "$BR" && ip link set "$BR" up
dockerd --data-root "$T/docker" --exec-root "$T/docker-exec" -H "unix://$T/docker.sock" \
    --pidfile "$T/docker.pid" --iptables=false --ip6tables=false --bridge="$BR" \
    >"$T/dockerd.log" 2>&1 &
DPID=$!
for _ in $(seq 1 300); do DOCKER_HOST=$DSOCK docker version >/dev/null 2>&1 && break; sleep 0.1; done
DOCKER_HOST=$DSOCK docker import "$T/rootfs.tar" bench/busybox:1 >/dev/null

ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { DOCKER_HOST=$1 docker run --rm --network "$2" bench/busybox:1 true; }

echo "== start time: run --rm true, bridge vs none ($RUNS runs each, alternating)"
for s in $BSOCK $DSOCK; do run "$s" none; run "$s" bridge; done
BN=(); BB=(); DN=(); DB=()
for i in $(seq 1 "$RUNS"); do
    BN+=("$(ms run "$BSOCK" none)"); BB+=("$(ms run "$BSOCK" bridge)")
    DN+=("$(ms run "$DSOCK" none)"); DB+=("$(ms run "$DSOCK" bridge)")
done
bn=$(median "${BN[@]}"); bb=$(median "${BB[@]}"); dn=$(median "${DN[@]}"); db=$(median "${DB[@]}")
echo "berth:  none ${bn} us  bridge ${bb} us  added $((bb - bn)) us"
echo "docker: none ${dn} us  bridge ${db} us  added $((db - dn)) us"

echo "== start latency: POST /containers/{id}/start (until the program runs), bridge vs none, $RUNS runs each"
python3 - "$DROOT/berthd.sock" "${T}/docker.sock" "$RUNS" <<'PY'
import http.client, json, socket, statistics, sys, time
class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)
def call(sock, method, url, body=None):
    c = Unix(sock)
    c.request(method, url, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data
def start_us(sock, mode):
    st, data = call(sock, "POST", "/v1.41/containers/create",
                    {"Image": "bench/busybox:1", "Cmd": ["sleep", "5"], "HostConfig": {"NetworkMode": mode}})
    cid = json.loads(data)["Id"]
    t = time.perf_counter()
    st, _ = call(sock, "POST", f"/v1.41/containers/{cid}/start")
    us = (time.perf_counter() - t) * 1e6
    call(sock, "DELETE", f"/v1.41/containers/{cid}?force=1")
    assert st in (204, 304), st
    return us
runs = int(sys.argv[3])
for name, sock in (("berth", sys.argv[1]), ("docker", sys.argv[2])):
    start_us(sock, "none"); start_us(sock, "bridge")
    none, bridge = [], []
    for _ in range(runs):
        none.append(start_us(sock, "none")); bridge.append(start_us(sock, "bridge"))
    n, b = statistics.median(none), statistics.median(bridge)
    print(f"{name}: start none {n/1000:.1f} ms  bridge {b/1000:.1f} ms  added {(b-n)/1000:.1f} ms")
PY

echo "== published-port throughput, $MIB MiB per transfer, median of 5"
send() { # host port -> MB/s
    python3 - "$1" "$2" "$MIB" <<'EOF'
import socket, sys, time
host, port, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buf = b"\0" * (1 << 20)
for _ in range(50):
    try:
        s = socket.create_connection((host, port), timeout=5); break
    except OSError:
        time.sleep(0.1)
t = time.time()
for _ in range(mib):
    s.sendall(buf)
s.shutdown(socket.SHUT_WR)
s.settimeout(60)
while s.recv(65536):
    pass
print(int(mib * 1.048576 / (time.time() - t)))
EOF
}
BP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SINK=(bench/busybox:1 nc -ll -p 5001 -e dd of=/dev/null bs=1M)
DOCKER_HOST=$BSOCK docker run -d --name sink -p "$BP:5001" "${SINK[@]}" >/dev/null
DOCKER_HOST=$DSOCK docker run -d --name sink -p "$DP:5001" "${SINK[@]}" >/dev/null
BGW=$("$BERTH" --data-root "$DROOT" network inspect bridge | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["IPAM"]["Config"][0]["Gateway"])')
send 127.0.0.1 "$BP" >/dev/null; send 127.0.0.1 "$DP" >/dev/null
BL=(); DL=(); BG=(); DG=()
for i in 1 2 3 4 5; do
    BL+=("$(send 127.0.0.1 "$BP")"); DL+=("$(send 127.0.0.1 "$DP")")
    BG+=("$(send "$BGW" "$BP")"); DG+=("$(send 10.233.200.1 "$DP")")
done
bl=$(median "${BL[@]}"); dl=$(median "${DL[@]}"); bg=$(median "${BG[@]}"); dg=$(median "${DG[@]}")
echo "127.0.0.1:       berth ${bl} MB/s  docker ${dl} MB/s  ratio $(python3 -c "print(round($bl/$dl,2))")"
echo "bridge address:  berth ${bg} MB/s  docker ${dg} MB/s  ratio $(python3 -c "print(round($bg/$dg,2))")"
