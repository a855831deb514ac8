//! The finer flags of `run`/`create` (docker 28's HostConfig ones) end to end, each
//! checked where it shows: inside the container, in its cgroup files, in its OCI
//! spec, or in `inspect`; bad values fail with 125 before anything is created.
//! Needs root (namespaces, cgroups, mounts) and Debian's busybox-static.

use berth_testkit::{cgroups_of, eventually, stderr, stdout};
use serde_json::Value;
use std::path::{Path, PathBuf};

type Berth = berth_testkit::Berth;

fn berth() -> Berth {
    Berth::with_busybox(
        env!("CARGO_BIN_EXE_berth"),
        "berth-test-runflags-",
        "someapp:1.0",
    )
}

/// Asserts that `berth args` fails with docker's 125 and a message containing
/// `needle`, and that it left no container behind.
fn refused(b: &Berth, args: &[&str], needle: &str) {
    let o = b.run(args);
    assert_eq!(o.status.code(), Some(125), "{args:?}: {}", stderr(&o));
    assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    assert_eq!(b.ok(&["ps", "-aq"]), "", "{args:?} left a container");
}

fn inspect(b: &Berth, name: &str) -> Value {
    let out = b.ok(&["container", "inspect", name]);
    let v: Value = serde_json::from_str(&out).expect("inspect json");
    v[0].clone()
}

/// The content of control file `file` of container `id`, in whichever hierarchy
/// (v1 controller or unified) has it.
fn cgroup_file(id: &str, file: &str) -> Option<String> {
    cgroups_of(id)
        .into_iter()
        .find_map(|d| std::fs::read_to_string(d.join(file)).ok())
        .map(|s| s.trim().to_string())
}

fn gone(b: &Berth, id: &str) {
    b.ok(&["rm", "-f", id]);
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert!(
        cgroups_of(id).is_empty(),
        "cgroups left: {:?}",
        cgroups_of(id)
    );
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn cidfile_group_add_sysctl_shm_size_and_domainname() {
    let b = berth();
    let cid = b.root.path().join("cid");
    let cid_s = cid.to_str().expect("utf-8");
    let out = b.ok(&[
        "run",
        "--rm",
        "--cidfile",
        cid_s,
        "--group-add",
        "nogroup",
        "--group-add",
        "1234",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--sysctl",
        "kernel.shmmax=1000000",
        "--shm-size",
        "16m",
        "--domainname",
        "example.org",
        "someapp:1.0",
        "sh",
        "-c",
        "id -G; cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax /proc/sys/kernel/domainname; grep ' /dev/shm ' /proc/mounts",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    let mut groups: Vec<&str> = lines[0].split(' ').collect();
    groups.sort();
    assert_eq!(groups, ["0", "1234", "65534"], "{out}");
    assert_eq!(&lines[1..4], ["1", "1000000", "example.org"], "{out}");
    assert!(lines[4].contains("size=16384k"), "{out}");
    let id = std::fs::read_to_string(&cid).expect("cidfile");
    assert!(
        id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    // docker's default /dev/shm is 64m
    let out = b.ok(&[
        "run",
        "--rm",
        "someapp:1.0",
        "grep",
        " /dev/shm ",
        "/proc/mounts",
    ]);
    assert!(out.contains("size=65536k"), "{out}");
    refused(
        &b,
        &["run", "--cidfile", cid_s, "someapp:1.0", "true"],
        "container ID file found",
    );
    refused(
        &b,
        &[
            "run",
            "--sysctl",
            "kernel.hostname=x",
            "someapp:1.0",
            "true",
        ],
        "--sysctl kernel.hostname",
    );
    refused(
        &b,
        &[
            "run",
            "--network",
            "host",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "someapp:1.0",
            "true",
        ],
        "host's network namespace",
    );
    refused(
        &b,
        &["run", "--group-add", "nosuchgroup", "someapp:1.0", "true"],
        "nosuchgroup",
    );
    refused(
        &b,
        &["run", "--shm-size", "lots", "someapp:1.0", "true"],
        "--shm-size",
    );
    assert_eq!(b.mounts(), Vec::<String>::new());
}

fn ns_of(what: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{what}"))
        .expect("own namespace")
        .display()
        .to_string()
}

#[test]
fn pid_ipc_uts_share_with_the_host_or_a_container() {
    let b = berth();
    let out = b.ok(&[
        "run",
        "--rm",
        "--pid",
        "host",
        "--ipc",
        "host",
        "--uts",
        "host",
        "someapp:1.0",
        "sh",
        "-c",
        "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; hostname; cat /etc/hostname",
    ]);
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(
        out,
        format!("{}\n{}\n{host_name}{host_name}", ns_of("pid"), ns_of("ipc")),
    );
    let donor = b
        .ok(&[
            "run",
            "-d",
            "--name",
            "donor",
            "--ipc",
            "shareable",
            "someapp:1.0",
            "sh",
            "-c",
            "echo shared > /dev/shm/f; sleep 1000",
        ])
        .trim()
        .to_string();
    eventually("the donor's file in /dev/shm", || {
        b.run(&["exec", "donor", "test", "-f", "/dev/shm/f"])
            .status
            .success()
    });
    let theirs = b.ok(&[
        "exec",
        "donor",
        "sh",
        "-c",
        "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc",
    ]);
    let out = b.ok(&[
        "run",
        "--rm",
        "--pid",
        "container:donor",
        "--ipc",
        "container:donor",
        "someapp:1.0",
        "sh",
        "-c",
        "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; cat /dev/shm/f",
    ]);
    assert_eq!(out, format!("{theirs}shared\n"));
    let hc = &inspect(&b, "donor")["HostConfig"];
    assert_eq!(hc["IpcMode"], "shareable");
    let private = b
        .ok(&[
            "run",
            "-d",
            "--name",
            "private",
            "someapp:1.0",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    refused_with_containers(
        &b,
        &["run", "--ipc", "container:private", "someapp:1.0", "true"],
        "not shareable",
        2,
    );
    refused_with_containers(
        &b,
        &["run", "--pid", "container:nosuch", "someapp:1.0", "true"],
        "nosuch",
        2,
    );
    refused_with_containers(
        &b,
        &["run", "--ipc", "bogus", "someapp:1.0", "true"],
        "--ipc",
        2,
    );
    refused_with_containers(
        &b,
        &[
            "run",
            "--uts",
            "host",
            "--hostname",
            "h",
            "someapp:1.0",
            "true",
        ],
        "--uts host",
        2,
    );
    let out = b.ok(&[
        "run",
        "--rm",
        "--ipc",
        "none",
        "someapp:1.0",
        "sh",
        "-c",
        "grep -c ' /dev/shm ' /proc/mounts; readlink /proc/self/ns/ipc",
    ]);
    assert!(
        out.starts_with("0\n") && !out.contains(&ns_of("ipc")),
        "{out}"
    );
    b.ok(&["rm", "-f", &private]);
    assert!(cgroups_of(&private).is_empty());
    gone(&b, &donor);
}

/// Like [`refused`] when `n` other containers exist.
fn refused_with_containers(b: &Berth, args: &[&str], needle: &str, n: usize) {
    let o = b.run(args);
    assert_eq!(o.status.code(), Some(125), "{args:?}: {}", stderr(&o));
    assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    assert_eq!(
        b.ok(&["ps", "-aq"]).lines().count(),
        n,
        "{args:?} left a container"
    );
}

#[test]
fn memory_and_cpu_limits_reach_the_cgroup() {
    let b = berth();
    let run = b.run(&[
        "run",
        "-d",
        "--memory",
        "64m",
        "--memory-reservation",
        "32m",
        "--memory-swappiness",
        "10",
        "--oom-kill-disable",
        "--oom-score-adj",
        "300",
        "--cpu-period",
        "50000",
        "--cpu-quota",
        "25000",
        "--cpuset-mems",
        "0",
        "--blkio-weight",
        "300",
        "someapp:1.0",
        "sleep",
        "1000",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let id = stdout(&run).trim().to_string();
    assert_eq!(
        b.ok(&["exec", &id, "cat", "/proc/1/oom_score_adj"]),
        "300\n"
    );
    let v1 = cgroup_file(&id, "memory.soft_limit_in_bytes");
    let v2 = cgroup_file(&id, "memory.low");
    assert!(
        v1.as_deref() == Some("33554432") || v2.as_deref() == Some("33554432"),
        "{v1:?} {v2:?}"
    );
    if v1.is_some() {
        assert_eq!(cgroup_file(&id, "memory.swappiness").as_deref(), Some("10"));
        let oom = cgroup_file(&id, "memory.oom_control").expect("oom_control");
        assert!(oom.contains("oom_kill_disable 1"), "{oom}");
        assert_eq!(
            cgroup_file(&id, "cpu.cfs_period_us").as_deref(),
            Some("50000")
        );
        assert_eq!(
            cgroup_file(&id, "cpu.cfs_quota_us").as_deref(),
            Some("25000")
        );
    } else {
        assert_eq!(cgroup_file(&id, "cpu.max").as_deref(), Some("25000 50000"));
    }
    assert_eq!(cgroup_file(&id, "cpuset.mems").as_deref(), Some("0"));
    // the weight is kept where the kernel has the file, else docker's warning
    let weight = cgroup_file(&id, "blkio.weight")
        .or_else(|| cgroup_file(&id, "blkio.bfq.weight"))
        .or_else(|| cgroup_file(&id, "io.weight"));
    let warned = stderr(&run).contains("does not support Block I/O weight");
    assert!(
        weight.as_deref().is_some_and(|w| w.contains("300")) || warned,
        "{weight:?}: {}",
        stderr(&run)
    );
    let hc = &inspect(&b, &id)["HostConfig"];
    assert_eq!(hc["MemoryReservation"], 32 << 20);
    assert_eq!(hc["MemorySwappiness"], 10);
    assert_eq!(hc["OomKillDisable"], true);
    assert_eq!(hc["OomScoreAdj"], 300);
    assert_eq!(
        (hc["CpuPeriod"].clone(), hc["CpuQuota"].clone()),
        (50000.into(), 25000.into())
    );
    assert_eq!(hc["CpusetMems"], "0");
    gone(&b, &id);
    // lowering the OOM score takes CAP_SYS_RESOURCE (missing on some CI hosts)
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let capeff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .expect("CapEff");
    if capeff & (1 << 24) != 0 {
        let out = b.ok(&[
            "run",
            "--rm",
            "--oom-score-adj",
            "-100",
            "someapp:1.0",
            "cat",
            "/proc/self/oom_score_adj",
        ]);
        assert_eq!(out, "-100\n");
    } else {
        refused(
            &b,
            &["run", "--oom-score-adj", "-100", "someapp:1.0", "true"],
            "CAP_SYS_RESOURCE",
        );
    }
    // real-time scheduling where the kernel has it (CONFIG_RT_GROUP_SCHED, v1)
    if Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists() {
        let out = b.ok(&[
            "run",
            "--rm",
            "--cpu-rt-period",
            "100000",
            "--cpu-rt-runtime",
            "10000",
            "someapp:1.0",
            "cat",
            "/sys/fs/cgroup/cpu/cpu.rt_period_us",
            "/sys/fs/cgroup/cpu/cpu.rt_runtime_us",
        ]);
        assert_eq!(out, "100000\n10000\n");
        refused(
            &b,
            &[
                "run",
                "--cpu-rt-period",
                "1000",
                "--cpu-rt-runtime",
                "5000",
                "someapp:1.0",
                "true",
            ],
            "--cpu-rt-runtime",
        );
    } else {
        refused(
            &b,
            &["run", "--cpu-rt-runtime", "5000", "someapp:1.0", "true"],
            "real-time",
        );
    }
    for (args, needle) in [
        (
            &["--cpus", "1", "--cpu-period", "50000"][..],
            "--cpu-period",
        ),
        (&["--cpu-period", "10"], "--cpu-period"),
        (&["--oom-score-adj", "2000"], "--oom-score-adj"),
        (&["--oom-score-adj", "-1001"], "--oom-score-adj"),
        (&["--memory-swappiness", "101"], "--memory-swappiness"),
        (&["--blkio-weight", "5"], "--blkio-weight"),
        (
            &["--memory", "8m", "--memory-reservation", "16m"],
            "--memory-reservation",
        ),
        (&["--cpuset-mems", "63"], "--cpuset-mems"),
        (&["--kernel-memory", "lots"], "--kernel-memory"),
    ] {
        let mut a = vec!["run"];
        a.extend_from_slice(args);
        a.extend(["someapp:1.0", "true"]);
        refused(&b, &a, needle);
    }
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn devices_cgroup_rules_and_block_io_throttles() {
    let b = berth();
    let mut args = vec![
        "run",
        "-d",
        "--device",
        "/dev/zero:/dev/berthzero:rw",
        "--device-cgroup-rule",
        "c 42:7 rw",
    ];
    // a directory of devices: every node below it (docker's rule)
    let tun = Path::new("/dev/net/tun").exists();
    if tun {
        args.extend(["--device", "/dev/net:/dev/berthnet"]);
    }
    // a block device for the throttles: loop0 where the host has it
    let loop0 = Path::new("/dev/loop0").exists();
    if loop0 {
        args.extend([
            "--device-read-bps",
            "/dev/loop0:1mb",
            "--device-write-iops",
            "/dev/loop0:50",
            "--blkio-weight-device",
            "/dev/loop0:200",
        ]);
    }
    args.extend(["someapp:1.0", "sleep", "1000"]);
    let run = b.run(&args);
    assert!(run.status.success(), "{}", stderr(&run));
    let id = stdout(&run).trim().to_string();
    let out = b.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "stat -c '%t:%T' /dev/berthzero; head -c 3 /dev/berthzero | od -An -tx1",
    ]);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["1:5", "00", "00", "00"]
    );
    if tun {
        let out = b.ok(&["exec", &id, "stat", "-c", "%t:%T", "/dev/berthnet/tun"]);
        assert_eq!(out, "a:c8\n");
    }
    if let Some(list) = cgroup_file(&id, "devices.list") {
        assert!(list.lines().any(|l| l == "c 42:7 rw"), "{list}");
        assert!(list.lines().any(|l| l.starts_with("c 1:5 ")), "{list}");
    }
    if loop0 {
        let warned = stderr(&run).contains("does not support");
        match cgroup_file(&id, "blkio.throttle.read_bps_device") {
            Some(bps) => {
                assert_eq!(bps, "7:0 1048576");
                assert_eq!(
                    cgroup_file(&id, "blkio.throttle.write_iops_device").as_deref(),
                    Some("7:0 50")
                );
            }
            None => {
                let max = cgroup_file(&id, "io.max").unwrap_or_default();
                assert!(max.contains("rbps=1048576") || warned, "{max}");
            }
        }
        // the device weight: set where the kernel has the file, else docker's warning
        let weight = cgroup_file(&id, "blkio.weight_device")
            .or_else(|| cgroup_file(&id, "blkio.bfq.weight_device"))
            .or_else(|| cgroup_file(&id, "io.weight"))
            .unwrap_or_default();
        assert!(
            weight.contains("7:0 200")
                || stderr(&run).contains("does not support Block I/O weight_device"),
            "{weight}: {}",
            stderr(&run)
        );
    }
    let hc = &inspect(&b, &id)["HostConfig"];
    assert_eq!(hc["Devices"][0]["PathInContainer"], "/dev/berthzero");
    assert_eq!(hc["DeviceCgroupRules"][0], "c 42:7 rw");
    gone(&b, &id);
    refused(
        &b,
        &[
            "run",
            "--device",
            "/dev/berth-nosuch",
            "someapp:1.0",
            "true",
        ],
        "--device /dev/berth-nosuch",
    );
    refused(
        &b,
        &[
            "run",
            "--device",
            "/dev/zero:/dev/z:rwx",
            "someapp:1.0",
            "true",
        ],
        "--device",
    );
    refused(
        &b,
        &[
            "run",
            "--device-cgroup-rule",
            "x 1:2 r",
            "someapp:1.0",
            "true",
        ],
        "--device-cgroup-rule",
    );
    refused(
        &b,
        &[
            "run",
            "--device-read-bps",
            "/dev/null:1mb",
            "someapp:1.0",
            "true",
        ],
        "not a block device",
    );
    assert_eq!(b.mounts(), Vec::<String>::new());
}

/// Removes the `--cgroup-parent` directories a test made, even when it fails.
struct ParentCgroup(String);

impl Drop for ParentCgroup {
    fn drop(&mut self) {
        for d in parent_dirs(&self.0) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn parent_dirs(name: &str) -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/sys/fs/cgroup").join(name)];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        v.extend(rd.flatten().map(|e| e.path().join(name)));
    }
    v.into_iter().filter(|p| p.is_dir()).collect()
}

#[test]
fn annotations_cgroup_parent_cgroupns_and_label_file() {
    let b = berth();
    let parent = ParentCgroup(format!("berth-test-parent-{}", std::process::id()));
    let labels = b.root.path().join("labels");
    std::fs::write(&labels, "# labels\ncolor=blue\nsize=s\n").expect("label file");
    let id = b
        .ok(&[
            "run",
            "-d",
            "--annotation",
            "org.example.k=v",
            "--cgroup-parent",
            &parent.0,
            "--cgroupns",
            "host",
            "--label-file",
            labels.to_str().expect("utf-8"),
            "--label",
            "size=l",
            "someapp:1.0",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let dirs = parent_dirs(&parent.0);
    assert!(
        dirs.iter().any(|d| d.join(&id).is_dir()),
        "no {}/{id} cgroup in {dirs:?}",
        parent.0
    );
    let own = b.ok(&["exec", &id, "cat", "/proc/self/cgroup"]);
    assert!(own.contains(&format!("/{}/{id}", parent.0)), "{own}");
    let spec: Value = serde_json::from_slice(
        &std::fs::read(
            b.data_root()
                .join("containers")
                .join(&id)
                .join("bundle/config.json"),
        )
        .expect("bundle spec"),
    )
    .expect("json");
    assert_eq!(spec["annotations"]["org.example.k"], "v");
    let doc = inspect(&b, &id);
    assert_eq!(doc["HostConfig"]["Annotations"]["org.example.k"], "v");
    assert_eq!(doc["HostConfig"]["CgroupParent"], parent.0.as_str());
    assert_eq!(doc["HostConfig"]["CgroupnsMode"], "host");
    assert_eq!(doc["Config"]["Labels"]["color"], "blue");
    assert_eq!(doc["Config"]["Labels"]["size"], "l");
    b.ok(&["rm", "-f", &id]);
    assert!(
        !parent_dirs(&parent.0).iter().any(|d| d.join(&id).exists()),
        "the container's cgroup is left"
    );
    // private: the container sees itself at its cgroup's root
    let own = b.ok(&[
        "run",
        "--rm",
        "--cgroupns",
        "private",
        "someapp:1.0",
        "cat",
        "/proc/self/cgroup",
    ]);
    assert!(own.lines().all(|l| l.ends_with(":/")), "{own}");
    refused(
        &b,
        &["run", "--cgroupns", "maybe", "someapp:1.0", "true"],
        "--cgroupns",
    );
    refused(
        &b,
        &["run", "--annotation", "novalue", "someapp:1.0", "true"],
        "--annotation",
    );
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn pull_platform_log_driver_and_what_berth_refuses() {
    let b = berth();
    refused(
        &b,
        &["run", "--pull", "never", "berth-test/nosuch:1", "true"],
        "No such image: berth-test/nosuch:1",
    );
    refused(
        &b,
        &["run", "--pull", "sometimes", "someapp:1.0", "true"],
        "--pull",
    );
    let reg = berth_testkit::Registry::start(false);
    let name = format!("{}/berth-test/runflags:1", reg.host);
    b.ok(&["tag", "someapp:1.0", &name]);
    b.ok(&["push", "-q", &name]);
    b.ok(&["rmi", &name]);
    let o = b.run(&[
        "run", "--rm", "--pull", "missing", "-q", &name, "echo", "pulled",
    ]);
    assert_eq!(stdout(&o), "pulled\n", "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Unable to find image") && !stderr(&o).contains("Digest:"),
        "-q shows no pull progress: {}",
        stderr(&o)
    );
    // the pull's progress goes to stderr: stdout is the container's alone
    let o = b.run(&["run", "--rm", "--pull", "always", &name, "echo", "again"]);
    assert_eq!(stdout(&o), "again\n", "{}", stderr(&o));
    assert!(stderr(&o).contains("Digest:"), "{}", stderr(&o));
    // docker's default is --pull missing
    b.ok(&["rmi", &name]);
    let o = b.run(&["run", "--rm", "-q", &name, "echo", "by-default"]);
    assert_eq!(stdout(&o), "by-default\n", "{}", stderr(&o));
    let arch = if cfg!(target_arch = "x86_64") {
        "amd64"
    } else {
        "arm64"
    };
    let plat = format!("linux/{arch}");
    let ok = b.ok(&[
        "run",
        "--rm",
        "--platform",
        &plat,
        "--runtime",
        "runc",
        "--isolation",
        "default",
        "--userns",
        "host",
        "--disable-content-trust",
        "--volume-driver",
        "local",
        "--log-driver",
        "local",
        "someapp:1.0",
        "echo",
        "accepted",
    ]);
    assert_eq!(ok, "accepted\n");
    let id = b
        .ok(&[
            "run",
            "-d",
            "--log-driver",
            "none",
            "someapp:1.0",
            "echo",
            "unlogged",
        ])
        .trim()
        .to_string();
    b.ok(&["wait", &id]);
    let o = b.run(&["logs", &id]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("configured logging driver does not support reading"),
        "{}",
        stderr(&o)
    );
    assert_eq!(inspect(&b, &id)["HostConfig"]["LogConfig"]["Type"], "none");
    b.ok(&["rm", &id]);
    // legacy links: the linked container's address in /etc/hosts
    let db = b
        .ok(&[
            "run",
            "-d",
            "--name",
            "db",
            "--expose",
            "5432",
            "-e",
            "SECRET=x",
            "someapp:1.0",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let db_ip = inspect(&b, "db")["NetworkSettings"]["IPAddress"]
        .as_str()
        .expect("ip")
        .to_string();
    let web = b
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--link",
            "db:database",
            "--domainname",
            "example.org",
            "someapp:1.0",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let hosts = b.ok(&["exec", "web", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{db_ip}\tdatabase\n")), "{hosts}");
    assert!(hosts.contains(&format!("{db_ip}\tdb\n")), "{hosts}");
    assert!(
        hosts.contains(&format!("\t{0}.example.org {0}\n", &web[..12])),
        "{hosts}"
    );
    assert_eq!(
        inspect(&b, "web")["HostConfig"]["Links"][0],
        "/db:/web/database"
    );
    // and docker's link variables in its environment
    let env = b.ok(&[
        "exec",
        "web",
        "sh",
        "-c",
        "tr '\\0' '\\n' < /proc/1/environ",
    ]);
    for want in [
        format!("DATABASE_PORT=tcp://{db_ip}:5432"),
        format!("DATABASE_PORT_5432_TCP_ADDR={db_ip}"),
        "DATABASE_NAME=/web/database".to_string(),
        "DATABASE_ENV_SECRET=x".to_string(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in {env}");
    }
    // a link to a stopped container: the start fails, as docker's
    b.ok(&["stop", "-t", "0", "db"]);
    b.ok(&["stop", "-t", "0", "web"]);
    let o = b.run(&["start", "web"]);
    assert!(
        !o.status.success() && stderr(&o).contains("cannot link to a non running container"),
        "{}",
        stderr(&o)
    );
    b.ok(&["rm", "-f", &web, &db]);
    // the MAC address of the container's end of the veth
    let id = b
        .ok(&[
            "run",
            "-d",
            "--mac-address",
            "92:d0:c6:0a:29:33",
            "someapp:1.0",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let mac = b.ok(&["exec", &id, "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(mac, "92:d0:c6:0a:29:33\n");
    let nets = &inspect(&b, &id)["NetworkSettings"]["Networks"];
    assert_eq!(nets["bridge"]["MacAddress"], "92:d0:c6:0a:29:33", "{nets}");
    b.ok(&["rm", "-f", &id]);
    let o = b.run(&[
        "run",
        "--rm",
        "--kernel-memory",
        "64m",
        "someapp:1.0",
        "true",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("WARNING: Specifying a kernel memory limit is deprecated"));
    let other = if arch == "amd64" {
        "linux/arm64"
    } else {
        "linux/amd64"
    };
    for (args, needle) in [
        (&["--platform", other][..], "--platform"),
        (&["--log-driver", "syslog"], "--log-driver syslog"),
        (&["--runtime", "kata"], "--runtime kata"),
        (&["--isolation", "hyperv"], "--isolation"),
        (
            &["--userns", "remap"],
            "user-namespace remapping is not supported yet",
        ),
        (&["--volume-driver", "nfs"], "--volume-driver"),
        (&["--gpus", "all"], "--gpus"),
        (&["--storage-opt", "size=1G"], "--storage-opt"),
        (&["--io-maxiops", "5"], "--io-maxiops"),
        (&["--io-maxbandwidth", "1m"], "--io-maxbandwidth"),
        (&["--cpu-count", "2"], "--cpu-count"),
        (&["--cpu-percent", "50"], "--cpu-percent"),
        (&["--mac-address", "01:00:5e:00:00:01"], "--mac-address"),
        (
            &["--network", "none", "--mac-address", "92:d0:c6:0a:29:33"],
            "--mac-address",
        ),
        (&["--ip6", "2001:db8::33"], "--ip6"),
        (&["--link-local-ip", "169.254.1.1"], "--link-local-ip"),
        (&["--link", "nosuch:alias"], "--link nosuch"),
        (&["--network", "none", "--link", "db"], "--link db"),
    ] {
        let mut a = vec!["run"];
        a.extend_from_slice(args);
        a.extend(["someapp:1.0", "true"]);
        refused(&b, &a, needle);
    }
    assert_eq!(b.mounts(), Vec::<String>::new());
}

#[test]
fn health_start_interval_and_api_socket() {
    let b = berth();
    // the client's registry credentials (docker's config.json format) go in too
    let cfg = b.root.path().join("client-config");
    std::fs::create_dir_all(&cfg).expect("config dir");
    let auths = r#"{"auths":{"127.0.0.1:5999":{"auth":"dTpw"}}}"#;
    std::fs::write(cfg.join("auth.json"), auths).expect("auth.json");
    // an hour between checks, but 100ms during the start period: healthy soon
    let run = b
        .command()
        .env("BERTH_CONFIG", &cfg)
        .args([
            "run",
            "-d",
            "--use-api-socket",
            "--health-cmd",
            "true",
            "--health-interval",
            "1h",
            "--health-start-period",
            "1h",
            "--health-start-interval",
            "100ms",
            "someapp:1.0",
            "sleep",
            "1000",
        ])
        .output()
        .expect("run");
    assert!(run.status.success(), "{}", stderr(&run));
    let id = stdout(&run).trim().to_string();
    eventually("the container to be healthy", || {
        inspect(&b, &id)["State"]["Health"]["Status"] == "healthy"
    });
    let doc = inspect(&b, &id);
    assert_eq!(doc["Config"]["Healthcheck"]["StartInterval"], 100_000_000);
    // the daemon's API answers on the socket bound in
    let out = b.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "test -S /var/run/docker.sock && echo socket; echo $DOCKER_CONFIG; cat $DOCKER_CONFIG/config.json",
    ]);
    assert_eq!(out, format!("socket\n/run/secrets/docker\n{auths}"));
    gone(&b, &id);
    refused(
        &b,
        &[
            "run",
            "--health-start-interval",
            "soon",
            "someapp:1.0",
            "true",
        ],
        "--health-start-interval",
    );
}
