//! Filesystem helpers of the executor: mounting a snapshot (with a guard that
//! unmounts it), joining paths inside a rootfs without leaving it through
//! symlinks, and resolving `user[:group]` against the rootfs' passwd/group.

use std::path::{Component, Path, PathBuf};

use berth_snapshot::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{io_err, ExecError, Result};

/// A snapshot mounted on a directory; unmounted (lazily if busy) on drop.
pub struct Mounted {
    target: PathBuf,
    mounted: bool,
}

impl Mounted {
    /// Mount `mounts` (a snapshot's root mount) on `target`, creating it.
    pub fn new(mounts: &[Mount], target: &Path) -> Result<Self> {
        std::fs::create_dir_all(target).map_err(io_err("create", target))?;
        let mut me = Self {
            target: target.to_path_buf(),
            mounted: false,
        };
        for m in mounts {
            let (flags, data) = m.flags_and_data();
            let fstype = (m.kind != "bind").then_some(m.kind.as_str());
            // Layers are read from the upper dir: keep every change in it
            // (no metadata-only copy-ups, no redirected renames) where the
            // kernel knows these options.
            let strict = format!("{data},redirect_dir=off,metacopy=off");
            let first = if m.kind == "overlay" {
                mount(
                    Some(m.source.as_str()),
                    target,
                    fstype,
                    flags,
                    Some(strict.as_str()),
                )
            } else {
                Err(nix::Error::EINVAL)
            };
            let data = (!data.is_empty()).then_some(data.as_str());
            first
                .or_else(|_| mount(Some(m.source.as_str()), target, fstype, flags, data))
                .map_err(|e| ExecError::Sys {
                    op: format!(
                        "mount the build snapshot ({}) on {}",
                        m.kind,
                        target.display()
                    ),
                    error: e,
                })?;
            me.mounted = true;
            if m.kind == "bind" && m.is_readonly() {
                let fl = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                mount(None::<&str>, target, None::<&str>, fl, None::<&str>).map_err(|e| {
                    ExecError::Sys {
                        op: format!("remount {} read-only", target.display()),
                        error: e,
                    }
                })?;
            }
        }
        Ok(me)
    }

    /// Where the snapshot is visible.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Unmount now, reporting failure.
    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        umount2(&self.target, MntFlags::empty()).map_err(|e| ExecError::Sys {
            op: format!("unmount {}", self.target.display()),
            error: e,
        })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted && umount2(&self.target, MntFlags::empty()).is_err() {
            let _ = umount2(&self.target, MntFlags::MNT_DETACH);
        }
    }
}

/// `path` (absolute inside the rootfs) resolved under `root`: symlinks in
/// every component but the last are followed as if `root` were `/`, so the
/// result never leaves `root`. With `follow_last`, the last one is too.
pub fn secure_join(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf> {
    let mut todo: Vec<String> = components(path);
    todo.reverse();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let candidate = root.join(cur.join("/")).join(&c);
        let last = todo.is_empty();
        let link = std::fs::symlink_metadata(&candidate)
            .ok()
            .filter(|m| m.file_type().is_symlink() && (!last || follow_last));
        if link.is_none() {
            cur.push(c);
            continue;
        }
        hops += 1;
        if hops > 40 {
            return Err(ExecError::Invalid(format!(
                "too many levels of symbolic links resolving {path} in the image"
            )));
        }
        let target = std::fs::read_link(&candidate).map_err(io_err("read link", &candidate))?;
        let t = target.to_string_lossy().into_owned();
        if t.starts_with('/') {
            cur.clear();
        }
        let mut more = components(&t);
        more.reverse();
        todo.extend(more);
    }
    Ok(root.join(cur.join("/")))
}

fn components(p: &str) -> Vec<String> {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Create `path` (absolute in the rootfs) and missing parents, mode 0755,
/// owned by `owner` for the directories created. Returns the host path.
pub fn mkdir_all(root: &Path, path: &str, owner: Option<(u32, u32)>) -> Result<PathBuf> {
    let mut sofar = String::new();
    for c in components(path) {
        sofar = format!("{sofar}/{c}");
        let p = secure_join(root, &sofar, true)?;
        if p.is_dir() {
            continue;
        }
        std::fs::create_dir(&p).map_err(io_err("create directory", &p))?;
        if let Some((u, g)) = owner {
            std::os::unix::fs::lchown(&p, Some(u), Some(g)).map_err(io_err("chown", &p))?;
        }
    }
    secure_join(root, path, true)
}

/// Resolve `user[:group]` (names or numbers) with the rootfs' /etc/passwd and
/// /etc/group, as docker does: a numeric uid need not exist; the group
/// defaults to the user's primary group (or 0).
pub fn resolve_user(root: &Path, spec: &str) -> Result<(u32, u32)> {
    if spec.is_empty() {
        return Ok((0, 0));
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_db(root, "/etc/passwd");
    let entry = passwd.iter().find(|f| {
        f.first().map(String::as_str) == Some(user) || f.get(2).map(String::as_str) == Some(user)
    });
    let uid = match (user.parse::<u32>(), entry) {
        (Ok(n), _) => n,
        (_, Some(e)) => field_num(e, 2),
        _ => return Err(unknown("user", user)),
    };
    let primary = entry.map_or(0, |e| field_num(e, 3));
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => read_db(root, "/etc/group")
                .iter()
                .find(|f| f.first().map(String::as_str) == Some(g))
                .map(|f| field_num(f, 2))
                .ok_or_else(|| unknown("group", g))?,
        },
    };
    Ok((uid, gid))
}

fn unknown(what: &str, name: &str) -> ExecError {
    ExecError::Invalid(format!(
        "unable to find {what} {name}: no matching entries in the image's /etc/{}",
        if what == "user" { "passwd" } else { "group" }
    ))
}

fn field_num(f: &[String], i: usize) -> u32 {
    f.get(i).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn read_db(root: &Path, file: &str) -> Vec<Vec<String>> {
    let Ok(p) = secure_join(root, file, true) else {
        return Vec::new();
    };
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

/// A random id of 64 hex digits (from the kernel's random source).
pub fn random_id() -> String {
    let mut b = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_join_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("app")).unwrap();
        std::os::unix::fs::symlink("../../..", d.path().join("up")).unwrap();
        let p = secure_join(d.path(), "/app/x", false).unwrap();
        assert_eq!(p, d.path().join("etc/x"));
        let p = secure_join(d.path(), "/up/etc/passwd", false).unwrap();
        assert_eq!(p, d.path().join("etc/passwd"));
        assert_eq!(
            secure_join(d.path(), "/app", false).unwrap(),
            d.path().join("app")
        );
    }

    #[test]
    fn users_resolve_from_passwd() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/h:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user(d.path(), "app").unwrap(), (1000, 1001));
        assert_eq!(resolve_user(d.path(), "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_user(d.path(), "42:7").unwrap(), (42, 7));
        assert!(resolve_user(d.path(), "nobody").is_err());
    }
}
