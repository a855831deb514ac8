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
pub fn write_layer(store: &Store, upper: &Path, clamp: Option<i64>) -> Result<Option<LayerDesc>> {
    let mut entries = std::fs::read_dir(upper).map_err(io_err("read", upper))?;
    if entries.next().is_none() {
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
    w.dir("")?;
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

impl<W: Write> Walker<'_, W> {
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
        let l = write_layer(&store, &up, Some(0)).unwrap().unwrap();
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
        assert!(write_layer(&store, &empty, None).unwrap().is_none());
    }
}
