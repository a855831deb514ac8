//! The per-container supervisor.
//!
//! [`Engine::start`] spawns the shim program with a status pipe; the shim (running
//! [`Engine::shim`]) detaches with `setsid`, becomes a child subreaper, creates and
//! starts the container with pipes (or a pty) as its stdio, copies the output into the
//! json-file log (and, when a client is attached, to its own stdout/stderr, which are
//! the client's), reaps the container, records the exit status, tears the runtime
//! state and rootfs mount down, and removes the container for `--rm`. On the status
//! pipe it reports one line each: `started`, then `exit <code>`, or
//! `error <code> <message>`.
//!
//! [`Engine::run_tty`] does the same in the calling process for a foreground run with
//! a terminal, relaying the pty to the caller's terminal.

use crate::error::{Error, Result};
use crate::logs::{RotatingFile, Stream, Writer};
use crate::record::{ContainerDir, ExitStatus, Record};
use crate::{rootfs, Engine};
use berth_runtime::CreateOptions as RtCreate;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitStatus};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::process::Stdio;

/// Where a started container's output goes besides the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// nowhere (`-d`)
    Detached,
    /// to the caller's stdout/stderr, which the shim inherits
    Attached,
}

impl Engine {
    /// Starts container `id` under a new shim. Detached: returns 0 once it runs.
    /// Attached: the shim writes the output to our stdout/stderr (and reads our stdin
    /// with `-i`); returns the container's exit code.
    pub fn start(&self, id: &str, attached: bool) -> Result<i32> {
        let rec = self.dir(id).load()?;
        let net = self.net_prepare(&rec)?;
        let result = self.start_prepared(&rec, attached);
        self.net_started(id, net, result.is_ok());
        result
    }

    fn start_prepared(&self, rec: &Record, attached: bool) -> Result<i32> {
        let id = rec.id.as_str();
        let (prog, lead) = self
            .shim
            .split_first()
            .ok_or_else(|| Error::Shim("no shim program configured".into()))?;
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::sys("create status pipe", e))?;
        nix::fcntl::fcntl(
            &w,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map_err(|e| Error::sys("pass status pipe", e))?;
        let mut cmd = std::process::Command::new(prog);
        cmd.args(lead)
            .arg("--status-fd")
            .arg(w.as_raw_fd().to_string());
        if attached {
            cmd.arg("--attach");
        }
        // the shim must not pin the caller's working directory (and its mount)
        cmd.arg(id)
            .env("BERTH_RUNTIME_ROOT", self.runtime.root())
            .current_dir("/");
        if attached {
            if !rec.options.interactive {
                cmd.stdin(Stdio::null());
            }
        } else {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Shim(format!("cannot start {}: {e}", prog.to_string_lossy())))?;
        drop(w);
        let result = self.wait_status(id, r, attached);
        if attached || result.is_err() {
            let _ = child.wait();
        }
        result
    }

    /// Reads the shim's status lines until it has started (detached) or the container
    /// has exited (attached). While attached, the signals a user sends us (Ctrl-C,
    /// kill) are passed on to the container, as docker's --sig-proxy does.
    fn wait_status(&self, id: &str, r: OwnedFd, attached: bool) -> Result<i32> {
        let sigs = if attached { proxy_signals() } else { None };
        let mut pending: Vec<u8> = Vec::new();
        let mut started = false;
        let mut buf = [0u8; 4096];
        loop {
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if line == "started" {
                    started = true;
                    if !attached {
                        return Ok(0);
                    }
                } else if let Some(code) = line.strip_prefix("exit ") {
                    return Ok(code.trim().parse().unwrap_or(255));
                } else if let Some(err) = line.strip_prefix("error ") {
                    return Err(parse_error(err));
                }
            }
            let mut fds = vec![PollFd::new(r.as_fd(), PollFlags::POLLIN)];
            if let Some(s) = &sigs {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(Error::sys("wait for the container supervisor", e)),
            }
            let sig_ready = fds
                .get(1)
                .and_then(|f| f.revents())
                .is_some_and(|r| r.contains(PollFlags::POLLIN));
            if let (true, Some(s)) = (sig_ready, &sigs) {
                if let Ok(Some(info)) = s.read_signal() {
                    if let Ok(sig) = nix::sys::signal::Signal::try_from(info.ssi_signo as i32) {
                        let _ = self.runtime.kill(id, sig, false);
                    }
                }
            }
            match nix::unistd::read(r.as_fd(), &mut buf) {
                Ok(0) => break,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
                Err(_) => break,
            }
        }
        match self.dir(id).exit_status() {
            Ok(Some(e)) if started => Ok(e.code),
            _ => Err(Error::Shim(format!(
                "the supervisor of container {} exited unexpectedly: see `berth logs {}`",
                &id[..12],
                &id[..12]
            ))),
        }
    }

    /// The shim: supervise container `id` until it exits (see the module doc);
    /// `attach` copies the output to our stdout/stderr too. Returns our exit code.
    ///
    /// `status_fd` must be a descriptor this process owns and nothing else uses (the
    /// one [`Engine::start`] passed on the command line); the shim takes it over.
    pub fn shim(&self, id: &str, status_fd: Option<RawFd>, attach: Attach) -> i32 {
        let _ = nix::unistd::setsid();
        let _ = nix::sys::prctl::set_child_subreaper(true);
        let mut status = status_fd
            .filter(|fd| *fd > 2 && std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists())
            .map(|fd| std::fs::File::from(berth_sys::proc::own_fd(fd)));
        let mut report = |line: String| {
            if let Some(f) = status.as_mut() {
                let _ = writeln!(f, "{line}");
            }
        };
        match self.supervise(id, attach, &mut report) {
            Ok(code) => {
                report(format!("exit {code}"));
                0
            }
            Err(e) => {
                report(format!(
                    "error {} {}",
                    e.exit_code(),
                    e.to_string().replace('\n', " ")
                ));
                e.exit_code()
            }
        }
    }

    fn supervise(&self, id: &str, attach: Attach, report: &mut dyn FnMut(String)) -> Result<i32> {
        let dir = self.dir(id);
        let (rec, io) = self.launch(&dir)?;
        let mut log = Writer::new(RotatingFile::open(&dir.log_path(), rec.options.log)?);
        report("started".into());
        pump(&io, &mut log, attach == Attach::Attached);
        let code = reap(io.pid);
        drop(io);
        self.finish(&dir, &rec, code)
    }

    /// Creates and starts the container under its lock (so a concurrent `rm` waits
    /// until it runs, and then stops it) with us as its supervisor.
    fn launch(&self, dir: &ContainerDir) -> Result<(Record, Io)> {
        let lock = dir.lock()?;
        let mut rec = dir.load()?;
        rec.shim_pid = Some(std::process::id() as i32);
        dir.save(&rec)?;
        let started = self.create_in_runtime(dir, &rec).and_then(|io| {
            if let Err(e) = self.runtime.start(&rec.id) {
                let _ = self.runtime.delete(&rec.id, true);
                return Err(e.into());
            }
            Ok(io)
        });
        let io = match started {
            Ok(io) => io,
            Err(e) => {
                drop(lock);
                return Err(self.failed_start(dir, &rec, e));
            }
        };
        rec.started_at = Some(crate::record::now());
        rec.pid = Some(io.pid);
        dir.save(&rec)?;
        Ok((rec, io))
    }

    /// Creates the container in the runtime with pipes or a pty as its stdio, and
    /// brings up the loopback of its own network namespace (already up in one the
    /// daemon prepared; once more costs one netlink message).
    fn create_in_runtime(&self, dir: &ContainerDir, rec: &Record) -> Result<Io> {
        let io = self.create_with_stdio(dir, rec)?;
        if rec.options.network.own_namespace() {
            if let Err(e) = crate::netns::loopback_up(io.pid) {
                let _ = self.runtime.delete(&rec.id, true);
                return Err(e);
            }
        }
        Ok(io)
    }

    fn create_with_stdio(&self, dir: &ContainerDir, rec: &Record) -> Result<Io> {
        let o = &rec.options;
        if o.tty {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair()
                .map_err(|e| Error::io("create console socket", dir.bundle(), e))?;
            let created = self
                .runtime
                .create(
                    &rec.id,
                    &dir.bundle(),
                    RtCreate {
                        console_fd: Some(theirs.into()),
                        ..Default::default()
                    },
                )
                .map_err(|e| classify(e, dir, rec))?;
            let master = berth_runtime::tty::recv_fd(ours.as_raw_fd())?;
            // the size of our terminal, before the program starts and asks for it
            if let Ok((rows, cols)) = berth_sys::proc::window_size(std::io::stdin().as_fd()) {
                let _ = berth_sys::proc::set_window_size(master.as_fd(), rows, cols);
            }
            return Ok(Io {
                pid: created.pid,
                out: Some(master),
                err: None,
            });
        }
        let devnull =
            std::fs::File::open("/dev/null").map_err(|e| Error::io("open", "/dev/null", e))?;
        let stdin = if o.interactive {
            0
        } else {
            devnull.as_raw_fd()
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let created = self
            .runtime
            .create(
                &rec.id,
                &dir.bundle(),
                RtCreate {
                    stdio: Some([stdin, out_w.as_raw_fd(), err_w.as_raw_fd()]),
                    ..Default::default()
                },
            )
            .map_err(|e| classify(e, dir, rec))?;
        Ok(Io {
            pid: created.pid,
            out: Some(out_r),
            err: Some(err_r),
        })
    }

    /// After a failed create or start: unmount, and remove for `--rm`.
    fn failed_start(&self, dir: &ContainerDir, rec: &Record, e: Error) -> Error {
        let _ = rootfs::unmount_rootfs(&dir.rootfs());
        if rec.options.auto_remove {
            let _ = self.remove(&rec.id, true, true);
        }
        e
    }

    /// Records the exit, tears the runtime state and mount down, removes for `--rm`.
    /// The exit is recorded and the mount taken down under the container's lock, so
    /// a `start` right after the exit (restart) waits until the rootfs is free.
    fn finish(&self, dir: &ContainerDir, rec: &Record, code: i32) -> Result<i32> {
        {
            let _lock = dir.lock()?;
            dir.save_exit(&ExitStatus {
                code,
                finished_at: crate::record::now(),
            })?;
            match self.runtime.delete(&rec.id, true) {
                Ok(()) | Err(berth_runtime::Error::NotFound(_)) => {}
                Err(e) => tracing::warn!(container = %rec.id, error = %e, "runtime delete failed"),
            }
            rootfs::unmount_rootfs(&dir.rootfs())?;
        }
        if rec.options.auto_remove {
            self.remove(&rec.id, true, true)?;
        }
        Ok(code)
    }

    /// Runs container `id` in the foreground with a terminal, supervised by the
    /// calling process: relays the pty to our terminal and returns the exit code.
    pub fn run_tty(&self, id: &str) -> Result<i32> {
        let dir = self.dir(id);
        let (rec, io) = self.launch(&dir)?;
        let Io { pid, out, .. } = io;
        let relay = out.map(|m| std::thread::spawn(move || berth_runtime::tty::relay(m)));
        let code = reap(pid);
        if let Some(r) = relay {
            let _ = r.join();
        }
        self.finish(&dir, &rec, code)
    }
}

/// Blocks the signals docker's CLI proxies and returns a descriptor to read them.
fn proxy_signals() -> Option<nix::sys::signalfd::SignalFd> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    set.thread_block().ok()?;
    nix::sys::signalfd::SignalFd::with_flags(&set, nix::sys::signalfd::SfdFlags::SFD_CLOEXEC).ok()
}

/// The container's init and our ends of its output.
struct Io {
    pid: i32,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("create pipe", e))
}

/// Copies the container's output into the log (and to our stdout/stderr when
/// attached) until both streams end.
fn pump(io: &Io, log: &mut Writer<RotatingFile>, attached: bool) {
    let mut open = [io.out.is_some(), io.err.is_some()];
    let mut buf = [0u8; 16384];
    while open.iter().any(|o| *o) {
        let fds: Vec<(usize, &OwnedFd)> = [&io.out, &io.err]
            .iter()
            .enumerate()
            .filter(|(i, _)| open[*i])
            .filter_map(|(i, f)| f.as_ref().map(|f| (i, f)))
            .collect();
        let mut pfds: Vec<PollFd> = fds
            .iter()
            .map(|(_, f)| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut pfds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return,
        }
        let ready: Vec<bool> = pfds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        for ((i, f), r) in fds.iter().zip(ready) {
            if !r {
                continue;
            }
            let stream = if *i == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            match nix::unistd::read(f.as_fd(), &mut buf) {
                Ok(0) | Err(nix::Error::EIO) => {
                    let _ = log.flush_stream(stream);
                    open[*i] = false;
                }
                Ok(n) => {
                    let _ = log.write(stream, &buf[..n]);
                    if attached {
                        let _ = match stream {
                            Stream::Stdout => std::io::stdout().write_all(&buf[..n]),
                            Stream::Stderr => std::io::stderr().write_all(&buf[..n]),
                        };
                    }
                }
                Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
                Err(_) => {
                    let _ = log.flush_stream(stream);
                    open[*i] = false;
                }
            }
        }
    }
    if attached {
        let _ = std::io::stdout().flush();
    }
}

/// Waits for `pid` (reaping any other child on the way); its code as docker gives it.
fn reap(pid: i32) -> i32 {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, c)) if p.as_raw() == pid => return c,
            Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == pid => return 128 + s as i32,
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return 255,
        }
    }
}

/// Maps a runtime create failure to docker's 126/127 where the command is at fault.
fn classify(e: berth_runtime::Error, dir: &ContainerDir, rec: &Record) -> Error {
    let msg = e.to_string();
    let hint = "check the command and the image";
    if msg.contains("executable file not found") {
        return Error::CommandNotFound(format!(
            "failed to create container {}: {msg}: {hint}'s PATH",
            &rec.id[..12]
        ));
    }
    if msg.contains("no such file or directory, or not executable") {
        let p = dir.rootfs().join(rec.path.trim_start_matches('/'));
        let text = format!(
            "failed to create container {}: {msg}: {hint}",
            &rec.id[..12]
        );
        return if std::fs::symlink_metadata(p).is_ok() {
            Error::CommandNotExecutable(text.replace(
                "no such file or directory, or not executable",
                "permission denied",
            ))
        } else {
            Error::CommandNotFound(text.replace(
                "no such file or directory, or not executable",
                "no such file or directory",
            ))
        };
    }
    e.into()
}

/// Parses `<code> <message>` from the status pipe.
fn parse_error(s: &str) -> Error {
    let (code, msg) = s.split_once(' ').unwrap_or((s, ""));
    let msg = msg.to_string();
    match code {
        "127" => Error::CommandNotFound(msg),
        "126" => Error::CommandNotExecutable(msg),
        _ => Error::Reported(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_keep_their_codes() {
        assert_eq!(parse_error("127 exec: not found").exit_code(), 127);
        assert_eq!(parse_error("126 denied").exit_code(), 126);
        assert_eq!(parse_error("125 boom").exit_code(), 125);
    }
}
