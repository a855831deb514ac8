//! The smaller verbs on existing containers: pause, unpause, rename, top, update,
//! prune.

use crate::error::{Error, Result};
use crate::list::State;
use crate::{names, Engine};
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

/// New limits for a running container (`update`).
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// `--memory` in bytes
    pub memory: Option<i64>,
    /// `--memory-swap` in bytes
    pub memory_swap: Option<i64>,
    /// `--cpus`
    pub cpus: Option<f64>,
    /// `--cpu-shares`
    pub cpu_shares: Option<u64>,
    /// `--pids-limit`
    pub pids_limit: Option<i64>,
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

    /// Changes the limits of a running container and remembers them.
    pub fn update(&self, what: &str, u: &Update) -> Result<String> {
        let s = self.running(what, "update")?;
        let id = s.record.id;
        let mut r = LinuxResources::default();
        if u.memory.is_some() || u.memory_swap.is_some() {
            let mut m = LinuxMemory::default();
            m.set_limit(u.memory);
            m.set_swap(u.memory_swap);
            r.set_memory(Some(m));
        }
        if u.cpus.is_some() || u.cpu_shares.is_some() {
            let mut c = LinuxCpu::default();
            if let Some(n) = u.cpus {
                c.set_period(Some(100_000));
                c.set_quota(Some((n * 100_000.0).round() as i64));
            }
            c.set_shares(u.cpu_shares);
            r.set_cpu(Some(c));
        }
        if let Some(p) = u.pids_limit {
            let mut pids = LinuxPids::default();
            pids.set_limit(if p <= 0 { -1 } else { p });
            r.set_pids(Some(pids));
        }
        self.runtime.update(&id, &r)?;
        let dir = self.dir(&id);
        let _lock = dir.lock()?;
        let mut rec = dir.load()?;
        let o = &mut rec.options;
        o.memory = u.memory.or(o.memory);
        o.memory_swap = u.memory_swap.or(o.memory_swap);
        o.cpus = u.cpus.or(o.cpus);
        o.cpu_shares = u.cpu_shares.or(o.cpu_shares);
        o.pids_limit = u.pids_limit.or(o.pids_limit);
        dir.save(&rec)?;
        Ok(id)
    }

    /// Removes every container that is not running; returns their ids.
    pub fn prune(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for s in self.list(true)? {
            if s.state != State::Running && self.remove(&s.record.id, false, false).is_ok() {
                removed.push(s.record.id);
            }
        }
        Ok(removed)
    }
}
