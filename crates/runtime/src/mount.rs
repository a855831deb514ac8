//! Mount option parsing and safe resolution of paths inside the rootfs.
//!
//! Targets are opened with openat2(RESOLVE_IN_ROOT) from a descriptor of the rootfs, so
//! a symlink in the image (absolute or relative, chained) can never lead a mount, a
//! device node or a directory we create outside the rootfs. The mount itself is then
//! made on `/proc/self/fd/N`, the very object we resolved.

use crate::error::{Error, Result};
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::MsFlags;
use nix::sys::stat::Mode;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Parsed `options` of one OCI mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// flags for the initial mount
    pub flags: MsFlags,
    /// flags that need a bind remount to take effect (ro, nosuid, ...)
    pub remount_flags: MsFlags,
    /// propagation changes applied after mounting (MS_PRIVATE, MS_SLAVE, ... with MS_REC)
    pub propagation: Vec<MsFlags>,
    /// filesystem-specific data, comma-joined
    pub data: String,
    /// bind or rbind
    pub bind: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            remount_flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            bind: false,
        }
    }
}

/// The propagation flags of a propagation word (private, rslave, ...).
pub fn propagation_flag(word: &str) -> Option<MsFlags> {
    Some(match word {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Parse mount options the way runc does: known flags become MsFlags, the rest data.
pub fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
            "defaults" | "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                (MsFlags::MS_BIND, MsFlags::empty())
            }
            "rbind" => {
                o.bind = true;
                (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
            }
            "tmpcopyup" | "idmap" | "ridmap" => (MsFlags::empty(), MsFlags::empty()),
            other => {
                if let Some(p) = propagation_flag(other) {
                    o.propagation.push(p);
                } else {
                    data.push(other.to_string());
                }
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
    }
    o.data = data.join(",");
    let needs_remount = MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC
        | MsFlags::MS_NOATIME
        | MsFlags::MS_NODIRATIME
        | MsFlags::MS_RELATIME
        | MsFlags::MS_STRICTATIME;
    if o.bind {
        o.remount_flags = o.flags & needs_remount;
    }
    o
}

/// The path of `p` relative to the container root ("/a/../b" → "b"), lexically cleaned
/// so it cannot start with "..".
pub fn rel_in_root(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Open `rel` (relative to `root`) as O_PATH, resolving symlinks inside `root`.
pub fn open_in_root(root: &OwnedFd, rel: &Path) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(root.as_fd(), rel, how(OFlag::O_PATH))
}

/// What a mount target must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// a directory
    Dir,
    /// a regular file (bind mounts of files, device nodes)
    File,
}

/// Resolve `rel` inside `rootfs` the way the container will see it: symlinks (absolute
/// ones from the container root, relative ones from their directory, chained) are
/// followed lexically and `..` stops at the root. The result has no symlinks in it (as
/// of now) and never leaves the root, even for dangling links.
pub fn secure_join(rootfs: &Path, rel: &Path) -> Result<PathBuf> {
    let mut todo: Vec<std::ffi::OsString> = rel_in_root(rel)
        .iter()
        .rev()
        .map(|c| c.to_os_string())
        .collect();
    let mut done = PathBuf::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        if c == "." || c.is_empty() {
            continue;
        }
        let cand = done.join(&c);
        match std::fs::read_link(rootfs.join(&cand)) {
            Ok(target) => {
                links += 1;
                if links > 255 {
                    return Err(Error::Config(format!(
                        "mounts: too many symlinks resolving {}",
                        rel.display()
                    )));
                }
                if target.is_absolute() {
                    done = PathBuf::new();
                }
                for t in target.iter().rev() {
                    if t != "/" {
                        todo.push(t.to_os_string());
                    }
                }
            }
            Err(_) => done = cand,
        }
    }
    Ok(done)
}

/// Create `rel` and its missing parents inside `root` (never outside it) and return an
/// O_PATH descriptor of it.
pub fn create_in_root(root: &OwnedFd, rel: &Path, kind: Kind) -> Result<OwnedFd> {
    if let Ok(fd) = open_in_root(root, rel) {
        return Ok(fd);
    }
    // Dangling symlinks on the way: create what they point to, inside the root.
    let resolved = secure_join(&proc_fd_path(root), rel)?;
    let rel = resolved.as_path();
    let comps: Vec<_> = rel.components().collect();
    let mut prefix = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        let parent = prefix.clone();
        prefix.push(c);
        if open_in_root(root, &prefix).is_ok() {
            continue;
        }
        let pfd = openat2(
            root.as_fd(),
            if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                &parent
            },
            how(OFlag::O_PATH | OFlag::O_DIRECTORY),
        )
        .map_err(|e| Error::sys(format!("open {} in rootfs", parent.display()), e))?;
        let name = c.as_os_str();
        let last = i + 1 == comps.len();
        if last && kind == Kind::File {
            let r = nix::fcntl::openat(
                pfd.as_fd(),
                name,
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            );
            match r {
                Ok(_) | Err(nix::Error::EEXIST) => {}
                Err(e) => {
                    return Err(Error::sys(
                        format!("create {} in rootfs", prefix.display()),
                        e,
                    ))
                }
            }
        } else {
            match nix::sys::stat::mkdirat(pfd.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(nix::Error::EEXIST) => {}
                Err(e) => {
                    return Err(Error::sys(
                        format!("mkdir {} in rootfs", prefix.display()),
                        e,
                    ))
                }
            }
        }
    }
    open_in_root(root, rel).map_err(|e| Error::sys(format!("open {} in rootfs", rel.display()), e))
}

/// `/proc/self/fd/N` for a descriptor, to hand to mount(2).
pub fn proc_fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_flags_and_data() {
        let o = parse_options(&s(&["nosuid", "strictatime", "mode=755", "size=65536k"]));
        assert!(o
            .flags
            .contains(MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME));
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(!o.bind);
    }

    #[test]
    fn bind_ro_needs_remount() {
        let o = parse_options(&s(&["rbind", "ro", "rprivate"]));
        assert!(o.bind);
        assert!(o.flags.contains(MsFlags::MS_BIND | MsFlags::MS_REC));
        assert_eq!(o.remount_flags, MsFlags::MS_RDONLY);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
    }

    #[test]
    fn rw_clears_ro() {
        let o = parse_options(&s(&["ro", "rw"]));
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn rel_cannot_escape() {
        assert_eq!(
            rel_in_root(Path::new("/../../etc/passwd")),
            PathBuf::from("etc/passwd")
        );
        assert_eq!(rel_in_root(Path::new("/a/./b/../c")), PathBuf::from("a/c"));
    }

    #[test]
    fn create_in_root_stays_inside_through_symlinks() {
        let root = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), root.path().join("evil")).expect("symlink");
        std::os::unix::fs::symlink("../../../../..", root.path().join("up")).expect("symlink");
        let rfd = nix::fcntl::open(
            root.path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .expect("open root");
        create_in_root(&rfd, Path::new("evil/made"), Kind::Dir).expect("create");
        create_in_root(&rfd, Path::new("up/tmp/file"), Kind::File).expect("create");
        assert!(
            std::fs::read_dir(outside.path())
                .expect("read")
                .next()
                .is_none(),
            "wrote outside"
        );
        // the absolute symlink resolved relative to the root
        let inner = root
            .path()
            .join(outside.path().strip_prefix("/").expect("abs"))
            .join("made");
        assert!(inner.is_dir());
        assert!(root.path().join("tmp/file").is_file());
    }

    #[test]
    fn secure_join_clamps_chained_and_dangling_links() {
        let root = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/etc/../../x", root.path().join("a")).expect("symlink");
        std::os::unix::fs::symlink("a/y", root.path().join("b")).expect("symlink");
        assert_eq!(
            secure_join(root.path(), Path::new("/b/z")).expect("join"),
            PathBuf::from("x/y/z")
        );
        assert_eq!(
            secure_join(root.path(), Path::new("/../../b")).expect("join"),
            PathBuf::from("x/y")
        );
    }
}
