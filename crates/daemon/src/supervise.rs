//! The daemon's watch over containers: reconcile at start-up, notice every exit
//! (a supervisor that ends, normally or killed), and apply restart policies.
//!
//! One thread polls a pidfd per running container's supervisor (pidfds work for
//! supervisors a previous daemon started, which are not our children) plus a wake-up
//! socket. When a supervisor ends, [`Engine::supervisor_gone`] records the exit if it
//! could not, and the restart policy decides ([`berth_engine::restart`]); a restart
//! waits out its back-off on a short-lived thread and starts a new supervisor, which
//! is a separate process (the daemon never forks in-process).
//!
//! Starts the daemon serves are announced with [`Watch::started`]; a slow rescan
//! catches what it did not start itself (a CLI that used the engine directly). Each
//! supervisor it starts watching gets its container's health monitor, a thread.

use berth_engine::{Engine, State};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the whole data root is rescanned for supervisors the daemon did not
/// start itself (a safety net: the starts it serves are watched at once).
const RESCAN: Duration = Duration::from_secs(5);

/// Stack of a health monitor thread: it parses the container's record and spawns
/// the exec helper, nothing deep. An unoptimised (test) build overflowed 256 KiB
/// (berthd aborted in the lifecycle healthcheck tests), so it gets more there.
const HEALTH_STACK: usize = if cfg!(debug_assertions) {
    1 << 20
} else {
    256 << 10
};

/// The watch (see the module doc).
pub struct Watch {
    engine: Engine,
    /// supervisors being watched: container id → pidfd
    watched: Mutex<HashMap<String, (i32, OwnedFd)>>,
    /// exits already acted on: container id → its FinishedAt
    handled: Mutex<HashMap<String, String>>,
    /// containers to look at soon (announced starts)
    pending: Mutex<Vec<String>>,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watch {
    /// Reconciles the data root (adopts live supervisors, records the exits of dead
    /// ones, cleans leftovers), applies restart policies as a daemon start does, and
    /// starts the watching thread.
    pub fn start(engine: Engine) -> anyhow::Result<Arc<Watch>> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        let w = Arc::new(Watch {
            engine,
            watched: Mutex::default(),
            handled: Mutex::default(),
            pending: Mutex::default(),
            wake_tx,
            wake_rx,
        });
        let r = w.engine.reconcile()?;
        tracing::info!(
            adopted = r.adopted.len(),
            recorded = r.recorded.len(),
            cleaned = r.cleaned,
            "reconciled the data root"
        );
        for id in w.engine_ids() {
            w.look_at(&id, true);
        }
        let t = w.clone();
        std::thread::Builder::new()
            .name("supervise".into())
            .spawn(move || t.run())?;
        Ok(w)
    }

    /// The daemon started (or may have started) container `what`: watch it now.
    pub fn started(&self, what: &str) {
        lock(&self.pending).push(what.to_string());
        let _ = (&self.wake_tx).write(&[1]);
    }

    fn engine_ids(&self) -> Vec<String> {
        self.engine
            .list(true)
            .map(|l| l.into_iter().map(|s| s.record.id).collect())
            .unwrap_or_default()
    }

    fn run(self: Arc<Self>) {
        let mut since_rescan = std::time::Instant::now();
        loop {
            let ready = self.wait_for_exits();
            for id in ready {
                self.exited(&id);
            }
            let pending: Vec<String> = std::mem::take(&mut *lock(&self.pending));
            for what in pending {
                if let Ok(id) = self.engine.resolve(&what) {
                    self.look_at(&id, false);
                }
            }
            if since_rescan.elapsed() >= RESCAN {
                since_rescan = std::time::Instant::now();
                let watched: Vec<String> = lock(&self.watched).keys().cloned().collect();
                let ids = self.engine_ids();
                for id in ids.iter().filter(|id| !watched.contains(id)) {
                    self.look_at(id, false);
                }
                lock(&self.handled).retain(|id, _| ids.contains(id));
            }
        }
    }

    /// Blocks until a watched supervisor ends, a wake-up, or the rescan period; the
    /// ids whose supervisor ended.
    fn wait_for_exits(&self) -> Vec<String> {
        let watched = lock(&self.watched);
        let ids: Vec<&String> = watched.keys().collect();
        let mut fds: Vec<PollFd> = watched
            .values()
            .map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        fds.push(PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN));
        let timeout = PollTimeout::try_from(RESCAN.as_millis() as i32).unwrap_or(PollTimeout::NONE);
        // the lock is held while polling: `started` only queues and wakes us
        let n = poll(&mut fds, timeout).unwrap_or(0);
        let mut out = Vec::new();
        if n > 0 {
            for (i, fd) in fds.iter().enumerate() {
                let hit = fd.revents().is_some_and(|r| !r.is_empty());
                if hit && i < ids.len() {
                    out.push(ids[i].clone());
                }
            }
        }
        drop(watched);
        let mut sink = [0u8; 64];
        while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
        out
    }

    /// Watches container `id`'s supervisor if it runs; acts on its exit if it has
    /// ended and that exit was not acted on yet.
    fn look_at(self: &Arc<Self>, id: &str, daemon_start: bool) {
        let Ok(s) = self.engine.inspect(id) else {
            return;
        };
        if let Some(pid) = self.engine.live_supervisor(&s.record) {
            if lock(&self.watched).contains_key(id) {
                return;
            }
            match berth_sys::proc::pidfd_open(pid) {
                Ok(fd) => {
                    lock(&self.watched).insert(id.to_string(), (pid, fd));
                    self.monitor_health(&s.record, pid);
                    return;
                }
                Err(e) => {
                    tracing::debug!(container = %id, error = %e, "supervisor ended before it was watched")
                }
            }
        }
        if s.record.started_at.is_some() {
            self.after_exit(id, daemon_start);
        }
    }

    /// Runs the healthcheck of container `rec` (if it has one) on a thread of its own
    /// while its supervisor `pid` lives (see [`berth_engine::health`]).
    fn monitor_health(&self, rec: &berth_engine::Record, pid: i32) {
        if !rec.options.healthcheck.as_ref().is_some_and(|h| h.active()) {
            return;
        }
        let (engine, id) = (self.engine.clone(), rec.id.clone());
        let spawned = std::thread::Builder::new()
            .name("health".into())
            .stack_size(HEALTH_STACK)
            .spawn(move || {
                if let Err(e) = engine.monitor_health(&id, pid) {
                    tracing::warn!(container = %id, error = %e, "health monitor stopped");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(container = %rec.id, error = %e, "no health monitor");
        }
    }

    /// A watched supervisor ended.
    fn exited(self: &Arc<Self>, id: &str) {
        if let Some((pid, _fd)) = lock(&self.watched).remove(id) {
            // ours when this daemon started it: reap it (else it is not our child)
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
        self.after_exit(id, false);
    }

    /// Records an exit the supervisor could not, then applies the restart policy once
    /// per exit.
    fn after_exit(self: &Arc<Self>, id: &str, daemon_start: bool) {
        match self.engine.supervisor_gone(id) {
            Ok(Some(code)) => {
                tracing::warn!(container = %id, code, "supervisor died; exit recorded")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot record the exit");
                return;
            }
        }
        let Ok(s) = self.engine.inspect(id) else {
            return;
        };
        let (State::Exited(_), Some(exit)) = (s.state, &s.exit) else {
            return;
        };
        {
            let mut handled = lock(&self.handled);
            if handled.get(id) == Some(&exit.finished_at) {
                return;
            }
            handled.insert(id.to_string(), exit.finished_at.clone());
        }
        match self.engine.plan_restart(id, daemon_start) {
            Ok(Some(delay)) => self.restart_after(id.to_string(), delay),
            Ok(None) => {}
            Err(e) => tracing::warn!(container = %id, error = %e, "restart policy failed"),
        }
    }

    fn restart_after(self: &Arc<Self>, id: String, delay: Duration) {
        let w = self.clone();
        let spawned = std::thread::Builder::new()
            .name("restart".into())
            .spawn(move || {
                std::thread::sleep(delay);
                match w.engine.restart_by_policy(&id) {
                    Ok(true) => w.started(&id),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(container = %id, error = %e, "restart failed");
                        let _ = w.engine.update_restart_state(&id, |s| s.restarting = false);
                        w.started(&id);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot schedule a restart");
        }
    }
}
