//! `exec`: start another process inside a running container's namespaces and cgroup.

use crate::container::Runtime;
use crate::error::{Error, Result};
use crate::init;
use crate::state::Status;
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Process};
use std::convert::Infallible;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Options of `exec`.
#[derive(Debug, Default)]
pub struct ExecOptions {
    /// unix socket to which the pty master is sent (process.terminal)
    pub console_socket: Option<PathBuf>,
    /// an already connected console socket
    pub console_fd: Option<OwnedFd>,
    /// fds after stdio to pass on
    pub preserve_fds: u32,
    /// descriptors to use as stdin, stdout, stderr
    pub stdio: Option<[RawFd; 3]>,
    /// without the container's seccomp filter (docker's `exec --privileged`)
    pub unconfined: bool,
}

fn proc_ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

impl Runtime {
    /// Run `process` in container `id`. Returns the new process's pid; it is a child of
    /// the caller, which reaps it.
    pub fn exec(&self, id: &str, process: Process, mut opts: ExecOptions) -> Result<i32> {
        let (st, status) = self.persisted(id)?;
        if !matches!(status, Status::Running | Status::Created) {
            return Err(Error::BadState {
                id: id.into(),
                status: status.to_string(),
                what: "exec needs a created or running container".into(),
            });
        }
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::Invalid("exec: no command given".into()));
        }
        let mut spec = st.spec.clone();
        if opts.unconfined {
            if let Some(l) = spec.linux_mut() {
                l.set_seccomp(None);
            }
        }
        let terminal = process.terminal().unwrap_or(false);
        spec.set_process(Some(process));
        let console = match (terminal, opts.console_fd.take(), &opts.console_socket) {
            (false, ..) => None,
            (true, Some(fd), _) => Some(fd),
            (true, None, Some(p)) => Some(OwnedFd::from(
                std::os::unix::net::UnixStream::connect(p)
                    .map_err(|e| Error::io("connect console socket", p, e))?,
            )),
            (true, None, None) => {
                return Err(Error::Invalid("exec --tty needs a console socket".into()))
            }
        };
        let types: Vec<LinuxNamespaceType> = st
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
            .iter()
            .map(|n| n.typ())
            .collect();
        let mut files = Vec::new();
        for t in &types {
            let p = format!("/proc/{}/ns/{}", st.pid, proc_ns_name(*t));
            let f = std::fs::File::open(&p).map_err(|e| Error::io("open namespace", &p, e))?;
            files.push((*t, f));
        }
        // pid and time namespaces apply to children: switch before fork, back after.
        let mut restore = Vec::new();
        for (t, f) in &files {
            let (flag, own) = match t {
                LinuxNamespaceType::Pid => {
                    (CloneFlags::CLONE_NEWPID, "/proc/self/ns/pid_for_children")
                }
                LinuxNamespaceType::Time => (
                    CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
                    "/proc/self/ns/time_for_children",
                ),
                _ => continue,
            };
            let orig = std::fs::File::open(own).map_err(|e| Error::io("open", own, e))?;
            nix::sched::setns(f.as_fd(), flag)
                .map_err(|e| Error::sys(format!("join {t} namespace"), e))?;
            restore.push((flag, orig));
        }
        let (parent_sock, child_sock) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::sys("socketpair", e))?;
        let forked = berth_sys::proc::fork_with_flags(0);
        if let Ok(berth_sys::proc::Forked::Child) = forked {
            drop(parent_sock);
            let err = match exec_child(&spec, &files, &child_sock, console.as_ref(), &opts) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = init::send(&child_sock, &format!("error:{err}"));
            berth_sys::proc::exit_now(1);
        }
        for (flag, f) in restore {
            nix::sched::setns(f.as_fd(), flag).map_err(|e| Error::sys("restore namespace", e))?;
        }
        let pid = match forked {
            Ok(berth_sys::proc::Forked::Parent(p)) => p,
            Ok(berth_sys::proc::Forked::Child) => unreachable!("the child never returns"),
            Err(e) => return Err(Error::Init(format!("fork exec process: {e}"))),
        };
        drop(child_sock);
        drop(console);
        let fail = |e: Error| {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            e
        };
        self.cgroup_of(&st)
            .and_then(|c| Ok(c.add_process(pid)?))
            .map_err(fail)?;
        init::send(&parent_sock, "go:{}").map_err(fail)?;
        match init::recv(&parent_sock).map_err(fail)? {
            Some(m) if m == "ready" => Ok(pid),
            Some(m) if m.starts_with("error:") => Err(fail(Error::Init(m[6..].to_string()))),
            _ => Err(fail(Error::Init("exec process exited during setup".into()))),
        }
    }
}

fn exec_child(
    spec: &oci_spec::runtime::Spec,
    files: &[(LinuxNamespaceType, std::fs::File)],
    sync: &OwnedFd,
    console: Option<&OwnedFd>,
    opts: &ExecOptions,
) -> Result<Infallible> {
    let _ = nix::sys::prctl::set_dumpable(false);
    berth_sys::proc::close_range_cloexec(3 + opts.preserve_fds)
        .map_err(|e| Error::Init(format!("close inherited descriptors: {e}")))?;
    if let Some(fds) = opts.stdio {
        for (i, fd) in fds.iter().enumerate() {
            if *fd != i as RawFd {
                berth_sys::proc::dup2_raw(*fd, i as RawFd)
                    .map_err(|e| Error::Init(format!("dup2 stdio: {e}")))?;
            }
        }
    }
    match init::recv(sync)? {
        Some(m) if m.starts_with("go:") => {}
        _ => return Err(Error::Init("parent went away".into())),
    }
    let order = [
        LinuxNamespaceType::User,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Mount,
    ];
    for t in order {
        if let Some((_, f)) = files.iter().find(|(x, _)| *x == t) {
            nix::sched::setns(f.as_fd(), CloneFlags::from_bits_truncate(t as i32))
                .map_err(|e| Error::sys(format!("join {t} namespace"), e))?;
        }
    }
    nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Config("process: missing".into()))?;
    if process.terminal().unwrap_or(false) {
        let sock =
            console.ok_or_else(|| Error::Invalid("exec --tty needs a console socket".into()))?;
        let (master, peer) = crate::tty::open_pty()?;
        if let Some(sz) = process.console_size() {
            let _ = berth_sys::proc::set_window_size(
                master.as_fd(),
                sz.height() as u16,
                sz.width() as u16,
            );
        }
        crate::tty::send_fd(sock, &master)?;
        drop(master);
        for i in 0..3 {
            berth_sys::proc::dup2_raw(peer.as_raw_fd(), i)
                .map_err(|e| Error::Init(format!("dup2 terminal: {e}")))?;
        }
        berth_sys::proc::set_controlling_terminal(peer.as_fd())
            .map_err(|e| Error::Init(format!("set controlling terminal: {e}")))?;
    }
    let userns = files.iter().any(|(t, _)| *t == LinuxNamespaceType::User);
    init::finish_and_exec(spec, sync, None, "", userns)
}
