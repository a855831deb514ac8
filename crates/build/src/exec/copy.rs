//! COPY and ADD into a mounted snapshot: sources selected from the context
//! (or a stage's or image's root, opened as a context without ignore rules),
//! landing where docker puts them, owned by `--chown` (root by default) and
//! with `--chmod` or the source's permission bits. ADD extracts local tar
//! archives (plain or gzip) and downloads URLs (git sources are refused).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::context::{archive_kind, copy_destinations, ArchiveKind, Context, CopyItem, EntryKind};
use crate::eval::{is_url, is_url_or_git, CopyStep, InlineFile};

use super::fsutil::{mkdir_all, resolve_user, secure_join};
use super::share::Share;
use super::{io_err, ExecError, Result};

struct Target<'a> {
    rootfs: &'a Path,
    owner: (u32, u32),
    chmod: Option<u32>,
    /// Destination directories made or checked already: image path -> host path.
    dirs: std::cell::RefCell<std::collections::HashMap<String, PathBuf>>,
    /// Files of the previous run to link rather than copy.
    share: Option<&'a Share>,
}

/// Execute a COPY/ADD reading from `src` into `rootfs`; with `share`,
/// unchanged files of the previous run are linked (see [`super::share`]).
pub fn copy(c: &CopyStep, src: &Context, rootfs: &Path, share: Option<&Share>) -> Result<()> {
    let (remote, local): (Vec<String>, Vec<String>) =
        c.sources.iter().cloned().partition(|s| is_url_or_git(s));
    let owner = match &c.chown {
        Some(spec) => resolve_user(rootfs, spec)?,
        None => (0, 0),
    };
    let t = Target {
        rootfs,
        owner,
        chmod: c.chmod,
        dirs: Default::default(),
        share,
    };
    for f in &c.inline {
        t.inline(f, &c.dest)?;
    }
    for url in &remote {
        t.fetch(url, c)?;
    }
    if local.is_empty() {
        return Ok(());
    }
    let sel = src.select(&local, &c.excludes)?;
    for item in copy_destinations(&sel, &c.dest, c.parents) {
        let real = src.root().join(&item.entry.path);
        if c.add && c.unpack != Some(false) && item.entry.kind == EntryKind::File {
            if let Some(kind) = local_archive(&real)? {
                t.extract(&real, kind, &c.dest)?;
                continue;
            }
        }
        t.item(&item, &real)?;
    }
    Ok(())
}

/// Writes through to a file while hashing.
struct HashWriter<'a>(&'a mut std::fs::File, sha2::Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(b)?;
        sha2::Digest::update(&mut self.1, &b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn local_archive(p: &Path) -> Result<Option<ArchiveKind>> {
    let mut head = Vec::with_capacity(512);
    let f = std::fs::File::open(p).map_err(io_err("open", p))?;
    f.take(512)
        .read_to_end(&mut head)
        .map_err(io_err("read", p))?;
    Ok(archive_kind(&head).filter(|k| matches!(k, ArchiveKind::Tar | ArchiveKind::Gzip)))
}

fn parent_of(dest: &str) -> &str {
    match dest.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/",
        Some((p, _)) => p,
    }
}

impl Target<'_> {
    fn own(&self, p: &Path, mode: u32) -> Result<()> {
        std::os::unix::fs::lchown(p, Some(self.owner.0), Some(self.owner.1))
            .map_err(io_err("chown", p))?;
        let mode = self.chmod.unwrap_or(mode) & 0o7777;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod", p))
    }

    /// The host directory of image directory `dir`, made (with its parents)
    /// if missing; remembered for the next entries of the same COPY.
    fn dir(&self, dir: &str) -> Result<PathBuf> {
        if let Some(p) = self.dirs.borrow().get(dir) {
            return Ok(p.clone());
        }
        let host = mkdir_all(self.rootfs, dir, Some(self.owner))?;
        self.dirs.borrow_mut().insert(dir.to_string(), host.clone());
        Ok(host)
    }

    /// Host path for `dest` (its last component not followed), its parents
    /// created.
    fn host_of(&self, dest: &str) -> Result<PathBuf> {
        let name = dest.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        if matches!(name, "" | "." | "..") {
            mkdir_all(self.rootfs, parent_of(dest), Some(self.owner))?;
            return secure_join(self.rootfs, dest, false);
        }
        Ok(self.dir(parent_of(dest))?.join(name))
    }

    /// Host path for `dest`, its parents created, a non-directory in the way removed.
    fn place(&self, dest: &str, keep_dir: bool) -> Result<PathBuf> {
        let host = self.host_of(dest)?;
        if let Some(s) = self.share {
            s.forget(&host);
        }
        if let Ok(m) = std::fs::symlink_metadata(&host) {
            if !(m.is_dir() && keep_dir) {
                if m.is_dir() {
                    self.dirs.borrow_mut().clear();
                    std::fs::remove_dir_all(&host).map_err(io_err("remove", &host))?;
                } else {
                    std::fs::remove_file(&host).map_err(io_err("remove", &host))?;
                }
            }
        }
        Ok(host)
    }

    fn item(&self, item: &CopyItem, real: &Path) -> Result<()> {
        let e = &item.entry;
        match e.kind {
            EntryKind::Dir => {
                let host = self.place(&item.dest, true)?;
                if !host.is_dir() {
                    std::fs::create_dir(&host).map_err(io_err("create directory", &host))?;
                }
                if item.dest != "/" {
                    self.own(&host, e.mode)?;
                }
                Ok(())
            }
            EntryKind::File => {
                let mut dest = item.dest.clone();
                let here = self.host_of(&dest)?;
                let into_dir = match std::fs::symlink_metadata(&here) {
                    Ok(m) if m.file_type().is_symlink() => {
                        secure_join(self.rootfs, &dest, true)?.is_dir()
                    }
                    Ok(m) => m.is_dir(),
                    Err(_) => false,
                };
                if into_dir {
                    let name = e.name.rsplit('/').next().unwrap_or(&e.name);
                    dest = format!("{}/{name}", dest.trim_end_matches('/'));
                }
                let host = self.place(&dest, false)?;
                self.file(real, &host, e.mode)
            }
            EntryKind::Symlink => {
                let host = self.place(&item.dest, false)?;
                let target = e.link_target.clone().unwrap_or_default();
                std::os::unix::fs::symlink(&target, &host).map_err(io_err("symlink", &host))?;
                std::os::unix::fs::lchown(&host, Some(self.owner.0), Some(self.owner.1))
                    .map_err(io_err("chown", &host))
            }
        }
    }

    /// Copy file `real` to `host` (which does not exist): owner, mode and
    /// modification time set on the open file; or link it from the previous run.
    fn file(&self, real: &Path, host: &Path, mode: u32) -> Result<()> {
        let mode = self.chmod.unwrap_or(mode) & 0o7777;
        if self
            .share
            .is_some_and(|s| s.try_link(real, host, self.owner, mode))
        {
            return Ok(());
        }
        super::share::copy_file(real, host, self.owner, mode)
    }

    fn inline(&self, f: &InlineFile, dest: &str) -> Result<()> {
        let dest = if dest.ends_with('/') {
            format!("{dest}{}", f.path.trim_start_matches('/'))
        } else {
            dest.to_string()
        };
        let host = self.place(&dest, false)?;
        std::fs::write(&host, &f.data).map_err(io_err("write", &host))?;
        self.own(&host, 0o644)
    }

    /// ADD of a URL: the file at `dest` (or `dest/<last path segment>`),
    /// mode 0600 unless `--chmod`, checked against `--checksum`.
    fn fetch(&self, url: &str, c: &CopyStep) -> Result<()> {
        if !is_url(url) || url.contains(".git#") || url.ends_with(".git") {
            return Err(ExecError::Unsupported(format!(
                "ADD of the git repository {url}: clone it in a RUN step or into the context"
            )));
        }
        let dest = if c.dest.ends_with('/') {
            let path = url.split(['?', '#']).next().unwrap_or(url);
            let name = path
                .rsplit('/')
                .next()
                .filter(|n| !n.is_empty() && !path.ends_with("//"));
            let Some(name) = name.filter(|_| path.matches('/').count() > 2) else {
                return Err(ExecError::Invalid(format!(
                    "ADD {url}: cannot determine a file name from the URL: give a destination file"
                )));
            };
            format!("{}{name}", c.dest)
        } else {
            c.dest.clone()
        };
        let bad = |why: String| ExecError::Invalid(format!("ADD {url}: {why}"));
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(std::time::Duration::from_secs(30)))
            .user_agent("berth/0.1")
            .build();
        let resp = ureq::Agent::new_with_config(config)
            .get(url)
            .call()
            .map_err(|e| bad(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(bad(format!("the server answered {}", resp.status())));
        }
        let host = self.place(&dest, false)?;
        let mut f = std::fs::File::create(&host).map_err(io_err("create", &host))?;
        let mut hashed = HashWriter(&mut f, sha2::Sha256::default());
        std::io::copy(&mut resp.into_body().into_reader(), &mut hashed)
            .map_err(|e| bad(format!("download failed: {e}")))?;
        let got = format!("sha256:{}", hex::encode(sha2::Digest::finalize(hashed.1)));
        if let Some(want) = &c.checksum {
            if *want != got {
                return Err(bad(format!("checksum mismatch: want {want}, got {got}")));
            }
        }
        self.own(&host, 0o600)
    }

    fn extract(&self, archive: &Path, kind: ArchiveKind, dest: &str) -> Result<()> {
        let dir = mkdir_all(self.rootfs, dest, Some(self.owner))?;
        let f = std::fs::File::open(archive).map_err(io_err("open", archive))?;
        let r: Box<dyn Read> = match kind {
            ArchiveKind::Gzip => Box::new(flate2::read::GzDecoder::new(f)),
            _ => Box::new(f),
        };
        let mut ar = tar::Archive::new(r);
        ar.set_preserve_permissions(true);
        ar.set_preserve_ownerships(true);
        ar.set_overwrite(true);
        ar.unpack(&dir)
            .map_err(io_err("extract archive into", &dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(parent_of("/a/b"), "/a");
        assert_eq!(parent_of("/a/b/"), "/a");
        assert_eq!(parent_of("/a"), "/");
        assert_eq!(parent_of("/"), "/");
    }
}
