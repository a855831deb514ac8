//! v2 resource writes: OCI `LinuxResources` to the unified cgroup's files.

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::{
    blkio_to_io_weight, invalid, max_or, shares_to_weight, swap_to_v2, write_unified_key, V2Manager,
};
use crate::fs as cfs;
use crate::{Error, Result};

impl V2Manager {
    /// Apply every resource group that is set; devices last, once the limits hold.
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
}
