#!/usr/bin/env python3
"""What waiting costs berthd: its memory with N clients blocked in `wait` and in
`logs -f` on a running container, its memory with N healthchecked containers against N
without a check (and any health-monitor processes), and how long `wait` takes to
answer after the exit of a container an earlier daemon started.

Needs root and busybox-static. Usage: bench/engine/waiting.py [N] (default 100;
BERTH=target/debug/berth by default, berthd and berth-shim next to it). Compare two
builds by running it with each (BERTH=/path/to/old/berth).
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100
HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(HERE, "..", "..", "target"))
BERTH = os.environ.get("BERTH", os.path.join(TARGET, "debug", "berth"))


def rootfs_tar(d):
    fs = os.path.join(d, "rootfs")
    for sub in ["bin", "etc", "proc", "sys", "dev", "tmp"]:
        os.makedirs(os.path.join(fs, sub))
    shutil.copy("/bin/busybox", os.path.join(fs, "bin", "busybox"))
    out = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout
    for a in out.split():
        if a != "busybox":
            os.symlink("busybox", os.path.join(fs, "bin", a))
    tar = os.path.join(d, "rootfs.tar")
    subprocess.run(["tar", "-C", fs, "-cf", tar, "."], check=True)
    return tar


class Berth:
    def __init__(self, root):
        self.data = os.path.join(root, "data")
        self.env = dict(os.environ, BERTH_RUNTIME_ROOT=os.path.join(root, "runtime"))

    def __call__(self, *args, check=True):
        r = subprocess.run([BERTH, "--data-root", self.data, *args], env=self.env,
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            sys.exit(f"berth {args}: {r.stderr}")
        return r.stdout.strip()

    def pid(self):
        return int(open(os.path.join(self.data, "berthd.pid")).read())

    def sock(self):
        return os.path.join(self.data, "berthd.sock")

    def restart_daemon(self):
        pid = self.pid()
        os.kill(pid, 15)
        while os.path.exists(f"/proc/{pid}"):
            time.sleep(0.02)
        self("version")


def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return b""


def kib(pid, key="Rss"):
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def waiting_clients(b, request):
    """Daemon RSS before and while N clients wait with `request`."""
    pid = b.pid()
    before = kib(pid)
    conns = []
    for _ in range(N):
        s = socket.socket(socket.AF_UNIX)
        s.connect(b.sock())
        s.sendall(request)
        conns.append(s)
    for s in conns:
        s.recv(200)  # the headers come at once
    time.sleep(1)
    during = kib(pid)
    for s in conns:
        s.close()
    time.sleep(1)
    return before, during


def wait_latency(b, runs=5):
    """ms from an adopted container's exit (its FinishedAt) to `wait` returning."""
    out = []
    for i in range(runs):
        name = f"lat{i}"
        b("run", "-d", "--name", name, "bb", "sh", "-c",
          "while [ ! -e /tmp/go ]; do sleep 0.02; done; exit 9")
        b.restart_daemon()
        w = subprocess.Popen([BERTH, "--data-root", b.data, "wait", name], env=b.env,
                             stdout=subprocess.PIPE)
        time.sleep(0.5)
        b("exec", name, "touch", "/tmp/go")
        w.communicate()
        done = time.time()
        fin = b("container", "inspect", "--format", "{{.State.FinishedAt}}", name)
        t = time.mktime(time.strptime(fin[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        t += float("0." + fin[20:29])
        out.append((done - t) * 1000)
        b("rm", name)
    return statistics.median(out)


def main():
    root = tempfile.mkdtemp(prefix="berth-bench-waiting-")
    b = Berth(root)
    try:
        b("image", "import", "-c", 'CMD ["sh"]', rootfs_tar(root), "bb")
        b("run", "-d", "--name", "sl", "bb", "sleep", "100000")
        b.restart_daemon()  # a fresh daemon, the container adopted
        wait = waiting_clients(b, b"POST /containers/sl/wait HTTP/1.1\r\nHost: x\r\n\r\n")
        logs = waiting_clients(
            b, b"GET /containers/sl/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        for what, (before, during) in [("wait", wait), ("logs -f", logs)]:
            print(f"{N} clients in {what}: daemon RSS {before} -> {during} kB, "
                  f"{(during - before) / N:.1f} kB per client")
        print(f"wait after an adopted container's exit: median {wait_latency(b):.0f} ms")
        b("rm", "-f", "sl")
        n = min(N, 10)
        for checked in (False, True):
            b.restart_daemon()
            before = kib(b.pid())
            for i in range(n):
                flags = ["--health-cmd", "true", "--health-interval", "1s"] if checked else []
                b("run", "-d", "--name", f"h{i}", *flags, "bb", "sleep", "100000")
            time.sleep(4)
            mons = [p for p in os.listdir("/proc") if p.isdigit() and
                    b"health-monitor" in cmdline(p)]
            mon = sum(kib(int(p), "Pss") for p in mons)
            print(f"{n} containers {'with' if checked else 'without'} a check: daemon RSS "
                  f"{before} -> {kib(b.pid())} kB; {len(mons)} monitor processes, PSS {mon} kB")
            b("rm", "-f", *[f"h{i}" for i in range(n)])
    finally:
        # every container goes, whatever failed: a leftover would keep its mount
        ids = subprocess.run([BERTH, "--data-root", b.data, "ps", "-aq"], env=b.env,
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run([BERTH, "--data-root", b.data, "rm", "-f", *ids], env=b.env,
                           capture_output=True)
        try:
            os.kill(b.pid(), 15)
        except (OSError, ValueError):
            pass
        time.sleep(1)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
