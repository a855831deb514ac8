//! The lifecycle verbs over a runtime root: create, start, state, kill, delete, pause,
//! resume, update, ps, stats, list.

use crate::error::{Error, Result};
use crate::init::{self, InitPlan};
use crate::spec::{load_bundle, Bundle};
use crate::state::{
    init_alive, now_rfc3339, pid_start_time, OciState, Persisted, StateDir, Status,
};
use berth_cgroups::{CgroupManager, CgroupMode};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxNamespaceType, LinuxResources};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where cgroupfs lives on every Linux host we support.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Options of `create` beyond the bundle.
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// unix socket to which the pty master is sent (process.terminal)
    pub console_socket: Option<PathBuf>,
    /// an already connected console socket (in-process callers)
    pub console_fd: Option<OwnedFd>,
    /// number of fds after stdio to pass to the container
    pub preserve_fds: u32,
    /// chroot instead of pivot_root
    pub no_pivot: bool,
    /// do not create a new session keyring (the default joins a new one, named `_ses.<id>`)
    pub no_new_keyring: bool,
    /// descriptors to use as the container's stdin, stdout, stderr
    pub stdio: Option<[RawFd; 3]>,
}

/// A container that has been created: its init waits for `start`.
#[derive(Debug, Clone)]
pub struct Created {
    /// pid of the init process
    pub pid: i32,
    /// non-fatal findings (unsupported labels)
    pub warnings: Vec<String>,
}

/// The runtime: a root directory of container states.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
    cgroup_root: PathBuf,
    /// leave the shared parent cgroup ("berth") when the last container goes
    keep_parent: bool,
}

/// Kills, reaps and removes whatever a failed create left behind.
struct CreateGuard<'a> {
    dir: &'a StateDir,
    cgroup: Option<Box<dyn CgroupManager>>,
    child: Option<i32>,
    armed: bool,
    keep_parent: bool,
}

impl Drop for CreateGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.child {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.destroy();
            if !self.keep_parent {
                remove_empty_parents(cg.as_ref());
            }
        }
        let _ = self.dir.remove();
    }
}

/// Create the cgroup, retrying when something removed the shared parent ("berth")
/// between our mkdir of it and of our own directory (a concurrent delete of the last
/// other container, or an engine that let it go).
fn create_cgroup(cg: &dyn CgroupManager) -> Result<()> {
    let mut tries = 0;
    loop {
        match cg.create() {
            Err(berth_cgroups::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && tries < 20 =>
            {
                tries += 1;
            }
            r => return Ok(r?),
        }
    }
}

/// Remove the per-runtime parent cgroup ("berth") when the last container is gone.
fn remove_empty_parents(cg: &dyn CgroupManager) {
    for (_, p) in cg.paths() {
        if let Some(parent) = p.parent() {
            if parent.file_name().is_some_and(|n| n == "berth") {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
}

/// The default device rules every container gets on top of the spec's (runc's list).
fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let c = |ma: Option<i64>, mi: Option<i64>, acc: &str| {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(true);
        d.set_typ(Some(LinuxDeviceType::C));
        d.set_major(ma);
        d.set_minor(mi);
        d.set_access(Some(acc.to_string()));
        d
    };
    vec![
        c(Some(1), Some(3), "rwm"), // null
        c(Some(1), Some(5), "rwm"), // zero
        c(Some(1), Some(7), "rwm"), // full
        c(Some(1), Some(8), "rwm"), // random
        c(Some(1), Some(9), "rwm"), // urandom
        c(Some(5), Some(0), "rwm"), // tty
        c(Some(5), Some(2), "rwm"), // ptmx
        c(Some(136), None, "rwm"),  // pts/*
    ]
}

fn resources_of(bundle: &Bundle) -> LinuxResources {
    let mut r = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    if let Some(devs) = r.devices().clone() {
        let mut devs = devs;
        devs.extend(default_device_rules());
        r.set_devices(Some(devs));
    }
    r
}

impl Runtime {
    /// A runtime keeping state under `root` (runc's `--root`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime {
            root: root.into(),
            cgroup_root: PathBuf::from(CGROUP_ROOT),
            keep_parent: false,
        }
    }

    /// This runtime leaves the shared parent cgroup ("berth") when its last container
    /// goes, as dockerd leaves "docker": removing and making it again (and, for
    /// cpuset, copying its cpus and mems) costs every short-lived container 18
    /// cgroupfs operations. Whoever asks for this lets it go when done, with
    /// [`Runtime::release_shared_cgroups`].
    pub fn keeping_shared_cgroup(mut self) -> Self {
        self.keep_parent = true;
        self
    }

    /// Removes the shared parent cgroup ("berth") from every hierarchy where it is
    /// empty (a busy one stays: the kernel refuses to remove it).
    pub fn release_shared_cgroups(&self) {
        let mut dirs = vec![self.cgroup_root.join("berth")];
        if let Ok(rd) = std::fs::read_dir(&self.cgroup_root) {
            dirs.extend(rd.flatten().map(|e| e.path().join("berth")));
        }
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, id: &str) -> Result<StateDir> {
        StateDir::new(&self.root, id)
    }

    fn cgroup(&self, path: &Path) -> Result<Box<dyn CgroupManager>> {
        let mode = berth_cgroups::detect_mode(&self.cgroup_root)?;
        Ok(berth_cgroups::manager(mode, &self.cgroup_root, path)?)
    }

    /// Create container `id` from the bundle at `bundle`: set up everything and leave
    /// the init process waiting for [`Runtime::start`].
    pub fn create(&self, id: &str, bundle: &Path, opts: CreateOptions) -> Result<Created> {
        let dir = self.dir(id)?;
        let bundle = load_bundle(bundle)?;
        let has_mnt = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Mount));
        if !has_mnt {
            return Err(Error::Config(
                "linux.namespaces: a mount namespace is required".into(),
            ));
        }
        let terminal = bundle
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        let console = match (terminal, opts.console_fd, &opts.console_socket) {
            (false, ..) => None,
            (true, Some(fd), _) => Some(fd),
            (true, None, Some(p)) => Some(OwnedFd::from(
                std::os::unix::net::UnixStream::connect(p).map_err(|e| Error::io("connect console socket", p, e))?,
            )),
            (true, None, None) => {
                return Err(Error::Config(
                    "process.terminal is true: pass --console-socket to receive the terminal, or set terminal to false".into(),
                ))
            }
        };
        dir.create(id)?;
        let mut guard = CreateGuard {
            dir: &dir,
            cgroup: None,
            child: None,
            armed: true,
            keep_parent: self.keep_parent,
        };
        let _lock = dir.lock(id)?;
        let fifo_path = dir.fifo();
        nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o622))
            .map_err(|e| Error::sys(format!("mkfifo {}", fifo_path.display()), e))?;
        let fifo = nix::fcntl::open(
            &fifo_path,
            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::sys("open exec fifo", e))?;
        let cg_path = cgroups_path(&bundle, id);
        let cg = self.cgroup(&cg_path)?;
        create_cgroup(cg.as_ref())?;
        let cg_mode = cg.mode();
        let cg_paths = cg.paths();
        guard.cgroup = Some(cg);
        if let Some(cg) = &guard.cgroup {
            cg.apply_resources(&resources_of(&bundle))?;
        }
        let (parent_sock, child_sock) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::sys("socketpair", e))?;
        let ns = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        let mut flags = CloneFlags::empty();
        let mut pid_path = None;
        let mut new_time = false;
        let mut userns_new = false;
        for n in &ns {
            match (n.typ(), n.path()) {
                (LinuxNamespaceType::Cgroup, _) => {} // unshared by the child after joining the cgroup
                (LinuxNamespaceType::Pid, Some(p)) => pid_path = Some(p.clone()),
                (LinuxNamespaceType::Time, None) => new_time = true,
                (LinuxNamespaceType::Time, Some(_)) => {
                    return Err(Error::Config(
                        "linux.namespaces: joining a time namespace by path is not supported"
                            .into(),
                    ))
                }
                (t, None) => {
                    if t == LinuxNamespaceType::User {
                        userns_new = true;
                    }
                    flags |= CloneFlags::from_bits_truncate(t as i32);
                }
                (_, Some(_)) => {}
            }
        }
        // Enter the cgroup at birth where we can (see JoinPlan); a child in a new user
        // namespace may not write host cgroup files, so the parent moves it instead.
        let join = match (&guard.cgroup, userns_new) {
            (Some(cg), false) => Some(cg.join_plan()),
            _ => None,
        };
        let cg_dir = match join.as_ref().and_then(|j| j.clone_into.as_ref()) {
            Some(d) => Some(
                nix::fcntl::open(
                    d,
                    nix::fcntl::OFlag::O_RDONLY
                        | nix::fcntl::OFlag::O_DIRECTORY
                        | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| Error::sys(format!("open cgroup {}", d.display()), e))?,
            ),
            None => None,
        };
        let plan = InitPlan {
            spec: &bundle.spec,
            rootfs: &bundle.rootfs,
            sync: &child_sock,
            fifo: &fifo,
            console: console.as_ref(),
            preserve_fds: opts.preserve_fds,
            no_pivot: opts.no_pivot,
            userns_new,
            cgroup_mode: Some(cg_mode),
            cgroup_paths: &cg_paths,
            stdio: opts.stdio,
            cgroup_self_join: join.as_ref(),
            keyring: if opts.no_new_keyring {
                None
            } else {
                std::ffi::CString::new(format!("_ses.{id}")).ok()
            },
        };
        let restore = NsRestore::prepare(pid_path.as_deref(), new_time, &bundle)?;
        let mut forked =
            berth_sys::proc::fork_into_cgroup(flags.bits(), cg_dir.as_ref().map(|f| f.as_fd()));
        let mut moved_at_birth = join.is_some();
        if forked.is_err() {
            // no clone3/CLONE_INTO_CGROUP: plain fork, the parent moves the child
            moved_at_birth = false;
            forked = berth_sys::proc::fork_with_flags(flags.bits());
        }
        if let Ok(berth_sys::proc::Forked::Child) = forked {
            drop(parent_sock);
            init::child_main(&plan);
        }
        restore.restore()?;
        let pid = match forked {
            Ok(berth_sys::proc::Forked::Parent(pid)) => pid,
            Ok(berth_sys::proc::Forked::Child) => {
                unreachable!("child never returns from child_main")
            }
            Err(e) => return Err(Error::Init(format!("clone container init: {e}"))),
        };
        guard.child = Some(pid);
        drop(child_sock);
        drop(fifo);
        drop(console);
        if userns_new {
            write_id_maps(pid, &bundle)?;
        }
        if let (Some(cg), false) = (&guard.cgroup, moved_at_birth) {
            cg.add_process(pid)?;
        }
        if let Some(adj) = bundle
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.oom_score_adj())
        {
            std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string())
                .map_err(|e| Error::Init(format!("process.oomScoreAdj: set {adj}: {e}")))?;
        }
        let pid_start = pid_start_time(pid)
            .ok_or_else(|| Error::Init("container init exited during setup".into()))?;
        let persisted = Persisted {
            id: id.to_string(),
            pid,
            pid_start,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: now_rfc3339(),
            cgroup_path: cg_path,
            started: false,
            annotations: bundle.spec.annotations().clone().unwrap_or_default(),
            spec: bundle.spec.clone(),
        };
        let state_json =
            serde_json::to_string(&oci_state(&persisted, Status::Created)).unwrap_or_default();
        init::send(&parent_sock, &format!("go:{state_json}"))?;
        loop {
            match init::recv(&parent_sock)? {
                Some(m) if m == "ready" => break,
                Some(m) if m == "hooks" => {
                    let hooks = bundle.spec.hooks().as_ref();
                    let r = crate::hooks::run_all(
                        "prestart",
                        hooks.and_then(|h| h.prestart().as_ref()),
                        state_json.as_bytes(),
                    )
                    .and_then(|_| {
                        crate::hooks::run_all(
                            "createRuntime",
                            hooks.and_then(|h| h.create_runtime().as_ref()),
                            state_json.as_bytes(),
                        )
                    });
                    match r {
                        Ok(()) => init::send(&parent_sock, "hooks-done")?,
                        Err(e) => {
                            let _ = init::send(&parent_sock, &format!("error:{e}"));
                            return Err(e);
                        }
                    }
                }
                Some(m) if m.starts_with("error:") => return Err(Error::Init(m[6..].to_string())),
                _ => return Err(Error::Init("container init exited during setup".into())),
            }
        }
        dir.save(&persisted)?;
        guard.armed = false;
        Ok(Created {
            pid,
            warnings: bundle.warnings,
        })
    }

    fn load(&self, id: &str) -> Result<(StateDir, Persisted)> {
        let dir = self.dir(id)?;
        if !dir.exists() {
            return Err(Error::NotFound(id.into()));
        }
        let st = dir.load(id)?;
        Ok((dir, st))
    }

    fn status_of(&self, st: &Persisted) -> Status {
        if !init_alive(st) {
            return Status::Stopped;
        }
        // the exec fifo exists from create until start
        if !st.started && self.dir(&st.id).map(|d| d.fifo().exists()).unwrap_or(false) {
            return Status::Created;
        }
        match self
            .cgroup(&st.cgroup_path)
            .and_then(|c| Ok(c.is_frozen()?))
        {
            Ok(true) => Status::Paused,
            _ => Status::Running,
        }
    }

    /// Start the user process of a created container.
    pub fn start(&self, id: &str) -> Result<()> {
        let (dir, mut st) = self.load(id)?;
        let _lock = dir.lock(id)?;
        let status = self.status_of(&st);
        if status != Status::Created {
            return Err(bad(id, status, "only a created container can be started"));
        }
        let fifo = dir.fifo();
        let f = nix::fcntl::open(
            &fifo,
            nix::fcntl::OFlag::O_WRONLY
                | nix::fcntl::OFlag::O_NONBLOCK
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| match e {
            nix::Error::ENXIO | nix::Error::ENOENT => Error::Init(format!(
                "container {id:?}: its init process is gone: delete it"
            )),
            e => Error::sys("open exec fifo", e),
        })?;
        nix::unistd::write(f.as_fd(), &[0u8]).map_err(|e| Error::sys("signal start", e))?;
        let _ = std::fs::remove_file(&fifo);
        // The init holds the only other end of the fifo, close-on-exec: once it is
        // gone (startContainer hooks done, program executed, or init dead) our end
        // reports POLLERR. poststart hooks run only after that, as the spec orders.
        let mut pfd = [nix::poll::PollFd::new(
            f.as_fd(),
            nix::poll::PollFlags::empty(),
        )];
        while let Err(nix::Error::EINTR) = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::NONE) {
        }
        st.started = true;
        let json = serde_json::to_vec(&oci_state(&st, Status::Running)).unwrap_or_default();
        if let Err(e) = crate::hooks::run_all(
            "poststart",
            st.spec
                .hooks()
                .as_ref()
                .and_then(|h| h.poststart().as_ref()),
            &json,
        ) {
            tracing::warn!(container = id, error = %e, "poststart hook failed");
            eprintln!("berth-runtime: warning: {e}");
        }
        Ok(())
    }

    /// The OCI state of container `id`.
    pub fn state(&self, id: &str) -> Result<OciState> {
        let (_, st) = self.load(id)?;
        Ok(oci_state(&st, self.status_of(&st)))
    }

    /// States of all containers under the root, sorted by id.
    pub fn list(&self) -> Result<Vec<OciState>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io("read runtime root", &self.root, e)),
        };
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if let Ok(s) = self.state(&id) {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Send `sig` to the init (or, with `all`, to every process of the container).
    pub fn kill(&self, id: &str, sig: Signal, all: bool) -> Result<()> {
        let (_, st) = self.load(id)?;
        let status = self.status_of(&st);
        if status == Status::Stopped {
            return Err(bad(id, status, "cannot signal a stopped container"));
        }
        if all {
            let cg = self.cgroup(&st.cgroup_path)?;
            for pid in cg.pids()? {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
            }
            return Ok(());
        }
        nix::sys::signal::kill(Pid::from_raw(st.pid), sig)
            .map_err(|e| Error::sys(format!("kill {sig}"), e))
    }

    /// Delete a stopped (or created) container; `force` kills a running one first.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let dir = self.dir(id)?;
        if !dir.exists() {
            return Err(Error::NotFound(id.into()));
        }
        let _lock = dir.lock(id)?;
        let st = match dir.load(id) {
            Ok(st) => st,
            // A create that crashed before writing its state: nothing runs, clean up.
            Err(Error::NotFound(_)) => return dir.remove(),
            Err(e) => return Err(e),
        };
        let status = self.status_of(&st);
        if matches!(status, Status::Running | Status::Paused) && !force {
            return Err(bad(
                id,
                status,
                "cannot delete a running container: stop it first or use --force",
            ));
        }
        let cg = self.cgroup(&st.cgroup_path)?;
        // a stopped init may leave processes behind (no pid namespace, or exec'd ones
        // still exiting): the cgroup cannot go while they are there
        if status != Status::Stopped || !cg.pids().unwrap_or_default().is_empty() {
            self.kill_everything(&st, cg.as_ref());
        }
        let json = serde_json::to_vec(&oci_state(&st, Status::Stopped)).unwrap_or_default();
        if let Err(e) = crate::hooks::run_all(
            "poststop",
            st.spec.hooks().as_ref().and_then(|h| h.poststop().as_ref()),
            &json,
        ) {
            eprintln!("berth-runtime: warning: {e}");
        }
        cg.destroy()?;
        if !self.keep_parent {
            remove_empty_parents(cg.as_ref());
        }
        dir.remove()
    }

    fn kill_everything(&self, st: &Persisted, cg: &dyn CgroupManager) {
        let mut pids = cg.pids().unwrap_or_default();
        if init_alive(st) {
            pids.push(st.pid);
        }
        for p in &pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        let _ = cg.thaw();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // reap the init if it is our child (in-process `run`)
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(st.pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            let left = cg.pids().unwrap_or_default();
            if left.is_empty() && !init_alive(st) {
                return;
            }
            for p in left {
                let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Freeze every process of the container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let (dir, st) = self.load(id)?;
        let _lock = dir.lock(id)?;
        let status = self.status_of(&st);
        if status != Status::Running {
            return Err(bad(id, status, "only a running container can be paused"));
        }
        Ok(self.cgroup(&st.cgroup_path)?.freeze()?)
    }

    /// Thaw a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let (dir, st) = self.load(id)?;
        let _lock = dir.lock(id)?;
        let status = self.status_of(&st);
        if status != Status::Paused {
            return Err(bad(id, status, "only a paused container can be resumed"));
        }
        Ok(self.cgroup(&st.cgroup_path)?.thaw()?)
    }

    /// Pids of the container's processes (host pid namespace).
    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let (_, st) = self.load(id)?;
        Ok(self.cgroup(&st.cgroup_path)?.pids()?)
    }

    /// Cgroup statistics.
    pub fn stats(&self, id: &str) -> Result<berth_cgroups::Stats> {
        let (_, st) = self.load(id)?;
        Ok(self.cgroup(&st.cgroup_path)?.stats()?)
    }

    /// Change resources of a live container and remember them.
    pub fn update(&self, id: &str, r: &LinuxResources) -> Result<()> {
        let (dir, mut st) = self.load(id)?;
        let _lock = dir.lock(id)?;
        let status = self.status_of(&st);
        if status == Status::Stopped {
            return Err(bad(id, status, "cannot update a stopped container"));
        }
        self.cgroup(&st.cgroup_path)?.apply_resources(r)?;
        if let Some(linux) = st.spec.linux_mut() {
            let mut cur = linux.resources().clone().unwrap_or_default();
            merge_resources(&mut cur, r);
            linux.set_resources(Some(cur));
        }
        dir.save(&st)
    }

    /// The cgroup mode of this host.
    pub fn cgroup_mode(&self) -> Result<CgroupMode> {
        Ok(berth_cgroups::detect_mode(&self.cgroup_root)?)
    }

    /// The persisted record (spec, cgroup path) of a container; used by `exec`.
    pub(crate) fn persisted(&self, id: &str) -> Result<(Persisted, Status)> {
        let (_, st) = self.load(id)?;
        let s = self.status_of(&st);
        Ok((st, s))
    }

    pub(crate) fn cgroup_of(&self, st: &Persisted) -> Result<Box<dyn CgroupManager>> {
        self.cgroup(&st.cgroup_path)
    }
}

fn merge_resources(cur: &mut LinuxResources, new: &LinuxResources) {
    if new.memory().is_some() {
        cur.set_memory(*new.memory());
    }
    if new.cpu().is_some() {
        cur.set_cpu(new.cpu().clone());
    }
    if new.pids().is_some() {
        cur.set_pids(*new.pids());
    }
    if new.block_io().is_some() {
        cur.set_block_io(new.block_io().clone());
    }
    if new.hugepage_limits().is_some() {
        cur.set_hugepage_limits(new.hugepage_limits().clone());
    }
}

fn bad(id: &str, status: Status, what: &str) -> Error {
    Error::BadState {
        id: id.into(),
        status: status.to_string(),
        what: what.into(),
    }
}

pub(crate) fn oci_state(st: &Persisted, status: Status) -> OciState {
    OciState {
        oci_version: st.spec.version().clone(),
        id: st.id.clone(),
        pid: if status == Status::Stopped { 0 } else { st.pid },
        status,
        bundle: st.bundle.clone(),
        rootfs: st.rootfs.clone(),
        created: st.created.clone(),
        owner: String::new(),
        annotations: st.annotations.clone(),
    }
}

fn cgroups_path(bundle: &Bundle, id: &str) -> PathBuf {
    match bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
    {
        // systemd-style "slice:prefix:name" is mapped onto cgroupfs
        Some(p) if p.to_string_lossy().contains(':') => {
            let s = p.to_string_lossy().into_owned();
            let parts: Vec<&str> = s.split(':').collect();
            PathBuf::from(format!(
                "{}/{}-{}.scope",
                parts[0],
                parts.get(1).unwrap_or(&""),
                parts.get(2).unwrap_or(&id)
            ))
        }
        Some(p) => p,
        None => PathBuf::from(format!("berth/{id}")),
    }
}

fn write_id_maps(pid: i32, bundle: &Bundle) -> Result<()> {
    let linux = bundle.spec.linux().as_ref();
    let fmt = |m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.into_iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    let uid = fmt(linux.and_then(|l| l.uid_mappings().as_ref()));
    let gid = fmt(linux.and_then(|l| l.gid_mappings().as_ref()));
    std::fs::write(format!("/proc/{pid}/uid_map"), &uid)
        .map_err(|e| Error::Config(format!("linux.uidMappings: write {uid:?}: {e}")))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), &gid)
        .map_err(|e| Error::Config(format!("linux.gidMappings: write {gid:?}: {e}")))?;
    Ok(())
}

/// Joining a pid namespace by path and creating a time namespace both act on the
/// *children* of the caller: switch before fork, switch back right after.
struct NsRestore {
    pid: Option<std::fs::File>,
    time: Option<std::fs::File>,
}

impl NsRestore {
    fn prepare(pid_path: Option<&Path>, new_time: bool, bundle: &Bundle) -> Result<Self> {
        let mut r = NsRestore {
            pid: None,
            time: None,
        };
        if let Some(p) = pid_path {
            let orig = std::fs::File::open("/proc/self/ns/pid_for_children")
                .map_err(|e| Error::io("open", "/proc/self/ns/pid_for_children", e))?;
            let target =
                std::fs::File::open(p).map_err(|e| Error::io("open pid namespace", p, e))?;
            nix::sched::setns(target.as_fd(), CloneFlags::CLONE_NEWPID).map_err(|e| {
                Error::sys(
                    format!("linux.namespaces: join pid namespace {}", p.display()),
                    e,
                )
            })?;
            r.pid = Some(orig);
        }
        if new_time {
            let orig = std::fs::File::open("/proc/self/ns/time_for_children")
                .map_err(|e| Error::io("open", "/proc/self/ns/time_for_children", e))?;
            nix::sched::unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
                .map_err(|e| Error::sys("unshare time namespace", e))?;
            r.time = Some(orig);
            let mut offs = String::new();
            for (clock, o) in bundle
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.time_offsets().clone())
                .unwrap_or_default()
            {
                offs.push_str(&format!(
                    "{clock} {} {}\n",
                    o.secs().unwrap_or(0),
                    o.nanosecs().unwrap_or(0)
                ));
            }
            if !offs.is_empty() {
                std::fs::write("/proc/self/timens_offsets", &offs)
                    .map_err(|e| Error::Config(format!("linux.timeOffsets: {e}")))?;
            }
        }
        Ok(r)
    }

    fn restore(self) -> Result<()> {
        if let Some(f) = self.pid {
            nix::sched::setns(f.as_fd(), CloneFlags::CLONE_NEWPID)
                .map_err(|e| Error::sys("restore pid namespace", e))?;
        }
        if let Some(f) = self.time {
            nix::sched::setns(f.as_fd(), CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
                .map_err(|e| Error::sys("restore time namespace", e))?;
        }
        Ok(())
    }
}
