//! The two directory-based snapshotters. Each snapshot `id` owns
//! `snapshots/<id>/fs` (its data) and, for overlay, `snapshots/<id>/work`.

use crate::meta::{io_err, Meta, Record};
use crate::{Error, Info, Kind, Mount, Result, Snapshotter, Usage};
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
struct Inner {
    meta: Meta,
    overlay: bool,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Inner {
    fn fs(&self, id: u64) -> PathBuf {
        self.meta.dir(id).join("fs")
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Vec<Mount>> {
        let (id, chain) = self.meta.update_choosing(|db| {
            if db.snapshots.contains_key(key) {
                return Err(Error::Exists(key.to_string()));
            }
            let chain = match parent {
                Some(p) if db.get(p)?.kind != Kind::Committed => {
                    return Err(Error::NotCommitted(p.to_string()))
                }
                Some(p) => db.chain(p)?,
                None => Vec::new(),
            };
            db.next_id += 1;
            let id = db.next_id;
            if let Err(e) = self.make_dirs(id, &chain, kind) {
                let _ = fs::remove_dir_all(self.meta.dir(id));
                return Err(e);
            }
            let rec = Record {
                id,
                parent: parent.map(str::to_string),
                kind,
                created: now(),
            };
            db.snapshots.insert(key.to_string(), rec);
            // an active snapshot may be lost in a power failure (as its container's
            // record may): no fsync on `run`'s critical path
            Ok(((id, chain), kind == Kind::Active))
        })?;
        Ok(self.mounts_for(id, &chain, kind))
    }

    fn make_dirs(&self, id: u64, chain: &[u64], kind: Kind) -> Result<()> {
        let fsdir = self.fs(id);
        if self.overlay {
            fs::create_dir_all(&fsdir).map_err(io_err("create directory", &fsdir))?;
            let work = self.meta.dir(id).join("work");
            return fs::create_dir_all(&work).map_err(io_err("create directory", &work));
        }
        match chain.first() {
            Some(&p) if kind == Kind::Active => copy_tree(&self.fs(p), &fsdir),
            _ => fs::create_dir_all(&fsdir).map_err(io_err("create directory", &fsdir)),
        }
    }

    /// `chain` holds the parent chain, nearest first.
    fn mounts_for(&self, id: u64, chain: &[u64], kind: Kind) -> Vec<Mount> {
        let ro = kind == Kind::View;
        if !self.overlay {
            // A copy view shows its parent's full tree directly.
            let src = match (ro, chain.first()) {
                (true, Some(&p)) => self.fs(p),
                _ => self.fs(id),
            };
            return vec![Mount::bind(src, ro)];
        }
        if chain.is_empty() {
            return vec![Mount::bind(self.fs(id), ro)];
        }
        if ro && chain.len() == 1 {
            return vec![Mount::bind(self.fs(chain[0]), true)];
        }
        let lower: Vec<String> = chain
            .iter()
            .map(|&p| self.fs(p).to_string_lossy().into_owned())
            .collect();
        let mut options = vec![
            "index=off".to_string(),
            format!("lowerdir={}", lower.join(":")),
        ];
        if ro {
            options.insert(0, "ro".into());
        } else {
            options.push(format!("upperdir={}", self.fs(id).display()));
            options.push(format!(
                "workdir={}",
                self.meta.dir(id).join("work").display()
            ));
        }
        vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options,
        }]
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let (id, chain, kind) = self.meta.read(|db| {
            let r = db.get(key)?;
            let chain = match &r.parent {
                Some(p) => db.chain(p)?,
                None => Vec::new(),
            };
            Ok((r.id, chain, r.kind))
        })?;
        if kind == Kind::Committed {
            // A committed snapshot is shown read-only, exactly like a view of it.
            let mut all = vec![id];
            all.extend(chain);
            return Ok(self.mounts_for(0, &all, Kind::View));
        }
        Ok(self.mounts_for(id, &chain, kind))
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.meta.update(|db| {
            if db.snapshots.contains_key(name) {
                return Err(Error::Exists(name.to_string()));
            }
            let mut r = db
                .snapshots
                .remove(key)
                .ok_or_else(|| Error::NotFound(key.to_string()))?;
            if r.kind != Kind::Active {
                return Err(Error::NotActive(key.to_string()));
            }
            r.kind = Kind::Committed;
            let work = self.meta.dir(r.id).join("work");
            if work.exists() {
                let _ = fs::remove_dir_all(&work);
            }
            db.snapshots.insert(name.to_string(), r);
            Ok(())
        })
    }

    /// Drops `key` from the metadata; the id of its directory.
    fn forget(&self, key: &str) -> Result<u64> {
        self.meta.update_choosing(|db| {
            let r = db.get(key)?;
            let (id, lazy) = (r.id, r.kind == Kind::Active);
            let children = db.children(key);
            if !children.is_empty() {
                return Err(Error::HasChildren {
                    key: key.to_string(),
                    children,
                });
            }
            db.snapshots.remove(key);
            // an active snapshot that comes back after a power failure has no files:
            // removing it again is all it takes
            Ok((id, lazy))
        })
    }

    fn remove(&self, key: &str) -> Result<()> {
        let dir = self.meta.dir(self.forget(key)?);
        remove_all(&dir)
    }

    fn remove_deferred(&self, key: &str) -> Result<()> {
        let id = self.forget(key)?;
        let (dir, trash) = (self.meta.dir(id), self.meta.trash());
        let moved =
            fs::create_dir_all(&trash).and_then(|_| fs::rename(&dir, trash.join(id.to_string())));
        match moved {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.exists() => Ok(()),
            Err(_) => remove_all(&dir),
        }
    }

    fn empty_trash(&self) -> Result<()> {
        let trash = self.meta.trash();
        let entries = match fs::read_dir(&trash) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("read directory", &trash)(e)),
        };
        let mut first = Ok(());
        for e in entries.flatten() {
            // another process emptying the trash at the same time is fine
            if let Err(e) = remove_all(&e.path()) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        let (id, kind) = self.meta.read(|db| db.get(key).map(|r| (r.id, r.kind)))?;
        if kind == Kind::View {
            return Ok(Usage::default());
        }
        dir_usage(&self.fs(id))
    }
}

/// Copies a tree with everything preserved (modes, owners, times, xattrs, links,
/// devices); uses reflinks where the filesystem has them.
/// `remove_dir_all`; already gone is fine.
fn remove_all(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", dir)(e)),
    }
}

fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).map_err(io_err("create directory", dst))?;
    let out = Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(format!("{}/.", src.display()))
        .arg(dst)
        .output()
        .map_err(io_err("run cp for", src))?;
    if !out.status.success() {
        return Err(Error::Copy {
            src: src.to_path_buf(),
            dst: dst.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Bytes and inodes under `dir`, counting each inode once and not crossing mounts.
pub fn dir_usage(dir: &Path) -> Result<Usage> {
    let mut seen = HashSet::new();
    let mut u = Usage::default();
    let dev = fs::symlink_metadata(dir)
        .map_err(io_err("stat", dir))?
        .dev();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = match fs::read_dir(&d) {
            Ok(r) => r,
            Err(e) => {
                return Err(Error::Io {
                    op: "read directory",
                    path: d,
                    source: e,
                })
            }
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev || !seen.insert(m.ino()) {
                continue;
            }
            u.inodes += 1;
            u.size += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(u)
}

macro_rules! snapshotter {
    ($ty:ident, $name:literal, $overlay:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        pub struct $ty(Inner);

        impl $ty {
            /// Opens (creating if needed) a snapshotter rooted at `root`.
            pub fn new(root: impl AsRef<Path>) -> Result<Self> {
                Ok(Self(Inner {
                    meta: Meta::open(root.as_ref())?,
                    overlay: $overlay,
                }))
            }
        }

        impl Snapshotter for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
                self.0.create(key, parent, Kind::Active)
            }
            fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
                self.0.create(key, parent, Kind::View)
            }
            fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
                self.0.mounts(key)
            }
            fn commit(&self, name: &str, key: &str) -> Result<()> {
                self.0.commit(name, key)
            }
            fn remove(&self, key: &str) -> Result<()> {
                self.0.remove(key)
            }
            fn remove_deferred(&self, key: &str) -> Result<()> {
                self.0.remove_deferred(key)
            }
            fn empty_trash(&self) -> Result<()> {
                self.0.empty_trash()
            }
            fn stat(&self, key: &str) -> Result<Info> {
                self.0.meta.read(|db| db.info(key))
            }
            fn list(&self) -> Result<Vec<Info>> {
                self.0
                    .meta
                    .read(|db| db.snapshots.keys().map(|k| db.info(k)).collect())
            }
            fn usage(&self, key: &str) -> Result<Usage> {
                self.0.usage(key)
            }
        }
    };
}

snapshotter!(
    OverlaySnapshotter,
    "overlayfs",
    true,
    "Stacks snapshots with overlayfs: each committed layer is one directory, shared by every child."
);
snapshotter!(
    CopySnapshotter,
    "native",
    false,
    "Gives every active snapshot a full copy of its parent: works on any filesystem."
);
