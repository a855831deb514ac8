//! The container's init: what the forked child does between clone and execve.
//!
//! Runs in the new namespaces, single-threaded, as a copy of the caller. It talks to
//! the parent over a SOCK_SEQPACKET pair: it waits for `go` (maps written, cgroup
//! joined), reports `hooks` when the mounts are ready for createRuntime hooks, and
//! `ready` (or `error:<message>`) once everything but the exec is done. Then it blocks
//! on the exec fifo until `start`.

use crate::error::{Error, Result};
use crate::{process, rootfs, seccomp, tty};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::convert::Infallible;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// Everything the child needs; built by the parent before fork.
pub(crate) struct InitPlan<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub sync: &'a OwnedFd,
    pub fifo: &'a OwnedFd,
    pub console: Option<&'a OwnedFd>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    pub userns_new: bool,
    pub cgroup_mode: Option<berth_cgroups::CgroupMode>,
    pub cgroup_paths: &'a [(String, PathBuf)],
    pub stdio: Option<[RawFd; 3]>,
    /// v1 `tasks` files the child writes "0" to itself (fast cgroup join)
    pub cgroup_self_join: Option<&'a berth_cgroups::JoinPlan>,
    /// name of a new session keyring to join (None: keep the caller's)
    pub keyring: Option<std::ffi::CString>,
}

/// Send one message over the sync socket.
pub(crate) fn send(sock: &OwnedFd, msg: &str) -> Result<()> {
    nix::sys::socket::send(
        sock.as_raw_fd(),
        msg.as_bytes(),
        nix::sys::socket::MsgFlags::empty(),
    )
    .map_err(|e| Error::sys("sync send", e))?;
    Ok(())
}

/// Receive one message; `None` when the peer is gone.
pub(crate) fn recv(sock: &OwnedFd) -> Result<Option<String>> {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match nix::sys::socket::recv(
            sock.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(Some(String::from_utf8_lossy(&buf[..n]).into_owned())),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::sys("sync receive", e)),
        }
    }
}

/// Entry point of the forked child; never returns.
pub(crate) fn child_main(plan: &InitPlan<'_>) -> ! {
    let err = match init(plan) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = send(plan.sync, &format!("error:{err}"));
    berth_sys::proc::exit_now(1)
}

fn namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .into_iter()
        .map(|n| (n.typ(), n.path().clone()))
        .collect()
}

fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    CloneFlags::from_bits_truncate(t as i32)
}

fn join_namespaces(spec: &Spec) -> Result<()> {
    let ns = namespaces(spec);
    // user first: it decides what the others may do
    let order = |t: &LinuxNamespaceType| if *t == LinuxNamespaceType::User { 0 } else { 1 };
    let mut joins: Vec<_> = ns
        .iter()
        .filter(|(t, p)| {
            p.is_some() && !matches!(t, LinuxNamespaceType::Pid | LinuxNamespaceType::Time)
        })
        .collect();
    joins.sort_by_key(|(t, _)| order(t));
    for (t, p) in joins {
        let Some(p) = p else { continue };
        let f = std::fs::File::open(p).map_err(|e| Error::io("open namespace", p, e))?;
        nix::sched::setns(f.as_fd(), clone_flag(*t)).map_err(|e| {
            Error::sys(
                format!("linux.namespaces: join {t} namespace {}", p.display()),
                e,
            )
        })?;
    }
    Ok(())
}

fn has_new(spec: &Spec, t: LinuxNamespaceType) -> bool {
    namespaces(spec).iter().any(|(n, p)| *n == t && p.is_none())
}

fn has(spec: &Spec, t: LinuxNamespaceType) -> bool {
    namespaces(spec).iter().any(|(n, _)| *n == t)
}

fn init(plan: &InitPlan<'_>) -> Result<Infallible> {
    let spec = plan.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Config("process: missing".into()))?;
    // Not dumpable until exec: nobody in the container can open /proc/<us>/exe (our
    // own binary) while we are still the runtime (CVE-2019-5736 class).
    let _ = nix::sys::prctl::set_dumpable(false);
    berth_sys::proc::close_range_cloexec(3 + plan.preserve_fds)
        .map_err(|e| Error::Init(format!("close inherited descriptors: {e}")))?;
    if let Some(fds) = plan.stdio {
        for (i, fd) in fds.iter().enumerate() {
            if *fd != i as RawFd {
                berth_sys::proc::dup2_raw(*fd, i as RawFd)
                    .map_err(|e| Error::Init(format!("dup2 stdio: {e}")))?;
            }
        }
    }
    if let Some(j) = plan.cgroup_self_join {
        berth_cgroups::join_self(j)?;
    }
    let state_json = match recv(plan.sync)? {
        Some(m) if m.starts_with("go:") => m[3..].to_string(),
        _ => {
            return Err(Error::Init(
                "parent went away before the container was set up".into(),
            ))
        }
    };
    if plan.userns_new {
        let root_g = nix::unistd::Gid::from_raw(0);
        let root_u = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresgid(root_g, root_g, root_g).map_err(|e| {
            Error::sys(
                "become root in the user namespace (setgid 0): is container gid 0 mapped?",
                e,
            )
        })?;
        nix::unistd::setresuid(root_u, root_u, root_u).map_err(|e| {
            Error::sys(
                "become root in the user namespace (setuid 0): is container uid 0 mapped?",
                e,
            )
        })?;
    }
    join_namespaces(spec)?;
    if has_new(spec, LinuxNamespaceType::Cgroup) {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| Error::sys("unshare cgroup namespace", e))?;
    }
    nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
    if let Some(k) = &plan.keyring {
        berth_sys::proc::join_session_keyring(k).map_err(|e| {
            Error::Init(format!(
                "join a new session keyring (use --no-new-keyring to keep the caller's): {e}"
            ))
        })?;
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(|e| Error::sys(format!("hostname: set {h:?}"), e))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        if !has(spec, LinuxNamespaceType::Uts) {
            return Err(Error::Config(
                "domainname: setting a domain name needs a uts namespace".into(),
            ));
        }
        berth_sys::proc::set_domainname(d)
            .map_err(|e| Error::Init(format!("domainname: set {d:?}: {e}")))?;
    }
    let ctx = rootfs::RootfsCtx {
        spec,
        rootfs: plan.rootfs,
        userns: has(spec, LinuxNamespaceType::User),
        cgroup_mode: plan.cgroup_mode,
        cgroup_paths: plan.cgroup_paths,
    };
    rootfs::prepare_root(&ctx)?;
    rootfs::mount_all(&ctx)?;
    let hooks = spec.hooks().as_ref();
    let want_hooks = hooks.is_some_and(|h| {
        h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_container().as_ref().is_some_and(|v| !v.is_empty())
    });
    if want_hooks {
        send(plan.sync, "hooks")?;
        match recv(plan.sync)?.as_deref() {
            Some("hooks-done") => {}
            Some(m) if m.starts_with("error:") => return Err(Error::Init(m[6..].to_string())),
            _ => return Err(Error::Init("parent went away while running hooks".into())),
        }
        // createContainer: in the container's namespaces, before pivot_root.
        crate::hooks::run_all(
            "createContainer",
            hooks.and_then(|h| h.create_container().as_ref()),
            state_json.as_bytes(),
        )?;
    }
    rootfs::pivot(plan.rootfs, plan.no_pivot)?;
    if process.terminal().unwrap_or(false) {
        let sock = plan
            .console
            .ok_or_else(|| Error::Config("process.terminal: true needs a console socket".into()))?;
        let (master, peer) = tty::open_pty()?;
        if let Some(sz) = process.console_size() {
            let _ = berth_sys::proc::set_window_size(
                master.as_fd(),
                sz.height() as u16,
                sz.width() as u16,
            );
        }
        tty::send_fd(sock, &master)?;
        drop(master);
        rootfs::bind_console(&peer)?;
        for i in 0..3 {
            berth_sys::proc::dup2_raw(peer.as_raw_fd(), i)
                .map_err(|e| Error::Init(format!("dup2 terminal: {e}")))?;
        }
        berth_sys::proc::set_controlling_terminal(peer.as_fd())
            .map_err(|e| Error::Init(format!("set controlling terminal: {e}")))?;
    }
    rootfs::finalize(spec)?;
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        rootfs::readonly_root()?;
    }
    finish_and_exec(
        spec,
        plan.sync,
        Some(plan.fifo),
        &state_json,
        has(spec, LinuxNamespaceType::User),
    )
}

/// The part shared by the init and `exec`: rlimits, cwd, caps, seccomp, wait for start
/// (init only) and execve.
pub(crate) fn finish_and_exec(
    spec: &Spec,
    sync: &OwnedFd,
    fifo: Option<&OwnedFd>,
    state_json: &str,
    userns: bool,
) -> Result<Infallible> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Config("process: missing".into()))?;
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        let persona = match p.domain() {
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
        };
        berth_sys::proc::set_personality(persona)
            .map_err(|e| Error::Init(format!("linux.personality: {e}")))?;
    }
    process::apply_rlimits(process)?;
    process::apply_sched(process)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        process.user().umask().unwrap_or(0o022),
    ));
    let cwd = process.cwd();
    nix::unistd::chdir(cwd)
        .map_err(|e| Error::sys(format!("process.cwd: chdir to {}", cwd.display()), e))?;
    // The cwd must be inside our root (a leaked host directory fd would show up as
    // unreachable here: CVE-2024-21626 class).
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() && !p.to_string_lossy().starts_with("(unreachable)") => {}
        _ => {
            return Err(Error::Init(format!(
                "process.cwd: {} is outside the container root",
                cwd.display()
            )))
        }
    }
    let env = process.env().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    let arg0 = args
        .first()
        .ok_or_else(|| Error::Config("process.args: empty".into()))?;
    let program = process::find_program(arg0, &env)?;
    let cargs = process::cstrings(&args, "process.args")?;
    let cenv = process::cstrings(&env, "process.env")?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(seccomp::build(s, nnp)?),
        None => None,
    };
    if let (Some(f), false) = (&filter, nnp) {
        seccomp::load(f)?;
    }
    let caps = process.capabilities().as_ref();
    let bounding = match caps {
        Some(c) => process::to_caps(c.bounding())?,
        None => Default::default(),
    };
    process::drop_bounding(&bounding)?;
    // In a user namespace whose gid map we did not write ourselves setgroups may be
    // denied; we always write the maps as root, so it is allowed.
    let _ = userns;
    process::set_user_and_caps(process, caps, true)?;
    if nnp {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| Error::sys("prctl(PR_SET_NO_NEW_PRIVS)", e))?;
    }
    send(sync, "ready")?;
    if let Some(fifo) = fifo {
        let mut b = [0u8; 1];
        loop {
            match nix::unistd::read(fifo.as_fd(), &mut b) {
                Ok(_) => break,
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(Error::sys("wait for start", e)),
            }
        }
        let hooks = spec
            .hooks()
            .as_ref()
            .and_then(|h| h.start_container().as_ref());
        if let Err(e) = crate::hooks::run_all("startContainer", hooks, state_json.as_bytes()) {
            eprintln!("berth-runtime: {e}");
            berth_sys::proc::exit_now(1);
        }
    }
    if let (Some(f), true) = (&filter, nnp) {
        if let Err(e) = seccomp::load(f) {
            eprintln!("berth-runtime: {e}");
            berth_sys::proc::exit_now(1);
        }
    }
    if let Err(e) = berth_sys::proc::reset_signals_for_exec() {
        eprintln!("berth-runtime: reset signals: {e}");
        berth_sys::proc::exit_now(1);
    }
    let e = nix::unistd::execve(&program, &cargs, &cenv).err();
    let e = e.map(|e| e.to_string()).unwrap_or_default();
    eprintln!("berth-runtime: exec {}: {e}", program.to_string_lossy());
    berth_sys::proc::exit_now(if e.contains("EACCES") { 126 } else { 127 })
}
