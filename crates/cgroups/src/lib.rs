//! berth-cgroups: create, limit, freeze, measure and remove a container's cgroup.
//!
//! One trait, [`CgroupManager`], with three implementations chosen by [`detect_mode`]
//! from the filesystems actually mounted under the cgroup root (never from a setting):
//! v1 (one hierarchy per controller), hybrid (v1 controllers plus an empty unified
//! hierarchy at `<root>/unified`) and v2 (one unified hierarchy).
//!
//! Every manager works against a root directory, so the same code runs on a real
//! `/sys/fs/cgroup` and on a fake cgroupfs tree in unit tests.
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
    #[error("cgroup controller {0} is not available on this host")]
    MissingController(String),
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
}

/// Detect the layout from what is mounted at `root` (normally `/sys/fs/cgroup`).
pub fn detect_mode(root: &Path) -> Result<CgroupMode> {
    let _ = root;
    Err(Error::NoCgroupFs(root.to_path_buf()))
}

/// A manager for the cgroup `cgroups_path` (relative to each hierarchy's root; a leading
/// `/` is ignored) under the cgroup root `root`.
pub fn manager(
    mode: CgroupMode,
    root: &Path,
    cgroups_path: &Path,
) -> Result<Box<dyn CgroupManager>> {
    let _ = (mode, root, cgroups_path);
    Err(Error::NoCgroupFs(root.to_path_buf()))
}
