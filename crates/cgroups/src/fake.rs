//! Test-only fake cgroupfs: plain files in a tempdir plus a [`CgroupFs`] that records
//! every write and mimics the few kernel behaviours the managers rely on (new
//! directories get their control files, `cgroup.procs` accumulates, `cgroup.freeze`
//! is reflected in `cgroup.events`, `rmdir` of a populated cgroup is EBUSY).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_sys::bpf::BpfInsn;

use crate::fs::CgroupFs;

/// Files whose writes accumulate (one line per write) instead of replacing.
const APPENDING: &[&str] = &["cgroup.procs", "tasks", "devices.allow", "devices.deny"];

#[derive(Debug, Default)]
pub(crate) struct FakeFs {
    /// (path relative to the fake root, value) of every successful write
    log: Mutex<Vec<(PathBuf, String)>>,
    /// (cgroup dir, program) of every device filter attached
    pub(crate) bpf: Mutex<Vec<(PathBuf, Vec<BpfInsn>)>>,
    root: PathBuf,
}

impl FakeFs {
    pub(crate) fn new(root: &Path) -> Self {
        FakeFs {
            root: root.to_path_buf(),
            ..Default::default()
        }
    }

    /// Writes so far as ("dir/file" relative to the root, value).
    pub(crate) fn writes(&self) -> Vec<(String, String)> {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .map(|(p, v)| (p.display().to_string(), v.clone()))
            .collect()
    }

    /// Values written to files whose relative path ends with `suffix`, in order.
    pub(crate) fn written(&self, suffix: &str) -> Vec<String> {
        self.writes()
            .into_iter()
            .filter(|(p, _)| p.ends_with(suffix))
            .map(|(_, v)| v)
            .collect()
    }

    pub(crate) fn clear_log(&self) {
        self.log.lock().expect("log lock").clear();
    }
}

fn child_default(name: &str, parent: &Path) -> std::io::Result<String> {
    Ok(match name {
        "cgroup.procs"
        | "tasks"
        | "devices.allow"
        | "devices.deny"
        | "cgroup.subtree_control"
        | "cpuset.cpus"
        | "cpuset.mems" => String::new(),
        "cgroup.controllers" => std::fs::read_to_string(parent.join("cgroup.subtree_control"))?,
        "freezer.state" => "THAWED\n".into(),
        "cgroup.freeze" => "0\n".into(),
        "cgroup.events" => "populated 0\nfrozen 0\n".into(),
        _ => std::fs::read_to_string(parent.join(name))?,
    })
}

impl CgroupFs for FakeFs {
    fn write(&self, path: &Path, value: &str) -> std::io::Result<()> {
        if !path.is_file() {
            return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let dir = path.parent().unwrap_or(Path::new("/"));
        if name == "cgroup.subtree_control" {
            let offered = std::fs::read_to_string(dir.join("cgroup.controllers"))?;
            let mut on: Vec<String> = std::fs::read_to_string(path)?
                .split_whitespace()
                .map(String::from)
                .collect();
            for tok in value.split_whitespace() {
                let (add, c) = tok.split_at(1);
                if !offered.split_whitespace().any(|o| o == c) {
                    return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
                }
                on.retain(|x| x != c);
                if add == "+" {
                    on.push(c.to_string());
                }
            }
            std::fs::write(path, on.join(" "))?;
        } else if APPENDING.contains(&name) {
            let mut cur = std::fs::read_to_string(path)?;
            cur.push_str(value);
            cur.push('\n');
            std::fs::write(path, cur)?;
        } else {
            std::fs::write(path, value)?;
            if name == "cgroup.freeze" {
                let frozen = value.trim() == "1";
                let events = format!("populated 0\nfrozen {}\n", u8::from(frozen));
                std::fs::write(dir.join("cgroup.events"), events)?;
            }
        }
        let rel = path.strip_prefix(&self.root).unwrap_or(path).to_path_buf();
        self.log
            .lock()
            .expect("log lock")
            .push((rel, value.to_string()));
        Ok(())
    }

    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn mkdir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir(path)?;
        let parent = path.parent().unwrap_or(Path::new("/"));
        for e in std::fs::read_dir(parent)?.flatten() {
            if e.file_type()?.is_file() {
                let name = e.file_name().to_string_lossy().into_owned();
                std::fs::write(path.join(&name), child_default(&name, parent)?)?;
            }
        }
        Ok(())
    }

    fn rmdir(&self, path: &Path) -> std::io::Result<()> {
        if !path.is_dir() {
            return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
        }
        let mut files = Vec::new();
        for e in std::fs::read_dir(path)?.flatten() {
            if e.file_type()?.is_dir() {
                return Err(std::io::Error::from_raw_os_error(libc::ENOTEMPTY));
            }
            files.push(e.path());
        }
        let procs = std::fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
        if !procs.trim().is_empty() {
            return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
        }
        for f in files {
            std::fs::remove_file(f)?;
        }
        std::fs::remove_dir(path)
    }

    fn attach_device_filter(&self, dir: &Path, prog: &[BpfInsn]) -> std::io::Result<()> {
        if !dir.is_dir() {
            return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
        }
        self.bpf
            .lock()
            .expect("bpf lock")
            .push((dir.to_path_buf(), prog.to_vec()));
        Ok(())
    }
}

fn files(dir: &Path, list: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).expect("mkdir fake hierarchy");
    for (name, content) in list {
        std::fs::write(dir.join(name), content).expect("write fake control file");
    }
}

const COMMON_V1: &[(&str, &str)] = &[("cgroup.procs", ""), ("tasks", "")];

/// A v1 tree like a typical host: `cpu,cpuacct` combined with `cpu` and `cpuacct`
/// symlinks, hugetlb with 2MB and 1GB pages, and no net_cls/net_prio/perf_event.
pub(crate) fn v1_tree(root: &Path) {
    let cpu = root.join("cpu,cpuacct");
    files(&cpu, COMMON_V1);
    files(
        &cpu,
        &[
            ("cpu.shares", "1024\n"),
            ("cpu.cfs_period_us", "100000\n"),
            ("cpu.cfs_quota_us", "-1\n"),
            ("cpu.cfs_burst_us", "0\n"),
            ("cpu.rt_period_us", "1000000\n"),
            ("cpu.rt_runtime_us", "0\n"),
            (
                "cpu.stat",
                "nr_periods 3\nnr_throttled 1\nthrottled_time 500\n",
            ),
            ("cpuacct.usage", "123456789\n"),
            ("cpuacct.usage_percpu", "100000000 23456789 \n"),
            ("cpuacct.usage_user", "100000000\n"),
            ("cpuacct.usage_sys", "23456789\n"),
            ("cpuacct.stat", "user 10\nsystem 2\n"),
        ],
    );
    std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpu")).expect("symlink cpu");
    std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpuacct")).expect("symlink cpuacct");
    let unlimited = "9223372036854771712\n";
    let mut memory = COMMON_V1.to_vec();
    memory.extend_from_slice(&[
        ("memory.limit_in_bytes", unlimited),
        ("memory.memsw.limit_in_bytes", unlimited),
        ("memory.usage_in_bytes", "4096\n"),
        ("memory.max_usage_in_bytes", "8192\n"),
        ("memory.failcnt", "0\n"),
        ("memory.memsw.usage_in_bytes", "4096\n"),
        ("memory.memsw.max_usage_in_bytes", "8192\n"),
        ("memory.memsw.failcnt", "0\n"),
        ("memory.soft_limit_in_bytes", unlimited),
        ("memory.kmem.tcp.limit_in_bytes", unlimited),
        ("memory.swappiness", "60\n"),
        ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n"),
        ("memory.stat", "cache 100\nrss 200\n"),
    ]);
    files(&root.join("memory"), &memory);
    files(&root.join("cpuset"), COMMON_V1);
    files(
        &root.join("cpuset"),
        &[("cpuset.cpus", "0-1\n"), ("cpuset.mems", "0\n")],
    );
    files(&root.join("pids"), COMMON_V1);
    files(
        &root.join("pids"),
        &[("pids.max", "max\n"), ("pids.current", "1\n")],
    );
    files(&root.join("blkio"), COMMON_V1);
    files(
        &root.join("blkio"),
        &[
            ("blkio.weight", "500\n"),
            ("blkio.leaf_weight", "500\n"),
            ("blkio.weight_device", ""),
            ("blkio.throttle.read_bps_device", ""),
            ("blkio.throttle.write_bps_device", ""),
            ("blkio.throttle.read_iops_device", ""),
            ("blkio.throttle.write_iops_device", ""),
            (
                "blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 10\n8:0 Write 20\nTotal 30\n",
            ),
        ],
    );
    files(&root.join("devices"), COMMON_V1);
    files(
        &root.join("devices"),
        &[
            ("devices.allow", ""),
            ("devices.deny", ""),
            ("devices.list", "a *:* rwm\n"),
        ],
    );
    files(&root.join("freezer"), COMMON_V1);
    files(&root.join("freezer"), &[("freezer.state", "THAWED\n")]);
    files(&root.join("hugetlb"), COMMON_V1);
    files(
        &root.join("hugetlb"),
        &[
            ("hugetlb.2MB.limit_in_bytes", unlimited),
            ("hugetlb.2MB.rsvd.limit_in_bytes", unlimited),
            ("hugetlb.1GB.limit_in_bytes", unlimited),
        ],
    );
}

/// A controller-less cgroup2 tree (the `unified` mount of a hybrid host, or a v2 root
/// before `extra` controller files are added).
fn v2_base(dir: &Path, controllers: &str) {
    files(
        dir,
        &[
            ("cgroup.procs", ""),
            ("cgroup.controllers", controllers),
            ("cgroup.subtree_control", ""),
            ("cgroup.freeze", "0\n"),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
            (
                "cpu.stat",
                "usage_usec 1000\nuser_usec 600\nsystem_usec 400\n",
            ),
        ],
    );
}

/// A hybrid tree: [`v1_tree`] plus an empty cgroup2 at `<root>/unified`.
pub(crate) fn hybrid_tree(root: &Path) {
    v1_tree(root);
    v2_base(&root.join("unified"), "");
}

/// A v2 tree with cpuset, cpu, io, memory, hugetlb and pids offered at the root.
pub(crate) fn v2_tree(root: &Path) {
    v2_base(root, "cpuset cpu io memory hugetlb pids");
    files(
        root,
        &[
            ("cpu.stat", "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 4\nnr_throttled 2\nthrottled_usec 7\n"),
            ("cpu.weight", "100\n"),
            ("cpu.max", "max 100000\n"),
            ("cpu.max.burst", "0\n"),
            ("cpu.idle", "0\n"),
            ("cpuset.cpus", ""),
            ("cpuset.mems", ""),
            ("memory.max", "max\n"),
            ("memory.high", "max\n"),
            ("memory.low", "0\n"),
            ("memory.swap.max", "max\n"),
            ("memory.current", "8192\n"),
            ("memory.peak", "16384\n"),
            ("memory.swap.current", "0\n"),
            ("memory.events", "low 0\nhigh 0\nmax 2\noom 0\noom_kill 0\n"),
            ("memory.stat", "anon 100\nfile 300\n"),
            ("pids.max", "max\n"),
            ("pids.current", "1\n"),
            ("io.weight", "default 100\n"),
            ("io.max", ""),
            ("io.stat", "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n"),
            ("hugetlb.2MB.max", "max\n"),
            ("hugetlb.1GB.max", "max\n"),
        ],
    );
}

/// A manager on a fresh fake tree of `mode`, with pretend member processes.
pub(crate) struct FakeHarness {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) fs: std::sync::Arc<FakeFs>,
    pub(crate) m: Box<dyn crate::CgroupManager>,
    next_pid: i32,
}

impl FakeHarness {
    pub(crate) fn new(mode: crate::CgroupMode) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        match mode {
            crate::CgroupMode::V1 => v1_tree(dir.path()),
            crate::CgroupMode::Hybrid => hybrid_tree(dir.path()),
            crate::CgroupMode::V2 => v2_tree(dir.path()),
        }
        let fs = std::sync::Arc::new(FakeFs::new(dir.path()));
        let m = crate::manager_with_fs(mode, dir.path(), Path::new("/berth/test-1"), fs.clone())
            .expect("manager on fake tree");
        FakeHarness {
            dir,
            fs,
            m,
            next_pid: 4000,
        }
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl crate::conformance::Harness for FakeHarness {
    fn manager(&self) -> &dyn crate::CgroupManager {
        self.m.as_ref()
    }
    fn spawn_member(&mut self) -> i32 {
        self.next_pid += 1;
        self.next_pid
    }
    fn kill_members(&mut self) {
        for (_, p) in self.m.paths() {
            let procs = p.join("cgroup.procs");
            if procs.exists() {
                std::fs::write(procs, "").expect("empty cgroup.procs");
            }
        }
    }
}
