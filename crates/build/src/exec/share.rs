//! Sharing unchanged files between the results of one COPY instruction.
//!
//! Rebuilding a COPY of a directory where one file changed would create every
//! file again: on ext4 that inode allocation is most of the step's time. With
//! the overlayfs snapshotter, committed snapshots never change, so a file the
//! previous run of the same instruction made (same destination, same bytes,
//! owner, mode and modification time) can be hard-linked into the new
//! snapshot's upper directory instead of copied. The layer is the same either
//! way: the tar holds each file once, with the same header.
//!
//! Per instruction an index (`<data-root>/build-cache/files/<id>.json`)
//! records where the files of its last run live. Candidates are checked
//! (metadata and content) before they are linked. Links are made in the
//! upper directory after the overlay is unmounted (overlayfs does not allow
//! changing its layers while mounted); the COPY itself only decides which
//! files to link, and writes the others through the mount as usual.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{io_err, Result};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    /// Image path (relative, no leading `/`) -> host path in a committed snapshot.
    files: BTreeMap<String, PathBuf>,
}

/// A file to link after the overlay is unmounted.
#[derive(Debug, Clone)]
struct Link {
    /// The file of the previous run.
    from: PathBuf,
    /// The source it stands for (copied instead if linking fails).
    source: PathBuf,
    owner: (u32, u32),
    mode: u32,
}

/// The sharing state of one COPY step.
pub struct Share {
    index_path: PathBuf,
    previous: HashMap<String, PathBuf>,
    upper: PathBuf,
    rootfs: PathBuf,
    links: RefCell<BTreeMap<String, Link>>,
    used: RefCell<HashSet<PathBuf>>,
    placed: RefCell<BTreeMap<String, PathBuf>>,
}

impl Share {
    /// For a COPY identified by `identity` writing into `upper` (mounted on `rootfs`).
    pub fn open(data_root: &Path, identity: &str, upper: &Path, rootfs: &Path) -> Self {
        let name = hex::encode(sha2::Digest::finalize(sha2::Digest::chain_update(
            sha2::Sha256::default(),
            identity.as_bytes(),
        )));
        let index_path = data_root
            .join("build-cache/files")
            .join(format!("{name}.json"));
        let previous = std::fs::read(&index_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Index>(&b).ok())
            .map(|i| i.files.into_iter().collect())
            .unwrap_or_default();
        Self {
            index_path,
            previous,
            upper: upper.to_path_buf(),
            rootfs: rootfs.to_path_buf(),
            links: RefCell::default(),
            used: RefCell::default(),
            placed: RefCell::default(),
        }
    }

    fn rel(&self, host: &Path) -> Option<String> {
        let r = host.strip_prefix(&self.rootfs).ok()?;
        Some(r.to_string_lossy().into_owned()).filter(|s| !s.is_empty())
    }

    /// Something else is placed at `host`: a pending link there is dropped.
    pub fn forget(&self, host: &Path) {
        if let Some(rel) = self.rel(host) {
            self.links.borrow_mut().remove(&rel);
            self.placed.borrow_mut().remove(&rel);
        }
    }

    /// Whether the file for `host` (from `source`, with this owner and mode)
    /// will be linked from the previous run; if not, the caller copies it.
    pub fn try_link(&self, source: &Path, host: &Path, owner: (u32, u32), mode: u32) -> bool {
        let Some(rel) = self.rel(host) else {
            return false;
        };
        self.placed
            .borrow_mut()
            .insert(rel.clone(), self.upper.join(&rel));
        let found = self.previous.get(&rel).filter(|prev| {
            !self.used.borrow().contains(*prev)
                && host
                    .parent()
                    .and_then(|p| p.strip_prefix(&self.rootfs).ok())
                    .is_some_and(|p| self.upper.join(p).is_dir())
                && same_file(source, prev, owner, mode)
        });
        match found {
            Some(prev) => {
                self.used.borrow_mut().insert(prev.clone());
                self.links.borrow_mut().insert(
                    rel,
                    Link {
                        from: prev.clone(),
                        source: source.to_path_buf(),
                        owner,
                        mode,
                    },
                );
                true
            }
            None => {
                // A later write of the same path wins over an earlier link.
                self.links.borrow_mut().remove(&rel);
                false
            }
        }
    }

    /// Make the links in the upper directory (the overlay is unmounted);
    /// a file that cannot be linked is copied. Returns how many were linked.
    pub fn apply(&self) -> Result<usize> {
        let mut linked = 0;
        for (rel, l) in self.links.borrow().iter() {
            let dst = self.upper.join(rel);
            match std::fs::symlink_metadata(&dst) {
                // A directory made later in the same COPY replaced the file.
                Ok(m) if m.is_dir() => continue,
                // A whiteout (the path existed below) or a stale entry.
                Ok(_) => std::fs::remove_file(&dst).map_err(io_err("remove", &dst))?,
                Err(_) => {}
            }
            if std::fs::hard_link(&l.from, &dst).is_ok() {
                linked += 1;
                continue;
            }
            copy_file(&l.source, &dst, l.owner, l.mode)?;
        }
        Ok(linked)
    }

    /// Remember where this run's files are, for the next run (after the
    /// snapshot was committed as this step's result).
    pub fn save(&self) {
        let index = Index {
            files: self.placed.borrow().clone(),
        };
        let Ok(bytes) = serde_json::to_vec(&index) else {
            return;
        };
        let Some(dir) = self.index_path.parent() else {
            return;
        };
        let _ = std::fs::create_dir_all(dir);
        let tmp = self.index_path.with_extension(format!(
            "{}.{}.tmp",
            std::process::id(),
            &super::fsutil::random_id()[..8]
        ));
        if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, &self.index_path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// Whether `prev` is what copying `source` with this owner and mode makes.
fn same_file(source: &Path, prev: &Path, owner: (u32, u32), mode: u32) -> bool {
    let (Ok(s), Ok(p)) = (std::fs::metadata(source), std::fs::symlink_metadata(prev)) else {
        return false;
    };
    p.is_file()
        && s.is_file()
        && p.len() == s.len()
        && p.mode() & 0o7777 == mode
        && (p.uid(), p.gid()) == owner
        && (p.mtime(), p.mtime_nsec()) == (s.mtime(), s.mtime_nsec())
        && same_bytes(source, prev).unwrap_or(false)
}

fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// Copy `source` to `dst` (absent) with owner, mode and modification time.
pub(super) fn copy_file(source: &Path, dst: &Path, owner: (u32, u32), mode: u32) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut src = std::fs::File::open(source).map_err(io_err("open", source))?;
    let mtime = src.metadata().and_then(|m| m.modified());
    let mut out = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(io_err("create", dst))?;
    std::io::copy(&mut src, &mut out).map_err(io_err("copy into", dst))?;
    std::os::unix::fs::fchown(&out, Some(owner.0), Some(owner.1)).map_err(io_err("chown", dst))?;
    out.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_err("chmod", dst))?;
    if let Ok(t) = mtime {
        let _ = out.set_modified(t);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_only_identical_files_and_remembers_them() {
        let d = tempfile::tempdir().unwrap();
        let (ctx, up1, up2, root) = (
            d.path().join("ctx"),
            d.path().join("up1"),
            d.path().join("up2"),
            d.path().join("root"),
        );
        for p in [&ctx, &up1, &up2, &root] {
            std::fs::create_dir_all(p.join("app")).unwrap();
        }
        for (n, text) in [("a", "same"), ("b", "old"), ("c", "same-meta")] {
            std::fs::write(ctx.join(n), text).unwrap();
        }
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        // First run: nothing to link; copies made by the caller are recorded.
        let s = Share::open(d.path(), "COPY . /app/", &up1, &root);
        for n in ["a", "b", "c"] {
            assert!(!s.try_link(&ctx.join(n), &root.join("app").join(n), me, 0o644));
            copy_file(&ctx.join(n), &up1.join("app").join(n), me, 0o644).unwrap();
        }
        s.save();
        // Second run: b changed content, c is copied with another mode.
        std::fs::write(ctx.join("b"), "new").unwrap();
        let s = Share::open(d.path(), "COPY . /app/", &up2, &root);
        assert!(s.try_link(&ctx.join("a"), &root.join("app/a"), me, 0o644));
        assert!(!s.try_link(&ctx.join("b"), &root.join("app/b"), me, 0o644));
        assert!(!s.try_link(&ctx.join("c"), &root.join("app/c"), me, 0o600));
        assert_eq!(s.apply().unwrap(), 1);
        let (m1, m2) = (
            std::fs::metadata(up1.join("app/a")).unwrap(),
            std::fs::metadata(up2.join("app/a")).unwrap(),
        );
        assert_eq!(m1.ino(), m2.ino());
        s.save();
        let idx: Index = serde_json::from_slice(&std::fs::read(&s.index_path).unwrap()).unwrap();
        assert_eq!(idx.files["app/a"], up2.join("app/a"));
        // Another instruction has its own index.
        let other = Share::open(d.path(), "COPY . /other/", &up2, &root);
        assert!(other.previous.is_empty());
    }

    #[test]
    fn a_later_write_of_the_same_path_wins() {
        let d = tempfile::tempdir().unwrap();
        let (ctx, up1, up2, root) = (
            d.path().join("ctx"),
            d.path().join("up1"),
            d.path().join("up2"),
            d.path().join("root"),
        );
        for p in [&ctx, &up1, &up2, &root] {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::write(ctx.join("x"), "x").unwrap();
        std::fs::write(ctx.join("y"), "y").unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let s = Share::open(d.path(), "COPY x y /f", &up1, &root);
        s.try_link(&ctx.join("x"), &root.join("f"), me, 0o644);
        copy_file(&ctx.join("x"), &up1.join("f"), me, 0o644).unwrap();
        s.save();
        let s = Share::open(d.path(), "COPY x y /f", &up2, &root);
        assert!(s.try_link(&ctx.join("x"), &root.join("f"), me, 0o644));
        assert!(!s.try_link(&ctx.join("y"), &root.join("f"), me, 0o644));
        assert_eq!(s.apply().unwrap(), 0, "y replaced the linked x");
    }
}
