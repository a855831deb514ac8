//! v1 statistics: cpuacct, cpu.stat, memory.*, pids.*, blkio.

use std::path::Path;

use crate::fs::{self as cfs, CgroupFs};
use crate::{BlkioEntry, Error, MemoryEntry, Result, Stats};

/// Nanoseconds per USER_HZ tick (USER_HZ is 100 on every Linux ABI).
const NS_PER_TICK: u64 = 10_000_000;

/// Collect the stats of whichever controllers `dir` finds.
pub(super) fn collect<'a>(
    fs: &dyn CgroupFs,
    dir: impl Fn(&str) -> Option<&'a Path>,
) -> Result<Stats> {
    let mut st = Stats::default();
    if let Some(d) = dir("cpuacct") {
        cpuacct(fs, d, &mut st)?;
    }
    if let Some(d) = dir("cpu") {
        let s = cfs::read_flat_keyed(fs, &d.join("cpu.stat"))?;
        let t = &mut st.cpu.throttling;
        t.periods = s.get("nr_periods").copied().unwrap_or(0);
        t.throttled_periods = s.get("nr_throttled").copied().unwrap_or(0);
        t.throttled_time = s.get("throttled_time").copied().unwrap_or(0);
    }
    if let Some(d) = dir("memory") {
        memory(fs, d, &mut st)?;
    }
    if let Some(d) = dir("pids") {
        st.pids.current = cfs::read_u64_opt(fs, &d.join("pids.current"))?.unwrap_or(0);
        st.pids.limit = match cfs::read_u64_opt(fs, &d.join("pids.max"))? {
            Some(u64::MAX) | None => 0,
            Some(n) => n,
        };
    }
    if let Some(d) = dir("blkio") {
        st.blkio.io_service_bytes_recursive = blkio(fs, d)?;
    }
    Ok(st)
}

fn cpuacct(fs: &dyn CgroupFs, d: &Path, st: &mut Stats) -> Result<()> {
    let u = &mut st.cpu.usage;
    u.total = cfs::read_u64_opt(fs, &d.join("cpuacct.usage"))?.unwrap_or(0);
    if let Some(s) = cfs::read_opt(fs, &d.join("cpuacct.usage_percpu"))? {
        let path = d.join("cpuacct.usage_percpu");
        u.percpu = s
            .split_whitespace()
            .map(|t| cfs::parse_u64(&path, t))
            .collect::<Result<_>>()?;
    }
    let user = cfs::read_u64_opt(fs, &d.join("cpuacct.usage_user"))?;
    let sys = cfs::read_u64_opt(fs, &d.join("cpuacct.usage_sys"))?;
    if let (Some(user), Some(sys)) = (user, sys) {
        u.user = user;
        u.kernel = sys;
    } else if let Some(s) = cfs::read_opt(fs, &d.join("cpuacct.stat"))? {
        let m = cfs::parse_flat_keyed(&d.join("cpuacct.stat"), &s.to_lowercase())?;
        u.user = m.get("user").copied().unwrap_or(0) * NS_PER_TICK;
        u.kernel = m.get("system").copied().unwrap_or(0) * NS_PER_TICK;
    }
    Ok(())
}

fn entry(fs: &dyn CgroupFs, d: &Path, prefix: &str) -> Result<MemoryEntry> {
    let f = |name: &str| cfs::read_u64_opt(fs, &d.join(format!("{prefix}.{name}")));
    Ok(MemoryEntry {
        limit: f("limit_in_bytes")?.unwrap_or(0),
        usage: f("usage_in_bytes")?.unwrap_or(0),
        max: f("max_usage_in_bytes")?.unwrap_or(0),
        failcnt: f("failcnt")?.unwrap_or(0),
    })
}

fn memory(fs: &dyn CgroupFs, d: &Path, st: &mut Stats) -> Result<()> {
    let m = &mut st.memory;
    m.usage = entry(fs, d, "memory")?;
    m.swap = entry(fs, d, "memory.memsw")?;
    m.raw = cfs::read_flat_keyed(fs, &d.join("memory.stat"))?;
    m.cache = m.raw.get("cache").copied().unwrap_or(0);
    Ok(())
}

/// `8:0 Read 4096` lines (and a `Total N` line, skipped) of the first non-empty file.
fn blkio(fs: &dyn CgroupFs, d: &Path) -> Result<Vec<BlkioEntry>> {
    for name in [
        "blkio.io_service_bytes_recursive",
        "blkio.bfq.io_service_bytes_recursive",
        "blkio.throttle.io_service_bytes_recursive",
    ] {
        let path = d.join(name);
        let Some(s) = cfs::read_opt(fs, &path)? else {
            continue;
        };
        let entries = parse_blkio(&path, &s)?;
        if !entries.is_empty() {
            return Ok(entries);
        }
    }
    Ok(Vec::new())
}

pub(super) fn parse_blkio(path: &Path, s: &str) -> Result<Vec<BlkioEntry>> {
    let bad = |line: &str| Error::Parse {
        path: path.to_path_buf(),
        reason: format!("expected \"major:minor op value\", found {line:?}"),
    };
    let mut out = Vec::new();
    for line in s.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            continue; // "Total N" and blank lines
        }
        let (maj, min) = f[0].split_once(':').ok_or_else(|| bad(line))?;
        out.push(BlkioEntry {
            major: maj.parse().map_err(|_| bad(line))?,
            minor: min.parse().map_err(|_| bad(line))?,
            op: f[1].to_string(),
            value: f[2].parse().map_err(|_| bad(line))?,
        });
    }
    Ok(out)
}
