//! cgroup v2 manager: one directory in the unified hierarchy.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use crate::fs::{self as cfs, CgroupFs};
use crate::{CgroupManager, CgroupMode, Error, Result, Stats};

/// Controllers berth enables for its cgroups when the parent offers them.
const WANTED: &[&str] = &[
    "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc",
];

mod resources;
mod stats;
#[cfg(test)]
mod tests;

const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// A v2 cgroup.
#[derive(Debug)]
pub(crate) struct V2Manager {
    fs: Arc<dyn CgroupFs>,
    root: PathBuf,
    rel: PathBuf,
    dir: PathBuf,
}

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidResource {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// runc's conversion of v1 cpu shares (2..=262144) to a v2 cpu.weight (1..=10000).
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// runc's conversion of a v1 blkio weight (10..=1000) to a v2 io.weight (1..=10000).
pub(crate) fn blkio_to_io_weight(w: u16) -> u64 {
    let w = u64::from(w.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// OCI swap (memory+swap) to memory.swap.max (swap alone); `None` = leave alone,
/// `Some(-1)` = "max".
pub(crate) fn swap_to_v2(limit: Option<i64>, swap: Option<i64>) -> Result<Option<i64>> {
    let field = "linux.resources.memory.swap";
    match swap {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some(-1)),
        Some(s) if s < 0 => Err(invalid(field, format!("{s} is negative; give bytes, or -1 for unlimited"))),
        Some(s) => match limit {
            None | Some(0) | Some(-1) => Err(invalid(
                field,
                "a swap limit needs a memory limit (swap is memory+swap); set linux.resources.memory.limit too",
            )),
            Some(l) if s < l => Err(invalid(
                field,
                format!("{s} is below memory.limit {l}; swap is memory+swap, so give at least the limit (or -1 for unlimited swap)"),
            )),
            Some(l) => Ok(Some(s - l)),
        },
    }
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

/// Write one `linux.resources.unified` entry: `key` must name an existing file of `dir`.
pub(crate) fn write_unified_key(
    fs: &dyn CgroupFs,
    dir: &Path,
    key: &str,
    value: &str,
) -> Result<()> {
    let field = format!("linux.resources.unified.{key}");
    if key.is_empty() || key.contains('/') || key.starts_with('.') {
        return Err(invalid(
            &field,
            "not a cgroup file name; give a name such as memory.high",
        ));
    }
    let path = dir.join(key);
    if !path.exists() {
        return Err(invalid(
            &field,
            format!(
                "{} has no such file; check the name and that its controller is enabled",
                dir.display()
            ),
        ));
    }
    cfs::write_as(fs, &path, value, Some(&field))
}

impl V2Manager {
    pub(crate) fn new(fs: Arc<dyn CgroupFs>, root: &Path, rel: &Path) -> Self {
        V2Manager {
            fs,
            root: root.to_path_buf(),
            rel: rel.to_path_buf(),
            dir: root.join(rel),
        }
    }

    fn fs(&self) -> &dyn CgroupFs {
        self.fs.as_ref()
    }

    /// Write `file` of the cgroup; a missing file means `controller` is not enabled.
    fn write(&self, controller: &str, file: &str, value: &str) -> Result<()> {
        let path = self.dir.join(file);
        match cfs::write(self.fs(), &path, value) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::MissingController(controller.to_string()))
            }
            r => r,
        }
    }

    /// Enable in `parent`'s cgroup.subtree_control every wanted controller it offers.
    fn enable_controllers(&self, parent: &Path) -> Result<()> {
        let offered =
            cfs::read_opt(self.fs(), &parent.join("cgroup.controllers"))?.unwrap_or_default();
        let enabled =
            cfs::read_opt(self.fs(), &parent.join("cgroup.subtree_control"))?.unwrap_or_default();
        let enabled: Vec<&str> = enabled.split_whitespace().collect();
        for c in offered.split_whitespace() {
            if WANTED.contains(&c) && !enabled.contains(&c) {
                // One at a time: a controller the kernel refuses here (e.g. a threaded
                // subtree) must not keep the others off; using it later fails clearly.
                let _ = self
                    .fs()
                    .write(&parent.join("cgroup.subtree_control"), &format!("+{c}"));
            }
        }
        Ok(())
    }

    fn events_frozen(&self) -> Result<Option<bool>> {
        let path = self.dir.join("cgroup.events");
        let ev = cfs::read_flat_keyed(self.fs(), &path)?;
        Ok(ev.get("frozen").map(|v| *v == 1))
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        self.set_frozen_with_timeout(frozen, FREEZE_TIMEOUT)
    }

    fn set_frozen_with_timeout(&self, frozen: bool, timeout: Duration) -> Result<()> {
        self.write("freezer", "cgroup.freeze", if frozen { "1" } else { "0" })?;
        let done = cfs::poll_until(timeout, || {
            Ok(self.events_frozen()?.unwrap_or(frozen) == frozen)
        })?;
        if !done {
            if frozen {
                let _ = self.write("freezer", "cgroup.freeze", "0");
            }
            return Err(Error::Timeout {
                what: if frozen { "frozen" } else { "thawed" },
                path: self.dir.clone(),
            });
        }
        Ok(())
    }
}

impl CgroupManager for V2Manager {
    fn mode(&self) -> CgroupMode {
        CgroupMode::V2
    }

    fn create(&self) -> Result<()> {
        let mut cur = self.root.clone();
        for comp in self.rel.components() {
            self.enable_controllers(&cur)?;
            cfs::mkdir_p(self.fs(), &cur, Path::new(comp.as_os_str()))?;
            cur.push(comp);
        }
        Ok(())
    }

    fn join_plan(&self) -> crate::JoinPlan {
        crate::JoinPlan {
            self_tasks: Vec::new(),
            clone_into: Some(self.dir.clone()),
        }
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        cfs::write(self.fs(), &self.dir.join("cgroup.procs"), &pid.to_string())
    }

    fn apply_resources(&self, r: &LinuxResources) -> Result<()> {
        self.apply_all(r)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        cfs::procs_recursive(self.fs(), &self.dir, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn is_frozen(&self) -> Result<bool> {
        let want = cfs::read_opt(self.fs(), &self.dir.join("cgroup.freeze"))?
            .ok_or_else(|| Error::MissingController("freezer".into()))?;
        if want.trim() != "1" {
            return Ok(false);
        }
        Ok(self.events_frozen()?.unwrap_or(false))
    }

    fn stats(&self) -> Result<Stats> {
        stats::collect_stats(self.fs(), &self.dir)
    }

    fn destroy(&self) -> Result<()> {
        cfs::rmdir_tree(self.fs(), &self.dir)
    }

    fn paths(&self) -> Vec<(String, PathBuf)> {
        vec![("unified".to_string(), self.dir.clone())]
    }
}
