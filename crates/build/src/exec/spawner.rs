//! The RUN spawner: one single-threaded helper process per build that creates,
//! starts, reaps and deletes the RUN containers, so that the builder itself
//! may use threads (stages build in parallel).
//!
//! `berth_runtime` forks the container's init straight from its caller, which
//! is only safe in a single-threaded process. [`Spawner::start`] forks the
//! helper once, at the start of a build, while the builder is still
//! single-threaded; the helper never starts a thread and serves requests over
//! a `SOCK_SEQPACKET` pair. A request is the container id and bundle plus four
//! descriptors (SCM_RIGHTS): a reply socket and the container's stdin, stdout
//! and stderr. On the reply socket the helper answers `started` (or
//! `error <message>`) and, once the init is reaped and the container deleted,
//! `exit <code>`.
//!
//! A caller with other threads (a daemon) must not fork: it starts the helper
//! as a program instead ([`Spawner::spawn`], the program calls
//! [`serve_stdin`]). Such a helper may serve many builds, concurrently and
//! one after the other (a daemon keeps one; [`Spawner::alive`] tells when it
//! must start another).
//!
//! Cancelling: when the builder shuts down or closes its end of a reply
//! socket ([`Job`]'s drop), the helper kills that container; when the control
//! socket closes (the [`Spawner`] is dropped, or the builder died), it kills
//! every container, reaps and deletes them and exits. A forked helper also
//! dies with the builder (`PR_SET_PDEATHSIG`); a helper started as a program
//! relies on the control socket alone (the parent-death signal follows the
//! thread that started it, which a daemon does not keep); what a SIGKILLed
//! build leaves is swept by the next.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use berth_runtime::{CreateOptions, Runtime};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    recv, recvmsg, send, sendmsg, shutdown, socketpair, AddressFamily, ControlMessage,
    ControlMessageOwned, MsgFlags, Shutdown, SockFlag, SockType,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{ExecError, Result};

fn sys(op: &str) -> impl FnOnce(nix::Error) -> ExecError + '_ {
    move |error| ExecError::Sys {
        op: op.to_string(),
        error,
    }
}

fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(sys("create a socket pair for the RUN spawner"))
}

/// The builder's handle on the helper process.
pub struct Spawner {
    ctl: Option<OwnedFd>,
    pid: Pid,
}

/// A RUN container the helper started; dropping it before [`Job::wait`]
/// returned kills the container and waits until it is gone.
pub struct Job {
    reply: OwnedFd,
    done: bool,
}

impl Spawner {
    /// Fork the helper. Call while this process is single-threaded.
    pub fn start(runtime_root: &Path) -> Result<Self> {
        let (ours, theirs) = seqpacket_pair()?;
        let parent = nix::unistd::getpid();
        match berth_sys::proc::fork_with_flags(0) {
            Ok(berth_sys::proc::Forked::Child) => {
                drop(ours);
                let root = runtime_root.to_path_buf();
                let code =
                    match std::panic::catch_unwind(move || serve(theirs, &root, Some(parent))) {
                        Ok(()) => 0,
                        Err(_) => 1,
                    };
                berth_sys::proc::exit_now(code)
            }
            Ok(berth_sys::proc::Forked::Parent(pid)) => {
                drop(theirs);
                Ok(Self {
                    ctl: Some(ours),
                    pid: Pid::from_raw(pid),
                })
            }
            Err(e) => Err(ExecError::Invalid(format!(
                "cannot fork the RUN spawner: {e}"
            ))),
        }
    }

    /// Start the helper by running `cmd`, a program that calls
    /// [`serve_stdin`] (e.g. the caller's own binary with a hidden
    /// subcommand): for processes with other threads, which must not fork.
    pub fn spawn(runtime_root: &Path, mut cmd: std::process::Command) -> Result<Self> {
        let (ours, theirs) = seqpacket_pair()?;
        cmd.stdin(std::process::Stdio::from(theirs))
            .env(RUNTIME_ROOT_ENV, runtime_root);
        let child = cmd.spawn().map_err(|e| {
            ExecError::Invalid(format!("cannot start the RUN spawner {cmd:?}: {e}"))
        })?;
        Ok(Self {
            ctl: Some(ours),
            pid: Pid::from_raw(child.id() as i32),
        })
    }

    /// Whether the helper still serves: false once its end of the control
    /// socket is closed (it exited or was killed).
    pub fn alive(&self) -> bool {
        let Some(ctl) = self.ctl.as_ref() else {
            return false;
        };
        let mut fds = [PollFd::new(ctl.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) => true,
            Ok(_) => fds[0]
                .revents()
                .is_some_and(|r| !r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)),
            Err(_) => true,
        }
    }

    /// Create and start container `id` from `bundle` with `stdio`.
    pub fn run(&self, id: &str, bundle: &Path, stdio: [BorrowedFd<'_>; 3]) -> Result<Job> {
        let ctl = self
            .ctl
            .as_ref()
            .ok_or_else(|| ExecError::Invalid("the RUN spawner is closed".into()))?;
        let (reply, theirs) = seqpacket_pair()?;
        let msg = serde_json::json!({ "id": id, "bundle": bundle }).to_string();
        let fds = [
            theirs.as_raw_fd(),
            stdio[0].as_raw_fd(),
            stdio[1].as_raw_fd(),
            stdio[2].as_raw_fd(),
        ];
        sendmsg::<()>(
            ctl.as_raw_fd(),
            &[IoSlice::new(msg.as_bytes())],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(sys("send a RUN request to the spawner"))?;
        drop(theirs);
        let mut job = Job { reply, done: false };
        match job.message()?.as_deref() {
            Some("started") => Ok(job),
            Some(m) => {
                job.done = true;
                Err(ExecError::Invalid(
                    m.strip_prefix("error ").unwrap_or(m).to_string(),
                ))
            }
            None => {
                job.done = true;
                Err(ExecError::Invalid("the RUN spawner exited".into()))
            }
        }
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        // Closing the control socket tells the helper to clean up and exit.
        drop(self.ctl.take());
        while let Err(nix::Error::EINTR) = waitpid(self.pid, None) {}
    }
}

impl Job {
    /// The next message from the helper (None: it closed the socket).
    fn message(&self) -> Result<Option<String>> {
        let mut buf = [0u8; 4096];
        loop {
            match recv(self.reply.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(sys("read the RUN spawner's reply")(e)),
                Ok(0) => return Ok(None),
                Ok(n) => return Ok(Some(String::from_utf8_lossy(&buf[..n]).into_owned())),
            }
        }
    }

    /// Wait for the container's exit code; `cancel` becoming readable
    /// aborts the wait with `on_cancel()` (the container is killed on drop).
    pub fn wait(
        &mut self,
        cancel: BorrowedFd<'_>,
        on_cancel: impl Fn() -> ExecError,
    ) -> Result<i32> {
        loop {
            let mut fds = [
                PollFd::new(self.reply.as_fd(), PollFlags::POLLIN),
                PollFd::new(cancel, PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(sys("wait for the RUN container")(e)),
                Ok(_) => {}
            }
            if fds[1].any() == Some(true) {
                return Err(on_cancel());
            }
            if fds[0].any() == Some(true) {
                break;
            }
        }
        let msg = self.message()?;
        self.done = true;
        match msg.as_deref().and_then(|m| m.strip_prefix("exit ")) {
            Some(code) => code.parse().map_err(|_| {
                ExecError::Invalid(format!("bad reply from the RUN spawner: {msg:?}"))
            }),
            None => Err(ExecError::Invalid(
                "the RUN spawner exited before the container".into(),
            )),
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Tell the helper to kill the container, then wait until it is reaped.
        let _ = shutdown(self.reply.as_raw_fd(), Shutdown::Write);
        while let Ok(Some(_)) = self.message() {}
    }
}

/// Names the runtime root for a helper started by [`Spawner::spawn`].
pub const RUNTIME_ROOT_ENV: &str = "BERTH_BUILD_SPAWNER_ROOT";

/// The helper's `main` when started by [`Spawner::spawn`]: serves the
/// control socket on stdin until the builder closes it, then returns the
/// exit code. Call it from a single-threaded program.
pub fn serve_stdin() -> i32 {
    use std::os::fd::AsFd;
    let Some(root) = std::env::var_os(RUNTIME_ROOT_ENV) else {
        eprintln!("{RUNTIME_ROOT_ENV} is not set: this helper is started by the builder");
        return 2;
    };
    let Ok(ctl) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return 2;
    };
    serve(ctl, &PathBuf::from(root), None);
    0
}

/// A container the helper runs.
struct Running {
    id: String,
    pid: Pid,
    reply: OwnedFd,
    killed: bool,
}

/// The helper's loop (single-threaded). A forked helper (`parent` given)
/// dies with its parent.
fn serve(ctl: OwnedFd, runtime_root: &PathBuf, parent: Option<Pid>) {
    if let Some(parent) = parent {
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
        if nix::unistd::getppid() != parent {
            return;
        }
    }
    // Ctrl-C reaches the whole process group: the builder handles it and
    // then closes the control socket; the helper must outlive it to clean up.
    let mut quiet = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        quiet.add(s);
    }
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    if quiet.thread_block().is_err() || set.thread_block().is_err() {
        return;
    }
    let Ok(sigchld) = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
    else {
        return;
    };
    let runtime = Runtime::new(runtime_root);
    let mut jobs: Vec<Running> = Vec::new();
    let mut open = true;
    while open || !jobs.is_empty() {
        let (ctl_ready, chld_ready, cancelled) = {
            // Killed jobs and a closed control socket are left out: a hung-up
            // socket would be reported ready again and again.
            let watched: Vec<usize> = (0..jobs.len()).filter(|&i| !jobs[i].killed).collect();
            let mut fds = vec![PollFd::new(sigchld.as_fd(), PollFlags::POLLIN)];
            fds.extend(
                watched
                    .iter()
                    .map(|&i| PollFd::new(jobs[i].reply.as_fd(), PollFlags::POLLIN)),
            );
            if open {
                fds.push(PollFd::new(ctl.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::Error::EINTR) => continue,
                Err(_) => break,
                Ok(_) => {}
            }
            let ready = |f: &PollFd| f.any() == Some(true);
            let cancelled: Vec<usize> = watched
                .iter()
                .zip(&fds[1..])
                .filter(|(_, f)| ready(f))
                .map(|(&i, _)| i)
                .collect();
            let ctl_ready = open && fds.last().is_some_and(ready);
            (ctl_ready, ready(&fds[0]), cancelled)
        };
        if ctl_ready {
            match receive(&ctl) {
                Some((id, bundle, fds)) => {
                    if let Some(j) = start(&runtime, id, &bundle, fds) {
                        jobs.push(j);
                    }
                }
                None => {
                    open = false;
                    for j in &mut jobs {
                        kill_once(j);
                    }
                }
            }
        }
        for i in cancelled {
            kill_once(&mut jobs[i]);
        }
        if chld_ready {
            while let Ok(Some(_)) = sigchld.read_signal() {}
            reap(&runtime, &mut jobs);
        }
    }
}

fn kill_once(j: &mut Running) {
    if !j.killed {
        j.killed = true;
        let _ = kill(j.pid, Signal::SIGKILL);
    }
}

/// Reap the exited containers, report their exit codes and delete them (the
/// builder goes on meanwhile: with its init gone, the container's mounts are
/// gone too; its state and cgroups are removed before the helper exits).
fn reap(runtime: &Runtime, jobs: &mut Vec<Running>) {
    let mut exited = Vec::new();
    jobs.retain(|j| {
        let code = match waitpid(j.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => code,
            Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
            Err(nix::Error::ECHILD) => 255,
            _ => return true,
        };
        let _ = send(
            j.reply.as_raw_fd(),
            format!("exit {code}").as_bytes(),
            MsgFlags::MSG_NOSIGNAL,
        );
        exited.push(j.id.clone());
        false
    });
    for id in exited {
        let _ = runtime.delete(&id, true);
    }
}

/// Read one request: (id, bundle, [reply, stdin, stdout, stderr]); None when
/// the builder closed the control socket (or sent garbage).
fn receive(ctl: &OwnedFd) -> Option<(String, PathBuf, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 8192];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let (n, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            ctl.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::Error::EINTR) => continue,
            Err(_) => return None,
            Ok(m) => {
                let mut fds = Vec::new();
                for c in m.cmsgs().ok()? {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        fds.extend(raw.into_iter().map(berth_sys::proc::own_fd));
                    }
                }
                break (m.bytes, fds);
            }
        }
    };
    if n == 0 || fds.len() != 4 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&buf[..n]).ok()?;
    let id = v["id"].as_str()?.to_string();
    let bundle = PathBuf::from(v["bundle"].as_str()?);
    Some((id, bundle, fds))
}

/// Create and start a container; answer `started` or `error …` on its reply socket.
fn start(runtime: &Runtime, id: String, bundle: &Path, fds: Vec<OwnedFd>) -> Option<Running> {
    let mut fds = fds.into_iter();
    let reply = fds.next()?;
    let stdio: Vec<OwnedFd> = fds.collect();
    let opts = CreateOptions {
        stdio: Some([
            stdio[0].as_raw_fd(),
            stdio[1].as_raw_fd(),
            stdio[2].as_raw_fd(),
        ]),
        ..CreateOptions::default()
    };
    let answer = |msg: &str| {
        let _ = send(reply.as_raw_fd(), msg.as_bytes(), MsgFlags::MSG_NOSIGNAL);
    };
    let created = match runtime.create(&id, bundle, opts) {
        Ok(c) => c,
        Err(e) => {
            answer(&format!("error RUN container: {e}"));
            return None;
        }
    };
    drop(stdio);
    let pid = Pid::from_raw(created.pid);
    if let Err(e) = runtime.start(&id) {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        let _ = runtime.delete(&id, true);
        answer(&format!("error RUN container: {e}"));
        return None;
    }
    answer("started");
    Some(Running {
        id,
        pid,
        reply,
        killed: false,
    })
}
