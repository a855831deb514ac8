//! Handing a running container to the slim supervisor (`berth-shim`, crates/shim).
//!
//! The full supervisor (`berth container-shim`) needs the whole runtime library to
//! create and start the container, and then keeps all of it mapped (and the pages its
//! start-up dirtied) for the container's life. Once the container runs, a container
//! without a terminal or stdin only needs its output copied to the log and its exit
//! reaped, so the supervisor replaces itself with `berth-shim` (same pid, so it stays
//! the container's parent and subreaper, and the daemon's watch on it holds). When the
//! container exits, `berth-shim` replaces itself with
//! `berth container-shim-finish … <id> <code>` ([`Engine::finish_handed_back`]), which
//! records the exit and tears down exactly as the full supervisor does.
//!
//! `berth-shim` keeps serving the attach socket ([`crate::attach`]) for the output:
//! clients attached before the start are handed over with it, later ones attach to
//! it. Containers with `-t` or `-i` (a terminal or stdin to relay, resizes) and set-ups
//! without `berth-shim` next to berth (or in `BERTH_SHIM_BIN`) stay with the full
//! supervisor; `BERTH_SLIM_SHIM=0` turns the hand-over off.
//!
//! The hand-over costs two program starts (`berth-shim`, then the finisher), which
//! is most of the time a short command (`run --rm IMG true`) spends after its exit.
//! So the supervisor first gives the container [`GRACE`] to end: one that does
//! is finished in this process, and only one that still runs is handed over. The
//! wait costs a running container nothing (its output stays in the pipes meanwhile,
//! and once it writes, the wait is cut to [`GRACE_AFTER_OUTPUT`]).

use crate::record::Record;
use crate::Engine;
use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a just-started container may take to end before it is handed over.
pub(crate) const GRACE: Duration = Duration::from_millis(20);
/// The rest of the wait once the container has written output (which its attached
/// clients and log are waiting for).
pub(crate) const GRACE_AFTER_OUTPUT: Duration = Duration::from_millis(3);

/// The slim supervisor's program, if it is installed.
fn program() -> Option<PathBuf> {
    if std::env::var_os("BERTH_SLIM_SHIM").is_some_and(|v| v == "0") {
        return None;
    }
    let p = match std::env::var_os("BERTH_SHIM_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().ok()?.parent()?.join("berth-shim"),
    };
    p.is_file().then_some(p)
}

/// The `--status-fd` our own command line was given.
fn status_fd() -> Option<RawFd> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--status-fd")?;
    args.get(i + 1)?.parse().ok()
}

fn keep_open(fd: BorrowedFd) -> bool {
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .is_ok()
}

/// What the full supervisor hands over: the container's output ends, the attach
/// socket's listener (see [`crate::attach`]), and the clients attached so far with
/// the streams each wants (stdout, stderr).
pub(crate) struct Parts<'a> {
    pub(crate) out: &'a OwnedFd,
    pub(crate) err: &'a OwnedFd,
    pub(crate) listener: Option<&'a UnixListener>,
    pub(crate) clients: Vec<(&'a UnixStream, bool, bool)>,
}

/// Replaces this process with the slim supervisor for container `rec` (init `pid`)
/// when it can (see the module doc). Returns only when it did not: the caller
/// supervises on.
pub(crate) fn hand_over(engine: &Engine, rec: &Record, pid: i32, parts: Parts) {
    if rec.options.tty || rec.options.interactive {
        return;
    }
    let (Some(prog), Ok(me)) = (program(), std::env::current_exe()) else {
        return;
    };
    if ends_within_grace(pid, parts.out.as_fd(), parts.err.as_fd()) {
        return;
    }
    let mut fds: Vec<BorrowedFd> = vec![parts.out.as_fd(), parts.err.as_fd()];
    fds.extend(parts.listener.map(|l| l.as_fd()));
    fds.extend(parts.clients.iter().map(|(c, _, _)| c.as_fd()));
    if !fds.into_iter().all(keep_open) {
        return;
    }
    let dir = engine.dir(&rec.id);
    let mut argv: Vec<OsString> = vec![prog.clone().into()];
    let mut arg = |k: &str, v: OsString| {
        argv.push(k.into());
        argv.push(v);
    };
    arg("--id", rec.id.clone().into());
    arg("--pid", pid.to_string().into());
    arg("--out", parts.out.as_raw_fd().to_string().into());
    arg("--err", parts.err.as_raw_fd().to_string().into());
    arg("--log", dir.log_path().into());
    arg("--max-size", rec.options.log.max_size.to_string().into());
    arg("--max-files", rec.options.log.max_files.to_string().into());
    if let Some(l) = parts.listener {
        arg("--listen", l.as_raw_fd().to_string().into());
    }
    for (c, out, err) in &parts.clients {
        let v = format!("{}:{}:{}", c.as_raw_fd(), u8::from(*out), u8::from(*err));
        arg("--client", v.into());
    }
    argv.push("--".into());
    argv.push(me.into());
    argv.push("--data-root".into());
    argv.push(engine.data_root().into());
    argv.push("container-shim-finish".into());
    if let Some(fd) = status_fd() {
        argv.push("--status-fd".into());
        argv.push(fd.to_string().into());
    }
    argv.push(rec.id.clone().into());
    let Ok(c_argv) = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<CString>, _>>()
    else {
        return;
    };
    let Ok(c_prog) = CString::new(prog.as_os_str().as_bytes()) else {
        return;
    };
    let e = nix::unistd::execv(&c_prog, &c_argv);
    tracing::warn!(container = %rec.id, error = ?e, "cannot hand over to berth-shim; supervising on");
}

/// Whether the container's init `pid` ends within [`GRACE`] (cut short to
/// [`GRACE_AFTER_OUTPUT`] once `out` or `err` has something to read). It is not
/// reaped: that stays the supervisor's job.
fn ends_within_grace(pid: i32, out: BorrowedFd, err: BorrowedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // our child, not reaped yet: pidfd_open fails only where it is not supported
    let Ok(pidfd) = berth_sys::proc::pidfd_open(pid) else {
        return false;
    };
    let mut deadline = Instant::now() + GRACE;
    // the pipes are watched until they have data (or their writers are gone)
    let mut pipes = vec![out, err];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut pfds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        pfds.extend(pipes.iter().map(|p| PollFd::new(*p, PollFlags::POLLIN)));
        match poll(&mut pfds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return false,
        }
        let ready = |p: &PollFd| p.revents().unwrap_or(PollFlags::empty());
        if ready(&pfds[0]).contains(PollFlags::POLLIN) {
            return true;
        }
        let mut keep = Vec::new();
        for (p, fd) in pfds[1..].iter().zip(&pipes) {
            let r = ready(p);
            if r.contains(PollFlags::POLLIN) {
                deadline = deadline.min(Instant::now() + GRACE_AFTER_OUTPUT);
            } else if r.is_empty() {
                keep.push(*fd);
            }
        }
        pipes = keep;
    }
}

impl Engine {
    /// The end of a container the slim supervisor ran: records exit `code`, tears
    /// the runtime state and mount down, removes it for `--rm`, and reports
    /// `exit <code>` on `status_fd` (see [`Engine::start`]). Returns our exit code.
    pub fn finish_handed_back(&self, id: &str, code: i32, status_fd: Option<RawFd>) -> i32 {
        let mut status = status_fd
            .filter(|fd| *fd > 2 && std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists())
            .map(|fd| std::fs::File::from(berth_sys::proc::own_fd(fd)));
        let dir = self.dir(id);
        let r = dir.load().and_then(|rec| self.finish(&dir, &rec, code));
        let _ = std::fs::remove_file(dir.dir.join(crate::attach::SOCKET));
        let line = match &r {
            Ok(code) => format!("exit {code}\n"),
            Err(e) => format!(
                "error {} {}\n",
                e.exit_code(),
                e.to_string().replace('\n', " ")
            ),
        };
        if let Some(f) = status.as_mut() {
            use std::io::Write;
            let _ = f.write_all(line.as_bytes());
        }
        self.empty_trash(Some(id));
        match r {
            Ok(_) => 0,
            Err(e) => e.exit_code(),
        }
    }
}
