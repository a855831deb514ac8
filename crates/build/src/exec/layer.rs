//! Turning a step's writable directory into a layer blob: a tar of what the
//! step changed, with OCI whiteouts. In an overlay upper dir a 0/0 character
//! device is a deletion (`.wh.<name>`) and `trusted.overlay.opaque=y` marks a
//! directory that hides its lower contents (`.wh..wh..opq`).

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_content::Store;
use serde::{Deserialize, Serialize};
use tar::{EntryType, Header};

use super::{io_err, Result};

/// One layer of an image being built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerDesc {
    /// Digest of the blob.
    pub digest: String,
    /// Size of the blob.
    pub size: u64,
    /// Media type of the blob.
    pub media_type: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
}

struct Walker<'a, W: Write> {
    tar: tar::Builder<W>,
    root: &'a Path,
    links: HashMap<(u64, u64), String>,
    clamp: Option<i64>,
}

/// Tar up `upper` into the content store; `None` when it is empty (the step
/// changed nothing). `clamp` caps mtimes (SOURCE_DATE_EPOCH).
///
/// `upper` is an overlay upper dir (or a full tree when `lower` is None);
/// with `lower`, `upper` is a full copy of `lower` changed by the step (the
/// native snapshotter) and only the differences are written, deletions as
/// whiteouts.
pub fn write_layer(
    store: &Store,
    upper: &Path,
    lower: Option<&Path>,
    clamp: Option<i64>,
) -> Result<Option<LayerDesc>> {
    let changes = match lower {
        Some(l) => {
            let mut c = Vec::new();
            diff_dir(upper, l, "", &mut c)?;
            Some(c)
        }
        None => None,
    };
    let empty = match &changes {
        Some(c) => c.is_empty(),
        None => std::fs::read_dir(upper)
            .map_err(io_err("read", upper))?
            .next()
            .is_none(),
    };
    if empty {
        return Ok(None);
    }
    let writer = store.writer(None, None)?;
    let mut w = Walker {
        tar: tar::Builder::new(writer),
        root: upper,
        links: HashMap::new(),
        clamp,
    };
    w.tar.follow_symlinks(false);
    match changes {
        Some(c) => w.changes(&c)?,
        None => w.dir("")?,
    }
    let writer = w
        .tar
        .into_inner()
        .map_err(io_err("write layer of", upper))?;
    let size = writer.written();
    let digest = writer.commit()?.to_string();
    Ok(Some(LayerDesc {
        diff_id: digest.clone(),
        digest,
        size,
        media_type: berth_image::manifest::OCI_LAYER.into(),
    }))
}

/// A difference between a tree and its parent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    /// Added or modified (directories: only their own metadata).
    Add(String),
    /// Deleted.
    Delete(String),
}

fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io_err("read", dir))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn same(a: &Metadata, b: &Metadata) -> bool {
    let base =
        a.mode() == b.mode() && a.uid() == b.uid() && a.gid() == b.gid() && a.rdev() == b.rdev();
    if a.is_dir() {
        return base;
    }
    base && a.len() == b.len() && a.mtime() == b.mtime() && a.mtime_nsec() == b.mtime_nsec()
}

fn link(root: &Path, rel: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(root.join(rel)).ok()
}

/// The changes of `new` against `old` under `rel`, in path order.
fn diff_dir(new: &Path, old: &Path, rel: &str, out: &mut Vec<Change>) -> Result<()> {
    let join = |n: &str| {
        if rel.is_empty() {
            n.to_string()
        } else {
            format!("{rel}/{n}")
        }
    };
    let new_names = sorted_names(&new.join(rel))?;
    let old_names = sorted_names(&old.join(rel)).unwrap_or_default();
    let mut all: Vec<&String> = new_names.iter().chain(old_names.iter()).collect();
    all.sort();
    all.dedup();
    for n in all {
        let r = join(n);
        let nm = std::fs::symlink_metadata(new.join(&r)).ok();
        let om = std::fs::symlink_metadata(old.join(&r)).ok();
        let Some(nm) = nm else {
            out.push(Change::Delete(r));
            continue;
        };
        let changed = om.as_ref().is_none_or(|o| {
            !same(&nm, o) || (nm.file_type().is_symlink() && link(new, &r) != link(old, &r))
        });
        if changed {
            out.push(Change::Add(r.clone()));
        }
        match (nm.is_dir(), om.as_ref().is_some_and(|o| o.is_dir())) {
            (true, true) => diff_dir(new, old, &r, out)?,
            (true, false) => whole_tree(new, &r, out)?,
            _ => {}
        }
    }
    Ok(())
}

fn whole_tree(root: &Path, rel: &str, out: &mut Vec<Change>) -> Result<()> {
    for n in sorted_names(&root.join(rel))? {
        let r = format!("{rel}/{n}");
        out.push(Change::Add(r.clone()));
        if root.join(&r).symlink_metadata().is_ok_and(|m| m.is_dir()) {
            whole_tree(root, &r, out)?;
        }
    }
    Ok(())
}

impl<W: Write> Walker<'_, W> {
    /// Write `changes` (from [`diff_dir`]), parents of changed entries first.
    fn changes(&mut self, changes: &[Change]) -> Result<()> {
        let mut written: std::collections::HashSet<String> = std::collections::HashSet::new();
        for c in changes {
            let (Change::Add(rel) | Change::Delete(rel)) = c;
            let parts: Vec<&str> = rel.split('/').collect();
            for i in 1..parts.len() {
                let parent = parts[..i].join("/");
                if written.insert(parent.clone()) {
                    self.single(&parent)?;
                }
            }
            match c {
                Change::Add(r) if written.insert(r.clone()) => self.single(r)?,
                Change::Add(_) => {}
                Change::Delete(r) => {
                    let name = parts.last().copied().unwrap_or_default();
                    let m =
                        std::fs::symlink_metadata(self.root).map_err(io_err("stat", self.root))?;
                    let parent = r.strip_suffix(name).unwrap_or("");
                    self.empty_file(&format!("{parent}.wh.{name}"), &m)?;
                }
            }
        }
        Ok(())
    }

    /// One entry; a directory without its contents.
    fn single(&mut self, rel: &str) -> Result<()> {
        let host = self.root.join(rel);
        let m = std::fs::symlink_metadata(&host).map_err(io_err("stat", &host))?;
        if !m.is_dir() {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            return self.entry(rel, name);
        }
        let mut h = self.header(&m);
        h.set_entry_type(EntryType::Directory);
        h.set_size(0);
        self.append(&mut h, &format!("{rel}/"), std::io::empty())
    }
    fn dir(&mut self, rel: &str) -> Result<()> {
        let host = self.root.join(rel);
        let mut names: Vec<String> = std::fs::read_dir(&host)
            .map_err(io_err("read", &host))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let child = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            self.entry(&child, &n)?;
        }
        Ok(())
    }

    fn entry(&mut self, rel: &str, name: &str) -> Result<()> {
        let host = self.root.join(rel);
        let m = std::fs::symlink_metadata(&host).map_err(io_err("stat", &host))?;
        let ft = m.file_type();
        if ft.is_char_device() && m.rdev() == 0 {
            let parent = rel.strip_suffix(name).unwrap_or("");
            return self.empty_file(&format!("{parent}.wh.{name}"), &m);
        }
        let mut h = self.header(&m);
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            h.set_size(0);
            self.append(&mut h, &format!("{rel}/"), std::io::empty())?;
            if xattr::get(&host, "trusted.overlay.opaque")
                .ok()
                .flatten()
                .as_deref()
                == Some(b"y")
            {
                self.empty_file(&format!("{rel}/.wh..wh..opq"), &m)?;
            }
            return self.dir(rel);
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(&host).map_err(io_err("read link", &host))?;
            h.set_entry_type(EntryType::Symlink);
            h.set_size(0);
            self.tar
                .append_link(&mut h, rel, target)
                .map_err(io_err("write layer entry", &host))?;
            return Ok(());
        }
        if ft.is_file() {
            return self.file(rel, &m, h);
        }
        let kind = if ft.is_char_device() {
            EntryType::Char
        } else if ft.is_block_device() {
            EntryType::Block
        } else if ft.is_fifo() {
            EntryType::Fifo
        } else {
            return Ok(()); // sockets are not carried in layers
        };
        h.set_entry_type(kind);
        h.set_size(0);
        let dev = m.rdev();
        h.set_device_major(nix::sys::stat::major(dev) as u32)
            .map_err(io_err("write layer entry", &host))?;
        h.set_device_minor(nix::sys::stat::minor(dev) as u32)
            .map_err(io_err("write layer entry", &host))?;
        self.append(&mut h, rel, std::io::empty())
    }

    fn file(&mut self, rel: &str, m: &Metadata, mut h: Header) -> Result<()> {
        let host = self.root.join(rel);
        if m.nlink() > 1 {
            if let Some(first) = self.links.get(&(m.dev(), m.ino())).cloned() {
                h.set_entry_type(EntryType::Link);
                h.set_size(0);
                return self
                    .tar
                    .append_link(&mut h, rel, first)
                    .map_err(io_err("write layer entry", &host));
            }
            self.links.insert((m.dev(), m.ino()), rel.to_string());
        }
        h.set_entry_type(EntryType::Regular);
        h.set_size(m.len());
        let f = std::fs::File::open(&host).map_err(io_err("open", &host))?;
        self.append(&mut h, rel, f)
    }

    fn empty_file(&mut self, rel: &str, m: &Metadata) -> Result<()> {
        let mut h = self.header(m);
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        self.append(&mut h, rel, std::io::empty())
    }

    fn header(&self, m: &Metadata) -> Header {
        let mut h = Header::new_gnu();
        h.set_mode(m.mode() & 0o7777);
        h.set_uid(u64::from(m.uid()));
        h.set_gid(u64::from(m.gid()));
        let mtime = m.mtime().max(0);
        let mtime = self.clamp.map_or(mtime, |c| mtime.min(c.max(0)));
        h.set_mtime(mtime as u64);
        h
    }

    fn append(&mut self, h: &mut Header, rel: &str, data: impl std::io::Read) -> Result<()> {
        self.tar
            .append_data(h, rel, data)
            .map_err(io_err("write layer entry", &self.root.join(rel)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_dir_becomes_tar_with_whiteouts() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path().join("content")).unwrap();
        let up = d.path().join("up");
        std::fs::create_dir_all(up.join("etc")).unwrap();
        std::fs::write(up.join("etc/a"), "x").unwrap();
        std::fs::hard_link(up.join("etc/a"), up.join("etc/b")).unwrap();
        std::os::unix::fs::symlink("a", up.join("etc/c")).unwrap();
        let l = write_layer(&store, &up, None, Some(0)).unwrap().unwrap();
        let blob = store
            .read(&berth_content::Digest::parse(&l.digest).unwrap())
            .unwrap();
        let mut ar = tar::Archive::new(&blob[..]);
        let names: Vec<(String, EntryType)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("etc/".to_string(), EntryType::Directory),
                ("etc/a".into(), EntryType::Regular),
                ("etc/b".into(), EntryType::Link),
                ("etc/c".into(), EntryType::Symlink),
            ]
        );
        let empty = d.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(write_layer(&store, &empty, None, None).unwrap().is_none());
    }

    #[test]
    fn full_copy_against_its_parent_gives_only_changes() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path().join("content")).unwrap();
        let (old, new) = (d.path().join("old"), d.path().join("new"));
        std::fs::create_dir_all(old.join("etc/sub")).unwrap();
        std::fs::create_dir_all(old.join("keep")).unwrap();
        std::fs::write(old.join("keep/same"), "same").unwrap();
        std::fs::write(old.join("etc/sub/x"), "x").unwrap();
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(&old)
            .arg(&new)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::remove_file(new.join("etc/sub/x")).unwrap();
        std::fs::create_dir_all(new.join("added/deep")).unwrap();
        std::fs::write(new.join("added/deep/f"), "f").unwrap();
        let l = write_layer(&store, &new, Some(&old), None)
            .unwrap()
            .unwrap();
        let blob = store
            .read(&berth_content::Digest::parse(&l.digest).unwrap())
            .unwrap();
        let mut ar = tar::Archive::new(&blob[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "added/",
                "added/deep/",
                "added/deep/f",
                "etc/",
                "etc/sub/",
                "etc/sub/.wh.x"
            ]
        );
        assert!(write_layer(&store, &old, Some(&old), None)
            .unwrap()
            .is_none());
    }
}
