//! `cp` between a container and the host, safe against symlink tricks
//! (CVE-2018-15664 class): every path inside the container is resolved by the
//! kernel from *inside* the container's root. A forked helper joins the running
//! container's mount namespace (or, for a stopped one, chroots into its mounted
//! rootfs), so a symlink there, even one swapped in during the copy, can only lead
//! to somewhere else in the container. The host side is handled by the host's tar,
//! started before the helper leaves the host's filesystem view; the two talk over a
//! pipe. GNU tar defers symlinks whose targets leave the extraction directory, so a
//! hostile archive from the container cannot write through them on the host.

use crate::error::{Error, Result};
use crate::list::State;
use crate::{rootfs, Engine};
use nix::sched::{setns, CloneFlags};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the container's filesystem is, for the helper to enter.
enum Root {
    /// a running container's mount namespace
    Namespace(std::fs::File),
    /// a stopped container's rootfs, mounted on the host
    Dir(PathBuf),
}

/// A path inside the container, checked: absolute after joining with `/`, no `..`.
fn container_path(p: &str) -> Result<PathBuf> {
    let path = Path::new("/").join(p);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(Error::Invalid(format!(
            "{p:?}: paths with .. are not accepted inside the container"
        )));
    }
    Ok(path)
}

/// The name an entry gets at the destination: docker's rules, where a destination
/// that is an existing directory receives the source under its own name.
fn dest_name(src: &Path, dest_is_dir: bool, dest: &Path) -> Result<(PathBuf, String)> {
    let src_name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into());
    if dest_is_dir {
        return Ok((dest.to_path_buf(), src_name));
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Invalid(format!("{}: not a file name", dest.display())))?;
    Ok((parent, name))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::sys("create pipe", e))
}

impl Engine {
    /// Copies `src` from container `what` to `dest` on the host.
    pub fn copy_from(&self, what: &str, src: &str, dest: &Path) -> Result<()> {
        let src = container_path(src)?;
        let dest_is_dir = dest.is_dir();
        let (extract_dir, name) = dest_name(&src, dest_is_dir, dest)?;
        if !extract_dir.is_dir() {
            return Err(Error::Invalid(format!(
                "destination directory {} does not exist",
                extract_dir.display()
            )));
        }
        let (r, w) = pipe()?;
        let mut host = Command::new("tar")
            .args(["--numeric-owner", "-x", "-f", "-", "-C"])
            .arg(&extract_dir)
            .stdin(Stdio::from(r))
            .spawn()
            .map_err(|e| Error::io("run tar", &extract_dir, e))?;
        let r = self.in_container(what, move || {
            archive_to(std::fs::File::from(w), &src, &name)
        });
        let st = host
            .wait()
            .map_err(|e| Error::io("wait for tar", &extract_dir, e))?;
        r?;
        if !st.success() {
            return Err(Error::Invalid(format!(
                "extracting into {} failed ({st})",
                extract_dir.display()
            )));
        }
        Ok(())
    }

    /// Copies `src` from the host into container `what` at `dest`.
    pub fn copy_to(&self, what: &str, src: &Path, dest: &str) -> Result<()> {
        let dest = container_path(dest)?;
        std::fs::symlink_metadata(src).map_err(|e| Error::io("read", src, e))?;
        let parent = src
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = src
            .file_name()
            .ok_or_else(|| Error::Invalid(format!("{}: not a file name", src.display())))?;
        let (r, w) = pipe()?;
        let mut host = Command::new("tar")
            .args(["--numeric-owner", "-c", "-f", "-", "-C"])
            .arg(parent)
            .arg(base)
            .stdout(Stdio::from(w))
            .spawn()
            .map_err(|e| Error::io("run tar", src, e))?;
        let base = PathBuf::from(base);
        let res = self.in_container(what, move || {
            let dest_is_dir = dest.is_dir();
            let (into, name) = dest_name(&base, dest_is_dir, &dest)?;
            if !into.is_dir() {
                return Err(Error::Invalid(format!(
                    "destination directory {} does not exist in the container",
                    into.display()
                )));
            }
            unpack_renamed(std::fs::File::from(r), &base, &into, &name, true)
        });
        let st = host.wait().map_err(|e| Error::io("wait for tar", src, e))?;
        res?;
        if !st.success() {
            return Err(Error::Invalid(format!(
                "archiving {} failed ({st})",
                src.display()
            )));
        }
        Ok(())
    }

    /// Runs `f` in a forked helper whose filesystem view is the container's.
    fn in_container(&self, what: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        let s = self.inspect(what)?;
        let dir = self.dir(&s.record.id);
        let mut mounted_here = false;
        let root = match (s.state, s.record.pid) {
            (State::Running, Some(pid)) => {
                let p = format!("/proc/{pid}/ns/mnt");
                Root::Namespace(std::fs::File::open(&p).map_err(|e| Error::io("open", &p, e))?)
            }
            _ => {
                if !rootfs::is_mounted(&dir.rootfs()) {
                    let mounts = self.images()?.container_mounts(&s.record.id)?;
                    rootfs::mount_rootfs(&mounts, &dir.rootfs())?;
                    mounted_here = true;
                }
                Root::Dir(dir.rootfs())
            }
        };
        let forked = berth_sys::proc::fork_with_flags(0);
        if let Ok(berth_sys::proc::Forked::Child) = forked {
            let r = enter(&root).and_then(|_| f());
            if let Err(e) = r {
                eprintln!("berth: {e}");
                berth_sys::proc::exit_now(1);
            }
            berth_sys::proc::exit_now(0);
        }
        drop(f);
        let code = match forked {
            Ok(berth_sys::proc::Forked::Parent(pid)) => wait(pid),
            Ok(berth_sys::proc::Forked::Child) => unreachable!("the child never returns"),
            Err(e) => {
                if mounted_here {
                    let _ = rootfs::unmount_rootfs(&dir.rootfs());
                }
                return Err(Error::Invalid(format!("fork the copy helper: {e}")));
            }
        };
        if mounted_here {
            rootfs::unmount_rootfs(&dir.rootfs())?;
        }
        if code != 0 {
            return Err(Error::Reported(format!(
                "copying in container {} failed",
                &s.record.id[..12]
            )));
        }
        Ok(())
    }
}

/// A path's metadata as docker's archive API gives it (`X-Docker-Container-Path-Stat`,
/// base64 JSON); `mode` has Go's `os.FileMode` bits (directory 1<<31, symlink 1<<27).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PathStat {
    /// base name
    pub name: String,
    /// bytes
    pub size: i64,
    /// permission bits plus Go's type bits
    pub mode: u32,
    /// RFC 3339 modification time
    pub mtime: String,
    /// a symlink's target
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// Go's `os.FileMode` for `meta`.
fn go_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let perm = meta.permissions().mode() & 0o7777;
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        1 << 31
    } else if ft.is_symlink() {
        1 << 27
    } else {
        0
    };
    kind | (perm & 0o777)
}

impl Engine {
    /// The command of an archive helper (`container-archive <op> <id> <path>`): the
    /// shim command with `container-archive` in place of `container-shim`. The archive
    /// operations fork, so the daemon runs them in such a helper.
    pub fn archive_command(&self, op: &str, id: &str, path: &str) -> Result<Command> {
        let lead = self
            .shim
            .split_last()
            .map(|(_, l)| l)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| Error::Shim("no helper program configured".into()))?;
        let mut c = Command::new(&lead[0]);
        c.args(&lead[1..])
            .arg("container-archive")
            .arg(op)
            .arg(id)
            .arg(path)
            .env("BERTH_RUNTIME_ROOT", self.runtime.root())
            .current_dir("/");
        Ok(c)
    }

    /// Metadata of `path` in container `what`, seen from inside it (symlinks are
    /// not followed). Forks: call from a single-threaded process.
    pub fn archive_stat(&self, what: &str, path: &str) -> Result<PathStat> {
        let p = container_path(path)?;
        let (r, w) = pipe()?;
        let res = self.in_container(what, move || {
            let meta = std::fs::symlink_metadata(&p)
                .map_err(|e| Error::Missing(format!("{}: {e}", p.display())))?;
            let st = PathStat {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "/".into()),
                size: meta.len() as i64,
                mode: go_mode(&meta),
                mtime: meta
                    .modified()
                    .ok()
                    .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
                    .unwrap_or_default(),
                link_target: std::fs::read_link(&p)
                    .map(|l| l.display().to_string())
                    .unwrap_or_default(),
            };
            let mut f = std::fs::File::from(w);
            serde_json::to_writer(&mut f, &st).map_err(|e| Error::Invalid(e.to_string()))
        });
        let mut out = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut out)
            .map_err(|e| Error::io("read", "stat helper", e))?;
        res.map_err(|_| {
            Error::Missing(format!(
                "could not find the file {path} in container {what}"
            ))
        })?;
        serde_json::from_str(&out).map_err(|e| Error::Invalid(format!("stat helper: {e}")))
    }

    /// Writes `path` of container `what` as a tar archive (its top entry named after
    /// the path's base name) to `out`. Forks: call from a single-threaded process.
    pub fn archive_get(&self, what: &str, path: &str, out: OwnedFd) -> Result<()> {
        let src = container_path(path)?;
        self.in_container(what, move || {
            let name = src
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| ".".into());
            archive_to(std::fs::File::from(out), &src, &name)
        })
    }

    /// Extracts the tar archive read from `input` into directory `dir` of container
    /// `what`, resolving every path inside the container. The files belong to the
    /// container's root, or with `keep_owner` (docker's `cp -a`, `copyUIDGID`) to
    /// the uid/gid the archive gives them. Forks: call from a single-threaded process.
    pub fn archive_put(
        &self,
        what: &str,
        dir: &str,
        input: OwnedFd,
        keep_owner: bool,
    ) -> Result<()> {
        let into = container_path(dir)?;
        self.in_container(what, move || {
            if !into.is_dir() {
                return Err(Error::Invalid(format!(
                    "{}: not a directory in the container",
                    into.display()
                )));
            }
            unpack_renamed(
                std::fs::File::from(input),
                Path::new(""),
                &into,
                "",
                keep_owner,
            )
        })
    }
}

/// Makes the container's root our `/`.
fn enter(root: &Root) -> Result<()> {
    match root {
        Root::Namespace(f) => setns(f, CloneFlags::CLONE_NEWNS)
            .map_err(|e| Error::sys("join the container's mounts", e))?,
        Root::Dir(d) => nix::unistd::chroot(d.as_path())
            .map_err(|e| Error::sys(format!("chroot {}", d.display()), e))?,
    }
    nix::unistd::chdir("/").map_err(|e| Error::sys("chdir /", e))
}

fn wait(pid: i32) -> i32 {
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

/// Unpacks the archive read from `r` into `into`, renaming its top entry `base` to
/// `name`. Entries with absolute paths or `..` are refused. Without `keep_owner` the
/// files belong to the extracting process (root).
fn unpack_renamed(
    r: std::fs::File,
    base: &Path,
    into: &Path,
    name: &str,
    keep_owner: bool,
) -> Result<()> {
    let mut a = tar::Archive::new(r);
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(keep_owner);
    a.set_overwrite(true);
    let entries = a
        .entries()
        .map_err(|e| Error::io("read archive", into, e))?;
    for e in entries {
        let mut e = e.map_err(|e| Error::io("read archive", into, e))?;
        let path = e
            .path()
            .map_err(|e| Error::io("read archive", into, e))?
            .into_owned();
        let rel = path.strip_prefix(base).unwrap_or(&path).to_path_buf();
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(Error::Invalid(format!(
                "archive entry {}: refused",
                path.display()
            )));
        }
        let target = if rel.as_os_str().is_empty() {
            into.join(name)
        } else {
            into.join(name).join(&rel)
        };
        e.unpack(&target)
            .map_err(|err| Error::io("unpack (in the container)", &target, err))?;
    }
    Ok(())
}

/// Writes `src` (a file, or a directory with its contents) as a tar named `name` to
/// `out`, keeping symlinks as links; run inside the container's filesystem view.
fn archive_to(out: std::fs::File, src: &Path, name: &str) -> Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let meta =
        std::fs::symlink_metadata(src).map_err(|e| Error::io("read (in the container)", src, e))?;
    let res = if meta.is_dir() {
        b.append_dir_all(name, src)
    } else {
        b.append_path_with_name(src, name)
    };
    res.and_then(|_| b.finish())
        .map_err(|e| Error::io("archive (in the container)", src, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_are_absolute_without_dotdot() {
        assert_eq!(
            container_path("etc/passwd").expect("rel"),
            Path::new("/etc/passwd")
        );
        assert!(container_path("/a/../../etc").is_err());
    }

    #[test]
    fn destination_names_follow_docker() {
        let (d, n) = dest_name(Path::new("/etc/passwd"), true, Path::new("/tmp/out")).expect("dir");
        assert_eq!((d, n.as_str()), (PathBuf::from("/tmp/out"), "passwd"));
        let (d, n) =
            dest_name(Path::new("/etc/passwd"), false, Path::new("/tmp/pw")).expect("file");
        assert_eq!((d, n.as_str()), (PathBuf::from("/tmp"), "pw"));
        let (d, n) = dest_name(Path::new("/etc"), false, Path::new("copy")).expect("relative");
        assert_eq!((d, n.as_str()), (PathBuf::from("."), "copy"));
    }
}
