#!/bin/bash
# Demo of the seed commands on a locally built image (run as root on Debian 12):
# build berth, make a busybox base image, build someapp:1.0 from a Dockerfile, then
# run it detached with a one-letter name, list it, exec into it, remove it, and run it
# interactively. Also shows berth-runtime on a plain OCI bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "== building berth (release)"
cargo build --release --quiet -p berth -p berthd -p berth-shim -p berth-runtime
# The slim supervisor (berth-shim, one per running container) linked statically
# (static-pie): no ld.so and no shared libc mapped per container, which keeps its RSS
# at a tenth of containerd-shim's. Cargo cannot set crt-static for one package of a
# workspace (RUSTFLAGS would reach the proc-macros too), so it is built on its own
# and put in place of the dynamic one next to berth.
out="${CARGO_TARGET_DIR:-$PWD/target}"
cargo rustc --release --quiet -p berth-shim --bin berth-shim --target-dir "$out/static-shim" \
  -- -C target-feature=+crt-static
install -m 0755 "$out/static-shim/release/berth-shim" "$out/release/berth-shim"
export PATH="$out/release:$PATH"
# berth starts its daemon (berthd) on demand; a daemon left by an earlier build would
# serve this demo with old code, so stop it (its containers keep running and are
# adopted by the new one).
if [ -f /var/lib/berth/berthd.pid ] && kill "$(cat /var/lib/berth/berthd.pid)" 2>/dev/null; then
  echo "== stopped the berthd of an earlier build; berth starts the new one"
  while [ -S /run/berth/berth.sock ] && kill -0 "$(cat /var/lib/berth/berthd.pid)" 2>/dev/null; do sleep 0.1; done
fi
work=$(mktemp -d /tmp/berth-demo-XXXXXX)
cleanup() { berth container rm --force X >/dev/null 2>&1 || true; berth-runtime delete --force demo >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
berth container rm --force X >/dev/null 2>&1 || true   # left over from an earlier demo

echo "== a base image from Debian's busybox-static: berth image import"
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"; done
echo "root:x:0:0:root:/root:/bin/sh" > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
berth image import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["sh"]' "$work/rootfs.tar" busybox:local

echo "== berth image build -t someapp:1.0 ."
mkdir -p "$work/app"
cat > "$work/app/Dockerfile" <<'DOCKERFILE'
FROM busybox:local
COPY hello.sh /usr/local/bin/hello
RUN chmod +x /usr/local/bin/hello && echo "built at step RUN" > /built
ENV GREETING="hello from someapp"
CMD ["hello"]
DOCKERFILE
printf '#!/bin/sh\necho "$GREETING (pid $$, host $(hostname))"\ncat /built\n' > "$work/app/hello.sh"
(cd "$work/app" && berth image build -t someapp:1.0 .)
berth images

echo "== berth container run --detach --name X someapp:1.0 sleep 300"
berth container run --detach --name X someapp:1.0 sleep 300
berth ps
echo "== berth exec X hello"
berth exec X hello
echo "== berth container rm --force X"
berth container rm --force X
berth ps -a

echo "== berth container run -ti someapp:1.0"
if [ -t 0 ]; then
  berth container run -ti --rm someapp:1.0
else
  # no terminal here: give it one with script(1)
  script -qec "berth container run -ti --rm someapp:1.0" /dev/null
fi

echo "== berth-runtime on a plain OCI bundle"
BERTH_RUNTIME=berth-runtime scripts/make-bundle.sh "$work/bundle" sh -c \
  'echo "runtime: pid $$ on $(hostname), network: $(ls /sys/class/net)"'
berth-runtime run --bundle "$work/bundle" demo
echo "== done (berthd keeps running, as dockerd does: kill \$(cat /var/lib/berth/berthd.pid) stops it)"
