//! End-to-end tests as root: real namespaces, mounts and cgroups on a busybox rootfs.
//! Each asserts the effect from inside the container.

mod common;
use common::*;
use serde_json::json;

fn sh(script: &str) -> Ct {
    Ct::new(&["sh", "-c", script])
}

#[test]
fn pid_one_hostname_and_only_loopback() {
    let ct = sh("echo pid=$$; hostname; ls /sys/class/net");
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "pid=1\nberth-test\nlo\n");
}

#[test]
fn sigpipe_is_not_ignored_and_nothing_is_blocked() {
    // the Rust runtime ignores SIGPIPE; the container's program must not inherit that
    let ct = sh("grep -E '^Sig(Ign|Blk)' /proc/self/status");
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    for l in out.lines() {
        let mask =
            u64::from_str_radix(l.split_whitespace().nth(1).expect("mask"), 16).expect("hex");
        assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
        if l.starts_with("SigBlk") {
            assert_eq!(mask, 0, "{out}");
        }
    }
}

#[test]
fn new_session_keyring_unless_asked_not_to() {
    let mut ct = sh("true");
    let other = format!("{}-nk", ct.id);
    let script = format!(
        "grep -c '_ses.{}: ' /proc/keys; grep -c '_ses.{other}: ' /proc/keys; true",
        ct.id
    );
    ct.config["process"]["args"] = json!(["sh", "-c", script]);
    ct.config["linux"]["maskedPaths"] = json!([]);
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "1\n0\n",
        "the container should be in its own _ses.<id> keyring"
    );
    // the same bundle under another id, asked to keep the caller's keyring
    let b = ct.bundle();
    let o = ct.rt(&[
        "run",
        "--no-new-keyring",
        "--bundle",
        b.to_str().expect("utf8"),
        &other,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // (the first container's keyring may linger until the kernel's key gc runs)
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().nth(1), Some("0"), "{out}");
}

#[test]
fn foreground_run_forwards_signals_to_the_container() {
    let ct = sh("trap 'echo got-usr1; exit 5' USR1; echo ready; while :; do sleep 0.05; done");
    ct.write();
    let b = ct.bundle();
    let mut c = ct.cmd(&["run", "--bundle", b.to_str().expect("utf8"), &ct.id]);
    c.stdout(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 6];
        let _ = std::io::Read::read_exact(&mut out, &mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        let _ = tx.send(rest);
    });
    let limit = std::time::Duration::from_secs(20);
    assert_eq!(
        rx.recv_timeout(limit).expect("container never said ready"),
        "ready\n"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .expect("kill");
    // (on failure, Ct's drop removes the container, which ends the reader)
    let rest = rx.recv_timeout(limit).expect("no output after the signal");
    let st = child.wait().expect("wait");
    assert!(rest.contains("got-usr1"), "{rest}");
    assert_eq!(st.code(), Some(5));
}

#[test]
fn personality_linux32() {
    let mut ct = sh("uname -m");
    ct.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "i686");
}

#[test]
fn parallel_runs_do_not_race_on_the_shared_parent_cgroup() {
    // each delete may remove the empty "berth" parent while another create makes it
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..5 {
                    let (code, _, err) = sh("true").run();
                    assert_eq!(code, 0, "{err}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a parallel run failed");
    }
}

#[test]
fn exit_status_is_the_container_s() {
    let ct = sh("exit 42");
    assert_eq!(ct.run().0, 42);
}

#[test]
fn host_processes_are_invisible() {
    let ct = sh("ls /proc | grep -c '^[0-9]'");
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    // sh and the grep/ls pipeline only: a handful, never the host's hundreds
    let n: u32 = out.trim().parse().expect("count");
    assert!(n <= 4, "saw {n} processes");
}

#[test]
fn capabilities_are_exactly_the_spec_s() {
    let mut ct = sh("grep -E '^Cap(Eff|Bnd|Prm)' /proc/self/status");
    for set in ["bounding", "effective", "permitted"] {
        ct.config["process"]["capabilities"][set] = json!(["CAP_CHOWN", "CAP_KILL"]);
    }
    ct.config["process"]["capabilities"]["inheritable"] = json!([]);
    ct.config["process"]["capabilities"]["ambient"] = json!([]);
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    // CAP_CHOWN = bit 0, CAP_KILL = bit 5
    for l in out.lines() {
        assert!(l.ends_with("0000000000000021"), "{out}");
    }
}

#[test]
fn mount_is_refused_without_cap_sys_admin() {
    let ct = sh("mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo MOUNTED");
    let (code, out, _) = ct.run();
    assert_ne!(code, 0);
    assert!(!out.contains("MOUNTED"));
}

#[test]
fn readonly_rootfs_refuses_writes_but_tmpfs_works() {
    let mut ct =
        sh("touch /newfile 2>/dev/null && echo ROOTWRITE; mkdir -p /dev/shm/x && echo SHMOK");
    ct.config["root"]["readonly"] = json!(true);
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("ROOTWRITE"), "{out}");
    assert!(out.contains("SHMOK"), "{out}");
    assert!(!ct.rootfs().join("newfile").exists());
}

#[test]
fn masked_and_readonly_paths() {
    let ct = sh("wc -c < /proc/kcore; echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo SYSWRITE; ls /proc/acpi 2>/dev/null | wc -l");
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().map(|s| s.trim()),
        Some("0"),
        "/proc/kcore not masked: {out}"
    );
    assert!(!out.contains("SYSWRITE"), "/proc/sys writable: {out}");
    assert_eq!(
        lines.last().map(|s| s.trim()),
        Some("0"),
        "/proc/acpi not masked: {out}"
    );
}

#[test]
fn memory_and_pids_limits_are_in_the_container_cgroup() {
    let mut ct = sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max");
    ct.config["linux"]["resources"]["memory"] = json!({"limit": 67108864});
    ct.config["linux"]["resources"]["pids"] = json!({"limit": 20});
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "67108864\n20\n");
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    // count with shell builtins only: once the limit is hit no fork succeeds
    let mut ct = sh("(for i in $(seq 1 30); do sleep 5 & done) 2>/dev/null; read n < /sys/fs/cgroup/pids/pids.current || read n < /sys/fs/cgroup/pids.current; echo $n");
    ct.config["linux"]["resources"]["pids"] = json!({"limit": 10});
    let (_, out, _) = ct.run();
    let n: u32 = out.trim().parse().unwrap_or(99);
    assert!(
        (2..=10).contains(&n),
        "{n} processes despite pids limit 10 ({out:?})"
    );
}

#[test]
fn seccomp_denied_syscall_returns_the_spec_errno() {
    let mut ct = sh("mkdir /tmp/x 2>&1; echo rc=$?");
    ct.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    });
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Function not implemented"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
}

#[test]
fn seccomp_argument_conditions() {
    // personality(0xffffffff) queries; deny only PER_LINUX32 (8) by argument
    let mut ct = sh("setarch linux32 true 2>&1; echo rc=$?; true");
    ct.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
            "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]
    });
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("rc=1") || out.contains("not permitted"),
        "{out}"
    );
}

#[test]
fn terminal_is_a_tty() {
    let mut ct = sh("test -t 0 && test -t 1 && echo IS_A_TTY; tty");
    ct.config["process"]["terminal"] = json!(true);
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("IS_A_TTY"), "{out}");
    assert!(
        out.contains("/dev/pts/0") || out.contains("/dev/console"),
        "{out}"
    );
}

#[test]
fn console_socket_receives_the_pty_master() {
    use std::os::fd::AsRawFd;
    let mut ct = sh("echo over-the-pty");
    ct.config["process"]["terminal"] = json!(true);
    ct.write();
    let sock = ct.dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let b = ct.bundle();
    let handle = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        berth_runtime::tty::recv_fd(conn.as_raw_fd()).expect("fd")
    });
    let o = ct.rt(&[
        "create",
        "--bundle",
        b.to_str().expect("utf8"),
        "--console-socket",
        sock.to_str().expect("utf8"),
        &ct.id,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let master = handle.join().expect("join");
    assert!(ct.rt(&["start", &ct.id]).status.success());
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while let Ok(n) = nix::unistd::read(&master, &mut buf) {
        if n == 0 {
            break;
        }
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
        if got.contains("over-the-pty") {
            break;
        }
    }
    assert!(got.contains("over-the-pty"), "{got:?}");
}

#[test]
fn hooks_run_in_order_with_state_on_stdin() {
    let mut ct = sh("true");
    let log = ct.dir.path().join("hooks");
    std::fs::create_dir_all(&log).expect("mkdir");
    let l = log.join("log");
    let host_hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read s; case \"$s\" in *\\\"id\\\"*) echo {name} >> {};; esac", l.display())]});
    ct.config["hooks"] = json!({
        "prestart": [host_hook("prestart")],
        "createRuntime": [host_hook("createRuntime")],
        "createContainer": [host_hook("createContainer")],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo startContainer >> /hooklog/log"]}],
        "poststart": [host_hook("poststart")],
        "poststop": [host_hook("poststop")]
    });
    ct.config["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/hooklog", "type": "bind", "source": log.to_str(), "options": ["rbind", "rw"]
    }));
    let (code, _, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    let got = std::fs::read_to_string(&l).expect("hook log");
    assert_eq!(
        got,
        "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\npoststop\n"
    );
}

#[test]
fn failing_hook_fails_create_and_leaves_nothing() {
    let mut ct = sh("true");
    ct.config["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    let o = ct.create();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("createRuntime hook"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!ct.root().join(&ct.id).exists());
    assert!(cgroup_dirs(&ct.id).is_empty());
}

#[test]
fn hook_timeout_fails_create() {
    let mut ct = sh("true");
    ct.config["hooks"] =
        json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    let o = ct.create();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("prestart hook") && err.contains("timed out"),
        "{err}"
    );
    assert!(!ct.root().join(&ct.id).exists());
}

#[test]
fn list_and_ps_and_log_file() {
    let ct = sh("sleep 30");
    assert!(ct.create().status.success());
    let l = ct.rt(&["list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&l.stdout).expect("json");
    assert_eq!(v[0]["id"], ct.id.as_str());
    assert_eq!(v[0]["status"], "created");
    let q = ct.rt(&["list", "-q"]);
    assert_eq!(String::from_utf8_lossy(&q.stdout).trim(), ct.id);
    let ps = ct.rt(&["ps", &ct.id]);
    let out = String::from_utf8_lossy(&ps.stdout);
    assert!(out.starts_with("UID") && out.lines().count() == 2, "{out}");
    // errors also go to --log, as JSON with --log-format json
    let log = ct.dir.path().join("runtime.log");
    let o = ct.rt(&[
        "--log",
        log.to_str().expect("utf8"),
        "--log-format",
        "json",
        "kill",
        &ct.id,
        "NOSIG",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&log).expect("log").trim()).expect("json log");
    assert_eq!(line["level"], "error");
    assert!(line["msg"]
        .as_str()
        .expect("msg")
        .contains("unknown signal"));
}

#[test]
fn lifecycle_pause_resume_kill_delete() {
    let ct = sh("trap 'echo got-term; exit 7' TERM; while :; do sleep 0.05; done");
    let o = ct.create();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(ct.state()["status"], "created");
    assert!(ct.rt(&["start", &ct.id]).status.success());
    ct.wait_status("running");
    assert!(ct.rt(&["pause", &ct.id]).status.success());
    assert_eq!(ct.state()["status"], "paused");
    let frozen = cgroup_dirs(&ct.id).iter().any(|d| {
        std::fs::read_to_string(d.join("freezer.state"))
            .map(|s| s.trim() == "FROZEN")
            .unwrap_or(false)
            || std::fs::read_to_string(d.join("cgroup.freeze"))
                .map(|s| s.trim() == "1")
                .unwrap_or(false)
    });
    assert!(frozen, "no frozen cgroup for {}", ct.id);
    assert!(ct.rt(&["resume", &ct.id]).status.success());
    assert_eq!(ct.state()["status"], "running");
    // running containers are not deleted without --force
    let o = ct.rt(&["delete", &ct.id]);
    assert_eq!(o.status.code(), Some(1));
    let k = ct.rt(&["kill", &ct.id, "TERM"]);
    assert!(k.status.success(), "{}", String::from_utf8_lossy(&k.stderr));
    ct.wait_status("stopped");
    assert!(ct.output_file().contains("got-term"));
    assert!(!cgroup_dirs(&ct.id).is_empty());
    assert!(ct.rt(&["delete", &ct.id]).status.success());
    assert!(cgroup_dirs(&ct.id).is_empty(), "cgroup left behind");
    assert!(!ct.root().join(&ct.id).exists(), "state left behind");
}

#[test]
fn exec_joins_the_container() {
    let ct = sh("sleep 30");
    assert!(ct.create().status.success());
    assert!(ct.rt(&["start", &ct.id]).status.success());
    let o = ct.rt(&[
        "exec",
        &ct.id,
        "sh",
        "-c",
        "hostname; echo $$; cat /proc/1/cmdline | tr '\\0' ' '; exit 3",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "berth-test");
    assert_ne!(lines[1], "1");
    assert!(lines[2].starts_with("sleep 30"), "{out}");
    let ps = ct.rt(&["ps", "--format", "json", &ct.id]);
    let pids: Vec<i32> = serde_json::from_slice(&ps.stdout).expect("json");
    assert_eq!(pids.len(), 1);
    assert!(ct.rt(&["delete", "--force", &ct.id]).status.success());
}

#[test]
fn user_namespace_maps_ids() {
    let mut ct = sh("cat /proc/self/uid_map; id -u");
    ct.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("ns")
        .push(json!({"type": "user"}));
    ct.config["linux"]["uidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    ct.config["linux"]["gidMappings"] =
        json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // the cgroup mount needs the host's cgroupfs, which a user namespace cannot remount
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    let mut l = out.lines();
    let map: Vec<&str> = l.next().expect("map").split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"]);
    assert_eq!(l.next(), Some("0"));
}

#[test]
fn rlimits_and_raising_above_hard_limit_fails_clearly() {
    let mut ct = sh("ulimit -n");
    ct.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 1000, "soft": 900}]);
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "900");
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    let can_raise = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    if !can_raise {
        ct.config["process"]["rlimits"] =
            json!([{"type": "RLIMIT_NOFILE", "hard": hard + 1, "soft": 1024}]);
        let (code, _, err) = ct.run();
        assert_eq!(code, 1);
        assert!(
            err.contains("RLIMIT_NOFILE") && err.contains("CAP_SYS_RESOURCE"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn user_cwd_env_umask_no_new_privs() {
    let mut ct = sh("id -u; id -g; pwd; echo $FOO; umask; grep NoNewPrivs /proc/self/status");
    ct.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "umask": 63});
    ct.config["process"]["cwd"] = json!("/tmp");
    ct.config["process"]["env"] = json!(["PATH=/bin", "FOO=bar"]);
    ct.config["process"]["noNewPrivileges"] = json!(true);
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(&l[..5], ["1000", "1000", "/tmp", "bar", "0077"]);
    assert!(l[5].ends_with('1'), "{out}");
}

#[test]
fn no_host_descriptor_leaks_into_the_container() {
    // an fd without CLOEXEC in the runtime's caller must not reach the container
    let f = nix::fcntl::open(
        "/etc/hostname",
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .expect("open");
    let ct = sh("ls /proc/self/fd | sort -n | tr '\\n' ' '");
    let (code, out, err) = ct.run();
    drop(f);
    assert_eq!(code, 0, "{err}");
    let fds: Vec<u32> = out
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert!(fds.iter().all(|&fd| fd <= 3), "leaked fds: {out}");
}

#[test]
fn cwd_outside_the_root_is_impossible() {
    let mut ct = sh("pwd");
    ct.config["process"]["cwd"] = json!("/../../../..");
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "/");
}

#[test]
fn symlinked_mount_target_stays_inside_the_rootfs() {
    let mut ct = sh("ls /evil/marker && echo INSIDE");
    let outside = tempfile::Builder::new()
        .prefix("berth-test-outside")
        .tempdir()
        .expect("tmp");
    std::os::unix::fs::symlink(outside.path(), ct.rootfs().join("evil")).expect("symlink");
    let src = ct.dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("marker"), "x").expect("write");
    ct.config["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/evil", "type": "bind", "source": src.to_str(), "options": ["rbind", "ro"]
    }));
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("INSIDE"), "{out}");
    // nothing was mounted on or created in the host directory the symlink named
    assert!(std::fs::read_dir(outside.path())
        .expect("read")
        .next()
        .is_none());
}

#[test]
fn bind_mount_readonly() {
    let mut ct = sh("cat /data/f; echo x > /data/g 2>/dev/null && echo WROTE; true");
    let src = ct.dir.path().join("data");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("f"), "content\n").expect("write");
    ct.config["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/data", "type": "bind", "source": src.to_str(), "options": ["rbind", "ro", "nosuid", "nodev"]
    }));
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "content\n");
    assert!(!src.join("g").exists());
}

#[test]
fn sysctl_oom_score_adj_domainname() {
    let mut ct = sh("cat /proc/sys/net/ipv4/ip_forward; cat /proc/self/oom_score_adj; cat /proc/sys/kernel/domainname");
    ct.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    ct.config["process"]["oomScoreAdj"] = json!(500);
    ct.config["domainname"] = json!("berth.example");
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1\n500\nberth.example\n");
}

#[test]
fn time_namespace_offsets_boottime() {
    let mut ct = sh("cut -d. -f1 /proc/uptime");
    ct.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("ns")
        .push(json!({"type": "time"}));
    ct.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 86400000, "nanosecs": 0}});
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    let up: u64 = out.trim().parse().expect("uptime");
    assert!(up >= 86_400_000, "{up}");
}

#[test]
fn joins_an_existing_namespace_by_path() {
    // a second container joins the first one's uts and net namespaces
    let a = sh("sleep 30");
    assert!(a.create().status.success());
    let pid = a.state()["pid"].as_i64().expect("pid");
    let mut b = sh("hostname");
    for ns in b.config["linux"]["namespaces"].as_array_mut().expect("ns") {
        if ns["type"] == "uts" {
            ns["path"] = json!(format!("/proc/{pid}/ns/uts"));
        }
    }
    b.config.as_object_mut().expect("obj").remove("hostname");
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "berth-test");
}

#[test]
fn default_devices_exist_and_work() {
    let ct =
        sh("echo x > /dev/null && head -c 4 /dev/zero | wc -c && ls -l /dev/ptmx /dev/fd | wc -l");
    let (code, out, err) = ct.run();
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0].trim(), "4");
    assert_eq!(l[1].trim(), "2");
}

#[test]
fn update_changes_limits_of_a_running_container() {
    let mut ct = sh("sleep 30");
    ct.config["linux"]["resources"]["pids"] = json!({"limit": 50});
    assert!(ct.create().status.success());
    let o = ct.rt(&["update", "--pids-limit", "7", &ct.id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let max: Vec<String> = cgroup_dirs(&ct.id)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("pids.max")).ok())
        .collect();
    assert_eq!(max, vec!["7\n".to_string()]);
    let ev = ct.rt(&["events", "--stats", &ct.id]);
    let v: serde_json::Value = serde_json::from_slice(&ev.stdout).expect("stats json");
    assert_eq!(v["type"], "stats");
    assert!(v["data"]["pids"]["current"].as_u64().expect("current") >= 1);
}
