//! The smaller verbs on existing containers: pause, unpause, rename, top, update,
//! prune.

use crate::error::{Error, Result};
use crate::list::State;
use crate::record::{read_json, write_json, CreateOptions};
use crate::restart::{RestartName, RestartPolicy};
use crate::{names, Engine};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources, Spec};

/// New limits and restart policy for a container (`update`); `None` keeps the
/// current value.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// `--memory` in bytes
    pub memory: Option<i64>,
    /// `--memory-swap` in bytes
    pub memory_swap: Option<i64>,
    /// `--memory-reservation` in bytes
    pub memory_reservation: Option<i64>,
    /// `--cpus`
    pub cpus: Option<f64>,
    /// `--cpu-shares`
    pub cpu_shares: Option<u64>,
    /// `--cpu-period` in microseconds
    pub cpu_period: Option<u64>,
    /// `--cpu-quota` in microseconds
    pub cpu_quota: Option<i64>,
    /// `--cpuset-cpus`
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`
    pub cpuset_mems: Option<String>,
    /// `--blkio-weight`
    pub blkio_weight: Option<u16>,
    /// `--pids-limit`
    pub pids_limit: Option<i64>,
    /// `--cpu-rt-period` in microseconds
    pub cpu_rt_period: Option<u64>,
    /// `--cpu-rt-runtime` in microseconds
    pub cpu_rt_runtime: Option<i64>,
    /// `--restart`
    pub restart: Option<RestartPolicy>,
}

impl Update {
    /// Whether any cgroup limit changes (a restart policy alone touches no cgroup).
    fn has_limits(&self) -> bool {
        self.memory.is_some()
            || self.memory_swap.is_some()
            || self.memory_reservation.is_some()
            || self.cpus.is_some()
            || self.cpu_shares.is_some()
            || self.cpu_period.is_some()
            || self.cpu_quota.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some()
            || self.blkio_weight.is_some()
            || self.pids_limit.is_some()
            || self.cpu_rt_period.is_some()
            || self.cpu_rt_runtime.is_some()
    }

    /// docker's checks of the values on their own.
    fn check(&self) -> Result<()> {
        if self.cpus.is_some() && (self.cpu_period.is_some() || self.cpu_quota.is_some()) {
            return Err(Error::Invalid(
                "conflicting options: Nano CPUs and CPU Period cannot both be set: use --cpus or --cpu-period/--cpu-quota".into(),
            ));
        }
        if let Some(p) = self.cpu_period.filter(|p| !(1000..=1_000_000).contains(p)) {
            return Err(Error::Invalid(format!(
                "CPU cfs period {p} cannot be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
            )));
        }
        if let Some(q) = self.cpu_quota.filter(|q| *q > 0 && *q < 1000) {
            return Err(Error::Invalid(format!(
                "CPU cfs quota {q} cannot be less than 1ms (i.e. 1000)"
            )));
        }
        if let Some(w) = self
            .blkio_weight
            .filter(|w| *w != 0 && !(10..=1000).contains(w))
        {
            return Err(Error::Invalid(format!(
                "--blkio-weight {w}: range of blkio weight is from 10 to 1000"
            )));
        }
        Ok(())
    }

    /// Writes the changed values into the container's options.
    fn apply_to(&self, o: &mut CreateOptions) {
        o.memory = self.memory.or(o.memory);
        o.memory_swap = self.memory_swap.or(o.memory_swap);
        o.memory_reservation = self.memory_reservation.or(o.memory_reservation);
        o.cpu_shares = self.cpu_shares.or(o.cpu_shares);
        if self.cpus.is_some() {
            (o.cpus, o.cpu_period, o.cpu_quota) = (self.cpus, None, None);
        }
        if self.cpu_period.is_some() || self.cpu_quota.is_some() {
            o.cpus = None;
            o.cpu_period = self.cpu_period.or(o.cpu_period);
            o.cpu_quota = self.cpu_quota.or(o.cpu_quota);
        }
        o.cpuset_cpus = self.cpuset_cpus.clone().or(o.cpuset_cpus.take());
        o.cpuset_mems = self.cpuset_mems.clone().or(o.cpuset_mems.take());
        o.blkio_weight = self.blkio_weight.or(o.blkio_weight);
        o.pids_limit = self.pids_limit.or(o.pids_limit);
        o.cpu_rt_period = self.cpu_rt_period.or(o.cpu_rt_period);
        o.cpu_rt_runtime = self.cpu_rt_runtime.or(o.cpu_rt_runtime);
        o.restart = self.restart.unwrap_or(o.restart);
    }

    /// The cgroup writes for the values that change (unchanged ones are not written
    /// again; CPU period and quota go together as the kernel checks them together).
    fn resources(&self, o: &CreateOptions) -> LinuxResources {
        let mut r = LinuxResources::default();
        if self.memory.is_some() || self.memory_swap.is_some() || self.memory_reservation.is_some()
        {
            let mut m = LinuxMemory::default();
            m.set_limit(self.memory);
            m.set_swap(self.memory_swap);
            m.set_reservation(self.memory_reservation);
            r.set_memory(Some(m));
        }
        let cpu_changes = self.cpus.is_some()
            || self.cpu_shares.is_some()
            || self.cpu_period.is_some()
            || self.cpu_quota.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some()
            || self.cpu_rt_period.is_some()
            || self.cpu_rt_runtime.is_some();
        if cpu_changes {
            let mut c = LinuxCpu::default();
            if let Some(n) = self.cpus {
                c.set_period(Some(100_000));
                c.set_quota(Some((n * 100_000.0).round() as i64));
            } else if self.cpu_period.is_some() || self.cpu_quota.is_some() {
                c.set_period(o.cpu_period.or(Some(100_000)));
                c.set_quota(o.cpu_quota.or(Some(-1)));
            }
            c.set_shares(self.cpu_shares);
            c.set_cpus(self.cpuset_cpus.clone());
            c.set_mems(self.cpuset_mems.clone());
            c.set_realtime_period(self.cpu_rt_period);
            c.set_realtime_runtime(self.cpu_rt_runtime);
            r.set_cpu(Some(c));
        }
        if let Some(w) = self.blkio_weight {
            let mut b = LinuxBlockIo::default();
            b.set_weight(Some(w));
            r.set_block_io(Some(b));
        }
        if let Some(p) = self.pids_limit {
            let mut pids = LinuxPids::default();
            pids.set_limit(if p <= 0 { -1 } else { p });
            r.set_pids(Some(pids));
        }
        r
    }
}

/// Writes the values `new` sets over `cur`, field by field (an update names only
/// what changes).
fn merge_resources(cur: &mut LinuxResources, new: &LinuxResources) {
    if let Some(n) = new.memory() {
        let mut m = cur.memory().unwrap_or_default();
        if n.limit().is_some() {
            m.set_limit(n.limit());
        }
        if n.swap().is_some() {
            m.set_swap(n.swap());
        }
        if n.reservation().is_some() {
            m.set_reservation(n.reservation());
        }
        cur.set_memory(Some(m));
    }
    if let Some(n) = new.cpu() {
        let mut c = cur.cpu().clone().unwrap_or_default();
        if n.shares().is_some() {
            c.set_shares(n.shares());
        }
        if n.quota().is_some() {
            c.set_quota(n.quota());
        }
        if n.period().is_some() {
            c.set_period(n.period());
        }
        if n.realtime_period().is_some() {
            c.set_realtime_period(n.realtime_period());
        }
        if n.realtime_runtime().is_some() {
            c.set_realtime_runtime(n.realtime_runtime());
        }
        if n.cpus().is_some() {
            c.set_cpus(n.cpus().clone());
        }
        if n.mems().is_some() {
            c.set_mems(n.mems().clone());
        }
        cur.set_cpu(Some(c));
    }
    if new.pids().is_some() {
        cur.set_pids(*new.pids());
    }
    if let Some(w) = new.block_io().as_ref().and_then(|b| b.weight()) {
        let mut b = cur.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        cur.set_block_io(Some(b));
    }
}

impl Engine {
    fn running(&self, what: &str, verb: &str) -> Result<crate::Summary> {
        let s = self.inspect(what)?;
        if s.state != State::Running {
            return Err(Error::Conflict(format!(
                "cannot {verb} container {what}: container {} is not running",
                s.record.id
            )));
        }
        Ok(s)
    }

    /// Freezes every process of the container.
    pub fn pause(&self, what: &str) -> Result<String> {
        let s = self.running(what, "pause")?;
        if s.paused {
            return Err(Error::Conflict(format!(
                "container {} is already paused",
                s.record.id
            )));
        }
        self.runtime.pause(&s.record.id)?;
        Ok(s.record.id)
    }

    /// Thaws a paused container.
    pub fn unpause(&self, what: &str) -> Result<String> {
        let s = self.running(what, "unpause")?;
        if !s.paused {
            return Err(Error::Conflict(format!(
                "container {} is not paused",
                s.record.id
            )));
        }
        self.runtime.resume(&s.record.id)?;
        Ok(s.record.id)
    }

    /// Thaws the container if it is paused (before signals that must be acted on).
    pub(crate) fn thaw(&self, id: &str) {
        if self.is_paused(id) {
            let _ = self.runtime.resume(id);
        }
    }

    /// Gives the container a new name.
    pub fn rename(&self, what: &str, new: &str) -> Result<()> {
        let new = names::validate(new)?;
        let s = self.inspect(what)?;
        let id = s.record.id;
        let dir = self.dir(&id);
        let _lock = dir.lock()?;
        let mut rec = dir.load()?;
        if rec.name == new {
            return Err(Error::Conflict(format!(
                "renaming a container with the same name as its current name: {new}"
            )));
        }
        self.names().reserve(new, &id)?;
        let old = std::mem::replace(&mut rec.name, new.to_string());
        if let Err(e) = dir.save(&rec) {
            let _ = self.names().release(new, &id);
            return Err(e);
        }
        self.names().release(&old, &id)
    }

    /// Host pids of the container's processes.
    pub fn top(&self, what: &str) -> Result<Vec<i32>> {
        let s = self.running(what, "list the processes of")?;
        Ok(self.runtime.ps(&s.record.id)?)
    }

    /// Changes the limits of a container (in its cgroup when it runs) and its restart
    /// policy, and remembers them for its next start, as docker's `update`. Returns
    /// the id and docker's warnings (a block I/O weight this kernel cannot apply is
    /// dropped, as at create).
    pub fn update(&self, what: &str, u: &Update) -> Result<(String, Vec<String>)> {
        u.check()?;
        let mut warnings = Vec::new();
        let mut u = u.clone();
        if u.blkio_weight.is_some_and(|w| w != 0)
            && !crate::hostconfig::blkio_has(&["blkio.weight", "blkio.bfq.weight"], "io")
        {
            warnings.push("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.".to_string());
            u.blkio_weight = None;
        }
        let u = &u;
        let s = self.inspect(what)?;
        let id = s.record.id;
        if u.restart.is_some_and(|p| p.name != RestartName::No) && s.record.options.auto_remove {
            return Err(Error::Invalid(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .into(),
            ));
        }
        let mut merged = s.record.options.clone();
        u.apply_to(&mut merged);
        if s.state == State::Running && u.has_limits() {
            self.runtime.update(&id, &u.resources(&merged))?;
        }
        let dir = self.dir(&id);
        let _lock = dir.lock()?;
        let mut rec = dir.load()?;
        u.apply_to(&mut rec.options);
        // the bundle's spec too: the next start runs from it
        if u.has_limits() {
            let path = dir.bundle().join("config.json");
            let mut spec: Spec = read_json(&path)?;
            if let Some(linux) = spec.linux_mut() {
                let mut cur = linux.resources().clone().unwrap_or_default();
                merge_resources(&mut cur, &u.resources(&rec.options));
                linux.set_resources(Some(cur));
            }
            write_json(&path, &spec)?;
        }
        dir.save(&rec)?;
        Ok((id, warnings))
    }

    /// Removes every container that is not running; returns their ids.
    pub fn prune(&self) -> Result<Vec<String>> {
        self.prune_matching(|_| true)
    }

    /// Removes every container that is not running and that `pick` chooses (the
    /// filters of `container prune`); returns their ids.
    pub fn prune_matching(&self, pick: impl Fn(&crate::Summary) -> bool) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for s in self.list(true)? {
            if s.state != State::Running
                && pick(&s)
                && self.remove(&s.record.id, false, false).is_ok()
            {
                removed.push(s.record.id);
            }
        }
        Ok(removed)
    }
}
