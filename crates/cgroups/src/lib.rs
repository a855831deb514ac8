//! berth-cgroups: create, limit, freeze, measure and remove a container's cgroup.
//!
//! One trait, [`CgroupManager`], with three implementations chosen by [`detect_mode`]
//! from the filesystems actually mounted under the cgroup root (never from a setting):
//! v1 (one hierarchy per controller), hybrid (v1 controllers plus an empty unified
//! hierarchy at `<root>/unified`) and v2 (one unified hierarchy).
//!
//! Every manager works against a root directory, so the same code runs on a real
//! `/sys/fs/cgroup` and on a fake cgroupfs tree in unit tests. All file access goes
//! through [`CgroupFs`] ([`RealFs`] on a host: `open(O_WRONLY|O_TRUNC)` + one `write`,
//! never `O_CREAT`), which the unit tests replace with a recording fake.
//!
//! | layout | directories | devices | freezer |
//! |---|---|---|---|
//! | v1 | `<root>/<controller>/<path>` for each mounted controller | `devices.allow`/`devices.deny` in rule order | `freezer.state` |
//! | hybrid | v1 plus `<root>/unified/<path>` (created and joined) | as v1 | as v1 |
//! | v2 | `<root>/<path>`; parents' `cgroup.subtree_control` enabled | eBPF program ([`devices::bpf_program`]) | `cgroup.freeze` + `cgroup.events` |
//!
//! Resource values the host cannot take (swap below the limit, a huge page size the
//! host lacks, a value the kernel refuses with `EINVAL`) fail with
//! [`Error::InvalidResource`] naming the OCI field. OCI fields without a file on the
//! layout are left alone like runc does (`kernel`, and on v2 `kernelTCP`,
//! `swappiness`, `disableOOMKiller`); realtime, network and rdma limits that the
//! layout cannot express are errors.
//!
//! Testing: unit tests on fake trees for each layout, one conformance suite
//! (`tests/common/conformance.rs`) run for all three layouts on fake trees and for
//! the host layout on the real host, and end-to-end tests as root in `tests/`.
//!
//! ```no_run
//! use berth_cgroups::{detect_mode, manager};
//! use std::path::Path;
//! let root = Path::new("/sys/fs/cgroup");
//! let mode = detect_mode(root).expect("cgroupfs mounted");
//! let cg = manager(mode, root, Path::new("berth/demo")).expect("valid path");
//! cg.create().expect("created");
//! cg.add_process(std::process::id() as i32).expect("joined");
//! ```

use std::path::{Path, PathBuf};

pub mod devices;
mod fs;
mod v1;
mod v2;
#[cfg(test)]
extern crate self as berth_cgroups;
#[cfg(test)]
#[path = "../tests/common/conformance.rs"]
mod conformance;
#[cfg(test)]
mod fake;

pub use fs::{CgroupFs, RealFs};

/// Which cgroup layout the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CgroupMode {
    /// Only v1 hierarchies (one mount per controller).
    V1,
    /// v1 controllers plus a controller-less cgroup2 mount at `<root>/unified`.
    Hybrid,
    /// One unified cgroup2 hierarchy.
    V2,
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory under the cgroup root could not be read or written.
    #[error("cgroup {op} {path}: {source}")]
    Io {
        /// what was being done ("write", "read", "mkdir", "rmdir")
        op: &'static str,
        /// the file or directory
        path: PathBuf,
        /// the underlying error
        #[source]
        source: std::io::Error,
    },
    /// A resource value the host cannot apply (names the field).
    #[error("invalid cgroup resource {field}: {reason}")]
    InvalidResource {
        /// the OCI field, e.g. "linux.resources.memory.limit"
        field: String,
        /// what is wrong and what to do
        reason: String,
    },
    /// The cgroup root holds no recognisable cgroup filesystem.
    #[error("no cgroup filesystem found under {0}: mount cgroupfs (v1) or cgroup2 there")]
    NoCgroupFs(PathBuf),
    /// The requested controller is not available on this host.
    #[error("cgroup controller {0} is not available on this host: mount it (v1) or enable it in the parent's cgroup.subtree_control (v2)")]
    MissingController(String),
    /// The cgroups path is not usable (empty, or a `..` component escaping the root).
    #[error("invalid cgroups path {path}: {reason}")]
    InvalidPath {
        /// the path as given
        path: PathBuf,
        /// what is wrong and what to do
        reason: String,
    },
    /// A control file held something this crate could not parse.
    #[error("cannot parse cgroup file {path}: {reason}")]
    Parse {
        /// the file
        path: PathBuf,
        /// what was expected and found
        reason: String,
    },
    /// The kernel did not reach a state in time (e.g. freezing a cgroup).
    #[error("timed out waiting for {what} on {path}: retry, or check for processes stuck in uninterruptible sleep")]
    Timeout {
        /// what was awaited ("frozen", "thawed")
        what: &'static str,
        /// the cgroup directory
        path: PathBuf,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Statistics in the shape runc prints for `events --stats` (`data` member).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Stats {
    /// CPU accounting
    pub cpu: CpuStats,
    /// memory accounting
    pub memory: MemoryStats,
    /// pids accounting
    pub pids: PidsStats,
    /// block io accounting
    pub blkio: BlkioStats,
}

/// CPU usage (nanoseconds) and throttling.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CpuStats {
    /// usage
    pub usage: CpuUsage,
    /// throttling
    pub throttling: Throttling,
}

/// CPU usage in nanoseconds.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CpuUsage {
    /// total
    pub total: u64,
    /// per cpu (may be empty on v2)
    pub percpu: Vec<u64>,
    /// kernel mode
    pub kernel: u64,
    /// user mode
    pub user: u64,
}

/// CFS throttling counters.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Throttling {
    /// periods
    pub periods: u64,
    /// throttled periods
    #[serde(rename = "throttledPeriods")]
    pub throttled_periods: u64,
    /// throttled time (ns)
    #[serde(rename = "throttledTime")]
    pub throttled_time: u64,
}

/// Memory usage.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MemoryStats {
    /// cache bytes
    pub cache: u64,
    /// usage entry
    pub usage: MemoryEntry,
    /// swap entry
    pub swap: MemoryEntry,
    /// raw key/value pairs of memory.stat
    pub raw: std::collections::BTreeMap<String, u64>,
}

/// One memory counter set.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MemoryEntry {
    /// limit in bytes (u64::MAX when unlimited)
    pub limit: u64,
    /// current usage
    pub usage: u64,
    /// peak usage
    pub max: u64,
    /// times the limit was hit
    pub failcnt: u64,
}

/// Pids counters.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PidsStats {
    /// current number of tasks
    pub current: u64,
    /// limit (0 = unlimited)
    pub limit: u64,
}

/// Block IO counters.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct BlkioStats {
    /// bytes serviced per device and op
    #[serde(rename = "ioServiceBytesRecursive")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
}

/// One blkio counter.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct BlkioEntry {
    /// device major
    pub major: u64,
    /// device minor
    pub minor: u64,
    /// "Read", "Write", ...
    pub op: String,
    /// value
    pub value: u64,
}

/// One container's cgroup, whatever the host layout.
pub trait CgroupManager: Send + Sync + std::fmt::Debug {
    /// The layout this manager drives.
    fn mode(&self) -> CgroupMode;
    /// Create the cgroup directories (every controller hierarchy). Idempotent.
    fn create(&self) -> Result<()>;
    /// Move a process into the cgroup (all hierarchies).
    fn add_process(&self, pid: i32) -> Result<()>;
    /// Apply (or update) OCI resources. Fields that are `None` are left alone.
    fn apply_resources(&self, resources: &oci_spec::runtime::LinuxResources) -> Result<()>;
    /// Pids of all processes in the cgroup (recursively), sorted.
    fn pids(&self) -> Result<Vec<i32>>;
    /// Freeze every process in the cgroup; returns once the cgroup is frozen.
    fn freeze(&self) -> Result<()>;
    /// Thaw the cgroup.
    fn thaw(&self) -> Result<()>;
    /// Whether the cgroup is currently frozen.
    fn is_frozen(&self) -> Result<bool>;
    /// Current statistics.
    fn stats(&self) -> Result<Stats>;
    /// Remove the cgroup directories (retrying briefly while the kernel still
    /// reports them busy). Missing directories are not an error.
    fn destroy(&self) -> Result<()>;
    /// Host directories of this cgroup: (controller or "unified", path).
    /// On v2 there is one entry named "unified".
    fn paths(&self) -> Vec<(String, PathBuf)>;
    /// How a new single-threaded process can enter this cgroup without the global
    /// cgroup write lock (see [`JoinPlan`]).
    fn join_plan(&self) -> JoinPlan;
}

/// The cheap way into a cgroup for a process being born.
///
/// Writing a pid to `cgroup.procs` takes the kernel's global threadgroup rwsem for
/// writing, which waits for an RCU grace period (about 10 ms here) on every container
/// start. Two paths avoid it: the unified hierarchy can be entered at birth with
/// `clone3(CLONE_INTO_CGROUP)` (fork only takes the read side), and a v1 hierarchy can
/// be entered by the (single-threaded) process itself writing `0` to `tasks`, which
/// moves only the calling thread and skips the lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinPlan {
    /// `tasks` files of v1 hierarchies the new process writes `0` to itself
    pub self_tasks: Vec<PathBuf>,
    /// the cgroup2 directory to pass to clone3(CLONE_INTO_CGROUP), if any
    pub clone_into: Option<PathBuf>,
}

/// Carry out the v1 half of a [`JoinPlan`] from inside the new process (before it
/// starts any thread).
pub fn join_self(plan: &JoinPlan) -> Result<()> {
    for t in &plan.self_tasks {
        RealFs.write(t, "0").map_err(|source| Error::Io {
            op: "write",
            path: t.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Detect the layout from what is mounted at `root` (normally `/sys/fs/cgroup`).
///
/// Uses `statfs` magic numbers: cgroup2 at `root` is [`CgroupMode::V2`]; cgroup2 at
/// `<root>/unified` with v1 controllers beside it is [`CgroupMode::Hybrid`]; only v1
/// controller mounts is [`CgroupMode::V1`].
pub fn detect_mode(root: &Path) -> Result<CgroupMode> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    let magic = |p: &Path| statfs(p).ok().map(|s| s.filesystem_type());
    if magic(root) == Some(CGROUP2_SUPER_MAGIC) {
        return Ok(CgroupMode::V2);
    }
    let has_v1 = std::fs::read_dir(root)
        .map_err(|source| Error::Io {
            op: "readdir",
            path: root.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name() != "unified" && magic(&e.path()) == Some(CGROUP_SUPER_MAGIC));
    let unified = magic(&root.join("unified")) == Some(CGROUP2_SUPER_MAGIC);
    match (has_v1, unified) {
        (true, true) => Ok(CgroupMode::Hybrid),
        (true, false) => Ok(CgroupMode::V1),
        // only a unified mount and no v1 controllers: drive it as v2 below `unified`
        // is not what callers expect from `root`, so report it as missing
        _ => Err(Error::NoCgroupFs(root.to_path_buf())),
    }
}

/// A manager for the cgroup `cgroups_path` (relative to each hierarchy's root; a leading
/// `/` is ignored) under the cgroup root `root`.
///
/// `cgroups_path` must not be empty and must not contain `..`.
pub fn manager(
    mode: CgroupMode,
    root: &Path,
    cgroups_path: &Path,
) -> Result<Box<dyn CgroupManager>> {
    manager_with_fs(mode, root, cgroups_path, std::sync::Arc::new(RealFs))
}

/// Like [`manager`], with the control-file access supplied by the caller (a recording
/// or fake [`CgroupFs`] in tests; [`RealFs`] otherwise).
pub fn manager_with_fs(
    mode: CgroupMode,
    root: &Path,
    cgroups_path: &Path,
    fs: std::sync::Arc<dyn CgroupFs>,
) -> Result<Box<dyn CgroupManager>> {
    let rel = normalize_path(cgroups_path)?;
    Ok(match mode {
        CgroupMode::V1 => Box::new(v1::V1Manager::new(fs, root, &rel, false)?),
        CgroupMode::Hybrid => Box::new(v1::V1Manager::new(fs, root, &rel, true)?),
        CgroupMode::V2 => Box::new(v2::V2Manager::new(fs, root, &rel)),
    })
}

/// The cgroups path as a relative path with only normal components.
fn normalize_path(p: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let mut out = PathBuf::new();
    for comp in p.components() {
        match comp {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(c) => out.push(c),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::InvalidPath {
                    path: p.to_path_buf(),
                    reason: "\"..\" would escape the cgroup root; give a path below it".into(),
                })
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Error::InvalidPath {
            path: p.to_path_buf(),
            reason: "it names the root cgroup; give a path below it such as berth/<id>".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rejects_parent_and_empty() {
        assert_eq!(
            normalize_path(Path::new("/berth/./x")).expect("ok"),
            PathBuf::from("berth/x")
        );
        let e = normalize_path(Path::new("berth/../../etc")).expect_err("dotdot");
        assert!(matches!(e, Error::InvalidPath { .. }));
        assert!(e.to_string().contains("escape"), "{e}");
        assert!(normalize_path(Path::new("/")).is_err());
        assert!(normalize_path(Path::new("")).is_err());
        let e = manager(CgroupMode::V2, Path::new("/tmp"), Path::new("a/../b"));
        assert!(e.is_err());
    }

    #[test]
    fn detect_mode_on_plain_dir_is_no_cgroupfs() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(matches!(detect_mode(d.path()), Err(Error::NoCgroupFs(_))));
    }
}
