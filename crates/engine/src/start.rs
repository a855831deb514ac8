//! `start` of a container that exists (created, or exited: its snapshot is mounted
//! again), `restart`, and `wait`.

use crate::error::{Error, Result};
use crate::list::State;
use crate::{rootfs, Engine, Shim};
use std::time::Duration;

impl Engine {
    /// Starts the existing container `what` under a new shim (see [`Engine::start`]
    /// for `before_start`) and returns it once the program runs; `None` when it was
    /// running already (it is left as it is).
    pub fn start_existing(
        &self,
        what: &str,
        before_start: &mut dyn FnMut(&std::path::Path),
    ) -> Result<Option<Shim>> {
        let s = self.inspect(what)?;
        let id = s.record.id.clone();
        match s.state {
            State::Running => return Ok(None),
            State::Dead => {
                return Err(Error::Conflict(format!(
                    "container {} is dead (its supervisor died): remove it with `berth rm -f {}`",
                    &id[..12],
                    s.record.name
                )))
            }
            State::Created | State::Exited(_) => {}
        }
        self.mark_started_by_user(&id);
        self.prepare_restart(&id)?;
        self.start(&id, before_start).map(Some)
    }

    /// Mounts the rootfs again (an exited container's was taken down) and forgets
    /// the previous run: its exit status, and its supervisor and start, so that the
    /// end of the previous supervisor, noticed late, is not taken for a death of
    /// the next one (which would tear the fresh mount down under its start); until
    /// the new supervisor launches, the container reads as created.
    pub(crate) fn prepare_restart(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        let _lock = dir.lock()?;
        if !rootfs::is_mounted(&dir.rootfs()) {
            let mounts = self.images()?.container_mounts(id)?;
            rootfs::mount_rootfs(&mounts, &dir.rootfs())?;
        }
        let mut rec = dir.load()?;
        if rec.started_at.is_some() || rec.shim_pid.is_some() || rec.pid.is_some() {
            rec.started_at = None;
            rec.shim_pid = None;
            rec.pid = None;
            dir.save(&rec)?;
        }
        match std::fs::remove_file(dir.exit_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", dir.exit_path(), e)),
        }
    }

    /// Stops (see [`Engine::stop`]) and starts the container again; its new shim.
    pub fn restart(&self, what: &str, timeout: Option<Duration>) -> Result<Option<Shim>> {
        let id = self.stop(what, timeout)?;
        self.start_existing(&id, &mut |_| {})
    }

    /// Blocks until the container is no longer running and returns its exit code
    /// (a created container is waited for until it has run).
    pub fn wait(&self, what: &str) -> Result<i32> {
        let id = self.resolve(what)?;
        loop {
            let dir = self.dir(&id);
            let rec = match dir.load() {
                Ok(r) => r,
                // removed while we waited (--rm): its status went with it
                Err(_) => return Err(Error::NotFound(id)),
            };
            match self.state_of(&dir, &rec).0 {
                State::Exited(code) => return Ok(code),
                State::Dead => {
                    return Err(Error::Conflict(format!(
                        "container {} is dead: its exit status is unknown",
                        &id[..12]
                    )))
                }
                State::Running | State::Created => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
