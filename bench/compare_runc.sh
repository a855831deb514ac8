#!/bin/bash
# Behaviour comparison: run the same bundles under berth-runtime and runc and show
# that the container observes the same things. Exits non-zero on any difference.
# Usage: bench/compare_runc.sh [path/to/berth-runtime]
set -euo pipefail
berth=${1:-$(command -v berth-runtime || echo target/release/berth-runtime)}
command -v runc >/dev/null || { echo "runc is needed: apt-get install -y runc" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/berth-compare-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0

# case NAME JQ-FILTER SCRIPT
case_() {
  local name=$1 filter=$2 script=$3
  local b="$work/$name"
  BERTH_RUNTIME=$berth "$here/scripts/make-bundle.sh" "$b" sh -c "$script" >/dev/null
  jq "$filter" "$b/config.json" > "$b/c.json" && mv "$b/c.json" "$b/config.json"
  local out_b out_r rc_b rc_r
  out_b=$("$berth" --root "$work/state-b" run --bundle "$b" "cmp-$name" 2>&1) && rc_b=0 || rc_b=$?
  out_r=$(runc --root "$work/state-r" run --bundle "$b" "cmp-$name" 2>&1) && rc_r=0 || rc_r=$?
  if [ "$out_b" == "$out_r" ] && [ $rc_b == $rc_r ]; then
    printf '%-22s same (exit %s)\n' "$name" "$rc_b"
  else
    printf '%-22s DIFFERENT\n  berth (exit %s): %s\n  runc  (exit %s): %s\n' "$name" "$rc_b" "$out_b" "$rc_r" "$out_r"
    fail=1
  fi
}

case_ pid-host-net '.hostname="cmp"' 'echo $$; hostname; ls /sys/class/net'
case_ capabilities '.' 'grep -E "^Cap(Eff|Prm|Bnd|Inh|Amb)" /proc/self/status'
case_ no-caps-mount '.' 'mount -t tmpfs none /tmp 2>/dev/null; echo $?'
case_ readonly-root '.root.readonly=true' 'touch /x 2>/dev/null; echo $?'
case_ masked-paths '.' 'exec 2>/dev/null; wc -c </proc/kcore; ls /proc/acpi | wc -l; echo 1 >/proc/sys/kernel/ns_last_pid; echo $?'
case_ memory-pids '.linux.resources.memory.limit=67108864 | .linux.resources.pids.limit=20' \
  'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max'
case_ seccomp-errno '.linux.seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}' \
  'mkdir /tmp/x 2>&1; echo $?'
case_ user-cwd-env '.process.user={"uid":1000,"gid":1000} | .process.cwd="/tmp" | .process.env+=["FOO=bar"]' \
  'id -u; id -g; pwd; echo $FOO'
case_ rlimit-nofile '.process.rlimits=[{"type":"RLIMIT_NOFILE","hard":1000,"soft":900}]' 'ulimit -n; ulimit -Hn'
case_ no-new-privs '.process.noNewPrivileges=true' 'grep NoNewPrivs /proc/self/status'
case_ exit-status '.' 'exit 42'
case_ signals '.' 'grep -E "^Sig(Ign|Blk)" /proc/self/status'
case_ devices '.' 'ls /dev | sort | tr "\n" " "'
case_ mounts '.' 'cut -d" " -f2,3 /proc/mounts | grep -v "^/sys/fs/cgroup/" | sort | tr "\n" ";"'
exit $fail
