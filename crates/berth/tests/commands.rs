//! docker 28's flags of the commands other than run/create/build, end to end through
//! the `berth` binary on a busybox image: stop/restart --signal/--timeout, logs
//! --details, exec --env-file, cp -a/-L/-q, stats --format, update (cgroup limits and
//! the restart policy), the prune filters, the --format of history/version/system df,
//! volume create --opt, the network create/connect flags, and the flags berth refuses
//! clearly. Needs root (mounts, namespaces, cgroups) and Debian's busybox-static.

use berth_testkit::{cgroup_value, eventually, stderr, stdout};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

type Berth = berth_testkit::Berth;

/// A berth with someapp:1.0 (busybox) imported.
fn berth() -> Berth {
    Berth::with_busybox(
        env!("CARGO_BIN_EXE_berth"),
        "berth-test-commands-",
        "someapp:1.0",
    )
}

fn inspect(b: &Berth, name: &str, format: &str) -> String {
    b.ok(&["inspect", "-f", format, name]).trim().to_string()
}

/// A container that reports the signals it traps in its log and exits with 3 on
/// USR1, 4 on USR2.
fn trapping(b: &Berth, name: &str) {
    b.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "someapp:1.0",
        "sh",
        "-c",
        "trap 'echo trapped USR1; exit 3' USR1; trap 'echo trapped USR2; exit 4' USR2; echo ready; while :; do sleep 0.1; done",
    ]);
    eventually("the traps are set", || {
        stdout(&b.run(&["logs", name])).contains("ready")
    });
}

#[test]
fn stop_and_restart_send_the_signal_given() {
    let b = berth();
    trapping(&b, "sig");
    let out = b.run(&["stop", "--signal", "USR1", "--timeout", "20", "sig"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "sig\n");
    assert_eq!(inspect(&b, "sig", "{{.State.ExitCode}}"), "3");
    assert_eq!(stdout(&b.run(&["logs", "sig"])), "ready\ntrapped USR1\n");
    // no --log-opt attributes: --details puts docker's empty attributes and a space
    // before each line (moby's attrsByteSlice + " ")
    assert_eq!(
        stdout(&b.run(&["logs", "--details", "sig"])),
        " ready\n trapped USR1\n"
    );

    // restart: -s and the old -t/--time spelling
    b.ok(&["start", "sig"]);
    eventually("the traps are set again", || {
        stdout(&b.run(&["logs", "sig"])).matches("ready").count() == 2
    });
    b.ok(&["restart", "-s", "SIGUSR2", "-t", "20", "sig"]);
    assert!(stdout(&b.run(&["logs", "sig"])).contains("trapped USR2"));
    assert_eq!(inspect(&b, "sig", "{{.State.Status}}"), "running");
    b.ok(&["stop", "-s", "12", "--time", "20", "sig"]);
    assert_eq!(inspect(&b, "sig", "{{.State.ExitCode}}"), "4");

    // the docker CLI's stop --signal reaches the same daemon code
    let runs = stdout(&b.run(&["logs", "sig"])).matches("ready").count();
    b.ok(&["start", "sig"]);
    eventually("the traps are set once more", || {
        stdout(&b.run(&["logs", "sig"])).matches("ready").count() == runs + 1
    });
    b.docker_ok(&["stop", "--signal", "SIGUSR1", "--timeout", "20", "sig"]);
    assert_eq!(inspect(&b, "sig", "{{.State.ExitCode}}"), "3");

    // a bad signal: docker's status 1, the container untouched
    b.ok(&["start", "sig"]);
    let out = b.run(&["stop", "--signal", "NOPE", "sig"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("signal"), "{}", stderr(&out));
    assert_eq!(inspect(&b, "sig", "{{.State.Status}}"), "running");
}

#[test]
fn exec_env_file_stats_format_and_log_details() {
    let b = berth();
    // logs --details: the --log-opt labels/env values, sorted, URL-encoded
    b.ok(&[
        "run",
        "--name",
        "lg",
        "--log-opt",
        "labels=team,absent",
        "--log-opt",
        "env=WHO",
        "-l",
        "team=core",
        "-l",
        "other=x",
        "-e",
        "WHO=a b",
        "someapp:1.0",
        "echo",
        "hi",
    ]);
    assert_eq!(b.ok(&["logs", "--details", "lg"]), "WHO=a+b,team=core hi\n");
    assert_eq!(b.ok(&["logs", "lg"]), "hi\n");
    let ts = b.ok(&["logs", "--details", "-t", "lg"]);
    assert!(ts.ends_with("Z WHO=a+b,team=core hi\n"), "{ts}");
    assert_eq!(
        b.docker_ok(&["logs", "--details", "lg"]),
        "WHO=a+b,team=core hi\n"
    );
    // the whole environment counts, not only -e (PATH comes with the container)
    b.ok(&[
        "run",
        "--name",
        "lg2",
        "--log-opt",
        "env=PATH",
        "someapp:1.0",
        "echo",
        "hi",
    ]);
    let d = b.ok(&["logs", "--details", "lg2"]);
    assert!(d.starts_with("PATH=%2F") && d.ends_with(" hi\n"), "{d}");
    let out = b.run(&["run", "--log-opt", "env-regex=^W", "someapp:1.0", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("env-regex"), "{}", stderr(&out));

    b.ok(&[
        "run",
        "-d",
        "--name",
        "st",
        "someapp:1.0",
        "sleep",
        "100301",
    ]);
    let env = b.data_root().join("exec.env");
    std::fs::write(&env, "# a comment\nA=from-file\nB=from-file\n\nC=c\n").expect("env file");
    let env = env.to_str().expect("utf-8");
    let out = b.ok(&[
        "exec",
        "--env-file",
        env,
        "-e",
        "B=from-flag",
        "st",
        "sh",
        "-c",
        "echo $A $B $C",
    ]);
    assert_eq!(out, "from-file from-flag c\n");
    let out = b.run(&["exec", "--env-file", "/no/such/berth.env", "st", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("/no/such/berth.env"),
        "{}",
        stderr(&out)
    );

    let out = b.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.Container}}|{{.PIDs}}|{{.CPUPerc}}",
        "st",
    ]);
    let fields: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(fields[..3], ["st", "st", "1"], "{out}");
    assert!(fields[3].ends_with('%'), "{out}");
    let out = b.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "table {{.ID}}\t{{.MemUsage}}\t{{.NetIO}}",
        "st",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("CONTAINER ID") && lines[0].contains("MEM USAGE / LIMIT"),
        "{out}"
    );
    assert!(lines[0].contains("NET I/O"), "{out}");
    let id = inspect(&b, "st", "{{.Id}}");
    assert!(lines[1].starts_with(&id[..12]), "{out}");
    // NET I/O: the container's side of its veth
    let gw = inspect(&b, "st", "{{.NetworkSettings.Gateway}}");
    b.ok(&["exec", "st", "ping", "-c", "2", "-W", "5", &gw]);
    let net = b.ok(&["stats", "--no-stream", "--format", "{{.NetIO}}", "st"]);
    let (rx, tx) = net.trim().split_once(" / ").expect("rx / tx");
    assert!(rx != "0B" && tx != "0B", "{net}");
    let json = b.ok(&["stats", "--no-stream", "--format", "json", "st"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("json line");
    assert_eq!(v["Name"], "st");
    let out = b.run(&["stats", "--no-stream", "--format", "{{.Nope", "st"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn cp_archive_keeps_owners_follow_link_and_quiet() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "cp",
        "someapp:1.0",
        "sleep",
        "100302",
    ]);
    let host = b.data_root().join("cp-host");
    std::fs::create_dir_all(&host).expect("mkdir");
    let f = host.join("owned.txt");
    std::fs::write(&f, "owned\n").expect("write");
    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).expect("chown");
    let src = f.to_str().expect("utf-8");

    // host → container: root's without -a, the file's own with -a
    let out = b.run(&["cp", src, "cp:/tmp/plain.txt"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "no progress line off a terminal");
    b.ok(&["cp", "-a", src, "cp:/tmp/kept.txt"]);
    b.docker_ok(&["cp", "-a", src, "cp:/tmp/docker-kept.txt"]);
    let owners = b.ok(&[
        "exec",
        "cp",
        "stat",
        "-c",
        "%u:%g",
        "/tmp/plain.txt",
        "/tmp/kept.txt",
        "/tmp/docker-kept.txt",
    ]);
    assert_eq!(owners, "0:0\n1234:5678\n1234:5678\n");

    // host → container with -L: what a link to a directory leads to
    std::fs::create_dir_all(host.join("hd")).expect("mkdir");
    std::fs::write(host.join("hd/f"), "in-hd\n").expect("write");
    std::os::unix::fs::symlink(host.join("hd"), host.join("hlink")).expect("ln");
    let hlink = host.join("hlink");
    let hlink = hlink.to_str().expect("utf-8");
    b.ok(&["cp", "-L", hlink, "cp:/tmp/hl"]);
    b.ok(&["cp", hlink, "cp:/tmp/hl-link"]);
    let kinds = b.ok(&[
        "exec",
        "cp",
        "sh",
        "-c",
        "cat /tmp/hl/f; test -L /tmp/hl-link && echo link",
    ]);
    assert_eq!(kinds, "in-hd\nlink\n");

    // on a terminal (script's pty) docker's line is shown, unless -q
    let on_tty = |extra: &str| {
        let cmd = format!(
            "BERTH_RUNTIME_ROOT={} {} --data-root {} cp {extra} {src} cp:/tmp/tty.txt",
            b.runtime_root().display(),
            b.bin().display(),
            b.data_root().display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .expect("run script (bsdutils)");
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let shown = on_tty("");
    assert!(
        shown.contains("Successfully copied ") && shown.contains(" to cp:/tmp/tty.txt"),
        "{shown}"
    );
    assert_eq!(on_tty("-q").trim(), "");

    // container → host: -L copies what a link leads to, -a keeps the owner
    b.ok(&[
        "exec",
        "cp",
        "sh",
        "-c",
        "echo target > /tmp/t.txt && chown 42:43 /tmp/t.txt && ln -s t.txt /tmp/link",
    ]);
    let to = |n: &str| host.join(n).to_str().expect("utf-8").to_string();
    b.ok(&["cp", "-q", "cp:/tmp/link", &to("as-link")]);
    let m = std::fs::symlink_metadata(host.join("as-link")).expect("copied");
    assert!(m.file_type().is_symlink(), "without -L the link is copied");
    b.ok(&["cp", "-L", "cp:/tmp/link", &to("followed")]);
    let m = std::fs::symlink_metadata(host.join("followed")).expect("copied");
    assert!(m.is_file());
    assert_eq!(
        std::fs::read_to_string(host.join("followed")).expect("read"),
        "target\n"
    );
    b.ok(&["cp", "--archive", "cp:/tmp/t.txt", &to("kept")]);
    let m = std::fs::metadata(host.join("kept")).expect("copied");
    assert_eq!((m.uid(), m.gid()), (42, 43));
    b.ok(&["cp", "cp:/tmp/t.txt", &to("mine")]);
    let m = std::fs::metadata(host.join("mine")).expect("copied");
    assert_eq!((m.uid(), m.gid()), (0, 0), "without -a: the caller's");
    // a directory link with -L: its content
    b.ok(&[
        "exec",
        "cp",
        "sh",
        "-c",
        "mkdir -p /srv/d && echo in-d > /srv/d/f && ln -s /srv/d /tmp/dlink",
    ]);
    b.ok(&["cp", "-L", "cp:/tmp/dlink", &to("dcopy")]);
    assert_eq!(
        std::fs::read_to_string(host.join("dcopy/f")).expect("read"),
        "in-d\n"
    );
}

#[test]
fn update_changes_the_cgroup_and_the_restart_policy() {
    let b = berth();
    b.ok(&[
        "run",
        "-d",
        "--name",
        "up",
        "someapp:1.0",
        "sleep",
        "100303",
    ]);
    let id = inspect(&b, "up", "{{.Id}}");
    let out = b.run(&[
        "update",
        "--cpuset-cpus",
        "0",
        "--cpuset-mems",
        "0",
        "--cpu-period",
        "50000",
        "--cpu-quota",
        "25000",
        "--memory-reservation",
        "32m",
        "--restart",
        "on-failure:2",
        "up",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "up\n");
    assert_eq!(cgroup_value(&id, "cpuset/cpuset.cpus", "cpuset.cpus"), "0");
    assert_eq!(cgroup_value(&id, "cpuset/cpuset.mems", "cpuset.mems"), "0");
    assert_eq!(
        cgroup_value(&id, "cpu/cpu.cfs_period_us", "cpu.max"),
        "50000"
    );
    assert_eq!(
        cgroup_value(&id, "cpu/cpu.cfs_quota_us", "cpu.max"),
        "25000"
    );
    assert_eq!(
        cgroup_value(&id, "memory/memory.soft_limit_in_bytes", "memory.low"),
        (32u64 << 20).to_string()
    );
    assert_eq!(
        inspect(
            &b,
            "up",
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure:2"
    );

    // the docker CLI's update body (every field, zeros for the flags not given)
    b.docker_ok(&[
        "update",
        "--cpu-quota",
        "30000",
        "--cpu-rt-runtime",
        "0",
        "up",
    ]);
    assert_eq!(
        cgroup_value(&id, "cpu/cpu.cfs_quota_us", "cpu.max"),
        "30000"
    );
    assert_eq!(cgroup_value(&id, "cpuset/cpuset.cpus", "cpuset.cpus"), "0");
    assert_eq!(
        inspect(&b, "up", "{{.HostConfig.RestartPolicy.Name}}"),
        "on-failure",
        "docker's empty RestartPolicy leaves the policy as it is"
    );

    // remembered: the next start builds its cgroup with them
    b.ok(&["restart", "-t", "0", "up"]);
    assert_eq!(
        cgroup_value(&id, "cpu/cpu.cfs_quota_us", "cpu.max"),
        "30000"
    );
    assert_eq!(
        cgroup_value(&id, "cpu/cpu.cfs_period_us", "cpu.max"),
        "50000"
    );
    assert_eq!(cgroup_value(&id, "cpuset/cpuset.cpus", "cpuset.cpus"), "0");
    assert_eq!(
        cgroup_value(&id, "memory/memory.soft_limit_in_bytes", "memory.low"),
        (32u64 << 20).to_string()
    );

    // a weight this kernel cannot apply is dropped with docker's warning, else set
    let out = b.run(&["update", "--blkio-weight", "300", "up"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let weight = ["blkio.weight", "blkio.bfq.weight"]
        .iter()
        .find(|f| Path::new("/sys/fs/cgroup/blkio").join(f).exists());
    match weight {
        Some(f) => assert_eq!(cgroup_value(&id, &format!("blkio/{f}"), "io.weight"), "300"),
        None => assert!(
            stderr(&out).contains("Weight discarded"),
            "{}",
            stderr(&out)
        ),
    }

    // bad input fails before anything changes
    let out = b.run(&["update", "--cpus", "1", "--cpu-period", "100000", "up"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--cpus"), "{}", stderr(&out));
    let out = b.run(&["update", "--blkio-weight", "5", "up"]);
    assert_eq!(out.status.code(), Some(125));
    let out = b.run(&["update", "--restart", "sometimes", "up"]);
    assert_eq!(out.status.code(), Some(125));
    let out = b.run(&["update", "up"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("one or more flags"),
        "{}",
        stderr(&out)
    );

    // a stopped container's policy, used by the daemon's restart logic
    b.ok(&[
        "create",
        "--name",
        "fails",
        "someapp:1.0",
        "sh",
        "-c",
        "exit 1",
    ]);
    b.ok(&["update", "--restart", "on-failure:2", "fails"]);
    b.ok(&["start", "fails"]);
    eventually(
        "two restarts by the updated policy, then it stays down",
        || inspect(&b, "fails", "{{.RestartCount}} {{.State.Status}}") == "2 exited",
    );
}

#[test]
fn prune_filters_pick_by_label_and_age() {
    let b = berth();
    // image prune: dangling images picked by label (before any container: berth
    // counts an image's containers by its layers, which these share with someapp)
    let tar = berth_testkit::rootfs_tar(&b.data_root());
    let tar = tar.to_str().expect("utf-8");
    let labelled = b
        .ok(&["image", "import", "-c", "LABEL env=test", tar])
        .trim()
        .to_string();
    let plain = b
        .ok(&["image", "import", "-c", "LABEL env=prod", tar])
        .trim()
        .to_string();
    let out = b.ok(&["image", "prune", "-f", "--filter", "label=env=test"]);
    assert!(out.contains(&labelled) && !out.contains(&plain), "{out}");
    let ids = b.ok(&["image", "ls", "-q", "--no-trunc"]);
    assert!(!ids.contains(&labelled) && ids.contains(&plain), "{ids}");
    b.ok(&["image", "prune", "-f", "--filter", "label!=env=test"]);
    assert!(!b.ok(&["image", "ls", "-q", "--no-trunc"]).contains(&plain));

    for (name, label) in [("keep", "keep=1"), ("tst", "env=test"), ("plain", "x=y")] {
        b.ok(&[
            "create",
            "--name",
            name,
            "--label",
            label,
            "someapp:1.0",
            "true",
        ]);
    }
    let names = |b: &Berth| {
        let mut v: Vec<String> = b
            .ok(&["ps", "-a", "--format", "{{.Names}}"])
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    // all created just now: nothing is older than an hour
    b.ok(&["container", "prune", "-f", "--filter", "until=1h"]);
    assert_eq!(names(&b), ["keep", "plain", "tst"]);
    let out = b.docker_ok(&["container", "prune", "-f", "--filter", "label=env=test"]);
    assert!(out.starts_with("Deleted Containers:"), "{out}");
    assert_eq!(names(&b), ["keep", "plain"]);
    b.ok(&["container", "prune", "--force", "--filter", "label!=keep"]);
    assert_eq!(names(&b), ["keep"]);
    let out = b.run(&["container", "prune", "-f", "--filter", "colour=red"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid filter 'colour'"),
        "{}",
        stderr(&out)
    );
    let out = b.run(&["container", "prune", "-f", "--filter", "until=soon"]);
    assert_eq!(out.status.code(), Some(1));

    // system prune passes the filters on; an until in the future takes everything
    b.ok(&["network", "create", "--label", "keep=1", "kept-net"]);
    b.ok(&["network", "create", "loose-net"]);
    b.ok(&["system", "prune", "-f", "--filter", "label!=keep"]);
    assert_eq!(names(&b), ["keep"]);
    let nets = b.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        nets.contains("kept-net") && !nets.contains("loose-net"),
        "{nets}"
    );
    let later = (chrono_now() + 3600).to_string();
    b.ok(&[
        "system",
        "prune",
        "-f",
        "--filter",
        &format!("until={later}"),
    ]);
    assert_eq!(names(&b), Vec::<String>::new());
    let out = b.run(&["system", "prune", "-f", "--volumes", "--filter", "until=1h"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("until"), "{}", stderr(&out));
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

#[test]
fn formats_of_history_version_and_system_df_and_clear_refusals() {
    let b = berth();
    let out = b.ok(&[
        "history",
        "--format",
        "{{.ID}}|{{.CreatedBy}}",
        "someapp:1.0",
    ]);
    assert!(
        !out.is_empty() && out.lines().all(|l| l.contains('|')),
        "{out}"
    );
    let out = b.ok(&[
        "image",
        "history",
        "--format",
        "table {{.ID}}\t{{.Size}}",
        "someapp:1.0",
    ]);
    let head = out.lines().next().expect("a header");
    assert!(head.starts_with("IMAGE") && head.contains("SIZE"), "{out}");

    let v = b.ok(&[
        "version",
        "--format",
        "{{.Client.Version}} {{.Server.Version}}",
    ]);
    let want = env!("CARGO_PKG_VERSION");
    assert_eq!(v, format!("{want} {want}\n"));
    let doc: serde_json::Value =
        serde_json::from_str(&b.ok(&["version", "-f", "{{json .}}"])).expect("json");
    assert_eq!(doc["Server"]["ApiVersion"], doc["Client"]["ApiVersion"]);

    b.ok(&["run", "--name", "df", "someapp:1.0", "true"]);
    let types = b.ok(&["system", "df", "--format", "{{.Type}}"]);
    assert_eq!(types, "Images\nContainers\nLocal Volumes\nBuild Cache\n");
    let t = b.ok(&[
        "system",
        "df",
        "--format",
        "table {{.Type}}\t{{.TotalCount}}",
    ]);
    assert!(t.starts_with("TYPE") && t.contains("Containers"), "{t}");
    let verbose = b.ok(&["system", "df", "-v"]);
    for section in [
        "Images space usage:",
        "Containers space usage:",
        "Local Volumes space usage:",
        "Build cache usage: 0B",
    ] {
        assert!(verbose.contains(section), "{verbose}");
    }
    assert!(
        verbose.lines().any(|l| l.starts_with("someapp")),
        "{verbose}"
    );
    assert!(verbose.lines().any(|l| l.ends_with(" df")), "{verbose}");

    // flags berth takes but cannot honour fail clearly
    for (args, needle) in [
        (vec!["image", "ls", "--tree"], "not supported"),
        (
            vec!["pull", "--platform", "linux/arm64", "someapp:1.0"],
            "linux/arm64",
        ),
        (
            vec![
                "image",
                "inspect",
                "--platform",
                "windows/amd64",
                "someapp:1.0",
            ],
            "windows/amd64",
        ),
        (vec!["rm", "--link", "df/x"], "legacy links"),
        (vec!["start", "--checkpoint", "c1", "df"], "checkpoint"),
        (vec!["volume", "ls", "--cluster"], "cluster volumes (swarm)"),
    ] {
        let out = b.run(&args);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    b.ok(&[
        "image",
        "inspect",
        "--platform",
        "linux/amd64",
        "someapp:1.0",
    ]);
    b.ok(&["tag", "someapp:1.0", "other:1"]);
    b.ok(&["rmi", "--no-prune", "--platform", "linux/amd64", "other:1"]);
}

#[test]
fn volume_create_options_mount_while_used() {
    let b = berth();
    b.ok(&[
        "volume",
        "create",
        "--driver",
        "local",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "--opt",
        "o=size=64m",
        "--label",
        "kind=scratch",
        "scratch",
    ]);
    assert_eq!(
        b.ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Options.type}} {{.Labels.kind}}",
            "scratch"
        ]),
        "tmpfs scratch\n"
    );
    let mounts = b.ok(&[
        "run",
        "--rm",
        "-v",
        "scratch:/data",
        "someapp:1.0",
        "sh",
        "-c",
        "grep ' /data ' /proc/mounts",
    ]);
    assert!(mounts.starts_with("tmpfs /data tmpfs"), "{mounts}");
    assert!(mounts.contains("size=65536k"), "{mounts}");
    let data = b
        .ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "scratch"])
        .trim()
        .to_string();
    assert!(
        !b.mounts().contains(&data),
        "unmounted once no container uses it: {:?}",
        b.mounts()
    );
    // shared while two containers use it; kept mounted until the last one stops
    b.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "-v",
        "scratch:/data",
        "someapp:1.0",
        "sleep",
        "100306",
    ]);
    b.ok(&[
        "run",
        "--rm",
        "-v",
        "scratch:/d",
        "someapp:1.0",
        "sh",
        "-c",
        "echo shared > /d/f",
    ]);
    assert!(b.mounts().contains(&data), "{:?}", b.mounts());
    assert_eq!(b.ok(&["exec", "holder", "cat", "/data/f"]), "shared\n");
    b.ok(&["rm", "-f", "holder"]);
    assert!(!b.mounts().contains(&data), "{:?}", b.mounts());
    let out = b.run(&["volume", "rm", "scratch"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    b.ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "scratch",
    ]);

    // type=none,o=bind: the host directory
    let dir = b.data_root().join("bound");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let dev = format!("device={}", dir.display());
    b.ok(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &dev,
        "bound",
    ]);
    b.ok(&[
        "run",
        "--rm",
        "-v",
        "bound:/b",
        "someapp:1.0",
        "sh",
        "-c",
        "echo through > /b/f",
    ]);
    assert_eq!(
        std::fs::read_to_string(dir.join("f")).expect("written through the bind"),
        "through\n"
    );
    // an empty bind volume is filled from the image, as docker's
    let etc = b.data_root().join("etc-copy");
    std::fs::create_dir_all(&etc).expect("mkdir");
    let dev = format!("device={}", etc.display());
    b.ok(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &dev,
        "etcv",
    ]);
    b.ok(&["run", "--rm", "-v", "etcv:/etc", "someapp:1.0", "true"]);
    assert!(etc.join("passwd").is_file(), "the image's /etc copied up");
    b.ok(&["volume", "rm", "etcv"]);
    assert!(
        etc.join("passwd").is_file(),
        "the host directory is left alone"
    );
    b.ok(&["volume", "rm", "scratch", "bound"]);

    for (args, needle) in [
        (vec!["volume", "create", "--driver", "nfs", "v"], "local driver only"),
        (
            vec!["volume", "create", "-o", "type=tmpfs", "v"],
            "device",
        ),
        (
            vec!["volume", "create", "-o", "colour=red", "v"],
            "invalid option key",
        ),
        (
            vec!["volume", "create", "--scope", "multi", "--sharing", "all", "v"],
            "--scope, --sharing are only supported for cluster volumes (swarm), which berth does not run",
        ),
        (
            vec!["volume", "create", "--topology-required", "region=r1", "v"],
            "is only supported for cluster volumes (swarm)",
        ),
    ] {
        let out = b.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    // the docker CLI's bodies: DriverOpts, and a cluster spec refused
    b.docker_ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "dv",
    ]);
    assert_eq!(
        b.ok(&["volume", "inspect", "-f", "{{.Options.device}}", "dv"]),
        "tmpfs\n"
    );
    b.ok(&["volume", "rm", "dv"]);
    let out = b.docker(&["volume", "create", "--scope", "multi", "dv2"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("only supported for cluster volumes (swarm)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn pull_and_push_all_tags_through_a_registry() {
    let b = berth();
    let reg = berth_testkit::Registry::start(false);
    let repo = format!("{}/berth-test/all", reg.host);
    for t in ["1", "2"] {
        b.ok(&["tag", "someapp:1.0", &format!("{repo}:{t}")]);
    }
    let out = b.run(&["push", "-a", &format!("{repo}:1")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("tag can't be used with --all-tags"),
        "{}",
        stderr(&out)
    );
    let out = b.ok(&["push", "--all-tags", "--disable-content-trust", &repo]);
    assert!(
        out.contains("1: digest: sha256:") && out.contains("2: digest: sha256:"),
        "{out}"
    );
    let out = b.run(&["push", "--platform", "linux/s390x", &format!("{repo}:1")]);
    assert_ne!(out.status.code(), Some(0));
    for t in ["1", "2"] {
        b.ok(&["rmi", &format!("{repo}:{t}")]);
    }
    let tags = |b: &Berth| {
        b.ok(&["image", "ls", "--format", "{{.Tag}}", &repo])
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(tags(&b), Vec::<String>::new());
    let out = b.ok(&["pull", "-a", "--platform", "linux/amd64", &repo]);
    assert!(out.trim_end().ends_with(&repo), "{out}");
    let mut got = tags(&b);
    got.sort();
    assert_eq!(got, ["1", "2"]);

    // the docker CLI's pull -a (an empty tag) gets the same from berthd
    for t in ["1", "2"] {
        b.ok(&["rmi", &format!("{repo}:{t}")]);
    }
    b.docker_ok(&["pull", "-a", "-q", &repo]);
    let mut got = tags(&b);
    got.sort();
    assert_eq!(got, ["1", "2"]);
    // and its push -a (no tag) pushes both tags
    let out = b.docker_ok(&["push", "-a", &repo]);
    assert!(
        out.contains("1: digest: sha256:") && out.contains("2: digest: sha256:"),
        "{out}"
    );
}

#[test]
fn network_create_connect_and_inspect_flags() {
    let b = berth();
    b.ok(&[
        "network",
        "create",
        "--subnet",
        "10.251.77.0/29",
        "--aux-address",
        "router=10.251.77.2",
        "--ipam-driver",
        "default",
        "--ipam-opt",
        "note=kept",
        "--attachable",
        "--ipv4",
        "auxnet",
    ]);
    let f = "{{json .IPAM.Config}} {{.Attachable}} {{.IPAM.Options.note}} {{.EnableIPv4}}";
    let v = b.ok(&["network", "inspect", "--verbose", "-f", f, "auxnet"]);
    assert!(
        v.contains(r#""AuxiliaryAddresses":{"router":"10.251.77.2"}"#),
        "{v}"
    );
    assert!(v.trim_end().ends_with("true kept true"), "{v}");
    // the reserved address is skipped: the first container gets .3, not .2
    b.ok(&[
        "run",
        "-d",
        "--name",
        "n1",
        "--network",
        "auxnet",
        "someapp:1.0",
        "sleep",
        "100304",
    ]);
    let ip = inspect(&b, "n1", "{{.NetworkSettings.Networks.auxnet.IPAddress}}");
    assert_eq!(ip, "10.251.77.3");

    // connect: a link to the container's own name maps; the rest fails clearly
    b.ok(&[
        "run",
        "-d",
        "--name",
        "n2",
        "someapp:1.0",
        "sleep",
        "100305",
    ]);
    for (flag, value, needle) in [
        ("--ip6", "2001:db8::33", "IPv6"),
        ("--link-local-ip", "169.254.1.1", "link-local"),
        ("--driver-opt", "k=v", "--driver-opt"),
        ("--gw-priority", "5", "--gw-priority"),
        ("--link", "n1:db", "alias"),
    ] {
        let out = b.run(&["network", "connect", flag, value, "auxnet", "n2"]);
        assert_eq!(out.status.code(), Some(1), "{flag}");
        assert!(stderr(&out).contains(needle), "{flag}: {}", stderr(&out));
    }
    b.ok(&[
        "network",
        "connect",
        "--link",
        "n1",
        "--gw-priority",
        "0",
        "auxnet",
        "n2",
    ]);
    let ip2 = inspect(&b, "n2", "{{.NetworkSettings.Networks.auxnet.IPAddress}}");
    assert_eq!(ip2, "10.251.77.4");
    b.ok(&["exec", "n2", "ping", "-c", "1", "-W", "5", "10.251.77.3"]);

    for (args, needle) in [
        (vec!["--ipv6"], "IPv6"),
        (vec!["--ipv4=false"], "IPv4"),
        (vec!["--ingress"], "swarm"),
        (vec!["--config-only"], "swarm"),
        (vec!["--config-from", "auxnet"], "swarm"),
        (vec!["--scope", "swarm"], "swarm"),
        (vec!["--ipam-driver", "dhcp"], "default IPAM driver only"),
        (
            vec!["--aux-address", "x=10.9.9.9", "--subnet", "10.251.78.0/29"],
            "aux-address",
        ),
    ] {
        let mut full = vec!["network", "create"];
        full.extend(args.iter().copied());
        full.push("badnet");
        let out = b.run(&full);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }

    // the docker CLI's body for the same flags reaches the same daemon code
    b.docker_ok(&[
        "network",
        "create",
        "--subnet",
        "10.251.79.0/29",
        "--aux-address",
        "gw2=10.251.79.6",
        "--attachable",
        "dnet",
    ]);
    let v = b.ok(&[
        "network",
        "inspect",
        "-f",
        "{{.Attachable}} {{json .IPAM.Config}}",
        "dnet",
    ]);
    assert!(v.starts_with("true") && v.contains("10.251.79.6"), "{v}");
    let out = b.docker(&["network", "create", "--ipv6", "d6"]);
    assert_ne!(out.status.code(), Some(0));
}
