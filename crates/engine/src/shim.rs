//! The per-container supervisor (the *shim*) and its contract with its starter.
//!
//! [`Engine::start`] spawns the shim program (`<prog> <args…> --status-fd <n> <id>`)
//! with a status pipe, and prepares the container's network while the program starts
//! up; then it writes the go on the shim's stdin (see [`GO_ENV`]: a shim whose stdin
//! closes without it exits at once). The shim (running [`Engine::shim`]) detaches
//! with `setsid`, becomes a child subreaper, waits for the go, creates the container in the runtime with pipes (or a
//! pty) as its stdio, listens on the attach socket (see [`crate::attach`]) and reports
//! one line per step on the status pipe:
//! - `ready`: created and listening; the starter hands over the clients that attached
//!   before the start, then sends `start` on the socket;
//! - `started`: the program runs;
//! - `exit <code>`: it has exited, the exit is recorded, the runtime state and rootfs
//!   mount are torn down (and the container removed for `--rm`: its directory is
//!   moved aside, and deleted after this report, see [`Engine::empty_trash`]);
//! - or `error <code> <message>` at any point before `exit`.
//!
//! While the container runs, the shim copies its output into the json-file log and
//! to the attached clients, and their stdin to the container; it reaps the container
//! and ends the clients' streams once the exit is recorded.

use crate::attach::{Request, Session, SOCKET};
use crate::error::{Error, Result};
use crate::logs::{RotatingFile, Writer};
use crate::record::{ContainerDir, ExitStatus, Record};
use crate::{rootfs, Engine};
use berth_runtime::CreateOptions as RtCreate;
use nix::sys::wait::{waitpid, WaitStatus};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// How long a created container waits for its `start` request.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A started container's supervisor, as its starter holds it: the status pipe and
/// the child process.
pub struct Shim {
    status: BufReader<std::fs::File>,
    child: std::process::Child,
}

impl Shim {
    /// The next status line (without its newline); `None` at the end of the pipe.
    fn line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.status.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l.trim_end().to_string()),
        }
    }

    /// Blocks until the container has exited and its supervisor has torn it down;
    /// the exit code, or `None` when the supervisor ended without reporting one.
    pub fn wait_exit(mut self) -> Option<i32> {
        let code = self.exit_code();
        self.reap();
        code
    }

    /// Blocks until the supervisor reports the exit (the container is down, and gone
    /// for `--rm`; the supervisor may still be deleting its files): the code, or
    /// `None` when the supervisor ended without reporting one. Then [`Shim::reap`].
    pub fn exit_code(&mut self) -> Option<i32> {
        while let Some(l) = self.line() {
            if let Some(c) = l.strip_prefix("exit ") {
                return c.trim().parse().ok();
            }
        }
        None
    }

    /// Waits for the supervisor process to end.
    pub fn reap(mut self) {
        while self.line().is_some() {}
        let _ = self.child.wait();
    }
}

impl Engine {
    /// Starts container `id` under a new shim and returns once the program runs.
    /// `before_start` is called with the container's directory once the shim listens
    /// on its attach socket and before the program starts: hand over the clients that
    /// attached early there (see [`crate::attach::send`]).
    ///
    /// The supervisor program starts up while the network namespace (and what goes
    /// with it) is prepared here; it waits for the go (see [`GO_ENV`]) before it
    /// reads the bundle.
    pub fn start(&self, id: &str, before_start: &mut dyn FnMut(&Path)) -> Result<Shim> {
        let rec = self.dir(id).load()?;
        self.join_namespaces(&self.dir(id), &rec.options)?;
        let pending = self.spawn_shim(id)?;
        let net = match self.net_prepare(&rec) {
            Ok(n) => n,
            Err(e) => {
                pending.abort();
                return Err(e);
            }
        };
        let result = pending
            .go()
            .and_then(|shim| self.await_started(id, shim, before_start));
        self.net_started(id, net, result.is_ok());
        result
    }

    /// Spawns the supervisor program for `id`, held before its launch.
    fn spawn_shim(&self, id: &str) -> Result<PendingShim> {
        let (prog, lead) = self
            .shim
            .split_first()
            .ok_or_else(|| Error::Shim("no shim program configured".into()))?;
        let (r, w) = pipe()?;
        nix::fcntl::fcntl(
            &w,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map_err(|e| Error::sys("pass status pipe", e))?;
        let (go_r, go_w) = pipe()?;
        let mut cmd = std::process::Command::new(prog);
        cmd.args(lead)
            .arg("--status-fd")
            .arg(w.as_raw_fd().to_string())
            .arg(id)
            .env("BERTH_RUNTIME_ROOT", self.runtime.root())
            .env(GO_ENV, "1")
            // the shim must not pin the caller's working directory (and its mount)
            .current_dir("/")
            .stdin(Stdio::from(go_r))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| Error::Shim(format!("cannot start {}: {e}", prog.to_string_lossy())))?;
        drop(w);
        Ok(PendingShim {
            shim: Shim {
                status: BufReader::new(std::fs::File::from(r)),
                child,
            },
            go: std::fs::File::from(go_w),
        })
    }

    /// Follows the supervisor's reports until the program runs.
    fn await_started(
        &self,
        id: &str,
        mut shim: Shim,
        before_start: &mut dyn FnMut(&Path),
    ) -> Result<Shim> {
        let dir = self.dir(id);
        loop {
            let Some(line) = shim.line() else {
                let _ = shim.child.wait();
                return Err(Error::Shim(format!(
                    "the supervisor of container {} exited unexpectedly: see `berth logs {}`",
                    &id[..12.min(id.len())],
                    &id[..12.min(id.len())]
                )));
            };
            if line == "ready" {
                before_start(&dir.dir);
                if let Err(e) = crate::attach::send(&dir.dir, SOCKET, &Request::Start, None) {
                    let _ = shim.child.kill();
                    let _ = shim.child.wait();
                    return Err(e);
                }
            } else if line == "started" {
                return Ok(shim);
            } else if let Some(err) = line.strip_prefix("error ") {
                let _ = shim.child.wait();
                return Err(parse_error(err));
            }
        }
    }

    /// The shim: supervise container `id` until it exits (see the module doc).
    /// Returns our exit code.
    ///
    /// `status_fd` must be a descriptor this process owns and nothing else uses (the
    /// one [`Engine::start`] passed on the command line); the shim takes it over.
    pub fn shim(&self, id: &str, status_fd: Option<RawFd>) -> i32 {
        let _ = nix::unistd::setsid();
        let _ = nix::sys::prctl::set_child_subreaper(true);
        if !await_go() {
            // the starter gave up (its network set-up failed, or it died): nothing
            // was done, nothing to report
            return 0;
        }
        let mut status = status_fd
            .filter(|fd| *fd > 2 && std::path::Path::new(&format!("/proc/self/fd/{fd}")).exists())
            .map(|fd| std::fs::File::from(berth_sys::proc::own_fd(fd)));
        let mut report = |line: String| {
            if let Some(f) = status.as_mut() {
                let _ = writeln!(f, "{line}");
            }
        };
        match self.supervise(id, &mut report) {
            Ok(code) => {
                report(format!("exit {code}"));
                self.empty_trash(Some(id));
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

    fn supervise(&self, id: &str, report: &mut dyn FnMut(String)) -> Result<i32> {
        let dir = self.dir(id);
        let (rec, pid, mut session) = self.launch(&dir, report)?;
        // `--log-driver none`: the output goes to attached clients only
        let keep_log = rec.options.log_driver.as_deref() != Some("none");
        let mut log = if keep_log {
            Some(Writer::new(RotatingFile::open(
                &dir.log_path(),
                rec.options.log,
            )?))
        } else {
            None
        };
        report("started".into());
        self.reset_health(&rec);
        if keep_log {
            if let Some(parts) = session.slim_parts() {
                crate::slim::hand_over(self, &rec, pid, parts);
            }
        }
        session.run(log.as_mut());
        let code = reap(pid);
        drop(log);
        let done = self.finish(&dir, &rec, code);
        session.close_clients();
        let _ = std::fs::remove_file(dir.dir.join(SOCKET));
        done
    }

    /// Creates the container under its lock (so a concurrent `rm` waits until it
    /// runs, and then stops it), serves the attach socket until `start`, and starts it.
    fn launch(
        &self,
        dir: &ContainerDir,
        report: &mut dyn FnMut(String),
    ) -> Result<(Record, i32, Session)> {
        let lock = dir.lock()?;
        let mut rec = dir.load()?;
        rec.shim_pid = Some(std::process::id() as i32);
        dir.save(&rec)?;
        let started = self.create_in_runtime(dir, &rec).and_then(|io| {
            let ready = crate::attach::listen(&dir.dir, SOCKET).and_then(|l| {
                let mut s = Session::new(
                    rec.options.tty,
                    io.out,
                    io.err,
                    io.stdin,
                    rec.options.stdin_once,
                    Some(l),
                );
                report("ready".into());
                s.serve_until_start(START_TIMEOUT)?;
                Ok(s)
            });
            let session = ready.and_then(|s| {
                self.runtime.start(&rec.id)?;
                Ok(s)
            });
            if session.is_err() {
                let _ = self.runtime.delete(&rec.id, true);
                let _ = std::fs::remove_file(dir.dir.join(SOCKET));
            }
            session.map(|s| (io.pid, s))
        });
        let (pid, session) = match started {
            Ok(x) => x,
            Err(e) => {
                drop(lock);
                return Err(self.failed_start(dir, &rec, e));
            }
        };
        rec.started_at = Some(crate::record::now());
        rec.pid = Some(pid);
        dir.save(&rec)?;
        Ok((rec, pid, session))
    }

    /// Creates the container in the runtime with pipes or a pty as its stdio, and
    /// brings up the loopback of its own network namespace.
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
            // the client's size, before the program starts and asks for it
            if let Some((rows, cols)) = o.console_size {
                let _ = berth_sys::proc::set_window_size(master.as_fd(), rows, cols);
            }
            let stdin = if o.interactive {
                Some(
                    master
                        .try_clone()
                        .map_err(|e| Error::io("dup", "pty master", e))?,
                )
            } else {
                None
            };
            return Ok(Io {
                pid: created.pid,
                out: Some(master),
                err: None,
                stdin,
            });
        }
        let devnull =
            std::fs::File::open("/dev/null").map_err(|e| Error::io("open", "/dev/null", e))?;
        let (stdin_r, stdin_w) = if o.interactive {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        let stdin = stdin_r
            .as_ref()
            .map_or(devnull.as_raw_fd(), |r| r.as_raw_fd());
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
            stdin: stdin_w,
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

    /// Tears the runtime state and mount down, records the exit, removes for `--rm`.
    /// All under the container's lock, so a `start` right after the exit (restart)
    /// waits until the rootfs is free; and the exit is recorded last, so whoever sees
    /// it (`stop`, `wait`) sees a container that is fully down.
    pub(crate) fn finish(&self, dir: &ContainerDir, rec: &Record, code: i32) -> Result<i32> {
        {
            let _lock = dir.lock()?;
            match self.runtime.delete(&rec.id, true) {
                Ok(()) | Err(berth_runtime::Error::NotFound(_)) => {}
                Err(e) => tracing::warn!(container = %rec.id, error = %e, "runtime delete failed"),
            }
            let unmounted = rootfs::unmount_rootfs(&dir.rootfs());
            dir.save_exit(&ExitStatus {
                code,
                finished_at: crate::record::now(),
            })?;
            unmounted?;
        }
        if rec.options.auto_remove {
            // its files are deleted after the exit is reported (empty_trash)
            self.remove_as(&rec.id, true, true, true)?;
        }
        Ok(code)
    }
}

/// The environment variable (`1`) that tells a supervisor to wait for its starter's
/// go, one byte on its stdin, before it launches the container.
pub const GO_ENV: &str = "BERTH_SHIM_AWAIT_GO";

/// A supervisor spawned and held before its launch.
struct PendingShim {
    shim: Shim,
    go: std::fs::File,
}

impl PendingShim {
    /// Lets it launch the container.
    fn go(mut self) -> Result<Shim> {
        if let Err(e) = self.go.write_all(b"g") {
            self.abort();
            return Err(Error::Shim(format!("cannot start the supervisor: {e}")));
        }
        Ok(self.shim)
    }

    /// Lets it go without doing anything.
    fn abort(self) {
        let PendingShim { mut shim, go } = self;
        drop(go);
        let _ = shim.child.wait();
    }
}

/// In a supervisor: waits for the starter's go on stdin when [`GO_ENV`] asks for
/// it; false when the starter closed the pipe instead. Stdin is /dev/null after.
fn await_go() -> bool {
    if std::env::var_os(GO_ENV).is_none_or(|v| v != "1") {
        return true;
    }
    let mut b = [0u8; 1];
    let go = loop {
        match std::io::Read::read(&mut std::io::stdin().lock(), &mut b) {
            Ok(1) => break b[0] == b'g',
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            _ => break false,
        }
    };
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
    }
    go
}

/// The container's init and our ends of its output.
struct Io {
    pid: i32,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    /// where the container's stdin is written (`-i`)
    stdin: Option<OwnedFd>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("create pipe", e))
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
pub(crate) fn parse_error(s: &str) -> Error {
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
