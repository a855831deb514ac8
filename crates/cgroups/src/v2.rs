//! cgroup v2 manager: one directory in the unified hierarchy.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::fs::{self as cfs, CgroupFs};
use crate::{BlkioEntry, CgroupManager, CgroupMode, Error, MemoryEntry, Result, Stats};

/// Controllers berth enables for its cgroups when the parent offers them.
const WANTED: &[&str] = &[
    "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc",
];

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

    fn apply_memory(&self, m: &LinuxMemory) -> Result<()> {
        let limit = m.limit();
        if let Some(l) = limit.filter(|l| *l != 0) {
            if l < -1 {
                return Err(invalid(
                    "linux.resources.memory.limit",
                    format!("{l} is negative; give bytes, or -1 for unlimited"),
                ));
            }
        }
        if let Some(swap) = swap_to_v2(limit, m.swap())? {
            if self.dir.join("memory.swap.max").exists() {
                self.write("memory", "memory.swap.max", &max_or(swap))?;
            } else if swap != -1 {
                return Err(invalid(
                    "linux.resources.memory.swap",
                    "swap accounting is off on this host (no memory.swap.max); enable it or leave swap unset",
                ));
            }
        }
        if let Some(l) = limit.filter(|l| *l != 0) {
            self.write("memory", "memory.max", &max_or(l))?;
        }
        if let Some(r) = m.reservation().filter(|r| *r != 0) {
            self.write("memory", "memory.low", &max_or(r))?;
        }
        // kernel_tcp, swappiness and disable_oom_killer have no v2 file: like runc,
        // they are left alone here.
        Ok(())
    }

    fn apply_cpu(&self, c: &LinuxCpu) -> Result<()> {
        if c.realtime_period().is_some_and(|p| p != 0)
            || c.realtime_runtime().is_some_and(|r| r != 0)
        {
            return Err(invalid(
                "linux.resources.cpu.realtimeRuntime",
                "realtime scheduling groups do not exist on cgroup v2; leave realtimeRuntime and realtimePeriod unset",
            ));
        }
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            self.write("cpu", "cpu.weight", &shares_to_weight(s).to_string())?;
        }
        let quota = c.quota().filter(|q| *q != 0);
        let period = c.period().filter(|p| *p != 0);
        if quota.is_some() || period.is_some() {
            let mut v = match quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            if let Some(p) = period {
                v.push_str(&format!(" {p}"));
            }
            self.write("cpu", "cpu.max", &v)?;
        }
        if let Some(b) = c.burst() {
            self.write("cpu", "cpu.max.burst", &b.to_string())?;
        }
        if let Some(i) = c.idle() {
            self.write("cpu", "cpu.idle", &i.to_string())?;
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            self.write("cpuset", "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            self.write("cpuset", "cpuset.mems", mems)?;
        }
        Ok(())
    }

    fn apply_io(&self, b: &LinuxBlockIo) -> Result<()> {
        let bfq = self.dir.join("io.bfq.weight").exists();
        if let Some(w) = b.weight().filter(|w| *w != 0) {
            if !(10..=1000).contains(&w) {
                return Err(invalid(
                    "linux.resources.blockIO.weight",
                    format!("{w} is out of range; give 10 to 1000"),
                ));
            }
            if bfq {
                self.write("io", "io.bfq.weight", &w.to_string())?;
            } else {
                self.write(
                    "io",
                    "io.weight",
                    &format!("default {}", blkio_to_io_weight(w)),
                )?;
            }
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(w) = d.weight() {
                if bfq {
                    self.write(
                        "io",
                        "io.bfq.weight",
                        &format!("{}:{} {}", d.major(), d.minor(), w),
                    )?;
                } else {
                    let v = blkio_to_io_weight(w);
                    self.write(
                        "io",
                        "io.weight",
                        &format!("{}:{} {}", d.major(), d.minor(), v),
                    )?;
                }
            }
        }
        let throttles = [
            (b.throttle_read_bps_device(), "rbps"),
            (b.throttle_write_bps_device(), "wbps"),
            (b.throttle_read_iops_device(), "riops"),
            (b.throttle_write_iops_device(), "wiops"),
        ];
        for (list, key) in throttles {
            for d in list.iter().flatten() {
                let rate = if d.rate() == 0 {
                    "max".to_string()
                } else {
                    d.rate().to_string()
                };
                self.write(
                    "io",
                    "io.max",
                    &format!("{}:{} {key}={rate}", d.major(), d.minor()),
                )?;
            }
        }
        Ok(())
    }

    fn apply_hugetlb(&self, limits: &[oci_spec::runtime::LinuxHugepageLimit]) -> Result<()> {
        for (i, h) in limits.iter().enumerate() {
            let file = self.dir.join(format!("hugetlb.{}.max", h.page_size()));
            crate::v1::check_page_size(&file, i, h.page_size(), &self.dir, ".max")?;
            cfs::write(self.fs(), &file, &max_or(h.limit()))?;
            let rsvd = self.dir.join(format!("hugetlb.{}.rsvd.max", h.page_size()));
            if rsvd.exists() {
                cfs::write(self.fs(), &rsvd, &max_or(h.limit()))?;
            }
        }
        Ok(())
    }

    fn apply_devices(&self, rules: &[oci_spec::runtime::LinuxDeviceCgroup]) -> Result<()> {
        let prog = crate::devices::bpf_program(rules)?;
        self.fs()
            .attach_device_filter(&self.dir, &prog)
            .map_err(|source| Error::Io {
                op: "attach device filter to",
                path: self.dir.clone(),
                source,
            })
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

    fn add_process(&self, pid: i32) -> Result<()> {
        cfs::write(self.fs(), &self.dir.join("cgroup.procs"), &pid.to_string())
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
            self.write("pids", "pids.max", &v)?;
        }
        if let Some(b) = r.block_io() {
            self.apply_io(b)?;
        }
        if let Some(h) = r.hugepage_limits() {
            self.apply_hugetlb(h)?;
        }
        if let Some(n) = r.network() {
            if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(invalid(
                    "linux.resources.network",
                    "net_cls and net_prio do not exist on cgroup v2; leave classID and priorities unset",
                ));
            }
        }
        if let Some(rdma) = r.rdma() {
            let mut devs: Vec<_> = rdma.iter().collect();
            devs.sort_by(|a, b| a.0.cmp(b.0));
            for (dev, l) in devs {
                let v = |n: Option<u32>| n.map_or_else(|| "max".to_string(), |n| n.to_string());
                let line = format!(
                    "{dev} hca_handle={} hca_object={}",
                    v(l.hca_handles()),
                    v(l.hca_objects())
                );
                self.write("rdma", "rdma.max", &line)?;
            }
        }
        if let Some(u) = r.unified() {
            let mut keys: Vec<_> = u.iter().collect();
            keys.sort();
            for (k, v) in keys {
                write_unified_key(self.fs(), &self.dir, k, v)?;
            }
        }
        if let Some(rules) = r.devices() {
            self.apply_devices(rules)?;
        }
        Ok(())
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
        collect_stats(self.fs(), &self.dir)
    }

    fn destroy(&self) -> Result<()> {
        cfs::rmdir_tree(self.fs(), &self.dir)
    }

    fn paths(&self) -> Vec<(String, PathBuf)> {
        vec![("unified".to_string(), self.dir.clone())]
    }
}

fn collect_stats(fs: &dyn CgroupFs, d: &Path) -> Result<Stats> {
    let mut st = Stats::default();
    let cpu = cfs::read_flat_keyed(fs, &d.join("cpu.stat"))?;
    let get = |k: &str| cpu.get(k).copied().unwrap_or(0);
    st.cpu.usage.total = get("usage_usec") * 1000;
    st.cpu.usage.user = get("user_usec") * 1000;
    st.cpu.usage.kernel = get("system_usec") * 1000;
    st.cpu.throttling.periods = get("nr_periods");
    st.cpu.throttling.throttled_periods = get("nr_throttled");
    st.cpu.throttling.throttled_time = get("throttled_usec") * 1000;

    let u = |f: &str| cfs::read_u64_opt(fs, &d.join(f));
    let events = cfs::read_flat_keyed(fs, &d.join("memory.events"))?;
    st.memory.usage = MemoryEntry {
        limit: u("memory.max")?.unwrap_or(0),
        usage: u("memory.current")?.unwrap_or(0),
        max: u("memory.peak")?.unwrap_or(0),
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    let swap_events = cfs::read_flat_keyed(fs, &d.join("memory.swap.events"))?;
    st.memory.swap = MemoryEntry {
        limit: u("memory.swap.max")?.unwrap_or(0),
        usage: u("memory.swap.current")?.unwrap_or(0),
        max: u("memory.swap.peak")?.unwrap_or(0),
        failcnt: swap_events.get("max").copied().unwrap_or(0),
    };
    st.memory.raw = cfs::read_flat_keyed(fs, &d.join("memory.stat"))?;
    st.memory.cache = st.memory.raw.get("file").copied().unwrap_or(0);

    st.pids.current = u("pids.current")?.unwrap_or(0);
    st.pids.limit = match u("pids.max")? {
        Some(u64::MAX) | None => 0,
        Some(n) => n,
    };
    if let Some(s) = cfs::read_opt(fs, &d.join("io.stat"))? {
        st.blkio.io_service_bytes_recursive = parse_io_stat(&d.join("io.stat"), &s)?;
    }
    Ok(st)
}

/// `8:0 rbytes=1 wbytes=2 rios=3 ...` to Read/Write byte entries.
pub(crate) fn parse_io_stat(path: &Path, s: &str) -> Result<Vec<BlkioEntry>> {
    let bad = |line: &str| Error::Parse {
        path: path.to_path_buf(),
        reason: format!("expected \"major:minor key=value...\", found {line:?}"),
    };
    let mut out = Vec::new();
    for line in s.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let dev = it.next().ok_or_else(|| bad(line))?;
        let (maj, min) = dev.split_once(':').ok_or_else(|| bad(line))?;
        let (major, minor) = (
            maj.parse().map_err(|_| bad(line))?,
            min.parse().map_err(|_| bad(line))?,
        );
        for kv in it {
            let (k, v) = kv.split_once('=').ok_or_else(|| bad(line))?;
            let op = match k {
                "rbytes" => "Read",
                "wbytes" => "Write",
                _ => continue,
            };
            out.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value: v.parse().map_err(|_| bad(line))?,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
