//! Building the container's filesystem view inside its new mount namespace:
//! propagation, the rootfs bind, the spec's mounts, /dev, pivot_root, then masked and
//! read-only paths.

use crate::error::{Error, Result};
use crate::mount::{create_in_root, open_in_root, parse_options, proc_fd_path, rel_in_root, Kind};
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What the rootfs setup needs to know besides the spec.
pub(crate) struct RootfsCtx<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub userns: bool,
    pub cgroup_mode: Option<berth_cgroups::CgroupMode>,
    pub cgroup_paths: &'a [(String, PathBuf)],
}

fn m(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    mount(src, target, fstype, flags, data)
}

/// Propagation of "/" and the rootfs bind mount (pivot_root needs a mount point).
pub(crate) fn prepare_root(ctx: &RootfsCtx<'_>) -> Result<()> {
    let prop = ctx
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone())
        .and_then(|p| crate::mount::propagation_flag(&p))
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    m(None, Path::new("/"), None, prop, None)
        .map_err(|e| Error::sys("set propagation of / in the container mount namespace", e))?;
    // pivot_root refuses a new root whose parent mount is shared.
    if prop.contains(MsFlags::MS_SHARED) {
        if let Some(parent) = mount_point_of(ctx.rootfs) {
            m(None, &parent, None, MsFlags::MS_PRIVATE, None)
                .map_err(|e| Error::sys(format!("make {} private", parent.display()), e))?;
        }
    }
    m(
        Some(ctx.rootfs),
        ctx.rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| Error::sys(format!("bind mount rootfs {}", ctx.rootfs.display()), e))
}

/// The mount point that contains `p` (longest prefix in /proc/self/mountinfo).
fn mount_point_of(p: &Path) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .filter(|mp| p.starts_with(mp))
        .max_by_key(|mp| mp.as_os_str().len())
}

fn open_root(rootfs: &Path) -> Result<OwnedFd> {
    open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open rootfs {}", rootfs.display()), e))
}

/// Mount everything the spec lists, then devices and /dev symlinks.
pub(crate) fn mount_all(ctx: &RootfsCtx<'_>) -> Result<()> {
    let root = open_root(ctx.rootfs)?;
    let mounts = ctx.spec.mounts().as_deref().unwrap_or(&[]);
    for mnt in mounts {
        mount_one(ctx, &root, mnt).map_err(|e| {
            Error::Init(format!(
                "mount {} ({}) on {}: {e}",
                mnt.source()
                    .as_deref()
                    .map(|s| s.display().to_string())
                    .unwrap_or_default(),
                mnt.typ().as_deref().unwrap_or("bind"),
                mnt.destination().display()
            ))
        })?;
    }
    let dev_is_mount = mounts
        .iter()
        .any(|m| rel_in_root(m.destination()) == Path::new("dev"));
    if dev_is_mount {
        create_devices(ctx, &root)?;
        create_dev_symlinks(&root, mounts)?;
    }
    Ok(())
}

fn mount_one(ctx: &RootfsCtx<'_>, root: &OwnedFd, mnt: &Mount) -> Result<()> {
    let opts = parse_options(mnt.options().as_deref().unwrap_or(&[]));
    let typ = mnt.typ().as_deref().unwrap_or("");
    let rel = rel_in_root(mnt.destination());
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(ctx, root, &rel, &opts);
    }
    let bind = opts.bind || typ == "bind";
    if bind {
        let src = mnt.source().as_deref().ok_or_else(|| {
            Error::Config(format!(
                "mounts: bind mount on {} has no source",
                mnt.destination().display()
            ))
        })?;
        let src = if src.is_absolute() {
            src.to_path_buf()
        } else {
            ctx.rootfs.join(src)
        };
        let meta = std::fs::metadata(&src).map_err(|e| Error::io("stat bind source", &src, e))?;
        let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
        let target = create_in_root(root, &rel, kind)?;
        let tp = proc_fd_path(&target);
        let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        m(Some(&src), &tp, None, flags, None).map_err(|e| Error::sys("bind", e))?;
        // Re-open: the fd still names the directory under the new mount.
        let target = open_in_root(root, &rel).map_err(|e| Error::sys("reopen mount target", e))?;
        let tp = proc_fd_path(&target);
        if !opts.remount_flags.is_empty() {
            remount_bind(
                &tp,
                opts.remount_flags,
                opts.flags.contains(MsFlags::MS_REC),
            )?;
        }
        for p in &opts.propagation {
            m(None, &tp, None, *p, None).map_err(|e| Error::sys("set propagation", e))?;
        }
        return Ok(());
    }
    let target = create_in_root(root, &rel, Kind::Dir)?;
    let tp = proc_fd_path(&target);
    let src = mnt.source().as_deref().unwrap_or(Path::new(typ));
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    let r = m(Some(src), &tp, Some(typ), opts.flags, data);
    match r {
        Ok(()) => {}
        // sysfs cannot be mounted in a user namespace that does not own the net ns:
        // fall back to a read-only recursive bind of the host's /sys, as runc does.
        Err(nix::Error::EPERM) if typ == "sysfs" => {
            m(
                Some(Path::new("/sys")),
                &tp,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(|e| Error::sys("bind /sys", e))?;
            let t2 = open_in_root(root, &rel).map_err(|e| Error::sys("reopen", e))?;
            remount_bind(&proc_fd_path(&t2), MsFlags::MS_RDONLY | opts.flags, true)?;
        }
        Err(e) => return Err(Error::sys(format!("mount {typ}"), e)),
    }
    if !opts.propagation.is_empty() {
        let t2 = open_in_root(root, &rel).map_err(|e| Error::sys("reopen", e))?;
        for p in &opts.propagation {
            m(None, &proc_fd_path(&t2), None, *p, None)
                .map_err(|e| Error::sys("set propagation", e))?;
        }
    }
    Ok(())
}

/// /sys/fs/cgroup inside the container: on v2 a bind of the container's own cgroup; on
/// v1/hybrid a tmpfs with one bind per controller (and `unified` on hybrid), like runc.
fn mount_cgroup(
    ctx: &RootfsCtx<'_>,
    root: &OwnedFd,
    rel: &Path,
    opts: &crate::mount::MountOptions,
) -> Result<()> {
    let ro = opts.flags.contains(MsFlags::MS_RDONLY);
    let base = opts.flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    let target = create_in_root(root, rel, Kind::Dir)?;
    match ctx.cgroup_mode {
        Some(berth_cgroups::CgroupMode::V2) => {
            let src = ctx.cgroup_paths.first().map(|(_, p)| p.clone());
            let Some(src) = src else { return Ok(()) };
            let tp = proc_fd_path(&target);
            m(Some(&src), &tp, None, MsFlags::MS_BIND, None)
                .map_err(|e| Error::sys("bind cgroup", e))?;
            let t2 = open_in_root(root, rel).map_err(|e| Error::sys("reopen", e))?;
            remount_bind(
                &proc_fd_path(&t2),
                base | if ro {
                    MsFlags::MS_RDONLY
                } else {
                    MsFlags::empty()
                },
                false,
            )?;
        }
        _ => {
            m(
                Some(Path::new("tmpfs")),
                &proc_fd_path(&target),
                Some("tmpfs"),
                base,
                Some("mode=755"),
            )
            .map_err(|e| Error::sys("mount tmpfs for cgroups", e))?;
            for (name, host) in ctx.cgroup_paths {
                let sub = rel.join(name);
                let t = create_in_root(root, &sub, Kind::Dir)?;
                m(Some(host), &proc_fd_path(&t), None, MsFlags::MS_BIND, None)
                    .map_err(|e| Error::sys(format!("bind cgroup {name}"), e))?;
                let t2 = open_in_root(root, &sub).map_err(|e| Error::sys("reopen", e))?;
                let f = base
                    | if ro {
                        MsFlags::MS_RDONLY
                    } else {
                        MsFlags::empty()
                    };
                remount_bind(&proc_fd_path(&t2), f, false)?;
                // cpu,cpuacct → cpu and cpuacct symlinks
                if name.contains(',') {
                    let dir = open_in_root(root, rel).map_err(|e| Error::sys("reopen", e))?;
                    let dir = nix::fcntl::openat(
                        dir.as_fd(),
                        ".",
                        OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| Error::sys("open cgroup tmpfs", e))?;
                    for part in name.split(',') {
                        match nix::unistd::symlinkat(name.as_str(), dir.as_fd(), part) {
                            Ok(()) | Err(nix::Error::EEXIST) => {}
                            Err(e) => return Err(Error::sys("symlink cgroup controller", e)),
                        }
                    }
                }
            }
            if ro {
                let t2 = open_in_root(root, rel).map_err(|e| Error::sys("reopen", e))?;
                m(
                    None,
                    &proc_fd_path(&t2),
                    None,
                    MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
                    Some("mode=755"),
                )
                .map_err(|e| Error::sys("remount cgroup tmpfs read-only", e))?;
            }
        }
    }
    Ok(())
}

/// Bind-remount with `flags`, keeping flags the kernel has locked on the mount (a mount
/// inherited into a user namespace keeps nosuid/nodev/... and refuses to drop them).
pub(crate) fn remount_bind(target: &Path, flags: MsFlags, rec: bool) -> Result<()> {
    let mut f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags;
    if rec {
        f |= MsFlags::MS_REC;
    }
    match m(None, target, None, f, None) {
        Ok(()) => Ok(()),
        Err(nix::Error::EPERM) => {
            let st = nix::sys::statvfs::statvfs(target)
                .map_err(|e| Error::sys(format!("statvfs {}", target.display()), e))?;
            use nix::sys::statvfs::FsFlags as F;
            let fl = st.flags();
            for (s, mf) in [
                (F::ST_NOSUID, MsFlags::MS_NOSUID),
                (F::ST_NODEV, MsFlags::MS_NODEV),
                (F::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (F::ST_RDONLY, MsFlags::MS_RDONLY),
                (F::ST_NOATIME, MsFlags::MS_NOATIME),
                (F::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (F::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if fl.contains(s) {
                    f |= mf;
                }
            }
            m(None, target, None, f, None)
                .map_err(|e| Error::sys(format!("remount {}", target.display()), e))
        }
        Err(e) => Err(Error::sys(format!("remount {}", target.display()), e)),
    }
}

/// The devices every container gets (runc's list), then the spec's.
fn default_devices() -> Vec<(PathBuf, LinuxDeviceType, i64, i64)> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, ma, mi)| (PathBuf::from(p), LinuxDeviceType::C, ma, mi))
    .collect()
}

fn create_devices(ctx: &RootfsCtx<'_>, root: &OwnedFd) -> Result<()> {
    let spec_devs: &[LinuxDevice] = ctx
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_deref())
        .unwrap_or(&[]);
    let mut list: Vec<LinuxDevice> = default_devices()
        .into_iter()
        .filter(|(p, ..)| !spec_devs.iter().any(|d| d.path() == p))
        .map(|(p, t, ma, mi)| {
            let mut d = LinuxDevice::default();
            d.set_path(p);
            d.set_typ(t);
            d.set_major(ma);
            d.set_minor(mi);
            d
        })
        .collect();
    list.extend(spec_devs.iter().cloned());
    for d in list {
        let (path, typ, major, minor) = (d.path().clone(), d.typ(), d.major(), d.minor());
        let (mode, uid, gid) = (d.file_mode().unwrap_or(0o666), d.uid(), d.gid());
        let rel = rel_in_root(&path);
        if ctx.userns {
            // mknod is not allowed in a user namespace: bind the host's node instead.
            let t = create_in_root(root, &rel, Kind::File)?;
            m(Some(&path), &proc_fd_path(&t), None, MsFlags::MS_BIND, None)
                .map_err(|e| Error::sys(format!("bind device {}", path.display()), e))?;
            continue;
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel
            .file_name()
            .ok_or_else(|| Error::Config(format!("linux.devices: bad path {}", path.display())))?;
        let pfd = create_in_root(root, parent, Kind::Dir)?;
        let pdir = nix::fcntl::openat(
            pfd.as_fd(),
            ".",
            OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::sys("open device dir", e))?;
        let kind = match typ {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        let dev = nix::sys::stat::makedev(major as u64, minor as u64);
        match nix::sys::stat::mknodat(
            pdir.as_fd(),
            name,
            kind,
            Mode::from_bits_truncate(mode & 0o7777),
            dev,
        ) {
            Ok(()) => {}
            Err(nix::Error::EEXIST) => {
                let _ = nix::unistd::unlinkat(
                    pdir.as_fd(),
                    name,
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
                nix::sys::stat::mknodat(
                    pdir.as_fd(),
                    name,
                    kind,
                    Mode::from_bits_truncate(mode & 0o7777),
                    dev,
                )
                .map_err(|e| Error::sys(format!("mknod {}", path.display()), e))?;
            }
            Err(e) => return Err(Error::sys(format!("mknod {}", path.display()), e)),
        }
        // mknod is subject to umask: set the exact mode.
        let _ = nix::sys::stat::fchmodat(
            pdir.as_fd(),
            name,
            Mode::from_bits_truncate(mode & 0o7777),
            nix::sys::stat::FchmodatFlags::NoFollowSymlink,
        );
        if uid.is_some() || gid.is_some() {
            nix::unistd::fchownat(
                pdir.as_fd(),
                name,
                uid.map(nix::unistd::Uid::from_raw),
                gid.map(nix::unistd::Gid::from_raw),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| Error::sys(format!("chown {}", path.display()), e))?;
        }
    }
    Ok(())
}

fn create_dev_symlinks(root: &OwnedFd, mounts: &[Mount]) -> Result<()> {
    let dev = open_in_root(root, Path::new("dev")).map_err(|e| Error::sys("open /dev", e))?;
    let dev = nix::fcntl::openat(
        dev.as_fd(),
        ".",
        OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys("open /dev", e))?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    if mounts
        .iter()
        .any(|m| rel_in_root(m.destination()) == Path::new("dev/pts"))
    {
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        match nix::unistd::symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(nix::Error::EEXIST) => {}
            Err(e) => return Err(Error::sys(format!("symlink /dev/{name}"), e)),
        }
    }
    Ok(())
}

/// Switch the root: pivot_root(".", ".") and detach the old root (or chroot with
/// `no_pivot`, for ramdisk roots that cannot pivot).
pub(crate) fn pivot(rootfs: &Path, no_pivot: bool) -> Result<()> {
    let sys = |op: &str, e| Error::sys(op.to_string(), e);
    if no_pivot {
        nix::unistd::chdir(rootfs).map_err(|e| sys("chdir rootfs", e))?;
        m(Some(rootfs), Path::new("/"), None, MsFlags::MS_MOVE, None)
            .map_err(|e| sys("move rootfs to /", e))?;
        nix::unistd::chroot(".").map_err(|e| sys("chroot", e))?;
        return nix::unistd::chdir("/").map_err(|e| sys("chdir /", e));
    }
    let old = open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| sys("open old root", e))?;
    let new = open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| sys("open new root", e))?;
    nix::unistd::fchdir(new.as_fd()).map_err(|e| sys("fchdir new root", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| sys("pivot_root", e))?;
    nix::unistd::fchdir(old.as_fd()).map_err(|e| sys("fchdir old root", e))?;
    // Make the old root a slave so unmounting it never propagates to the host.
    m(
        None,
        Path::new("."),
        None,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| sys("make old root rslave", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| sys("detach old root", e))?;
    nix::unistd::chdir("/").map_err(|e| sys("chdir /", e))
}

/// After pivot: sysctls, masked and read-only paths, read-only root.
pub(crate) fn finalize(spec: &Spec) -> Result<()> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    if let Some(sysctl) = linux.sysctl() {
        for (k, v) in sysctl {
            let p = Path::new("/proc/sys").join(k.replace('.', "/"));
            std::fs::write(&p, v)
                .map_err(|e| Error::Init(format!("linux.sysctl: set {k}={v}: {e}")))?;
        }
    }
    for p in linux.masked_paths().as_deref().unwrap_or(&[]) {
        mask_path(Path::new(p))?;
    }
    for p in linux.readonly_paths().as_deref().unwrap_or(&[]) {
        let path = Path::new(p);
        match m(
            Some(path),
            path,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        ) {
            Ok(()) => remount_bind(path, MsFlags::MS_RDONLY, true)?,
            Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(Error::sys(format!("readonly path {p}"), e)),
        }
    }
    Ok(())
}

/// Remount "/" read-only (root.readonly).
pub(crate) fn readonly_root() -> Result<()> {
    remount_bind(Path::new("/"), MsFlags::MS_RDONLY, false)
}

fn mask_path(p: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(md) => md,
        Err(_) => return Ok(()),
    };
    let r = if meta.is_dir() {
        m(
            Some(Path::new("tmpfs")),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )
    } else {
        m(
            Some(Path::new("/dev/null")),
            p,
            None,
            MsFlags::MS_BIND,
            None,
        )
    };
    match r {
        Ok(()) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(Error::sys(format!("mask {}", p.display()), e)),
    }
}

/// Bind the terminal's peer onto /dev/console (after pivot).
pub(crate) fn bind_console(peer: &OwnedFd) -> Result<()> {
    let console = Path::new("/dev/console");
    if !console.exists() {
        if let Err(e) = std::fs::File::create(console) {
            return Err(Error::io("create", console, e));
        }
    }
    m(
        Some(&proc_fd_path(peer)),
        console,
        None,
        MsFlags::MS_BIND,
        None,
    )
    .map_err(|e| Error::sys("bind /dev/console", e))
}
