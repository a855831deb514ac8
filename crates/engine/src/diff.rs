//! `diff`: what a container changed in its filesystem, read from the writable
//! (upper) layer of its overlay snapshot: `A` added, `C` changed, `D` deleted.
//! Paths the engine itself puts in place (mount points for /proc, /sys, /dev,
//! /etc/hostname, hosts, resolv.conf, volumes and tmpfs) are left out, as docker's
//! init layer hides them.

use crate::error::{Error, Result};
use crate::Engine;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// changed (existed in the image)
    Changed,
    /// added
    Added,
    /// deleted
    Deleted,
}

impl Change {
    /// docker's letter.
    pub fn letter(self) -> char {
        match self {
            Change::Changed => 'C',
            Change::Added => 'A',
            Change::Deleted => 'D',
        }
    }
}

const HIDDEN: [&str; 7] = [
    "/dev",
    "/proc",
    "/sys",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/mtab",
];

/// Changes in `upper` relative to `lowers` (top first), sorted by path, leaving out
/// `hidden` paths and their children, and directories changed only for their sake.
pub fn changes(upper: &Path, lowers: &[PathBuf], hidden: &[String]) -> Vec<(Change, String)> {
    let mut out = Vec::new();
    walk(upper, Path::new("/"), lowers, hidden, &mut out);
    out.sort_by(|a, b| a.1.cmp(&b.1));
    // a changed directory stays only if something under it changed
    let keep: Vec<bool> = out
        .iter()
        .map(|(c, p)| {
            *c != Change::Changed
                || !upper.join(p.trim_start_matches('/')).is_dir()
                || out.iter().any(|(_, q)| {
                    q.len() > p.len() && q.starts_with(p.as_str()) && q.as_bytes()[p.len()] == b'/'
                })
        })
        .collect();
    out.into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

fn walk(
    upper: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    hidden: &[String],
    out: &mut Vec<(Change, String)>,
) {
    let dir = upper.join(rel.strip_prefix("/").unwrap_or(rel));
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in rd.flatten() {
        let path = rel.join(e.file_name());
        let p = path.to_string_lossy().into_owned();
        if HIDDEN.contains(&p.as_str()) || hidden.contains(&p) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let in_lower = lowers
            .iter()
            .any(|l| std::fs::symlink_metadata(l.join(&p[1..])).is_ok());
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            out.push((Change::Deleted, p));
            continue;
        }
        out.push((
            if in_lower {
                Change::Changed
            } else {
                Change::Added
            },
            p,
        ));
        if meta.is_dir() {
            walk(upper, &path, lowers, hidden, out);
        }
    }
}

/// Bytes of the regular files under `dir` (not following symlinks).
fn tree_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

impl Engine {
    /// Bytes the container has written to its own layer, and the bytes of its whole
    /// filesystem, image layers included (docker's SizeRw and SizeRootFs).
    pub fn sizes(&self, what: &str) -> Result<(u64, u64)> {
        let s = self.inspect(what)?;
        let mounts = self.images()?.container_mounts(&s.record.id)?;
        let Some(m) = mounts.iter().find(|m| m.kind == "overlay") else {
            return Ok((0, 0));
        };
        let rw = m.option("upperdir").map_or(0, |u| tree_size(Path::new(u)));
        let lower: u64 = m
            .option("lowerdir")
            .map(|l| l.split(':').map(|d| tree_size(Path::new(d))).sum())
            .unwrap_or(0);
        Ok((rw, rw + lower))
    }

    /// The filesystem changes of container `what` (overlay snapshots only).
    pub fn diff(&self, what: &str) -> Result<Vec<(Change, String)>> {
        let s = self.inspect(what)?;
        let mounts = self.images()?.container_mounts(&s.record.id)?;
        let m = mounts
            .iter()
            .find(|m| m.kind == "overlay")
            .ok_or_else(|| Error::Invalid("diff needs the overlayfs snapshotter".into()))?;
        let upper = m
            .option("upperdir")
            .map(PathBuf::from)
            .ok_or_else(|| Error::Invalid("the container's snapshot has no upper layer".into()))?;
        let lowers: Vec<PathBuf> = m
            .option("lowerdir")
            .map(|l| l.split(':').map(PathBuf::from).collect())
            .unwrap_or_default();
        let o = &s.record.options;
        let mut hidden: Vec<String> = o
            .binds
            .iter()
            .map(|b| b.target.to_string_lossy().into_owned())
            .collect();
        hidden.extend(
            o.tmpfs
                .iter()
                .map(|t| t.split(':').next().unwrap_or("").to_string()),
        );
        Ok(changes(&upper, &lowers, &hidden))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_changed_deleted_and_hidden() {
        let d = tempfile::tempdir().expect("tempdir");
        let lower = d.path().join("lower");
        let upper = d.path().join("upper");
        for p in ["etc", "usr/bin", "var"] {
            std::fs::create_dir_all(lower.join(p)).expect("mkdir");
        }
        std::fs::write(lower.join("etc/passwd"), "root").expect("write");
        std::fs::write(lower.join("var/gone"), "x").expect("write");
        for p in ["etc", "new/dir", "proc", "var"] {
            std::fs::create_dir_all(upper.join(p)).expect("mkdir");
        }
        std::fs::write(upper.join("etc/passwd"), "root2").expect("write");
        std::fs::write(upper.join("etc/hostname"), "h").expect("write");
        std::fs::write(upper.join("new/dir/f"), "f").expect("write");
        // a whiteout needs mknod(0/0); fall back to checking without it when not root
        let whiteout = nix::sys::stat::mknod(
            &upper.join("var/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .is_ok();
        let got = changes(&upper, &[lower], &[]);
        let mut want = vec![
            (Change::Changed, "/etc".to_string()),
            (Change::Changed, "/etc/passwd".to_string()),
            (Change::Added, "/new".to_string()),
            (Change::Added, "/new/dir".to_string()),
            (Change::Added, "/new/dir/f".to_string()),
        ];
        if whiteout {
            want.push((Change::Changed, "/var".to_string()));
            want.push((Change::Deleted, "/var/gone".to_string()));
        }
        assert_eq!(got, want);
    }
}
