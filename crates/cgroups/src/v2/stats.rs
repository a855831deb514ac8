//! v2 statistics: cpu.stat, memory.*, pids.*, io.stat.

use std::path::Path;

use crate::fs::{self as cfs, CgroupFs};
use crate::{BlkioEntry, Error, MemoryEntry, Result, Stats};

pub(super) fn collect_stats(fs: &dyn CgroupFs, d: &Path) -> Result<Stats> {
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
