#!/usr/bin/env python3
"""`berth run --rm IMG true` (through berthd, which the CLI starts on demand; on berth's
default bridge and with `--network none`) against `docker run --rm --network none IMG
true` on a private dockerd (started without a bridge, so as not to touch the host's
iptables), and optionally an
older berth binary (BEFORE=/path/to/old/berth), alternating, medians and ratios.

Needs root, busybox-static and docker.io (dockerd is started here on a private
socket and data root with no bridge and no iptables, and stopped at the end).
Usage: bench/containers/run_rm.py [runs] (BERTH=target/release/berth by default)
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(HERE, "..", "..", "target"))
BERTH = os.environ.get("BERTH", os.path.join(TARGET, "release", "berth"))
BEFORE = os.environ.get("BEFORE")


def rootfs_tar(d):
    fs = os.path.join(d, "rootfs")
    for sub in ["bin", "etc", "proc", "sys", "dev", "tmp"]:
        os.makedirs(os.path.join(fs, sub))
    shutil.copy("/bin/busybox", os.path.join(fs, "bin", "busybox"))
    for a in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
        if a != "busybox":
            os.symlink("busybox", os.path.join(fs, "bin", a))
    with open(os.path.join(fs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    tar = os.path.join(d, "rootfs.tar")
    subprocess.run(["tar", "-C", fs, "-cf", tar, "."], check=True)
    return tar


def berth_cmd(binary, root):
    env = {**os.environ, "BERTH_RUNTIME_ROOT": os.path.join(root, "rt")}
    env.pop("BERTH_HOST", None)
    return [binary, "--data-root", os.path.join(root, "data")], env


def main():
    t = tempfile.mkdtemp(prefix="berth-bench-run-rm-")
    dockerd = None
    cmds = {}
    try:
        tar = rootfs_tar(t)
        for name, binary in [("berth", BERTH), ("berth-before", BEFORE)]:
            if not binary:
                continue
            base, env = berth_cmd(binary, os.path.join(t, name))
            subprocess.run(base + ["image", "import", "-c", 'CMD ["sh"]', tar, "bench:1"],
                           env=env, check=True, capture_output=True)
            cmds[name] = (base + ["run", "--rm", "bench:1", "true"], env)
            if name == "berth":
                # the same network as the docker side below (which has no bridge here)
                cmds["berth-none"] = (base + ["run", "--rm", "--network", "none", "bench:1", "true"], env)
        if shutil.which("dockerd"):
            sock = os.path.join(t, "docker.sock")
            dockerd = subprocess.Popen(
                ["dockerd", "--data-root", os.path.join(t, "docker"), "--exec-root",
                 os.path.join(t, "dexec"), "--host", "unix://" + sock, "--pidfile",
                 os.path.join(t, "docker.pid"), "--bridge", "none", "--iptables=false",
                 "--ip6tables=false"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            denv = {**os.environ, "DOCKER_HOST": "unix://" + sock,
                    "DOCKER_CONFIG": os.path.join(t, "dcfg")}
            for _ in range(300):
                if subprocess.run(["docker", "version"], env=denv, capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            subprocess.run(["docker", "import", "-c", 'CMD ["sh"]', tar, "bench:1"],
                           env=denv, check=True, capture_output=True)
            cmds["docker"] = (["docker", "run", "--rm", "--network", "none", "bench:1", "true"], denv)
        for c, e in cmds.values():  # warm up (berth starts its daemon here)
            subprocess.run(c, env=e, capture_output=True)
        times = {k: [] for k in cmds}
        for _ in range(RUNS):
            for k, (c, e) in cmds.items():
                s = time.perf_counter()
                r = subprocess.run(c, env=e, capture_output=True)
                times[k].append(time.perf_counter() - s)
                if r.returncode:
                    print(k, "failed:", r.stderr.decode().strip(), file=sys.stderr)
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in times.items():
            print(f"{k:13} median {med[k] * 1000:7.1f} ms   min {min(v) * 1000:7.1f} ms   ({RUNS} runs)")
        if "docker" in med:
            print(f"berth (default bridge) / docker (--network none) = {med['berth'] / med['docker']:.3f}")
            print(f"berth-none / docker, both --network none = {med['berth-none'] / med['docker']:.3f}")
        if "berth-before" in med:
            print(f"berth / berth-before = {med['berth'] / med['berth-before']:.2f}")
    finally:
        for name in ["berth", "berth-before"]:
            pid = os.path.join(t, name, "data", "berthd.pid")
            if os.path.exists(pid):
                subprocess.run(["kill", open(pid).read().strip()])
        if dockerd:
            dockerd.terminate()
            dockerd.wait()
        time.sleep(0.5)
        subprocess.run(["umount", "-R", os.path.join(t, "docker")], capture_output=True)
        shutil.rmtree(t, ignore_errors=True)


if __name__ == "__main__":
    main()
