//! Container state as `ps` shows it, derived from the exit status file, the
//! runtime's state and whether the supervisor lives.

use crate::error::Result;
use crate::record::{ContainerDir, ExitStatus, Record};
use crate::Engine;
use berth_runtime::Status;

/// Lifecycle state of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// created, never started (or its start failed)
    Created,
    /// its process runs
    Running,
    /// its process ended with this code
    Exited(i32),
    /// its supervisor died without recording an exit status
    Dead,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Created => f.write_str("created"),
            State::Running => f.write_str("running"),
            State::Exited(_) => f.write_str("exited"),
            State::Dead => f.write_str("dead"),
        }
    }
}

/// A container with its current state.
#[derive(Debug, Clone)]
pub struct Summary {
    /// the stored record
    pub record: Record,
    /// the state now
    pub state: State,
    /// how it ended, once it has
    pub exit: Option<ExitStatus>,
    /// running but frozen (`pause`)
    pub paused: bool,
}

/// Whether the process `pid` lives and is not a zombie.
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

impl Engine {
    pub(crate) fn state_of(&self, dir: &ContainerDir, rec: &Record) -> (State, Option<ExitStatus>) {
        if let Ok(Some(e)) = dir.exit_status() {
            return (State::Exited(e.code), Some(e));
        }
        let shim_alive = rec.shim_pid.is_some_and(alive);
        let state = match self.runtime.state(&rec.id) {
            Ok(s) => match s.status {
                Status::Running | Status::Paused => State::Running,
                Status::Created | Status::Creating => State::Created,
                Status::Stopped if shim_alive => State::Running,
                Status::Stopped => State::Dead,
            },
            Err(_) if rec.started_at.is_none() => State::Created,
            Err(_) if shim_alive => State::Running,
            Err(_) => State::Dead,
        };
        (state, None)
    }

    pub(crate) fn is_paused(&self, id: &str) -> bool {
        self.runtime
            .state(id)
            .is_ok_and(|s| s.status == Status::Paused)
    }

    /// The container named by `what` (id, name or id prefix) with its state.
    pub fn inspect(&self, what: &str) -> Result<Summary> {
        let id = self.resolve(what)?;
        let dir = self.dir(&id);
        let record = match dir.load() {
            Ok(r) => r,
            // removed between resolving its name and reading its record
            Err(crate::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(crate::Error::NotFound(what.to_string()))
            }
            Err(e) => return Err(e),
        };
        let (state, exit) = self.state_of(&dir, &record);
        let paused = state == State::Running && self.is_paused(&id);
        Ok(Summary {
            record,
            state,
            exit,
            paused,
        })
    }

    /// Every container (`all`) or the running ones, newest first.
    pub fn list(&self, all: bool) -> Result<Vec<Summary>> {
        let mut out = Vec::new();
        for id in self.ids()? {
            let dir = self.dir(&id);
            // being created or removed right now: skip
            let Ok(record) = dir.load() else { continue };
            let (state, exit) = self.state_of(&dir, &record);
            if all || state == State::Running {
                let paused = state == State::Running && self.is_paused(&id);
                out.push(Summary {
                    record,
                    state,
                    exit,
                    paused,
                });
            }
        }
        out.sort_by(|a, b| b.record.created.cmp(&a.record.created));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn we_are_alive_and_a_bogus_pid_is_not() {
        assert!(alive(std::process::id() as i32));
        assert!(!alive(i32::MAX));
    }
}
