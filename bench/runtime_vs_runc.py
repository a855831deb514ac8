#!/usr/bin/env python3
"""Side-by-side: berth-runtime vs runc on the same busybox bundle running /bin/true.

Alternates the two tools run by run, prints medians of `run`, and of `create`,
`start`, `delete` measured separately, and the berth/runc ratios.
Usage: bench/runtime_vs_runc.py [--runs N] [--berth PATH] [--runc PATH]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

def sh(cmd, **kw):
    # the container inherits stdio: never give it a pipe we would wait on
    return subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)

def make_bundle(d, berth):
    rootfs = os.path.join(d, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    for sub in ("proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(rootfs, sub))
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin/busybox"))
    os.symlink("busybox", os.path.join(rootfs, "bin/true"))
    os.symlink("busybox", os.path.join(rootfs, "bin/sleep"))
    sh([berth, "spec", "--bundle", d])
    p = os.path.join(d, "config.json")
    c = json.load(open(p))
    c["process"]["terminal"] = False
    c["process"]["args"] = ["/bin/true"]
    json.dump(c, open(p, "w"))

def timed(cmd):
    t = time.perf_counter()
    sh(cmd)
    return (time.perf_counter() - t) * 1000

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--berth", default=shutil.which("berth-runtime") or "target/release/berth-runtime")
    ap.add_argument("--runc", default=shutil.which("runc") or "runc")
    a = ap.parse_args()
    if not shutil.which(a.runc):
        sys.exit("runc is needed for the comparison: apt-get install -y runc")
    # state roots on /run (tmpfs), where both tools keep them by default
    work = tempfile.mkdtemp(prefix="berth-bench-", dir="/run")
    try:
        bundle = os.path.join(work, "bundle")
        make_bundle(bundle, a.berth)
        tools = {"berth": [a.berth, "--root", os.path.join(work, "berth-state")],
                 "runc": [a.runc, "--root", os.path.join(work, "runc-state")]}
        res = {t: {"run": [], "create": [], "start": [], "delete": []} for t in tools}
        # warm up page cache and binaries
        for t, base in tools.items():
            sh(base + ["run", "--bundle", bundle, f"warm-{t}"])
        for i in range(a.runs):
            for t, base in (list(tools.items()) if i % 2 == 0 else list(reversed(list(tools.items())))):
                cid = f"b{i}-{t}"
                res[t]["run"].append(timed(base + ["run", "--bundle", bundle, cid]))
                cid = f"c{i}-{t}"
                res[t]["create"].append(timed(base + ["create", "--bundle", bundle, cid]))
                res[t]["start"].append(timed(base + ["start", cid]))
                time.sleep(0.005)  # let /bin/true exit so delete measures cleanup, not waiting
                res[t]["delete"].append(timed(base + ["delete", "--force", cid]))
        print(f"{'phase':<8} {'berth ms':>10} {'runc ms':>10} {'ratio':>7}   (medians of {a.runs} alternating runs)")
        for ph in ("run", "create", "start", "delete"):
            b = statistics.median(res["berth"][ph]); r = statistics.median(res["runc"][ph])
            print(f"{ph:<8} {b:>10.2f} {r:>10.2f} {b / r:>7.2f}")
    finally:
        for st in ("berth-state", "runc-state"):
            d = os.path.join(work, st)
            if os.path.isdir(d):
                for cid in os.listdir(d):
                    tool = a.berth if st.startswith("berth") else a.runc
                    subprocess.run([tool, "--root", d, "delete", "--force", cid], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
