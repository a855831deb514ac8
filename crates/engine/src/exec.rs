//! `exec`: another process in a running container, supervised by the caller.

use crate::error::{Error, Result};
use crate::list::State;
use crate::Engine;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// What `exec` runs.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// the command and its arguments
    pub cmd: Vec<String>,
    /// `-t`
    pub tty: bool,
    /// `-i`: our stdin goes to the process
    pub interactive: bool,
    /// `-e KEY=VALUE`
    pub env: Vec<String>,
    /// `-u user[:group]`
    pub user: Option<String>,
    /// `-w`
    pub workdir: Option<String>,
}

impl Engine {
    /// Runs `opts.cmd` in the running container `what` with our stdio (or a pty
    /// relayed to our terminal) and returns its exit code. Forks: call from a
    /// single-threaded process.
    pub fn exec(&self, what: &str, opts: &ExecOptions) -> Result<i32> {
        let s = self.inspect(what)?;
        let id = s.record.id.clone();
        if s.state != State::Running {
            return Err(Error::Conflict(format!(
                "container {id} is not running: start it first"
            )));
        }
        if opts.cmd.is_empty() {
            return Err(Error::Invalid("exec: no command given".into()));
        }
        let dir = self.dir(&id);
        let spec: oci_spec::runtime::Spec =
            crate::record::read_json(&dir.bundle().join("config.json"))?;
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_args(Some(opts.cmd.clone()));
        p.set_terminal(Some(opts.tty));
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
        if let Some(u) = &opts.user {
            let r = crate::user::resolve_in(&dir.rootfs(), u)?;
            let mut user = p.user().clone();
            user.set_uid(r.uid);
            user.set_gid(r.gid);
            user.set_additional_gids(Some(r.additional_gids).filter(|g| !g.is_empty()));
            p.set_user(user);
        }
        let devnull =
            std::fs::File::open("/dev/null").map_err(|e| Error::io("open", "/dev/null", e))?;
        let (ours, theirs) = if opts.tty {
            let (a, b) = std::os::unix::net::UnixStream::pair()
                .map_err(|e| Error::io("create console socket", &dir.dir, e))?;
            (Some(a), Some(b.into()))
        } else {
            (None, None)
        };
        let stdin = if opts.interactive {
            0
        } else {
            devnull.as_raw_fd()
        };
        let rt_opts = berth_runtime::ExecOptions {
            console_fd: theirs,
            stdio: (!opts.tty).then_some([stdin, 1, 2]),
            ..Default::default()
        };
        let pid = self.runtime.exec(&id, p, rt_opts).map_err(|e| {
            let msg = e.to_string();
            if msg.contains("not found") || msg.contains("no such file") {
                Error::CommandNotFound(format!(
                    "exec failed: {msg}: check the command and the container's PATH"
                ))
            } else {
                e.into()
            }
        })?;
        let relay = match &ours {
            Some(s) => {
                let m = berth_runtime::tty::recv_fd(s.as_raw_fd())?;
                Some(std::thread::spawn(move || berth_runtime::tty::relay(m)))
            }
            None => None,
        };
        let code = wait_for(pid);
        if let Some(r) = relay {
            let _ = r.join();
        }
        Ok(code)
    }
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
