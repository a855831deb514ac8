//! `exec`: another process in a running container, under its own helper process.
//!
//! The runtime's exec forks, so the (multi-threaded) daemon does not call it: it
//! spawns the helper ([`Engine::spawn_exec`]: the shim command with `container-exec`
//! in place of `container-shim`), handing over the client's upgraded connection. The
//! helper ([`Engine::exec_helper`]) runs the process with pipes or a pty, relays them
//! to the client like a shim does ([`crate::attach`]), serves resizes on
//! `exec-<exec id>.sock` in the container's directory, and reports on its status pipe:
//! `started <pid>`, then `exit <code>` (also written to `execs/<exec id>.exit` before
//! the client's stream ends), or `error <code> <message>`.

use crate::attach::{AttachOptions, Session};
use crate::error::{Error, Result};
use crate::list::State;
use crate::Engine;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;

/// What `exec` runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecOptions {
    /// the command and its arguments
    pub cmd: Vec<String>,
    /// `-t`
    pub tty: bool,
    /// `-i`: the client's stdin goes to the process
    pub interactive: bool,
    /// `-e KEY=VALUE`
    pub env: Vec<String>,
    /// `-u user[:group]`
    pub user: Option<String>,
    /// `-w`
    pub workdir: Option<String>,
    /// the client terminal's size (rows, columns), for `-t`
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// `--privileged`: every capability and no seccomp filter
    #[serde(default)]
    pub privileged: bool,
}

/// What the helper gets on its command line.
#[derive(Serialize, Deserialize)]
struct HelperArgs {
    options: ExecOptions,
    attach: Option<AttachOptions>,
}

/// A running exec's helper, as the daemon holds it.
pub struct ExecHandle {
    status: BufReader<std::fs::File>,
    child: std::process::Child,
    /// the process's pid (on the host)
    pub pid: i32,
}

impl ExecHandle {
    /// Kills the process and its helper (a health check past its timeout).
    pub fn kill(mut self) {
        if self.pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Blocks until the process has exited; its code, or `None` when the helper
    /// ended without reporting one.
    pub fn wait_exit(mut self) -> Option<i32> {
        let mut code = None;
        let mut l = String::new();
        while matches!(self.status.read_line(&mut l), Ok(n) if n > 0) {
            if let Some(c) = l.trim_end().strip_prefix("exit ") {
                code = c.parse().ok();
            }
            l.clear();
        }
        let _ = self.child.wait();
        code
    }
}

fn exec_socket(exec_id: &str) -> String {
    format!("exec-{}.sock", &exec_id[..exec_id.len().min(16)])
}

impl Engine {
    /// The recorded exit code of exec `exec_id` in container `id`, once it has one.
    pub fn exec_exit_code(&self, id: &str, exec_id: &str) -> Option<i32> {
        let p = self
            .dir(id)
            .dir
            .join("execs")
            .join(format!("{exec_id}.exit"));
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    }

    /// Sets the window size of a running exec's pty.
    pub fn resize_exec(&self, id: &str, exec_id: &str, rows: u16, cols: u16) -> Result<()> {
        crate::attach::send(
            &self.dir(id).dir,
            &exec_socket(exec_id),
            &crate::attach::Request::Resize { rows, cols },
            None,
        )
    }

    /// Sets the window size of a running container's pty.
    pub fn resize(&self, what: &str, rows: u16, cols: u16) -> Result<()> {
        let s = self.inspect(what)?;
        if s.state != State::Running {
            return Err(Error::Conflict(format!(
                "container {} is not running",
                s.record.id
            )));
        }
        crate::attach::send(
            &self.dir(&s.record.id).dir,
            crate::attach::SOCKET,
            &crate::attach::Request::Resize { rows, cols },
            None,
        )
    }

    /// Attaches `client` (an upgraded connection) to running container `what`.
    pub fn attach(&self, what: &str, client: &UnixStream, opts: &AttachOptions) -> Result<()> {
        let s = self.inspect(what)?;
        if s.state != State::Running {
            return Err(Error::Conflict(
                "you cannot attach to a stopped container, start it first".into(),
            ));
        }
        crate::attach::send(
            &self.dir(&s.record.id).dir,
            crate::attach::SOCKET,
            &crate::attach::Request::Attach(opts.clone()),
            Some(client.as_fd()),
        )
    }

    /// Starts exec `exec_id` in running container `id` under a helper process that
    /// takes over `client` (the upgraded connection; `None`: detached, output
    /// dropped). Returns once the process runs.
    pub fn spawn_exec(
        &self,
        id: &str,
        exec_id: &str,
        opts: &ExecOptions,
        client: Option<(&UnixStream, AttachOptions)>,
    ) -> Result<ExecHandle> {
        let s = self.inspect(id)?;
        if s.state != State::Running {
            return Err(Error::Conflict(format!(
                "container {} is not running: start it first",
                s.record.id
            )));
        }
        if opts.cmd.is_empty() {
            return Err(Error::Invalid("exec: no command given".into()));
        }
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::sys("create status pipe", e))?;
        let (mut cmd, client_fd) = self.exec_command(&s.record.id, exec_id, opts, client, &w)?;
        let child = cmd.spawn().map_err(|e| {
            Error::Shim(format!(
                "cannot start {}: {e}",
                cmd.get_program().to_string_lossy()
            ))
        })?;
        drop(w);
        drop(client_fd);
        let mut h = ExecHandle {
            status: BufReader::new(std::fs::File::from(r)),
            child,
            pid: 0,
        };
        let mut l = String::new();
        loop {
            l.clear();
            if !matches!(h.status.read_line(&mut l), Ok(n) if n > 0) {
                let _ = h.child.wait();
                return Err(Error::Shim("the exec helper exited unexpectedly".into()));
            }
            let line = l.trim_end();
            if let Some(pid) = line.strip_prefix("started ") {
                h.pid = pid.parse().unwrap_or(0);
                return Ok(h);
            }
            if let Some(e) = line.strip_prefix("error ") {
                let _ = h.child.wait();
                return Err(crate::shim::parse_error(e));
            }
        }
    }

    /// The helper's command line; `w` (the status pipe) and the client's connection
    /// are inherited by it.
    fn exec_command(
        &self,
        id: &str,
        exec_id: &str,
        opts: &ExecOptions,
        client: Option<(&UnixStream, AttachOptions)>,
        w: &OwnedFd,
    ) -> Result<(std::process::Command, Option<OwnedFd>)> {
        let Some((_, lead)) = self.shim.split_last() else {
            return Err(Error::Shim("no helper program configured".into()));
        };
        let (prog, lead) = lead
            .split_first()
            .ok_or_else(|| Error::Shim("no helper program configured".into()))?;
        let inherit = |fd: &OwnedFd| {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )
            .map_err(|e| Error::sys("pass a descriptor to the exec helper", e))
        };
        inherit(w)?;
        let client_fd = match &client {
            Some((c, _)) => {
                let fd: OwnedFd = c
                    .try_clone()
                    .map_err(|e| Error::io("dup", "client connection", e))?
                    .into();
                inherit(&fd)?;
                Some(fd)
            }
            None => None,
        };
        let args = HelperArgs {
            options: opts.clone(),
            attach: client.map(|(_, a)| a),
        };
        let json = serde_json::to_string(&args).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut cmd = std::process::Command::new(prog);
        cmd.args(lead)
            .arg("container-exec")
            .arg("--status-fd")
            .arg(w.as_raw_fd().to_string());
        if let Some(fd) = &client_fd {
            cmd.arg("--client-fd").arg(fd.as_raw_fd().to_string());
        }
        cmd.arg(id)
            .arg(exec_id)
            .arg(json)
            .env("BERTH_RUNTIME_ROOT", self.runtime.root())
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Ok((cmd, client_fd))
    }

    /// The exec helper (`container-exec`): runs exec `exec_id` described by `json`
    /// in container `id`, relaying it to the connection on `client_fd`, and reports
    /// on `status_fd` (see the module doc). Returns our exit code. Forks: call from a
    /// single-threaded process. Both descriptors must be ours alone (given on our
    /// command line by [`Engine::spawn_exec`]); we take them over.
    pub fn exec_helper(
        &self,
        id: &str,
        exec_id: &str,
        json: &str,
        status_fd: RawFd,
        client_fd: Option<RawFd>,
    ) -> i32 {
        let mut status = std::fs::File::from(berth_sys::proc::own_fd(status_fd));
        let client = client_fd.map(|fd| UnixStream::from(berth_sys::proc::own_fd(fd)));
        let mut report = |line: String| {
            let _ = writeln!(status, "{line}");
        };
        let args: HelperArgs = match serde_json::from_str(json) {
            Ok(a) => a,
            Err(e) => {
                report(format!("error 125 bad exec description: {e}"));
                return 125;
            }
        };
        let client = match (client, args.attach) {
            (Some(c), Some(a)) => Some((c, a)),
            _ => None,
        };
        match self.exec_session(id, exec_id, &args.options, client, &mut report) {
            Ok(_) => 0,
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

    fn exec_session(
        &self,
        id: &str,
        exec_id: &str,
        opts: &ExecOptions,
        client: Option<(UnixStream, AttachOptions)>,
        report: &mut dyn FnMut(String),
    ) -> Result<i32> {
        let dir = self.dir(id);
        let p = self.exec_process(id, opts)?;
        let devnull =
            std::fs::File::open("/dev/null").map_err(|e| Error::io("open", "/dev/null", e))?;
        let (out, err, stdin, pid) = if opts.tty {
            let (ours, theirs) =
                UnixStream::pair().map_err(|e| Error::io("create console socket", &dir.dir, e))?;
            let rt = berth_runtime::ExecOptions {
                console_fd: Some(theirs.into()),
                unconfined: opts.privileged,
                ..Default::default()
            };
            let pid = self
                .runtime
                .exec(id, p, rt)
                .map_err(|e| exec_error(e, &dir.rootfs(), &opts.cmd))?;
            let m = berth_runtime::tty::recv_fd(ours.as_raw_fd())?;
            if let Some((rows, cols)) = opts.console_size {
                let _ = berth_sys::proc::set_window_size(m.as_fd(), rows, cols);
            }
            let stdin = if opts.interactive {
                Some(
                    m.try_clone()
                        .map_err(|e| Error::io("dup", "pty master", e))?,
                )
            } else {
                None
            };
            (Some(m), None, stdin, pid)
        } else {
            let pipe = || {
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .map_err(|e| Error::sys("create pipe", e))
            };
            let (in_r, in_w) = if opts.interactive {
                let (r, w) = pipe()?;
                (Some(r), Some(w))
            } else {
                (None, None)
            };
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let stdin = in_r.as_ref().map_or(devnull.as_raw_fd(), |r| r.as_raw_fd());
            let rt = berth_runtime::ExecOptions {
                stdio: Some([stdin, out_w.as_raw_fd(), err_w.as_raw_fd()]),
                unconfined: opts.privileged,
                ..Default::default()
            };
            let pid = self
                .runtime
                .exec(id, p, rt)
                .map_err(|e| exec_error(e, &dir.rootfs(), &opts.cmd))?;
            (Some(out_r), Some(err_r), in_w, pid)
        };
        let name = exec_socket(exec_id);
        let listener = crate::attach::listen(&dir.dir, &name).ok();
        let mut session = Session::new(opts.tty, out, err, stdin, true, listener);
        if let Some((c, a)) = client {
            session.add_client(c, a);
        }
        report(format!("started {pid}"));
        session.run(None);
        let code = wait_for(pid);
        let execs = dir.dir.join("execs");
        let _ = std::fs::create_dir_all(&execs);
        let _ = crate::record::write_atomic(
            &execs.join(format!("{exec_id}.exit")),
            code.to_string().as_bytes(),
        );
        report(format!("exit {code}"));
        session.close_clients();
        let _ = std::fs::remove_file(dir.dir.join(&name));
        Ok(code)
    }

    /// The exec's process: the container's, with the exec's command, env, user, cwd.
    fn exec_process(&self, id: &str, opts: &ExecOptions) -> Result<oci_spec::runtime::Process> {
        let dir = self.dir(id);
        let spec: oci_spec::runtime::Spec =
            crate::record::read_json(&dir.bundle().join("config.json"))?;
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_args(Some(opts.cmd.clone()));
        p.set_terminal(Some(opts.tty));
        // the pty gets the client's size before the program runs (it may ask at once)
        if let (true, Some((rows, cols))) = (opts.tty, opts.console_size) {
            let size = oci_spec::runtime::BoxBuilder::default()
                .height(u64::from(rows))
                .width(u64::from(cols))
                .build();
            if let Ok(b) = size {
                p.set_console_size(Some(b));
            }
        }
        let mut env = p.env().clone().unwrap_or_default();
        for e in &opts.env {
            let key = e.split('=').next().unwrap_or("");
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        p.set_env(Some(env));
        if let Some(w) = &opts.workdir {
            p.set_cwd(PathBuf::from(w));
        }
        if opts.privileged {
            let all = crate::CreateOptions {
                cap_add: vec!["ALL".into()],
                ..Default::default()
            };
            let caps = crate::spec::capabilities(&all)?;
            p.set_capabilities(Some(berth_runtime::spec::capabilities(caps)));
        }
        if let Some(u) = &opts.user {
            let r = crate::user::resolve_in(&dir.rootfs(), u)?;
            let mut user = p.user().clone();
            user.set_uid(r.uid);
            user.set_gid(r.gid);
            user.set_additional_gids(Some(r.additional_gids).filter(|g| !g.is_empty()));
            p.set_user(user);
        }
        Ok(p)
    }
}

/// docker's codes for an exec that cannot start: 127 when the command is not found,
/// 126 when it cannot be run (a directory, no permission, a bad working directory).
fn exec_error(e: berth_runtime::Error, rootfs: &std::path::Path, cmd: &[String]) -> Error {
    let msg = e.to_string();
    let hint = "check the command and the container's PATH";
    if msg.contains("executable file not found") {
        return Error::CommandNotFound(format!("exec failed: {msg}: {hint}"));
    }
    if msg.contains("no such file or directory, or not executable") {
        let there = cmd.first().filter(|c| c.contains('/')).is_some_and(|c| {
            std::fs::symlink_metadata(rootfs.join(c.trim_start_matches('/'))).is_ok()
        });
        return if there {
            Error::CommandNotExecutable(format!(
                "exec failed: {}: check that it is an executable file",
                msg.replace(
                    "no such file or directory, or not executable",
                    "permission denied"
                )
            ))
        } else {
            Error::CommandNotFound(format!(
                "exec failed: {}: {hint}",
                msg.replace(
                    "no such file or directory, or not executable",
                    "no such file or directory"
                )
            ))
        };
    }
    if msg.contains("not found") || msg.contains("no such file") {
        return Error::CommandNotFound(format!("exec failed: {msg}: {hint}"));
    }
    if msg.contains("process.cwd") {
        return Error::CommandNotExecutable(format!(
            "exec failed: {msg}: give -w a directory that exists in the container"
        ));
    }
    e.into()
}

fn wait_for(pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return 255,
        }
    }
}
