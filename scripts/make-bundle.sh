#!/bin/sh
# make-bundle.sh DIR [ARGS...]: an OCI bundle with a busybox-static rootfs and a
# default config.json (no terminal) whose process runs ARGS (default: sh).
set -eu
dir=$1; shift
bb=$(command -v busybox || true)
[ -n "$bb" ] && file -L "$bb" 2>/dev/null | grep -q static || bb=/bin/busybox
[ -x "$bb" ] || { echo "make-bundle: busybox-static is missing: apt-get install -y busybox-static" >&2; exit 1; }
mkdir -p "$dir/rootfs/bin" "$dir/rootfs/proc" "$dir/rootfs/sys" "$dir/rootfs/dev" "$dir/rootfs/etc" "$dir/rootfs/tmp"
cp "$bb" "$dir/rootfs/bin/busybox"
for a in $("$bb" --list); do [ "$a" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$a"; done
echo "root:x:0:0:root:/root:/bin/sh" > "$dir/rootfs/etc/passwd"
echo "root:x:0:" > "$dir/rootfs/etc/group"
rm -f "$dir/config.json"
runtime=${BERTH_RUNTIME:-berth-runtime}
"$runtime" spec --bundle "$dir"
if [ $# -gt 0 ]; then
  args=$(printf '%s\n' "$@" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().splitlines()))')
else
  args='["sh"]'
fi
python3 - "$dir/config.json" "$args" <<'PY'
import json, sys
p, args = sys.argv[1], json.loads(sys.argv[2])
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = args
json.dump(c, open(p, "w"), indent=2)
PY
