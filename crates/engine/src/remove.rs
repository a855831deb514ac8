//! `stop`, `kill` and `rm`: signal the container, wait for its supervisor to record
//! the exit, then take down runtime state, mount, snapshot, directory and name.

use crate::error::{Error, Result};
use crate::list::{alive, State};
use crate::{rootfs, Engine};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

impl Engine {
    /// Sends `signal` to the container's init (docker's `kill`).
    pub fn kill(&self, what: &str, signal: &str) -> Result<String> {
        let s = self.inspect(what)?;
        if s.state != State::Running {
            return Err(Error::Conflict(format!(
                "cannot kill container {what}: container {} is not running",
                s.record.id
            )));
        }
        let sig = berth_runtime::signal::parse(signal)?;
        self.mark_stopped_by_user(&s.record.id);
        self.runtime.kill(&s.record.id, sig, false)?;
        Ok(s.record.id)
    }

    /// Stops the container: its stop signal, then SIGKILL to every process after
    /// `timeout` (default: its `--stop-timeout`, else 10 s). A container that is not
    /// running is left as it is.
    pub fn stop(&self, what: &str, timeout: Option<Duration>) -> Result<String> {
        self.stop_with(what, timeout, None)
    }

    /// [`Engine::stop`] with `signal` in place of the container's stop signal
    /// (docker's `stop --signal`); a bad signal name fails before anything is sent.
    pub fn stop_with(
        &self,
        what: &str,
        timeout: Option<Duration>,
        signal: Option<&str>,
    ) -> Result<String> {
        let chosen = signal
            .filter(|s| !s.is_empty())
            .map(berth_runtime::signal::parse)
            .transpose()?;
        let s = self.inspect(what)?;
        let id = s.record.id.clone();
        let timeout = timeout
            .unwrap_or_else(|| Duration::from_secs(s.record.options.stop_timeout.unwrap_or(10)));
        self.mark_stopped_by_user(&id);
        if s.state != State::Running {
            return Ok(id);
        }
        // a frozen container could not act on the signal
        self.thaw(&id);
        let sig = chosen.unwrap_or_else(|| {
            berth_runtime::signal::parse(&s.record.stop_signal).unwrap_or(Signal::SIGTERM)
        });
        match self.runtime.kill(&id, sig, false) {
            Ok(()) => {}
            Err(berth_runtime::Error::NotFound(_) | berth_runtime::Error::BadState { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if self.wait_stopped(&id, timeout) {
            return Ok(id);
        }
        let _ = self.runtime.kill(&id, Signal::SIGKILL, true);
        if self.wait_stopped(&id, Duration::from_secs(10)) {
            Ok(id)
        } else {
            Err(Error::Conflict(format!(
                "container {} did not stop after SIGKILL: check `ps` for its processes",
                &id[..12]
            )))
        }
    }

    /// Waits until the container is no longer running and its supervisor, which
    /// tears the rootfs mount down after the exit, is gone too (so a `cp` or `start`
    /// right after `stop` never meets a half torn-down container); false on timeout.
    fn wait_stopped(&self, id: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let dir = self.dir(id);
            let Ok(rec) = dir.load() else { return true };
            if self.state_of(&dir, &rec).0 != State::Running
                && !rec.shim_pid.is_some_and(crate::list::alive)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Removes the container; a running one only with `force` (killed first). With
    /// `volumes`, its anonymous volumes go too (`rm -v`, `--rm`).
    pub fn remove(&self, what: &str, force: bool, volumes: bool) -> Result<()> {
        self.remove_as(what, force, volumes, false)
    }

    /// [`Engine::remove`]; with `defer_dir`, the container's directory and its
    /// snapshot's files are only moved aside (see [`Engine::empty_trash`]): a
    /// supervisor removing its `--rm` container reports the exit first and deletes
    /// the files after.
    pub(crate) fn remove_as(
        &self,
        what: &str,
        force: bool,
        volumes: bool,
        defer_dir: bool,
    ) -> Result<()> {
        let s = self.inspect(what)?;
        let id = s.record.id.clone();
        if s.state == State::Running {
            if !force {
                return Err(Error::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    s.record.name
                )));
            }
            self.thaw(&id);
            let _ = self.runtime.kill(&id, Signal::SIGKILL, true);
            self.wait_stopped(&id, Duration::from_secs(10));
        }
        // let a supervisor finish its teardown (it may be removing for --rm)
        let me = std::process::id() as i32;
        if let Some(pid) = s.record.shim_pid.filter(|p| *p != me) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.teardown(&id, &s.record.name, defer_dir)?;
        if volumes {
            self.remove_anonymous(&s.record.volumes);
        }
        Ok(())
    }

    /// Removes whatever is left of container `id` under its lock; already gone is fine.
    fn teardown(&self, id: &str, name: &str, defer_dir: bool) -> Result<()> {
        let dir = self.dir(id);
        let _lock = match dir.lock() {
            Ok(l) => l,
            Err(_) if !dir.exists() => return Ok(()),
            Err(e) => return Err(e),
        };
        if !dir.record_path().exists() {
            return Ok(());
        }
        match self.runtime.delete(id, true) {
            Ok(()) | Err(berth_runtime::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if let Ok(rec) = dir.load() {
            self.net_release(&rec);
            // its option volumes, when its supervisor could not (it died)
            self.volumes_release(&rec);
        }
        rootfs::unmount_rootfs(&dir.rootfs())?;
        // (only a --ipc shareable container has one: spare the others a mount table read)
        let shm = dir.dir.join(crate::hostconfig::SHM_DIR);
        if shm.exists() {
            rootfs::unmount_rootfs(&shm)?;
        }
        if defer_dir {
            self.images()?.remove_container_deferred(id)?;
        } else {
            self.images()?.remove_container(id)?;
        }
        // the record goes first, so a half-removed container is never listed
        std::fs::remove_file(dir.record_path())
            .map_err(|e| Error::io("remove", dir.record_path(), e))?;
        self.names().release(name, id)?;
        let trash = self.trash_path(id);
        if !(defer_dir && std::fs::rename(&dir.dir, &trash).is_ok()) {
            remove_tree(&dir.dir)?;
        }
        tracing::info!(container = id, "removed");
        Ok(())
    }

    /// Where a removed container's directory waits for [`Engine::empty_trash`]:
    /// `<data-root>/containers/.trash-<id>` (not a container id, so never listed).
    fn trash_path(&self, id: &str) -> std::path::PathBuf {
        self.containers.join(format!(".trash-{id}"))
    }

    /// Deletes what a deferred removal of container `id` moved aside (its directory,
    /// and the files of removed snapshots); with `None`, whatever any left (a daemon
    /// start cleans after supervisors that died).
    pub fn empty_trash(&self, id: Option<&str>) {
        if let Err(e) = self.images().and_then(|im| Ok(im.empty_snapshot_trash()?)) {
            tracing::warn!(error = %e, "cannot delete removed snapshots' files");
        }
        let dirs: Vec<std::path::PathBuf> = match id {
            Some(id) => vec![self.trash_path(id)],
            None => std::fs::read_dir(&self.containers)
                .map(|rd| {
                    rd.flatten()
                        .filter(|e| e.file_name().to_string_lossy().starts_with(".trash-"))
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default(),
        };
        for d in dirs {
            if let Err(e) = remove_tree(&d) {
                tracing::warn!(path = %d.display(), error = %e, "cannot delete a removed container's files");
            }
        }
    }
}

/// `remove_dir_all`, again when something created a file in the tree meanwhile (the
/// daemon's exit watch takes the container's lock, which creates its lock file).
fn remove_tree(dir: &std::path::Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && tries < 10 => tries += 1,
            Err(e) => return Err(Error::io("remove", dir, e)),
        }
    }
}
