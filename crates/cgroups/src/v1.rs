//! cgroup v1 manager (one hierarchy per controller); with `hybrid` it also creates and
//! joins the controller-less cgroup2 hierarchy at `<root>/unified`, like runc.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use crate::fs::{self as cfs, CgroupFs};
use crate::{CgroupManager, CgroupMode, Error, Result, Stats};

mod resources;
mod stats;

pub(crate) use resources::check_page_size;

/// The v1 controllers berth manages, in the order they are created and joined.
pub(crate) const CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "pids",
    "blkio",
    "devices",
    "freezer",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
];

const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// A v1 (or hybrid) cgroup.
#[derive(Debug)]
pub(crate) struct V1Manager {
    fs: Arc<dyn CgroupFs>,
    /// controller name -> (hierarchy root, cgroup dir), only mounted controllers
    controllers: Vec<(String, PathBuf, PathBuf)>,
    rel: PathBuf,
    /// `<root>/unified/<rel>` in hybrid mode
    unified: Option<(PathBuf, PathBuf)>,
}

/// Find the hierarchy of every controller under `root`: `<root>/<name>` (a directory or
/// a symlink to a combined one such as `cpu,cpuacct`) or a combined directory itself.
fn find_hierarchies(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut combined: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(',') && e.path().is_dir() {
                combined.push((name, e.path()));
            }
        }
    } else {
        return Err(Error::NoCgroupFs(root.to_path_buf()));
    }
    // An empty mountpoint (a directory with no cgroup.procs) is not a hierarchy.
    let mounted = |p: &Path| p.join("cgroup.procs").is_file();
    let mut out = Vec::new();
    for c in CONTROLLERS {
        let direct = root.join(c);
        if direct.is_dir() {
            if mounted(&direct) {
                out.push((c.to_string(), direct));
            }
        } else if let Some((_, p)) = combined
            .iter()
            .find(|(n, p)| n.split(',').any(|x| x == *c) && mounted(p))
        {
            out.push((c.to_string(), p.clone()));
        }
    }
    Ok(out)
}

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidResource {
        field: field.to_string(),
        reason: reason.into(),
    }
}

impl V1Manager {
    pub(crate) fn new(
        fs: Arc<dyn CgroupFs>,
        root: &Path,
        rel: &Path,
        hybrid: bool,
    ) -> Result<Self> {
        let controllers: Vec<_> = find_hierarchies(root)?
            .into_iter()
            .map(|(name, hier)| {
                let dir = hier.join(rel);
                (name, hier, dir)
            })
            .collect();
        if controllers.is_empty() {
            return Err(Error::NoCgroupFs(root.to_path_buf()));
        }
        let unified = hybrid.then(|| (root.join("unified"), root.join("unified").join(rel)));
        Ok(V1Manager {
            fs,
            controllers,
            rel: rel.to_path_buf(),
            unified,
        })
    }

    fn fs(&self) -> &dyn CgroupFs {
        self.fs.as_ref()
    }

    /// The cgroup directory of `controller`, if the host mounts it.
    fn dir(&self, controller: &str) -> Option<&Path> {
        self.controllers
            .iter()
            .find(|(n, _, _)| n == controller)
            .map(|(_, _, d)| d.as_path())
    }

    fn need(&self, controller: &str) -> Result<&Path> {
        self.dir(controller)
            .ok_or_else(|| Error::MissingController(controller.to_string()))
    }

    /// (hierarchy root, cgroup dir) once per hierarchy (cpu and cpuacct may share one).
    fn hierarchies(&self) -> Vec<(&Path, &Path)> {
        let mut seen: Vec<PathBuf> = Vec::new();
        let mut out = Vec::new();
        for (_, hier, dir) in &self.controllers {
            let key = std::fs::canonicalize(hier).unwrap_or_else(|_| hier.clone());
            if !seen.contains(&key) {
                seen.push(key);
                out.push((hier.as_path(), dir.as_path()));
            }
        }
        out
    }

    /// Give every new cpuset level the parent's cpus and mems, or no task may join it.
    fn init_cpuset(&self, hier: &Path) -> Result<()> {
        let mut parent = hier.to_path_buf();
        for comp in self.rel.components() {
            let cur = parent.join(comp);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let own = cfs::read(self.fs(), &cur.join(file))?;
                let from = cfs::read(self.fs(), &parent.join(file))?;
                if own.trim().is_empty() && !from.trim().is_empty() {
                    cfs::write(self.fs(), &cur.join(file), from.trim())?;
                }
            }
            parent = cur;
        }
        Ok(())
    }

    fn write(&self, dir: &Path, file: &str, value: &str) -> Result<()> {
        cfs::write(self.fs(), &dir.join(file), value)
    }
}

impl CgroupManager for V1Manager {
    fn mode(&self) -> CgroupMode {
        if self.unified.is_some() {
            CgroupMode::Hybrid
        } else {
            CgroupMode::V1
        }
    }

    fn create(&self) -> Result<()> {
        for (hier, _) in self.hierarchies() {
            cfs::mkdir_p(self.fs(), hier, &self.rel)?;
        }
        if let Some((_, hier, _)) = self.controllers.iter().find(|(n, _, _)| n == "cpuset") {
            self.init_cpuset(hier)?;
        }
        if let Some((uroot, _)) = &self.unified {
            cfs::mkdir_p(self.fs(), uroot, &self.rel)?;
        }
        Ok(())
    }

    fn join_plan(&self) -> crate::JoinPlan {
        crate::JoinPlan {
            self_tasks: self
                .hierarchies()
                .iter()
                .map(|(_, d)| d.join("tasks"))
                .collect(),
            clone_into: self.unified.as_ref().map(|(_, d)| d.clone()),
        }
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for (_, dir) in self.hierarchies() {
            self.write(dir, "cgroup.procs", &pid)?;
        }
        if let Some((_, dir)) = &self.unified {
            self.write(dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    fn apply_resources(&self, r: &LinuxResources) -> Result<()> {
        self.apply_all(r)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let dir = ["pids", "freezer", "memory", "cpu", "devices"]
            .iter()
            .find_map(|c| self.dir(c))
            .or_else(|| self.controllers.first().map(|(_, _, d)| d.as_path()))
            .ok_or_else(|| Error::MissingController("pids".into()))?;
        let mut out = Vec::new();
        cfs::procs_recursive(self.fs(), dir, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn freeze(&self) -> Result<()> {
        let dir = self.need("freezer")?;
        let state = dir.join("freezer.state");
        self.write(dir, "freezer.state", "FROZEN")?;
        let mut polls = 0u32;
        let done = cfs::poll_until(FREEZE_TIMEOUT, || {
            if cfs::read(self.fs(), &state)?.trim() == "FROZEN" {
                return Ok(true);
            }
            // Still FREEZING: tasks forked meanwhile escape the first pass, so ask
            // again now and then (like runc).
            polls += 1;
            if polls == 10 {
                polls = 0;
                self.write(dir, "freezer.state", "FROZEN")?;
            }
            Ok(false)
        })?;
        if !done {
            // leave it usable rather than stuck half-frozen
            let _ = self.write(dir, "freezer.state", "THAWED");
            return Err(Error::Timeout {
                what: "frozen",
                path: dir.to_path_buf(),
            });
        }
        Ok(())
    }

    fn thaw(&self) -> Result<()> {
        let dir = self.need("freezer")?;
        let state = dir.join("freezer.state");
        self.write(dir, "freezer.state", "THAWED")?;
        let done = cfs::poll_until(FREEZE_TIMEOUT, || {
            Ok(cfs::read(self.fs(), &state)?.trim() == "THAWED")
        })?;
        if !done {
            return Err(Error::Timeout {
                what: "thawed",
                path: dir.to_path_buf(),
            });
        }
        Ok(())
    }

    fn is_frozen(&self) -> Result<bool> {
        let dir = self.need("freezer")?;
        Ok(cfs::read(self.fs(), &dir.join("freezer.state"))?.trim() == "FROZEN")
    }

    fn stats(&self) -> Result<Stats> {
        stats::collect(self.fs(), |c| self.dir(c))
    }

    fn destroy(&self) -> Result<()> {
        // Try every hierarchy even when one fails, so a failure leaves as little as
        // possible behind; report the first error.
        let mut first = None;
        let dirs = self.unified.iter().map(|(_, d)| d.as_path());
        for dir in dirs.chain(self.hierarchies().into_iter().map(|(_, d)| d)) {
            if let Err(e) = cfs::rmdir_tree(self.fs(), dir) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn paths(&self) -> Vec<(String, PathBuf)> {
        let mut out: Vec<_> = self
            .controllers
            .iter()
            .map(|(n, _, d)| (n.clone(), d.clone()))
            .collect();
        if let Some((_, d)) = &self.unified {
            out.push(("unified".into(), d.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests;
