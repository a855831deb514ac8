//! Reconciling what the data root records with what runs: after a daemon (re)start
//! and whenever a supervisor dies.
//!
//! - a container whose supervisor lives is adopted: it keeps running untouched;
//! - a container whose supervisor died without recording an exit gets one: what is
//!   left of it is killed (exit 137, as containerd reports a task whose shim died;
//!   255 when it was already gone and its status is lost), its runtime state and
//!   rootfs mount are taken down, so it is never left "running" or "dead";
//! - leftovers of removed or exited containers are cleaned: runtime state in our
//!   runtime root without a container, rootfs mounts of exited containers, the files
//!   of removed ones (`containers/.trash-<id>`).
//!
//! Only what belongs to this data root and runtime root is touched: cgroups are
//! removed through the runtime state of our own containers, never by scanning the
//! shared cgroup tree (other berth instances may use it).

use crate::error::Result;
use crate::list::{alive, State};
use crate::record::{ExitStatus, Record};
use crate::{rootfs, Engine};
use nix::sys::signal::Signal;

/// What [`Engine::reconcile`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// running containers with a live supervisor: (id, supervisor pid)
    pub adopted: Vec<(String, i32)>,
    /// containers whose supervisor had died: their exit is recorded now
    pub recorded: Vec<String>,
    /// leftovers removed (runtime states, mounts)
    pub cleaned: usize,
}

impl Engine {
    /// Adopts, records and cleans (see the module doc). Call once when a daemon starts.
    pub fn reconcile(&self) -> Result<Reconciled> {
        let mut out = Reconciled::default();
        // files of --rm containers whose supervisor died before deleting them
        self.empty_trash(None);
        let ids = self.ids()?;
        for id in &ids {
            let dir = self.dir(id);
            let Ok(rec) = dir.load() else { continue };
            if let Some(pid) = self.live_supervisor(&rec) {
                out.adopted.push((id.clone(), pid));
                continue;
            }
            if self.supervisor_gone(id)?.is_some() {
                out.recorded.push(id.clone());
            }
            if matches!(self.state_of(&dir, &rec).0, State::Exited(_))
                && rootfs::is_mounted(&dir.rootfs())
                && rootfs::unmount_rootfs(&dir.rootfs()).is_ok()
            {
                out.cleaned += 1;
            }
        }
        for st in self.runtime.list().unwrap_or_default() {
            if !ids.contains(&st.id) && self.runtime.delete(&st.id, true).is_ok() {
                tracing::info!(container = %st.id, "removed the runtime state of a removed container");
                out.cleaned += 1;
            }
        }
        Ok(out)
    }

    /// The pid of the supervisor of `rec` if it still runs: alive, and its command
    /// line names this container (a recycled pid does not count). An empty command
    /// line counts as ours: it reads empty while the supervisor execs into its slim
    /// form, and a recycled pid running something else has one.
    pub fn live_supervisor(&self, rec: &Record) -> Option<i32> {
        let pid = rec.shim_pid?;
        if !alive(pid) {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let needle = rec.id.as_bytes();
        let ours = cmdline.is_empty() || cmdline.windows(needle.len()).any(|w| w == needle);
        (ours && alive(pid)).then_some(pid)
    }

    /// The supervisor of `id` is gone. If it recorded no exit (it was killed, or the
    /// machine went down), kill what is left of the container, record its exit, and
    /// take its runtime state and mount down. Returns the code recorded now, or `None`
    /// when there was nothing to do (an exit was recorded, or it never started).
    pub fn supervisor_gone(&self, id: &str) -> Result<Option<i32>> {
        let dir = self.dir(id);
        let Some(lock) = lock_if_present(&dir)? else {
            return Ok(None); // being removed
        };
        let rec = dir.load()?;
        if dir.exit_status()?.is_some() || rec.started_at.is_none() {
            return Ok(None);
        }
        if self.live_supervisor(&rec).is_some() {
            return Ok(None);
        }
        let init_alive = rec.pid.is_some_and(alive)
            || self
                .runtime
                .state(id)
                .is_ok_and(|s| s.status == berth_runtime::Status::Running);
        let code = if init_alive {
            128 + Signal::SIGKILL as i32
        } else {
            255
        };
        // recorded first: while what is left is killed and torn down, a container
        // without a live supervisor and without an exit would read as dead
        dir.save_exit(&ExitStatus {
            code,
            finished_at: crate::record::now(),
        })?;
        self.thaw(id);
        let _ = self.runtime.kill(id, Signal::SIGKILL, true);
        match self.runtime.delete(id, true) {
            Ok(()) | Err(berth_runtime::Error::NotFound(_)) => {}
            Err(e) => tracing::warn!(container = %id, error = %e, "runtime delete failed"),
        }
        let _ = rootfs::unmount_rootfs(&dir.rootfs());
        drop(lock);
        tracing::warn!(container = %id, code, "its supervisor died: recorded as exited");
        if rec.options.auto_remove {
            self.remove(id, true, true)?;
        }
        Ok(Some(code))
    }
}

/// The container's lock, without creating its lock file: `None` when the container
/// is being removed (creating the file again would race its directory's removal).
pub(crate) fn lock_if_present(
    dir: &crate::record::ContainerDir,
) -> crate::error::Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    let path = dir.dir.join("lock");
    let f = match std::fs::OpenOptions::new().write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(crate::error::Error::io("open lock", &path, e)),
    };
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map(Some)
        .map_err(|(_, e)| crate::error::Error::sys(format!("lock {}", path.display()), e))
}
