//! Resource usage of a running container, from its cgroup.

use crate::error::Result;
use crate::Engine;

/// One sample of a container's resource usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// CPU time used, nanoseconds
    pub cpu_ns: u64,
    /// memory in use, without the inactive page cache (as docker counts it)
    pub mem_usage: u64,
    /// memory limit (the host's memory when unlimited)
    pub mem_limit: u64,
    /// number of tasks
    pub pids: u64,
    /// bytes read from block devices
    pub blk_read: u64,
    /// bytes written to block devices
    pub blk_write: u64,
    /// per interface in the container (`eth0`, `eth1`, … in the order of its
    /// networks), seen from inside it
    pub networks: Vec<(String, NetCounters)>,
}

/// Traffic of one of a container's interfaces, as docker's stats count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// bytes received
    pub rx_bytes: u64,
    /// packets received
    pub rx_packets: u64,
    /// receive errors
    pub rx_errors: u64,
    /// received packets dropped
    pub rx_dropped: u64,
    /// bytes sent
    pub tx_bytes: u64,
    /// packets sent
    pub tx_packets: u64,
    /// send errors
    pub tx_errors: u64,
    /// sent packets dropped
    pub tx_dropped: u64,
}

impl NetCounters {
    /// The counters of the container's end, from the host end of its veth
    /// (`/sys/class/net/<veth>/statistics`): what the host sends, it receives.
    fn of_host_veth(veth: &str) -> Option<NetCounters> {
        let dir = std::path::Path::new("/sys/class/net")
            .join(veth)
            .join("statistics");
        let n = |f: &str| -> Option<u64> {
            std::fs::read_to_string(dir.join(f))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        Some(NetCounters {
            rx_bytes: n("tx_bytes")?,
            rx_packets: n("tx_packets")?,
            rx_errors: n("tx_errors")?,
            rx_dropped: n("tx_dropped")?,
            tx_bytes: n("rx_bytes")?,
            tx_packets: n("rx_packets")?,
            tx_errors: n("rx_errors")?,
            tx_dropped: n("rx_dropped")?,
        })
    }
}

/// Total memory of the host, bytes.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// CPU time the whole host has spent, nanoseconds (from /proc/stat, USER_HZ = 100).
pub fn host_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("cpu ")).map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .take(7)
                    .filter_map(|x| x.parse::<u64>().ok())
                    .sum::<u64>()
            })
        })
        .map(|ticks| ticks * 10_000_000)
        .unwrap_or(0)
}

/// docker's CPU %: the container's share of the host's CPU time between two
/// samples, times the number of CPUs.
pub fn cpu_percent(before: (u64, u64), after: (u64, u64), cpus: usize) -> f64 {
    let dc = after.0.saturating_sub(before.0) as f64;
    let ds = after.1.saturating_sub(before.1) as f64;
    if ds <= 0.0 {
        return 0.0;
    }
    dc / ds * cpus as f64 * 100.0
}

impl Engine {
    /// A sample of the running container's usage.
    pub fn stats(&self, what: &str) -> Result<Stats> {
        let s = self.inspect(what)?;
        let st = self.runtime.stats(&s.record.id)?;
        let inactive = ["total_inactive_file", "inactive_file"]
            .iter()
            .find_map(|k| st.memory.raw.get(*k).copied())
            .unwrap_or(0);
        let limit = st.memory.usage.limit;
        let host = host_memory();
        let blk = |op: &str| {
            st.blkio
                .io_service_bytes_recursive
                .iter()
                .filter(|e| e.op.eq_ignore_ascii_case(op))
                .map(|e| e.value)
                .sum()
        };
        Ok(Stats {
            cpu_ns: st.cpu.usage.total,
            mem_usage: st.memory.usage.usage.saturating_sub(inactive),
            mem_limit: if limit == 0 || limit >= host {
                host
            } else {
                limit
            },
            pids: st.pids.current,
            blk_read: blk("read"),
            blk_write: blk("write"),
            networks: self
                .container_network(&s.record)
                .attachments
                .iter()
                .enumerate()
                .filter_map(|(i, a)| {
                    let veth = berth_network::bridge::host_veth_name(&s.record.id, &a.network);
                    NetCounters::of_host_veth(&veth).map(|c| (format!("eth{i}"), c))
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_is_a_share_times_cpus() {
        assert_eq!(cpu_percent((0, 0), (50, 100), 2), 100.0);
        assert_eq!(cpu_percent((0, 5), (10, 5), 4), 0.0);
    }

    #[test]
    fn host_figures_are_read() {
        assert!(host_memory() > 0);
        assert!(host_cpu_ns() > 0);
    }
}
