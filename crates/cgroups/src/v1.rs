//! cgroup v1 manager (one hierarchy per controller); with `hybrid` it also creates and
//! joins the controller-less cgroup2 hierarchy at `<root>/unified`, like runc.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxNetwork, LinuxResources};

use crate::fs::{self as cfs, CgroupFs};
use crate::{CgroupManager, CgroupMode, Error, Result, Stats};

mod stats;

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

    fn apply_memory(&self, m: &LinuxMemory) -> Result<()> {
        let dir = self.need("memory")?;
        let check = |field: &str, v: Option<i64>| -> Result<Option<i64>> {
            match v {
                None | Some(0) => Ok(None),
                Some(v) if v == -1 || v > 0 => Ok(Some(v)),
                Some(v) => Err(invalid(
                    field,
                    format!("{v} is negative; give bytes, or -1 for unlimited"),
                )),
            }
        };
        let limit = check("linux.resources.memory.limit", m.limit())?;
        let mut swap = check("linux.resources.memory.swap", m.swap())?;
        if let (Some(l), Some(s)) = (limit, swap) {
            if l > 0 && s > 0 && s < l {
                return Err(invalid(
                    "linux.resources.memory.swap",
                    format!("{s} is below memory.limit {l}; swap is memory+swap, so give at least the limit (or -1 for unlimited swap)"),
                ));
            }
        }
        // like runc: an unlimited memory update without swap makes swap unlimited too
        if limit == Some(-1) && swap.is_none() {
            swap = Some(-1);
        }
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if swap.is_some_and(|s| s != -1) && !memsw.exists() {
            return Err(invalid(
                "linux.resources.memory.swap",
                "swap accounting is off on this host (no memory.memsw.limit_in_bytes); boot with swapaccount=1 or leave swap unset",
            ));
        }
        let swap = swap.filter(|_| memsw.exists());
        match (limit, swap) {
            (Some(l), Some(s)) => {
                // memsw must stay >= limit at every step
                let cur = cfs::read_u64_opt(self.fs(), &dir.join("memory.limit_in_bytes"))?
                    .unwrap_or(u64::MAX);
                if s == -1 || cur < s as u64 {
                    self.write(dir, "memory.memsw.limit_in_bytes", &s.to_string())?;
                    self.write_limit(dir, l)?;
                } else {
                    self.write_limit(dir, l)?;
                    self.write(dir, "memory.memsw.limit_in_bytes", &s.to_string())?;
                }
            }
            (Some(l), None) => self.write_limit(dir, l)?,
            (None, Some(s)) => self.write(dir, "memory.memsw.limit_in_bytes", &s.to_string())?,
            (None, None) => {}
        }
        if let Some(r) = check("linux.resources.memory.reservation", m.reservation())? {
            self.write(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
        }
        if let Some(t) = m.kernel_tcp().filter(|t| *t != 0) {
            let f = dir.join("memory.kmem.tcp.limit_in_bytes");
            if f.exists() {
                cfs::write(self.fs(), &f, &t.to_string())?;
            }
        }
        if let Some(sw) = m.swappiness() {
            if sw > 100 {
                return Err(invalid(
                    "linux.resources.memory.swappiness",
                    format!("{sw} is out of range; give 0 to 100"),
                ));
            }
            self.write(dir, "memory.swappiness", &sw.to_string())?;
        }
        if m.disable_oom_killer() == Some(true) {
            self.write(dir, "memory.oom_control", "1")?;
        }
        Ok(())
    }

    fn write_limit(&self, dir: &Path, limit: i64) -> Result<()> {
        let file = dir.join("memory.limit_in_bytes");
        match cfs::write(self.fs(), &file, &limit.to_string()) {
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::EBUSY) => {
                let usage = cfs::read_u64_opt(self.fs(), &dir.join("memory.usage_in_bytes"))?;
                Err(invalid(
                    "linux.resources.memory.limit",
                    format!(
                        "{limit} is below the cgroup's current usage ({} bytes); give a larger limit",
                        usage.unwrap_or(0)
                    ),
                ))
            }
            r => r,
        }
    }

    fn apply_cpu(&self, c: &LinuxCpu) -> Result<()> {
        let needs_cpu = c.shares().is_some()
            || c.quota().is_some()
            || c.period().is_some()
            || c.burst().is_some()
            || c.idle().is_some()
            || c.realtime_period().is_some()
            || c.realtime_runtime().is_some();
        if needs_cpu {
            self.apply_cpu_sched(self.need("cpu")?, c)?;
        }
        if c.cpus().is_some() || c.mems().is_some() {
            let dir = self.need("cpuset")?;
            if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                self.write(dir, "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                self.write(dir, "cpuset.mems", mems)?;
            }
        }
        Ok(())
    }

    fn apply_cpu_sched(&self, dir: &Path, c: &LinuxCpu) -> Result<()> {
        if let Some(shares) = c.shares().filter(|s| *s != 0) {
            self.write(dir, "cpu.shares", &shares.to_string())?;
            let got = cfs::read_u64_opt(self.fs(), &dir.join("cpu.shares"))?;
            if let Some(got) = got.filter(|g| *g != shares) {
                return Err(invalid(
                    "linux.resources.cpu.shares",
                    format!("the kernel took {shares} as {got}; give a value in 2..=262144"),
                ));
            }
        }
        if let Some(p) = c.period().filter(|p| *p != 0) {
            self.write(dir, "cpu.cfs_period_us", &p.to_string())?;
        }
        if let Some(q) = c.quota().filter(|q| *q != 0) {
            let q = if q < 0 { -1 } else { q };
            self.write(dir, "cpu.cfs_quota_us", &q.to_string())?;
        }
        if let Some(b) = c.burst() {
            self.optional(
                dir,
                "cpu.cfs_burst_us",
                &b.to_string(),
                "linux.resources.cpu.burst",
            )?;
        }
        if let Some(i) = c.idle() {
            self.optional(dir, "cpu.idle", &i.to_string(), "linux.resources.cpu.idle")?;
        }
        // period before runtime, as the kernel checks runtime against the period
        if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
            self.optional(
                dir,
                "cpu.rt_period_us",
                &p.to_string(),
                "linux.resources.cpu.realtimePeriod",
            )?;
        }
        if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
            self.optional(
                dir,
                "cpu.rt_runtime_us",
                &r.to_string(),
                "linux.resources.cpu.realtimeRuntime",
            )?;
        }
        Ok(())
    }

    /// Write a file that only some kernels have; its absence is the field's error.
    fn optional(&self, dir: &Path, file: &str, value: &str, field: &str) -> Result<()> {
        let path = dir.join(file);
        if !path.exists() {
            return Err(invalid(
                field,
                format!("this kernel has no {file} (feature not built in); leave the field unset"),
            ));
        }
        cfs::write(self.fs(), &path, value)
    }

    fn apply_blkio(&self, b: &LinuxBlockIo) -> Result<()> {
        let dir = self.need("blkio")?;
        let bfq = !dir.join("blkio.weight").exists() && dir.join("blkio.bfq.weight").exists();
        let (wfile, wdev) = if bfq {
            ("blkio.bfq.weight", "blkio.bfq.weight_device")
        } else {
            ("blkio.weight", "blkio.weight_device")
        };
        if let Some(w) = b.weight().filter(|w| *w != 0) {
            if !(10..=1000).contains(&w) {
                return Err(invalid(
                    "linux.resources.blockIO.weight",
                    format!("{w} is out of range; give 10 to 1000"),
                ));
            }
            self.optional(dir, wfile, &w.to_string(), "linux.resources.blockIO.weight")?;
        }
        if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
            self.optional(
                dir,
                "blkio.leaf_weight",
                &w.to_string(),
                "linux.resources.blockIO.leafWeight",
            )?;
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(w) = d.weight() {
                let line = format!("{}:{} {}", d.major(), d.minor(), w);
                self.optional(dir, wdev, &line, "linux.resources.blockIO.weightDevice")?;
            }
        }
        let throttles = [
            (
                b.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
                "throttleReadBpsDevice",
            ),
            (
                b.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
                "throttleWriteBpsDevice",
            ),
            (
                b.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
                "throttleReadIOPSDevice",
            ),
            (
                b.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
                "throttleWriteIOPSDevice",
            ),
        ];
        for (list, file, field) in throttles {
            for d in list.iter().flatten() {
                let line = format!("{}:{} {}", d.major(), d.minor(), d.rate());
                self.optional(
                    dir,
                    file,
                    &line,
                    &format!("linux.resources.blockIO.{field}"),
                )?;
            }
        }
        Ok(())
    }

    fn apply_hugetlb(&self, limits: &[oci_spec::runtime::LinuxHugepageLimit]) -> Result<()> {
        if limits.is_empty() {
            return Ok(());
        }
        let dir = self.need("hugetlb")?;
        for (i, h) in limits.iter().enumerate() {
            let file = dir.join(format!("hugetlb.{}.limit_in_bytes", h.page_size()));
            check_page_size(&file, i, h.page_size(), dir, ".limit_in_bytes")?;
            cfs::write(self.fs(), &file, &h.limit().to_string())?;
            let rsvd = dir.join(format!("hugetlb.{}.rsvd.limit_in_bytes", h.page_size()));
            if rsvd.exists() {
                cfs::write(self.fs(), &rsvd, &h.limit().to_string())?;
            }
        }
        Ok(())
    }

    fn apply_network(&self, n: &LinuxNetwork) -> Result<()> {
        if let Some(id) = n.class_id() {
            self.write(self.need("net_cls")?, "net_cls.classid", &id.to_string())?;
        }
        for p in n.priorities().iter().flatten() {
            let line = format!("{} {}", p.name(), p.priority());
            self.write(self.need("net_prio")?, "net_prio.ifpriomap", &line)?;
        }
        Ok(())
    }

    fn apply_unified(&self, map: &std::collections::HashMap<String, String>) -> Result<()> {
        if map.is_empty() {
            return Ok(());
        }
        let Some((_, dir)) = &self.unified else {
            return Err(invalid(
                "linux.resources.unified",
                "this host has no cgroup v2 hierarchy; express the limits with the v1 fields",
            ));
        };
        let mut keys: Vec<_> = map.iter().collect();
        keys.sort();
        for (k, v) in keys {
            crate::v2::write_unified_key(self.fs(), dir, k, v)?;
        }
        Ok(())
    }
}

/// Check a hugetlb page size against the files the host has.
pub(crate) fn check_page_size(
    file: &Path,
    i: usize,
    size: &str,
    dir: &Path,
    suffix: &str,
) -> Result<()> {
    if file.exists() {
        return Ok(());
    }
    let mut sizes: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let s = n
                        .strip_prefix("hugetlb.")?
                        .strip_suffix(suffix)?
                        .to_string();
                    (!s.contains('.')).then_some(s)
                })
                .collect()
        })
        .unwrap_or_default();
    sizes.sort();
    Err(invalid(
        &format!("linux.resources.hugepageLimits[{i}].pageSize"),
        format!(
            "{size:?} is not a huge page size of this host; use one of [{}]",
            sizes.join(", ")
        ),
    ))
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
        if let Some(m) = r.memory() {
            self.apply_memory(m)?;
        }
        if let Some(c) = r.cpu() {
            self.apply_cpu(c)?;
        }
        if let Some(p) = r.pids() {
            let v = if p.limit() <= 0 {
                "max".to_string()
            } else {
                p.limit().to_string()
            };
            self.write(self.need("pids")?, "pids.max", &v)?;
        }
        if let Some(b) = r.block_io() {
            self.apply_blkio(b)?;
        }
        if let Some(h) = r.hugepage_limits() {
            self.apply_hugetlb(h)?;
        }
        if let Some(n) = r.network() {
            self.apply_network(n)?;
        }
        if let Some(rules) = r.devices() {
            let dir = self.need("devices")?;
            for (file, line) in crate::devices::v1_writes(rules)? {
                self.write(dir, file, &line)?;
            }
        }
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(invalid(
                "linux.resources.rdma",
                "the rdma controller is not supported by berth; leave it unset",
            ));
        }
        if let Some(u) = r.unified() {
            self.apply_unified(u)?;
        }
        Ok(())
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
            if polls % 10 == 0 {
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
        if let Some((_, dir)) = &self.unified {
            cfs::rmdir_tree(self.fs(), dir)?;
        }
        for (_, dir) in self.hierarchies() {
            cfs::rmdir_tree(self.fs(), dir)?;
        }
        Ok(())
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
