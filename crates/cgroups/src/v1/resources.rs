//! v1 resource writes: OCI `LinuxResources` to per-controller control files.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxNetwork, LinuxResources};

use super::{invalid, V1Manager};
use crate::fs as cfs;
use crate::{Error, Result};

impl V1Manager {
    /// Apply every resource group that is set, in controller order.
    pub(super) fn apply_all(&self, r: &LinuxResources) -> Result<()> {
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
