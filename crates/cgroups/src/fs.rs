//! Access to cgroupfs control files behind a small trait, so the managers' logic runs
//! unchanged on a real `/sys/fs/cgroup` ([`RealFs`]) and on a fake tree in unit tests.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_sys::bpf::BpfInsn;

use crate::{Error, Result};

/// The four operations a manager performs on cgroupfs.
pub trait CgroupFs: Send + Sync + std::fmt::Debug {
    /// Write `value` to the existing control file `path` (never creates it).
    fn write(&self, path: &Path, value: &str) -> std::io::Result<()>;
    /// Read the whole control file `path`.
    fn read(&self, path: &Path) -> std::io::Result<String>;
    /// Create one directory (its parent exists).
    fn mkdir(&self, path: &Path) -> std::io::Result<()>;
    /// Remove one (empty) cgroup directory.
    fn rmdir(&self, path: &Path) -> std::io::Result<()>;
    /// Make `prog` the only `BPF_CGROUP_DEVICE` program attached to the cgroup2
    /// directory `dir` (attach the new one first, then detach the old ones, so there
    /// is no window without a filter).
    fn attach_device_filter(&self, dir: &Path, prog: &[BpfInsn]) -> std::io::Result<()>;
}

/// The real kernel interface: `open(O_WRONLY|O_TRUNC|O_CLOEXEC)` + one `write`, no `O_CREAT`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl CgroupFs for RealFs {
    fn write(&self, path: &Path, value: &str) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)?;
        // cgroupfs takes one value per write(2): never split it.
        let n = f.write(value.as_bytes())?;
        if n != value.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", value.len()),
            ));
        }
        Ok(())
    }
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn mkdir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir(path)
    }
    fn rmdir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn attach_device_filter(&self, dir: &Path, prog: &[BpfInsn]) -> std::io::Result<()> {
        use berth_sys::bpf;
        use std::os::fd::AsFd;
        let cg = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)?;
        let old = bpf::prog_query(cg.as_fd(), bpf::BPF_CGROUP_DEVICE)?;
        let new = bpf::prog_load(bpf::BPF_PROG_TYPE_CGROUP_DEVICE, prog, "Apache-2.0")?;
        bpf::prog_attach(
            cg.as_fd(),
            new.as_fd(),
            bpf::BPF_CGROUP_DEVICE,
            bpf::BPF_F_ALLOW_MULTI,
        )?;
        for id in old {
            match bpf::prog_get_fd_by_id(id) {
                Ok(fd) => bpf::prog_detach(cg.as_fd(), fd.as_fd(), bpf::BPF_CGROUP_DEVICE)?,
                // detached and freed meanwhile
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Write a control file. A value the kernel refuses (EINVAL, ERANGE, EOVERFLOW) in a
/// file that carries an OCI resource becomes [`Error::InvalidResource`] naming that
/// field; anything else is [`Error::Io`].
pub(crate) fn write(fs: &dyn CgroupFs, path: &Path, value: &str) -> Result<()> {
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    write_as(fs, path, value, oci_field(file))
}

/// Like [`write`], naming `field` when the kernel refuses the value.
pub(crate) fn write_as(
    fs: &dyn CgroupFs,
    path: &Path,
    value: &str,
    field: Option<&str>,
) -> Result<()> {
    match fs.write(path, value) {
        Ok(()) => Ok(()),
        Err(e)
            if field.is_some()
                && matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::ERANGE | libc::EOVERFLOW)
                ) =>
        {
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default();
            Err(Error::InvalidResource {
                field: field.unwrap_or_default().to_string(),
                reason: format!(
                    "the kernel refused {value:?} in {file} ({e}); give a value this host accepts"
                ),
            })
        }
        Err(source) => Err(Error::Io {
            op: "write",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The OCI field (`linux.resources.*`) a control file carries, if any.
pub(crate) fn oci_field(file: &str) -> Option<&'static str> {
    Some(match file {
        "memory.limit_in_bytes" | "memory.max" => "linux.resources.memory.limit",
        "memory.memsw.limit_in_bytes" | "memory.swap.max" => "linux.resources.memory.swap",
        "memory.soft_limit_in_bytes" | "memory.low" => "linux.resources.memory.reservation",
        "memory.kmem.tcp.limit_in_bytes" => "linux.resources.memory.kernelTCP",
        "memory.swappiness" => "linux.resources.memory.swappiness",
        "memory.oom_control" => "linux.resources.memory.disableOOMKiller",
        "cpu.shares" | "cpu.weight" => "linux.resources.cpu.shares",
        "cpu.cfs_quota_us" | "cpu.max" => "linux.resources.cpu.quota",
        "cpu.cfs_period_us" => "linux.resources.cpu.period",
        "cpu.cfs_burst_us" | "cpu.max.burst" => "linux.resources.cpu.burst",
        "cpu.idle" => "linux.resources.cpu.idle",
        "cpu.rt_period_us" => "linux.resources.cpu.realtimePeriod",
        "cpu.rt_runtime_us" => "linux.resources.cpu.realtimeRuntime",
        "cpuset.cpus" => "linux.resources.cpu.cpus",
        "cpuset.mems" => "linux.resources.cpu.mems",
        "pids.max" => "linux.resources.pids.limit",
        "blkio.weight" | "blkio.bfq.weight" | "io.weight" | "io.bfq.weight" => {
            "linux.resources.blockIO.weight"
        }
        "blkio.leaf_weight" => "linux.resources.blockIO.leafWeight",
        "blkio.weight_device" | "blkio.bfq.weight_device" => "linux.resources.blockIO.weightDevice",
        "blkio.throttle.read_bps_device" => "linux.resources.blockIO.throttleReadBpsDevice",
        "blkio.throttle.write_bps_device" => "linux.resources.blockIO.throttleWriteBpsDevice",
        "blkio.throttle.read_iops_device" => "linux.resources.blockIO.throttleReadIOPSDevice",
        "blkio.throttle.write_iops_device" => "linux.resources.blockIO.throttleWriteIOPSDevice",
        "io.max" => "linux.resources.blockIO",
        "rdma.max" => "linux.resources.rdma",
        "devices.allow" | "devices.deny" => "linux.resources.devices",
        "net_cls.classid" => "linux.resources.network.classID",
        "net_prio.ifpriomap" => "linux.resources.network.priorities",
        f if f.starts_with("hugetlb.") => "linux.resources.hugepageLimits",
        _ => return None,
    })
}

/// Read a control file, mapping the error to [`Error::Io`].
pub(crate) fn read(fs: &dyn CgroupFs, path: &Path) -> Result<String> {
    fs.read(path).map_err(|source| Error::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// Read a control file if it exists (`Ok(None)` when it does not).
pub(crate) fn read_opt(fs: &dyn CgroupFs, path: &Path) -> Result<Option<String>> {
    match fs.read(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parse one number; `max` (and v1's huge "unlimited" values stay as they are) maps to `u64::MAX`.
pub(crate) fn parse_u64(path: &Path, s: &str) -> Result<u64> {
    let s = s.trim();
    if s == "max" {
        return Ok(u64::MAX);
    }
    s.parse::<u64>().map_err(|_| Error::Parse {
        path: path.to_path_buf(),
        reason: format!("expected a number or \"max\", found {s:?}"),
    })
}

/// Read a single-number file; missing file gives `None`.
pub(crate) fn read_u64_opt(fs: &dyn CgroupFs, path: &Path) -> Result<Option<u64>> {
    match read_opt(fs, path)? {
        Some(s) => parse_u64(path, &s).map(Some),
        None => Ok(None),
    }
}

/// Parse a flat keyed file (`key value` per line, e.g. memory.stat, cpu.stat).
pub(crate) fn parse_flat_keyed(path: &Path, s: &str) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for line in s.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let (Some(k), Some(v), None) = (it.next(), it.next(), it.next()) else {
            return Err(Error::Parse {
                path: path.to_path_buf(),
                reason: format!("expected \"key value\", found {line:?}"),
            });
        };
        out.insert(k.to_string(), parse_u64(path, v)?);
    }
    Ok(out)
}

/// Read a flat keyed file; missing file gives an empty map.
pub(crate) fn read_flat_keyed(fs: &dyn CgroupFs, path: &Path) -> Result<BTreeMap<String, u64>> {
    match read_opt(fs, path)? {
        Some(s) => parse_flat_keyed(path, &s),
        None => Ok(BTreeMap::new()),
    }
}

/// mkdir -p of `rel` below `base` (`base` must exist). Existing directories are fine.
pub(crate) fn mkdir_p(fs: &dyn CgroupFs, base: &Path, rel: &Path) -> Result<()> {
    let mut cur = base.to_path_buf();
    for comp in rel.components() {
        cur.push(comp);
        if cur.is_dir() {
            continue;
        }
        match fs.mkdir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(Error::Io {
                    op: "mkdir",
                    path: cur,
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Sub-directories of `dir` (child cgroups), sorted; a missing `dir` has none.
pub(crate) fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                op: "readdir",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| Error::Io {
            op: "readdir",
            path: dir.to_path_buf(),
            source,
        })?;
        // file_type() does not follow symlinks: only real child cgroups count.
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Remove `dir` and every cgroup below it, deepest first. Retries on EBUSY for up to
/// about 5 s (the kernel keeps a cgroup busy for a moment after its last task exits,
/// longer on a loaded machine).
/// A missing directory is not an error.
pub(crate) fn rmdir_tree(fs: &dyn CgroupFs, dir: &Path) -> Result<()> {
    for child in child_dirs(dir)? {
        rmdir_tree(fs, &child)?;
    }
    let mut delay = Duration::from_millis(5);
    let mut attempt = 0;
    loop {
        match fs.rmdir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 30 => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
                attempt += 1;
            }
            Err(source) => {
                return Err(Error::Io {
                    op: "rmdir",
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Pids listed in `cgroup.procs` of `dir` and of every cgroup below it.
pub(crate) fn procs_recursive(fs: &dyn CgroupFs, dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let file = dir.join("cgroup.procs");
    if let Some(s) = read_opt(fs, &file)? {
        for tok in s.split_whitespace() {
            let pid = tok.parse::<i32>().map_err(|_| Error::Parse {
                path: file.clone(),
                reason: format!("expected a pid, found {tok:?}"),
            })?;
            out.push(pid);
        }
    }
    for child in child_dirs(dir)? {
        procs_recursive(fs, &child, out)?;
    }
    Ok(())
}

/// Poll `check` until it returns true, sleeping a little more each time, for at most
/// `timeout`. Returns whether it became true.
pub(crate) fn poll_until(
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let start = std::time::Instant::now();
    let mut delay = Duration::from_micros(100);
    loop {
        if check()? {
            return Ok(true);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_parses_and_rejects_garbage() {
        let p = Path::new("memory.stat");
        let m = parse_flat_keyed(p, "cache 10\nrss 20\n\n").expect("parse");
        assert_eq!(m["cache"], 10);
        assert_eq!(m["rss"], 20);
        assert!(parse_flat_keyed(p, "cache ten").is_err());
        assert!(parse_flat_keyed(p, "cache 1 2").is_err());
    }

    #[derive(Debug)]
    struct Refuses;
    impl CgroupFs for Refuses {
        fn write(&self, _: &Path, _: &str) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(libc::EINVAL))
        }
        fn read(&self, _: &Path) -> std::io::Result<String> {
            Ok(String::new())
        }
        fn mkdir(&self, _: &Path) -> std::io::Result<()> {
            Ok(())
        }
        fn rmdir(&self, _: &Path) -> std::io::Result<()> {
            Ok(())
        }
        fn attach_device_filter(&self, _: &Path, _: &[BpfInsn]) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn kernel_refusal_names_the_oci_field() {
        let e = write(&Refuses, Path::new("/cg/x/cpu.cfs_quota_us"), "500").expect_err("einval");
        match e {
            Error::InvalidResource { field, reason } => {
                assert_eq!(field, "linux.resources.cpu.quota");
                assert!(
                    reason.contains("\"500\"") && reason.contains("cpu.cfs_quota_us"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        // not a resource file: plain io error
        let e = write(&Refuses, Path::new("/cg/x/cgroup.procs"), "1").expect_err("einval");
        assert!(matches!(e, Error::Io { op: "write", .. }));
    }

    #[test]
    fn max_is_u64_max() {
        assert_eq!(parse_u64(Path::new("x"), "max\n").expect("max"), u64::MAX);
        assert_eq!(parse_u64(Path::new("x"), " 42\n").expect("42"), 42);
    }

    #[test]
    fn real_fs_write_never_creates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("memory.max");
        let err = RealFs.write(&f, "1").expect_err("must not create");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(!f.exists());
        std::fs::write(&f, "max\n").expect("seed");
        RealFs.write(&f, "4096").expect("write");
        assert_eq!(std::fs::read_to_string(&f).expect("read"), "4096");
    }

    #[test]
    fn rmdir_tree_missing_is_ok() {
        let dir = tempfile::tempdir().expect("tempdir");
        rmdir_tree(&RealFs, &dir.path().join("nope")).expect("missing ok");
        std::fs::create_dir_all(dir.path().join("a/b/c")).expect("mk");
        rmdir_tree(&RealFs, &dir.path().join("a")).expect("rm");
        assert!(!dir.path().join("a").exists());
    }
}
