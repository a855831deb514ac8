//! Containers end to end through the `berth` binary, on a busybox image imported into
//! a temporary data root, with a temporary runtime root: run (--rm, -d, -ti), ps,
//! logs, exec, stop, rm, exit codes. Needs root (mounts, namespaces, cgroups) and
//! Debian's busybox-static; the -ti test needs `script` (bsdutils).

use berth_testkit::{cgroup_value, cgroups_of, eventually, processes_with, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::Command;

type Berth = berth_testkit::Berth;

/// A berth with someapp:1.0 (busybox) imported.
fn berth() -> Berth {
    Berth::with_busybox(
        env!("CARGO_BIN_EXE_berth"),
        "berth-test-containers-",
        "someapp:1.0",
    )
}

#[test]
fn run_rm_echo_prints_and_leaves_nothing() {
    let b = berth();
    let out = b.run(&["run", "--rm", "someapp:1.0", "echo", "hi"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "hi\n");
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn detached_named_container_ps_logs_exec_rm_force() {
    let b = berth();
    let id = b
        .ok(&[
            "container",
            "run",
            "--detach",
            "--name",
            "X",
            "someapp:1.0",
            "sh",
            "-c",
            "echo to-stdout; echo to-stderr >&2; exec sleep 100201",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "run -d prints the full id: {id:?}");
    let ps = b.ok(&["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID"), "{ps}");
    for col in ["IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"] {
        assert!(lines[0].contains(col), "{ps}");
    }
    let row = lines.iter().find(|l| l.ends_with(" X")).expect("row for X");
    assert!(row.starts_with(&id[..12]) && row.contains("someapp:1.0") && row.contains("Up "));
    assert_eq!(b.ok(&["container", "ls", "-q"]).trim(), &id[..12]);

    eventually("both log lines", || {
        let o = b.run(&["logs", "X"]);
        stdout(&o) == "to-stdout\n" && stderr(&o) == "to-stderr\n"
    });
    let log = std::fs::read_to_string(
        b.data_root()
            .join("containers")
            .join(&id)
            .join("logs")
            .join(format!("{id}-json.log")),
    )
    .expect("json log");
    let first: serde_json::Value =
        serde_json::from_str(log.lines().next().expect("a line")).expect("json");
    assert!(first["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(first["stream"] == "stdout" || first["stream"] == "stderr");

    assert_eq!(b.ok(&["exec", "X", "hostname"]).trim(), &id[..12]);
    let o = b.run(&["exec", "-e", "V=42", "X", "sh", "-c", "echo $V; exit 9"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(9), "42\n"));

    // the exec's helper (the process that joins the container) runs from a sealed
    // copy of the binary (CVE-2019-5736)
    let mut child = b
        .command()
        .args(["exec", "X", "sleep", "100205"])
        .spawn()
        .expect("spawn exec");
    eventually("the exec'd sleep", || {
        processes_with("sleep 100205").iter().any(|p| {
            p.split_once(": ")
                .is_some_and(|(_, c)| c.starts_with("sleep"))
        })
    });
    let helpers: Vec<String> = processes_with("container-exec")
        .into_iter()
        .filter(|p| p.contains(&id))
        .collect();
    assert_eq!(helpers.len(), 1, "{helpers:?}");
    let pid = helpers[0].split(':').next().expect("pid");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe link");
    assert!(
        exe.to_string_lossy().starts_with("/memfd:berth-sealed"),
        "{}",
        exe.display()
    );
    let _ = child.kill();
    let _ = child.wait();

    let o = b.run(&["rm", "X"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("container is running"),
        "{}",
        stderr(&o)
    );

    let o = b.run(&["run", "-d", "--name", "X", "someapp:1.0", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("already in use"), "{}", stderr(&o));

    assert_eq!(b.ok(&["container", "rm", "--force", "X"]).trim(), "X");
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert_eq!(b.mounts(), Vec::<String>::new());
    assert_eq!(cgroups_of(&id), Vec::<PathBuf>::new());
    assert_eq!(processes_with(&id), Vec::<String>::new());
    assert_eq!(processes_with("sleep 100201"), Vec::<String>::new());
    assert!(!b.data_root().join("containers").join(&id).exists());
    let o = b.run(&["logs", "X"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn exit_status_passes_through() {
    let b = berth();
    let o = b.run(&["run", "--rm", "someapp:1.0", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = b.run(&["run", "--name", "kept", "someapp:1.0", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    let ps = b.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (3)"), "{ps}");
    assert_eq!(b.ok(&["ps"]).lines().count(), 1, "only the header");
    // a status filter lists stopped containers without -a
    let f = b.ok(&[
        "ps",
        "--filter",
        "status=exited",
        "--format",
        "{{.Names}} {{.State}}",
    ]);
    assert_eq!(f, "kept exited\n");
    assert_eq!(
        b.ok(&["ps", "-f", "exited=3", "--format", "{{.Names}}"]),
        "kept\n"
    );
    assert_eq!(b.ok(&["ps", "-f", "exited=4", "-q"]), "");
    let t = b.ok(&["ps", "-a", "--format", "table {{.Names}}\t{{.State}}"]);
    assert!(t.starts_with("NAMES") && t.contains("kept"), "{t}");
    b.ok(&["rm", "kept"]);
    // -d --rm: the supervisor removes the container when it exits
    b.ok(&["run", "-d", "--rm", "someapp:1.0", "true"]);
    eventually("the -d --rm container to go", || {
        b.ok(&["ps", "-aq"]).is_empty()
    });
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn missing_command_is_127_and_not_executable_is_126() {
    let b = berth();
    let o = b.run(&["run", "--rm", "someapp:1.0", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    let o = b.run(&["run", "--rm", "someapp:1.0", "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    // a missing image is pulled, as docker does; from a registry (on loopback) that
    // does not answer, the run fails saying what to do
    let o = b.run(&["run", "--rm", "127.0.0.1:9/nosuchimage:1.0", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(
        err.contains("Unable to find image '127.0.0.1:9/nosuchimage:1.0' locally"),
        "{err}"
    );
    assert!(err.contains("neither here nor pullable"), "{err}");
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn one_letter_name_and_bad_names() {
    let b = berth();
    b.ok(&["run", "-d", "--name", "a", "someapp:1.0", "sleep", "100202"]);
    assert!(b.ok(&["ps"]).contains(" a\n"));
    let o = b.run(&["run", "--name", "_bad", "someapp:1.0", "true"]);
    assert_eq!(o.status.code(), Some(125));
    b.ok(&["rm", "-f", "a"]);
}

#[test]
fn stop_sends_sigterm_then_sigkill() {
    let b = berth();
    // pid 1 ignores SIGTERM without a handler: stop falls back to SIGKILL
    b.ok(&["run", "-d", "--name", "s", "someapp:1.0", "sleep", "100203"]);
    assert_eq!(b.ok(&["stop", "-t", "1", "s"]).trim(), "s");
    let ps = b.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (137)"), "{ps}");
    assert_eq!(processes_with("sleep 100203"), Vec::<String>::new());
    // a shell that traps SIGTERM exits with its own status
    b.ok(&[
        "run",
        "-d",
        "--name",
        "t",
        "someapp:1.0",
        "sh",
        "-c",
        "trap 'exit 42' TERM; echo trapped; while true; do sleep 0.1; done",
    ]);
    // a SIGTERM before the trap is set is ignored (pid 1 without a handler)
    eventually("the trap set", || {
        stdout(&b.run(&["logs", "t"])) == "trapped\n"
    });
    b.ok(&["stop", "t"]);
    assert!(b.ok(&["ps", "-a"]).contains("Exited (42)"));
    b.ok(&["rm", "s", "t"]);
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn run_ti_sees_a_terminal() {
    let b = berth();
    if Command::new("script").arg("--version").output().is_err() {
        panic!("the -ti test needs script(1): apt-get install -y bsdutils");
    }
    let berth = format!(
        "{} --data-root {}",
        env!("CARGO_BIN_EXE_berth"),
        b.data_root().display()
    );
    let o = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "stty rows 40 cols 100 </dev/tty; {berth} container run -ti --rm someapp:1.0 sh -c 'test -t 0 && test -t 1 && echo is-a-tty; stty -a; exit 5'"
        ))
        .arg("/dev/null")
        .env("BERTH_RUNTIME_ROOT", b.root.path().join("runtime"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    assert!(stdout(&o).contains("is-a-tty"), "{}", stdout(&o));
    // the container's terminal has our window size
    assert!(
        stdout(&o).contains("rows 40; columns 100"),
        "{}",
        stdout(&o)
    );
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(b.ok(&["ps", "-aq"]), "");

    // typed input reaches the shell through the pty
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "(printf 'echo in-$((1+2))\\nexit 3\\n'; sleep 1) | script -qec '{berth} run -ti --rm someapp:1.0 sh' /dev/null"
        ))
        .env("BERTH_RUNTIME_ROOT", b.root.path().join("runtime"))
        .output()
        .expect("script");
    assert!(stdout(&o).contains("in-3"), "{}", stdout(&o));
    assert_eq!(o.status.code(), Some(3));

    b.ok(&["run", "-d", "--name", "e", "someapp:1.0", "sleep", "100207"]);
    let o = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{berth} exec -ti e sh -c 'test -t 0 && echo exec-tty; exit 6'"
        ))
        .arg("/dev/null")
        .env("BERTH_RUNTIME_ROOT", b.root.path().join("runtime"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    assert!(stdout(&o).contains("exec-tty"), "{}", stdout(&o));
    assert_eq!(o.status.code(), Some(6));
    b.ok(&["rm", "-f", "e"]);
}

#[test]
fn flags_reach_the_container() {
    let b = berth();
    let host = b.root.path().join("shared");
    std::fs::create_dir(&host).expect("mkdir");
    std::fs::write(host.join("f"), "from-host").expect("write");
    let vol = format!("{}:/mnt:ro", host.display());
    let out = b.ok(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "nobody",
        "--hostname",
        "h1",
        "-v",
        &vol,
        "--read-only",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--network",
        "none",
        "someapp:1.0",
        "sh",
        "-c",
        "echo $A $(pwd) $(id -u) $(hostname) $(cat /mnt/f); touch /x 2>/dev/null || echo ro; ip -o link | wc -l; cat /sys/class/net/lo/flags",
    ]);
    // --network none: a private network namespace with only the loopback, up (0x9)
    // (the default is the bridge network, as docker's)
    assert_eq!(out, "1 /tmp 65534 h1 from-host\nro\n1\n0x9\n");
}

#[test]
fn limits_land_in_the_cgroup() {
    let b = berth();
    let id = b
        .ok(&[
            "run",
            "-d",
            "--memory",
            "64m",
            "--pids-limit",
            "50",
            "someapp:1.0",
            "sleep",
            "100204",
        ])
        .trim()
        .to_string();
    let mem = cgroup_value(&id, "memory/memory.limit_in_bytes", "memory.max");
    assert_eq!(mem, (64u64 << 20).to_string());
    let pids = cgroup_value(&id, "pids/pids.max", "pids.max");
    assert_eq!(pids, "50");
    b.ok(&["rm", "-f", &id]);
    assert_eq!(cgroups_of(&id), Vec::<PathBuf>::new());
}

#[test]
fn cpuset_cpu_shares_and_memory_swap_land_in_the_cgroup() {
    let b = berth();
    let id = b
        .ok(&[
            "run",
            "-d",
            "--cpuset-cpus",
            "0",
            "--cpu-shares",
            "512",
            "--memory",
            "64m",
            "--memory-swap",
            "128m",
            "someapp:1.0",
            "sleep",
            "100212",
        ])
        .trim()
        .to_string();
    assert_eq!(cgroup_value(&id, "cpuset/cpuset.cpus", "cpuset.cpus"), "0");
    let shares = cgroup_value(&id, "cpu/cpu.shares", "cpu.weight");
    // v1 takes the shares as they are; v2 gets runc's conversion to a weight
    assert!(shares == "512" || shares == "20", "{shares}");
    let swap = cgroup_value(&id, "memory/memory.memsw.limit_in_bytes", "memory.swap.max");
    // docker's --memory-swap is memory + swap; v2's file holds the swap alone
    assert!(
        swap == (128u64 << 20).to_string() || swap == (64u64 << 20).to_string(),
        "{swap}"
    );
    let hc = b.ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.CpusetCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.MemorySwap}}",
        &id,
    ]);
    assert_eq!(hc.trim(), format!("0 512 {}", 128u64 << 20));
    b.ok(&["rm", "-f", &id]);
    assert_eq!(cgroups_of(&id), Vec::<PathBuf>::new());
    // a swap limit below the memory limit is refused before anything is made
    let out = b.run(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--memory-swap",
        "32m",
        "someapp:1.0",
        "true",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("swap"), "{}", stderr(&out));
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

#[test]
fn stop_signal_and_entrypoint_override_the_defaults() {
    let b = berth();
    let id = b
        .ok(&[
            "run",
            "-d",
            "--stop-signal",
            "USR1",
            "someapp:1.0",
            "sh",
            "-c",
            "trap 'echo got-usr1; exit 7' USR1; echo ready; while :; do sleep 0.1; done",
        ])
        .trim()
        .to_string();
    eventually("the trap set", || b.ok(&["logs", &id]).contains("ready"));
    assert_eq!(
        b.ok(&["inspect", "-f", "{{.Config.StopSignal}}", &id])
            .trim(),
        "USR1"
    );
    b.ok(&["stop", &id]);
    // the container ended from its own trap, not from the SIGKILL after the timeout
    assert_eq!(
        b.ok(&["inspect", "-f", "{{.State.ExitCode}}", &id]).trim(),
        "7"
    );
    assert!(b.ok(&["logs", &id]).contains("got-usr1"));
    b.ok(&["rm", &id]);

    let out = b.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        "someapp:1.0",
        "a",
        "b",
    ]);
    assert_eq!(out, "a b\n");
    let out = b.run(&["run", "--rm", "--entrypoint", "/no/such", "someapp:1.0"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

#[test]
fn inspect_finds_containers_images_networks_and_volumes() {
    let b = berth();
    b.ok(&["volume", "create", "iv"]);
    let id = b
        .ok(&[
            "create",
            "--name",
            "ic",
            "-v",
            "iv:/data",
            "someapp:1.0",
            "true",
        ])
        .trim()
        .to_string();
    // docker's order: a container, else an image, a network, a volume
    let out = b.ok(&[
        "inspect",
        "-f",
        "{{.Id}}{{.Name}}",
        "ic",
        "someapp:1.0",
        "bridge",
        "iv",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], format!("{id}/ic"));
    assert!(lines[1].starts_with("sha256:"), "{out}");
    assert!(lines[2].ends_with("bridge") && lines[2].len() > 64, "{out}");
    // a volume has no Id: Go's template prints a missing key of a map so
    assert_eq!(lines[3], "<no value>iv");
    // --type narrows the search; an unknown name or type says so and exits 1
    let out = b.run(&["inspect", "--type", "volume", "ic"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), "Error: No such volume: ic");
    let out = b.run(&["inspect", "nothing-here", "ic"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).trim(), "Error: No such object: nothing-here");
    let docs: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON array");
    assert_eq!(docs[0]["Id"], id.as_str(), "the found one still printed");
    let out = b.run(&["inspect", "--type", "plugin", "ic"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("not a valid value for --type"));
    // docker's Image is the image's id; Config.Image the name as given
    let image_id = b.ok(&["image", "inspect", "-f", "{{.Id}}", "someapp:1.0"]);
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    assert_eq!(
        b.ok(&["inspect", "-f", "{{.Image}} {{.Config.Image}}", "ic"])
            .trim(),
        format!("{} someapp:1.0", image_id.trim())
    );
    // -s: the sizes docker adds for containers
    let out = b.ok(&[
        "container",
        "inspect",
        "-s",
        "-f",
        "{{.SizeRw}} {{.SizeRootFs}}",
        "ic",
    ]);
    let sizes: Vec<u64> = out
        .split_whitespace()
        .map(|n| n.parse().expect("size"))
        .collect();
    assert!(sizes.len() == 2 && sizes[1] > 0, "{out}");
    b.ok(&["rm", "-v", "ic"]);
    b.ok(&["volume", "rm", "iv"]);
}

#[test]
fn foreground_run_proxies_signals_to_the_container() {
    use std::io::BufRead;
    let b = berth();
    let mut child = b
        .command()
        .args([
            "run",
            "--rm",
            "someapp:1.0",
            "sh",
            "-c",
            "trap 'echo got-int; exit 11' INT; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn run");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert_eq!(line, "ready\n");
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("read rest");
    let status = child.wait().expect("wait");
    assert_eq!(rest, "got-int\n");
    assert_eq!(status.code(), Some(11));
    assert_eq!(b.ok(&["ps", "-aq"]), "");
}

#[test]
fn fifty_concurrent_runs_and_removals_leave_nothing() {
    let b = berth();
    let snapshots = || {
        std::fs::read_dir(b.data_root().join("snapshots/overlayfs/snapshots"))
            .map(|rd| rd.count())
            .unwrap_or(0)
    };
    let before = snapshots();
    let spawn_all = |args: Vec<Vec<String>>| {
        let children: Vec<_> = args
            .iter()
            .map(|a| {
                b.command()
                    .args(a)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn berth")
            })
            .collect();
        children
            .into_iter()
            .map(|c| c.wait_with_output().expect("wait"))
            .collect::<Vec<_>>()
    };
    let runs = spawn_all(
        (0..50)
            .map(|i| {
                [
                    "run",
                    "-d",
                    "--name",
                    &format!("berth-test-load-{i}"),
                    "someapp:1.0",
                ]
                .iter()
                .map(|s| s.to_string())
                .chain(["sleep".into(), "100206".into()])
                .collect()
            })
            .collect(),
    );
    for o in &runs {
        assert!(o.status.success(), "run -d failed: {}", stderr(o));
    }
    assert_eq!(b.ok(&["ps", "-q"]).lines().count(), 50);
    let ids: Vec<String> = runs.iter().map(|o| stdout(o).trim().to_string()).collect();
    let rms = spawn_all(
        ids.iter()
            .map(|id| vec!["rm".into(), "-f".into(), id.clone()])
            .collect(),
    );
    for o in &rms {
        assert!(o.status.success(), "rm -f failed: {}", stderr(o));
    }
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert_eq!(b.mounts(), Vec::<String>::new());
    for id in &ids {
        assert_eq!(cgroups_of(id), Vec::<PathBuf>::new());
    }
    assert_eq!(processes_with("sleep 100206"), Vec::<String>::new());
    assert_eq!(snapshots(), before, "container snapshots left behind");
}

#[test]
fn logs_rotate_with_log_opt() {
    let b = berth();
    let id = b
        .ok(&[
            "run",
            "--log-opt",
            "max-size=1k",
            "--log-opt",
            "max-file=2",
            "someapp:1.0",
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done",
        ])
        .trim()
        .to_string();
    assert!(id.ends_with("line-199"));
    let ps = b.ok(&["ps", "-aq", "--no-trunc"]);
    let id = ps.trim();
    let log = b
        .data_root()
        .join("containers")
        .join(id)
        .join("logs")
        .join(format!("{id}-json.log"));
    let rotated = PathBuf::from(format!("{}.1", log.display()));
    assert!(log.exists() && rotated.exists());
    assert!(!PathBuf::from(format!("{}.2", log.display())).exists());
    for f in [&log, &rotated] {
        assert!(std::fs::metadata(f).expect("meta").len() <= 1024);
    }
    let out = b.ok(&["logs", id]);
    assert!(out.ends_with("line-199\n"));
    assert!(
        !out.contains("line-0\n"),
        "the oldest lines were rotated away"
    );
    let tail = b.ok(&["logs", "--tail", "2", id]);
    assert_eq!(tail, "line-198\nline-199\n");
    b.ok(&["rm", id]);
}

#[test]
fn run_i_passes_stdin_and_without_i_the_container_gets_none() {
    use std::io::Write;
    let b = berth();
    let feed = |args: &[&str]| {
        let mut c = b
            .command()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn run");
        let mut stdin = c.stdin.take().expect("stdin");
        let _ = stdin.write_all(b"hello\n");
        drop(stdin);
        c.wait_with_output().expect("wait")
    };
    let o = feed(&["run", "-i", "--rm", "someapp:1.0", "cat"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "hello\n"));
    let o = feed(&["run", "--rm", "someapp:1.0", "cat"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), ""));
}

#[test]
fn create_start_wait_restart_inspect() {
    let b = berth();
    let id = b
        .ok(&[
            "create",
            "--name",
            "c",
            "-e",
            "K=v",
            "someapp:1.0",
            "sh",
            "-c",
            "echo run-$K; exit 4",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let status = |b: &Berth| {
        b.ok(&[
            "container",
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "c",
        ])
        .trim()
        .to_string()
    };
    assert_eq!(status(&b), "created 0");
    assert!(b.ok(&["ps", "-a"]).contains("Created"));
    let o = b.run(&["start", "-a", "c"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(4), "run-v\n"));
    assert_eq!(status(&b), "exited 4");
    // an exited container starts again (its rootfs is mounted anew)
    assert_eq!(b.ok(&["start", "c"]).trim(), "c");
    assert_eq!(b.ok(&["wait", "c"]).trim(), "4");
    let o = b.run(&["logs", "c"]);
    assert_eq!(stdout(&o), "run-v\nrun-v\n");
    let doc: serde_json::Value =
        serde_json::from_str(&b.ok(&["container", "inspect", "c"])).expect("inspect json");
    assert_eq!(doc[0]["Id"], id.as_str());
    assert_eq!(doc[0]["Name"], "/c");
    assert_eq!(doc[0]["Config"]["Image"], "someapp:1.0");
    assert!(doc[0]["Config"]["Env"]
        .as_array()
        .is_some_and(|e| e.iter().any(|x| x == "K=v")));
    b.ok(&["rm", "c"]);

    b.ok(&["run", "-d", "--name", "r", "someapp:1.0", "sleep", "100208"]);
    let pid1 = b.ok(&["container", "inspect", "-f", "{{.State.Pid}}", "r"]);
    assert_eq!(b.ok(&["restart", "-t", "1", "r"]).trim(), "r");
    let pid2 = b.ok(&["container", "inspect", "-f", "{{.State.Pid}}", "r"]);
    assert_ne!(pid1, pid2, "restart runs a new process");
    assert!(b.ok(&["ps"]).contains(" r\n"));
    b.ok(&["rm", "-f", "r"]);
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn default_seccomp_profile_refuses_new_namespaces() {
    let b = berth();
    let script = "unshare -U true 2>/dev/null; echo $?";
    let o = b.ok(&["run", "--rm", "someapp:1.0", "sh", "-c", script]);
    assert_eq!(o, "1\n", "unshare -U must fail under the default profile");
    let o = b.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "someapp:1.0",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(o, "0\n");
    let o = b.run(&[
        "run",
        "--rm",
        "--security-opt",
        "apparmor=x",
        "someapp:1.0",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
}

#[test]
fn caps_tmpfs_ulimits_env_file_labels_cpu_and_stop_timeout() {
    let b = berth();
    let envf = b.root.path().join("env.list");
    std::fs::write(&envf, "A=1\n# comment\nB=two words\n").expect("env file");
    let out = b.ok(&[
        "run",
        "--rm",
        "--env-file",
        envf.to_str().expect("utf-8"),
        "--cap-drop",
        "ALL",
        "--tmpfs",
        "/scratch:size=1m",
        "--ulimit",
        "nofile=100:200",
        "someapp:1.0",
        "sh",
        "-c",
        "echo $A $B; grep CapEff /proc/self/status; grep -c ' /scratch tmpfs ' /proc/mounts; ulimit -n; ulimit -Hn",
    ]);
    assert_eq!(out, "1 two words\nCapEff:\t0000000000000000\n1\n100\n200\n");
    // docker's default set
    let out = b.ok(&[
        "run",
        "--rm",
        "someapp:1.0",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert_eq!(out, "CapEff:\t00000000a80425fb\n");

    let id = b
        .ok(&[
            "run",
            "-d",
            "--cpus",
            "0.5",
            "-l",
            "app=web",
            "--stop-timeout",
            "1",
            "someapp:1.0",
            "sleep",
            "100209",
        ])
        .trim()
        .to_string();
    let v1 = Path::new("/sys/fs/cgroup/cpu/berth")
        .join(&id)
        .join("cpu.cfs_quota_us");
    let v2 = Path::new("/sys/fs/cgroup/berth").join(&id).join("cpu.max");
    let quota = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .expect("cpu quota file");
    assert!(quota.starts_with("50000"), "{quota}");
    assert_eq!(
        b.ok(&["ps", "-q", "--filter", "label=app=web"]).trim(),
        &id[..12]
    );
    assert_eq!(b.ok(&["ps", "-q", "--filter", "label=app=db"]), "");
    // no -t: the container's own --stop-timeout applies, then SIGKILL
    b.ok(&["stop", &id]);
    assert!(b.ok(&["ps", "-a"]).contains("Exited (137)"));
    let t = b.ok(&["container", "inspect", "-f", "{{.Config.StopTimeout}}", &id]);
    assert_eq!(t.trim(), "1");
    b.ok(&["rm", &id]);
}

#[test]
fn pause_unpause_rename_top_update_prune() {
    let b = berth();
    let id = b
        .ok(&["run", "-d", "--name", "p", "someapp:1.0", "sleep", "100210"])
        .trim()
        .to_string();
    b.ok(&["pause", "p"]);
    let st = |b: &Berth, n: &str| {
        b.ok(&["container", "inspect", "-f", "{{.State.Status}}", n])
            .trim()
            .to_string()
    };
    assert_eq!(st(&b, "p"), "paused");
    assert!(b.ok(&["ps"]).contains("(Paused)"));
    assert_eq!(b.run(&["pause", "p"]).status.code(), Some(1));
    b.ok(&["unpause", "p"]);
    assert_eq!(st(&b, "p"), "running");

    b.ok(&["rename", "p", "q"]);
    assert_eq!(b.ok(&["ps", "--format", "{{.Names}}"]), "q\n");
    assert_eq!(b.run(&["logs", "p"]).status.code(), Some(1));
    let top = b.ok(&["top", "q"]);
    assert!(
        top.starts_with("UID") && top.contains("sleep 100210"),
        "{top}"
    );

    b.ok(&["update", "--memory", "32m", "--pids-limit", "20", "q"]);
    let read = |v1: &str, v2: &str| {
        std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(v1))
            .or_else(|_| {
                std::fs::read_to_string(Path::new("/sys/fs/cgroup/berth").join(&id).join(v2))
            })
            .expect("cgroup file")
            .trim()
            .to_string()
    };
    assert_eq!(
        read(
            &format!("memory/berth/{id}/memory.limit_in_bytes"),
            "memory.max"
        ),
        (32u64 << 20).to_string()
    );
    assert_eq!(read(&format!("pids/berth/{id}/pids.max"), "pids.max"), "20");

    // a paused container still stops
    b.ok(&["pause", "q"]);
    b.ok(&["stop", "-t", "1", "q"]);
    b.ok(&["run", "--name", "z", "someapp:1.0", "true"]);
    let out = b.ok(&["container", "prune", "-f"]);
    assert!(
        out.starts_with("Deleted Containers:") && out.contains(&id),
        "{out}"
    );
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn stats_no_stream_shows_limits_and_pids() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "st",
        "--memory",
        "64m",
        "someapp:1.0",
        "sleep",
        "100211",
    ]);
    let out = b.ok(&["stats", "--no-stream", "st"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("CONTAINER ID") && lines[0].contains("MEM USAGE / LIMIT"),
        "{out}"
    );
    assert!(
        lines[1].contains(" st ") && lines[1].contains(" / 64MiB"),
        "{out}"
    );
    assert!(lines[1].trim_end().ends_with(" 1"), "one process: {out}");
    b.ok(&["rm", "-f", "st"]);
}

#[test]
fn logs_follow_since_until_and_kill_signal() {
    let b = berth();
    // the container waits for a file we create, so -f sees output arrive
    b.ok(&[
        "run",
        "-d",
        "--name",
        "lf",
        "someapp:1.0",
        "sh",
        "-c",
        "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second",
    ]);
    let follow = b
        .command()
        .args(["logs", "-f", "lf"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f");
    eventually("first line", || b.ok(&["logs", "lf"]) == "first\n");
    b.ok(&["exec", "lf", "touch", "/tmp/go"]);
    let out = follow
        .wait_with_output()
        .expect("logs -f ends with the container");
    assert_eq!(stdout(&out), "first\nsecond\n");
    assert_eq!(b.ok(&["logs", "--since", "2999-01-01T00:00:00Z", "lf"]), "");
    assert_eq!(b.ok(&["logs", "--until", "2000-01-01T00:00:00Z", "lf"]), "");
    assert_eq!(b.ok(&["logs", "--since", "1h", "lf"]), "first\nsecond\n");
    let ts = b.ok(&["logs", "-t", "--tail", "1", "lf"]);
    assert!(ts.ends_with("Z second\n"), "{ts}");
    b.ok(&["rm", "lf"]);

    b.ok(&[
        "run",
        "-d",
        "--name",
        "k",
        "someapp:1.0",
        "sh",
        "-c",
        "trap 'exit 12' USR1; while true; do sleep 0.05; done",
    ]);
    assert_eq!(b.ok(&["kill", "-s", "USR1", "k"]).trim(), "k");
    assert_eq!(b.ok(&["wait", "k"]).trim(), "12");
    assert_eq!(b.run(&["kill", "k"]).status.code(), Some(1), "not running");
    b.ok(&["rm", "k"]);
}

#[test]
fn named_and_anonymous_volumes() {
    let b = berth();
    assert_eq!(b.ok(&["volume", "create", "v1"]).trim(), "v1");
    b.ok(&[
        "run",
        "--rm",
        "-v",
        "v1:/data",
        "someapp:1.0",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    let out = b.ok(&[
        "run",
        "--rm",
        "-v",
        "v1:/data:ro",
        "someapp:1.0",
        "cat",
        "/data/f",
    ]);
    assert_eq!(out, "kept\n", "a named volume outlives its containers");

    // a new volume is filled from the image at its path (docker's copy-up)
    b.ok(&["run", "--rm", "-v", "v2:/etc", "someapp:1.0", "true"]);
    let mp = b.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "v2"]);
    assert!(Path::new(mp.trim()).join("passwd").is_file(), "{mp}");

    b.ok(&[
        "run",
        "-d",
        "--name",
        "user",
        "-v",
        "v1:/data",
        "someapp:1.0",
        "sleep",
        "100212",
    ]);
    let o = b.run(&["volume", "rm", "v1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("in use"), "{}", stderr(&o));
    b.ok(&["rm", "-f", "user"]);
    assert_eq!(b.ok(&["volume", "rm", "v1"]).trim(), "v1");
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "v2\n");

    // an image VOLUME becomes an anonymous volume; rm -v removes it
    let tar = b.root.path().join("rootfs.tar");
    b.ok(&[
        "image",
        "import",
        "-c",
        "VOLUME [\"/srv\"]",
        tar.to_str().expect("utf-8"),
        "withvol:1.0",
    ]);
    b.ok(&[
        "run",
        "--name",
        "av",
        "withvol:1.0",
        "sh",
        "-c",
        "echo x > /srv/y",
    ]);
    let anon: Vec<String> = b
        .ok(&["volume", "ls", "-q"])
        .lines()
        .filter(|n| n.len() == 64)
        .map(String::from)
        .collect();
    assert_eq!(anon.len(), 1);
    b.ok(&["rm", "-v", "av"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "v2\n");
    // and --rm removes it with the container
    b.ok(&["run", "--rm", "withvol:1.0", "true"]);
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "v2\n");
    let pruned = b.ok(&["volume", "prune", "-f", "-a"]);
    assert!(pruned.contains("v2"), "{pruned}");
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn diff_lists_added_changed_and_deleted_paths() {
    let b = berth();
    b.ok(&[
        "run",
        "--name",
        "d",
        "someapp:1.0",
        "sh",
        "-c",
        "mkdir -p /new && echo x > /new/f && echo more >> /etc/passwd && rm /etc/group",
    ]);
    let out = b.ok(&["diff", "d"]);
    assert_eq!(
        out,
        "C /etc\nD /etc/group\nC /etc/passwd\nA /new\nA /new/f\n"
    );
    // ps -s: what the container wrote, and its whole filesystem
    let sized = b.ok(&["ps", "-a", "-s", "--format", "{{.Names}} {{.Size}}"]);
    assert!(
        sized.starts_with("d ") && !sized.starts_with("d 0B"),
        "{sized}"
    );
    assert!(!sized.contains("virtual 0B"), "{sized}");
    b.ok(&["rm", "d"]);
}

#[test]
fn export_writes_the_filesystem_as_tar() {
    let b = berth();
    b.ok(&[
        "run",
        "--name",
        "x",
        "someapp:1.0",
        "sh",
        "-c",
        "echo made > /made",
    ]);
    let tar = b.root.path().join("x.tar");
    b.ok(&["export", "-o", tar.to_str().expect("utf-8"), "x"]);
    let list = Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .expect("tar -t");
    let names = stdout(&list);
    assert!(names.lines().any(|l| l == "./made"), "{names}");
    assert!(names.lines().any(|l| l == "./bin/busybox"), "{names}");
    assert_eq!(
        b.mounts(),
        Vec::<String>::new(),
        "the stopped container's rootfs is unmounted again"
    );
    b.ok(&["rm", "x"]);
}

#[test]
fn cp_both_ways_stays_inside_the_container() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "someapp:1.0",
        "sh",
        "-c",
        "mkdir -p /data && echo inside > /data/f && ln -s /etc /data/esc && ln -s / /data/root && exec sleep 100213",
    ]);
    eventually("the container to make /data", || {
        b.run(&["exec", "c", "test", "-L", "/data/root"])
            .status
            .success()
    });
    let out = b.root.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let outs = out.to_str().expect("utf-8");
    b.ok(&["cp", "c:/data", outs]);
    assert_eq!(
        std::fs::read_to_string(out.join("data/f")).expect("copied"),
        "inside\n"
    );
    assert_eq!(
        std::fs::read_link(out.join("data/esc")).expect("symlink kept as a link"),
        Path::new("/etc")
    );
    b.ok(&["cp", "c:/etc/passwd", &format!("{outs}/pw")]);
    assert!(std::fs::read_to_string(out.join("pw"))
        .expect("pw")
        .starts_with("root:"));
    // a symlink to / in the container resolves to the container's root, not the host's
    let o = b.run(&["cp", "c:/data/root/etc/shadow", outs]);
    assert_ne!(o.status.code(), Some(0), "the image has no /etc/shadow");
    assert!(!out.join("shadow").exists());

    let host = b.root.path().join("berth-test-cp-file");
    std::fs::write(&host, "from-host\n").expect("write");
    let hosts = host.to_str().expect("utf-8");
    // through the container's /data/esc -> /etc: lands in the container's /etc
    b.ok(&["cp", hosts, "c:/data/esc/"]);
    assert!(
        !Path::new("/etc/berth-test-cp-file").exists(),
        "wrote on the host"
    );
    assert_eq!(
        b.ok(&["exec", "c", "cat", "/etc/berth-test-cp-file"]),
        "from-host\n"
    );
    b.ok(&["cp", hosts, "c:/renamed"]);
    assert_eq!(b.ok(&["exec", "c", "cat", "/renamed"]), "from-host\n");

    // a stopped container: its rootfs is mounted for the copy and unmounted after
    b.ok(&["stop", "-t", "0", "c"]);
    b.ok(&["cp", "c:/renamed", &format!("{outs}/again")]);
    assert_eq!(
        std::fs::read_to_string(out.join("again")).expect("again"),
        "from-host\n"
    );
    assert_eq!(b.mounts(), Vec::<String>::new());
    b.ok(&["rm", "c"]);
}

/// `sh -c` of `cmd` under script(1), so the berth command gets a terminal; `input`
/// is what the terminal types.
fn through_pty(b: &Berth, input: &str, cmd: &str) -> std::process::Output {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("the pty tests need script(1): apt-get install -y bsdutils");
    }
    let berth = format!(
        "{} --data-root {}",
        env!("CARGO_BIN_EXE_berth"),
        b.data_root().display()
    );
    let cmd = cmd.replace("BERTH", &berth);
    Command::new("sh")
        .arg("-c")
        .arg(format!("({input}) | script -qec \"{cmd}\" /dev/null"))
        .env("BERTH_RUNTIME_ROOT", b.runtime_root())
        .output()
        .expect("script")
}

#[test]
fn attach_passes_stdin_and_detach_keys_leave_the_container_running() {
    use std::io::Write;
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "att",
        "someapp:1.0",
        "sh",
        "-c",
        "while read l; do echo got-$l; done",
    ]);
    // stdin from a pipe: the daemon's side spots the detach keys
    let mut c = b
        .command()
        .args(["attach", "--detach-keys", "ctrl-x,x", "att"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("attach");
    let mut stdin = c.stdin.take().expect("stdin");
    stdin.write_all(b"hello\n").expect("write");
    eventually("the line to come back", || {
        b.ok(&["logs", "att"]).contains("got-hello")
    });
    stdin.write_all(b"\x18x").expect("detach keys");
    let o = c.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("got-hello"), "{}", stdout(&o));
    assert!(b.ok(&["ps"]).contains(" att\n"), "detaching stopped it");

    // a terminal: raw mode, and ctrl-p ctrl-q (the default keys) detach
    b.ok(&["run", "-dti", "--name", "tt", "someapp:1.0", "sh"]);
    let o = through_pty(
        &b,
        "printf 'echo in-$((2+3))\\n'; sleep 1; printf '\\020\\021'; sleep 5",
        "BERTH attach tt",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(b.ok(&["logs", "tt"]).contains("in-5"));
    assert!(b.ok(&["ps"]).contains(" tt\n"), "detaching stopped it");
    // a running container keeps its stdin: attach again and end it
    let o = through_pty(&b, "printf 'exit 4\\n'; sleep 5", "BERTH attach tt");
    assert_eq!(o.status.code(), Some(4), "{}", stdout(&o));
    b.ok(&["rm", "-f", "att", "tt"]);
}

#[test]
fn exec_ti_has_the_window_size_and_ctrl_c_interrupts() {
    let b = berth();
    b.ok(&["run", "-d", "--name", "e", "someapp:1.0", "sleep", "100221"]);
    let o = through_pty(
        &b,
        "sleep 3",
        "stty rows 33 cols 77 </dev/tty; BERTH exec -ti e stty size",
    );
    assert!(stdout(&o).contains("33 77"), "{}", stdout(&o));
    let o = through_pty(
        &b,
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 0.5; printf '\\003'; done",
        "BERTH exec -ti e sh -c 'trap \\\"echo got-int; exit 7\\\" INT; while true; do sleep 0.2; done'",
    );
    assert_eq!(o.status.code(), Some(7), "{}", stdout(&o));
    assert!(stdout(&o).contains("got-int"), "{}", stdout(&o));
    // exec -d runs on its own; exec -i passes stdin
    b.ok(&["exec", "-d", "e", "sh", "-c", "echo bg > /tmp/bg"]);
    eventually("the detached exec", || {
        b.run(&["exec", "e", "cat", "/tmp/bg"]).stdout == b"bg\n"
    });
    b.ok(&["rm", "-f", "e"]);
}

#[test]
fn archive_uploads_cannot_write_outside_the_container() {
    let b = berth();
    b.ok(&["run", "-d", "--name", "a", "someapp:1.0", "sleep", "100222"]);
    let client = berth_client::Client::new(b.socket());
    let marker = format!("berth-test-escape-{}", std::process::id());
    // an entry with .. is refused
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    let name = format!("../../{marker}");
    h.as_gnu_mut().expect("gnu").name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    t.append(&h, &b"bad"[..]).expect("append");
    let data = t.into_inner().expect("tar");
    let r = client
        .request(
            "PUT",
            "/containers/a/archive?path=/tmp",
            berth_client::Body::Bytes(&data, "application/x-tar"),
        )
        .expect("put");
    assert!(r.status >= 400, "an escaping entry was accepted");
    // a symlink to / followed by a file through it lands in the container's root
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    t.append_link(&mut h, "lnk", "/").expect("symlink");
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    t.append_data(&mut h, format!("lnk/tmp/{marker}"), &b"via\n"[..])
        .expect("file");
    let data = t.into_inner().expect("tar");
    let r = client
        .request(
            "PUT",
            "/containers/a/archive?path=/",
            berth_client::Body::Bytes(&data, "application/x-tar"),
        )
        .expect("put");
    let _ = r.bytes();
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "wrote on the host"
    );
    assert!(!Path::new("/").join(&marker).exists(), "wrote on the host");
    let inside = b.run(&["exec", "a", "cat", &format!("/tmp/{marker}")]);
    assert!(
        inside.status.success() || !Path::new("/tmp").join(&marker).exists(),
        "{}",
        stderr(&inside)
    );
    b.ok(&["rm", "-f", "a"]);
}

#[test]
fn commit_makes_an_image_of_the_changes() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "src",
        "-e",
        "FROM_RUN=1",
        "someapp:1.0",
        "sh",
        "-c",
        "echo data > /new && rm /etc/group && exec sleep 100223",
    ]);
    eventually("the changes", || b.ok(&["diff", "src"]).contains("A /new"));
    let id = b.ok(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/new\"]",
        "-m",
        "snapshot",
        "src",
        "committed:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    // the container runs on (commit paused it only while reading its layer)
    assert!(b.ok(&["ps"]).contains(" src\n"));
    assert_eq!(b.ok(&["run", "--rm", "committed:1"]), "data\n");
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "committed:1",
            "sh",
            "-c",
            "test ! -e /etc/group && echo $FROM_RUN"
        ]),
        "1\n"
    );
    b.ok(&["rm", "-f", "src"]);
}

#[test]
fn init_runs_as_pid_1_and_forwards_signals() {
    let b = berth();
    let ps = b.ok(&[
        "run",
        "--rm",
        "--init",
        "someapp:1.0",
        "ps",
        "-o",
        "pid,args",
    ]);
    assert!(ps.contains("1 /sbin/docker-init -- ps"), "{ps}");
    assert_eq!(
        b.run(&["run", "--rm", "--init", "someapp:1.0", "sh", "-c", "exit 3"])
            .status
            .code(),
        Some(3)
    );
    // without an init, sleep as pid 1 ignores SIGTERM; under one it dies of it
    b.ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "i",
        "someapp:1.0",
        "sleep",
        "100224",
    ]);
    b.ok(&["stop", "-t", "30", "i"]);
    let ps = b.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (143)"), "{ps}");
    b.ok(&["rm", "i"]);
}

#[test]
fn volumes_from_shares_another_containers_volumes() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "owner",
        "-v",
        "shared:/data",
        "someapp:1.0",
        "sh",
        "-c",
        "echo from-owner > /data/f && exec sleep 100225",
    ]);
    eventually("the owner's file", || {
        b.run(&["exec", "owner", "cat", "/data/f"]).stdout == b"from-owner\n"
    });
    assert_eq!(
        b.ok(&[
            "run",
            "--rm",
            "--volumes-from",
            "owner",
            "someapp:1.0",
            "cat",
            "/data/f"
        ]),
        "from-owner\n"
    );
    let o = b.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "owner:ro",
        "someapp:1.0",
        "sh",
        "-c",
        "echo x > /data/g",
    ]);
    assert_ne!(o.status.code(), Some(0), "a :ro volume was writable");
    let o = b.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "nosuch",
        "someapp:1.0",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    b.ok(&["rm", "-f", "owner"]);
}
