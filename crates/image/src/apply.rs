//! Applying a layer tarball to a snapshot directory, refusing hostile entries.
//!
//! Every entry's path is checked before anything is written: no `..`, no absolute
//! path, and no symlink anywhere among its parents (checked with `lstat`, in the
//! target and, for overlay upper dirs, in the lower layers), so nothing can be
//! created, changed or deleted outside the directory. Hardlinks must point at a
//! non-directory inside the same directory. Existing entries are unlinked before
//! being replaced, so writes never go through a link. `trusted.overlay.*` xattrs in
//! a layer are dropped (they would forge overlay whiteouts or redirects).

use berth_content::HashingReader;
use berth_snapshot::WhiteoutStyle;
use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Errors from applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An entry tries to reach outside the snapshot or is otherwise refused.
    #[error("refusing layer entry {entry:?}: {why}")]
    Hostile {
        /// The entry's path as written in the tarball.
        entry: String,
        /// Why it is refused.
        why: String,
    },
    /// The tarball or its compression is truncated or corrupt.
    #[error("layer is corrupt or truncated{}: {source}", .entry.as_ref().map(|e| format!(" at entry {e:?}")).unwrap_or_default())]
    Corrupt {
        /// The entry being read, if any.
        entry: Option<String>,
        /// The read error.
        source: io::Error,
    },
    /// Writing an entry failed.
    #[error("cannot {op} for layer entry {entry:?}: {source}")]
    Write {
        /// What was being done.
        op: &'static str,
        /// The entry.
        entry: String,
        /// The error.
        source: io::Error,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, Error>;

/// How to apply a layer.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// How deletions are recorded (real deletion, or overlay whiteouts).
    pub whiteouts: WhiteoutStyle,
    /// For an overlay upper dir: the lower layers, nearest first (used to check
    /// parents for symlinks and to copy directory attributes).
    pub lowers: Vec<PathBuf>,
    /// Without privileges: device nodes are skipped and ownership is not changed.
    pub rootless: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            whiteouts: WhiteoutStyle::Delete,
            lowers: Vec::new(),
            rootless: !nix::unistd::geteuid().is_root(),
        }
    }
}

/// What applying a layer did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// sha256 of the uncompressed tar stream (the layer's diff id).
    pub diff_id: String,
    /// Uncompressed size.
    pub size: u64,
    /// Entries written.
    pub entries: u64,
    /// Device nodes skipped because of `rootless`.
    pub skipped_devices: u64,
    /// Parent directories the layer did not list and that were created for it
    /// (relative paths); when applied without `lowers`, their attributes and the
    /// absence of lower symlinks are checked later with [`check_implicit_dirs`].
    /// Each with the first entry that needed it.
    pub implicit_dirs: Vec<(PathBuf, String)>,
}

/// Wraps `r` in the right decompressor by sniffing its first bytes (gzip, zstd or plain).
pub fn decompress<'a>(r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(1 << 16, r);
    let head = br.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(br)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(br)?))
    } else {
        Ok(Box::new(br))
    }
}

/// Applies the (possibly compressed) layer `r` to `root`.
pub fn apply_layer(root: &Path, r: impl Read, opts: &ApplyOptions) -> Result<ApplyStats> {
    let plain = decompress(r).map_err(|source| Error::Corrupt {
        entry: None,
        source,
    })?;
    let mut hr = HashingReader::new(plain);
    let mut ap = Applier {
        root,
        opts,
        created: HashSet::new(),
        dirs: Vec::new(),
        stats: ApplyStats::default(),
    };
    {
        let mut ar = tar::Archive::new(&mut hr);
        let entries = ar.entries().map_err(|source| Error::Corrupt {
            entry: None,
            source,
        })?;
        for e in entries {
            let mut e = e.map_err(|source| Error::Corrupt {
                entry: None,
                source,
            })?;
            ap.entry(&mut e)?;
        }
    }
    io::copy(&mut hr, &mut io::sink()).map_err(|source| Error::Corrupt {
        entry: None,
        source,
    })?;
    ap.finish_dirs();
    let (d, n) = hr.finish();
    ap.stats.diff_id = d.to_string();
    ap.stats.size = n;
    Ok(ap.stats)
}

struct Applier<'a> {
    root: &'a Path,
    opts: &'a ApplyOptions,
    created: HashSet<PathBuf>,
    dirs: Vec<(PathBuf, i64, u32)>,
    stats: ApplyStats,
}

fn hostile(entry: &str, why: impl Into<String>) -> Error {
    Error::Hostile {
        entry: entry.to_string(),
        why: why.into(),
    }
}

/// Splits a tar path into checked, relative components.
pub fn clean_path(entry: &str, raw: &[u8]) -> Result<PathBuf> {
    if raw.first() == Some(&b'/') {
        return Err(hostile(entry, "absolute paths are not allowed in a layer"));
    }
    let p = Path::new(std::ffi::OsStr::from_bytes_compat(raw));
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(hostile(entry, "'..' is not allowed in a layer path"))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(hostile(entry, "absolute paths are not allowed in a layer"))
            }
        }
    }
    Ok(out)
}

trait FromBytes {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr;
}
impl FromBytes for std::ffi::OsStr {
    fn from_bytes_compat(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

fn wr<'a>(op: &'static str, entry: &'a str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Write {
        op,
        entry: entry.to_string(),
        source,
    }
}

impl Applier<'_> {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<()> {
        let raw = e.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = clean_path(&name, &raw)?;
        let Some(base) = rel.file_name().map(|b| b.to_string_lossy().into_owned()) else {
            return Ok(()); // the layer root itself: keep the snapshot's root as it is
        };
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if base == ".wh..wh..opq" {
            let dir = self.safe_parent(&name, &parent_rel, true)?;
            return self.opaque(&name, &dir, &parent_rel);
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            if hidden.starts_with(".wh.") {
                return Ok(()); // aufs metadata such as .wh..wh.plnk
            }
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(hostile(&name, "malformed whiteout"));
            }
            let dir = self.safe_parent(&name, &parent_rel, true)?;
            return self.whiteout(&name, &dir.join(hidden));
        }
        let dir = self.safe_parent(&name, &parent_rel, true)?;
        let target = dir.join(&base);
        self.create(e, &name, &rel, &target)?;
        self.created.insert(rel);
        self.stats.entries += 1;
        Ok(())
    }

    /// Resolves `rel` (a directory path) inside the root without following any
    /// symlink, creating missing directories (copying attributes from a lower layer
    /// when there is one).
    fn safe_parent(&mut self, entry: &str, rel: &Path, create: bool) -> Result<PathBuf> {
        let mut cur = self.root.to_path_buf();
        let mut sofar = PathBuf::new();
        for c in rel.components() {
            cur.push(c);
            sofar.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => continue,
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(hostile(
                        entry,
                        format!(
                            "its parent {} is a symlink; entries through symlinks are refused",
                            sofar.display()
                        ),
                    ))
                }
                Ok(_) => {
                    return Err(hostile(
                        entry,
                        format!("its parent {} is not a directory", sofar.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    self.make_dir(entry, &cur, &sofar)?
                }
                Err(e) => return Err(wr("inspect parent", entry)(e)),
            }
        }
        Ok(cur)
    }

    fn make_dir(&mut self, entry: &str, path: &Path, rel: &Path) -> Result<()> {
        self.stats
            .implicit_dirs
            .push((rel.to_path_buf(), entry.to_string()));
        let lower = lower_meta(&self.opts.lowers, rel);
        if let Some(m) = &lower {
            if m.file_type().is_symlink() {
                return Err(hostile(entry, format!("its parent {} is a symlink in a lower layer; entries through symlinks are refused", rel.display())));
            }
            if !m.is_dir() {
                return Err(hostile(
                    entry,
                    format!(
                        "its parent {} is not a directory in a lower layer",
                        rel.display()
                    ),
                ));
            }
        }
        fs::create_dir(path).map_err(wr("create parent directory", entry))?;
        copy_dir_attrs(path, lower.as_ref(), self.opts.rootless)
            .map_err(wr("set attributes", entry))
    }

    fn opaque(&mut self, entry: &str, dir: &Path, rel: &Path) -> Result<()> {
        match self.opts.whiteouts {
            WhiteoutStyle::Overlay => xattr::set(dir, "trusted.overlay.opaque", b"y")
                .map_err(wr("mark directory opaque", entry)),
            WhiteoutStyle::Delete => {
                let rd = fs::read_dir(dir).map_err(wr("read directory", entry))?;
                for child in rd {
                    let child = child.map_err(wr("read directory", entry))?;
                    if !self.created.contains(&rel.join(child.file_name())) {
                        remove_any(&child.path())
                            .map_err(wr("remove for opaque directory", entry))?;
                    }
                }
                Ok(())
            }
        }
    }

    fn whiteout(&mut self, entry: &str, path: &Path) -> Result<()> {
        remove_any(path).map_err(wr("remove whited-out path", entry))?;
        if self.opts.whiteouts == WhiteoutStyle::Overlay {
            use nix::sys::stat::{mknod, Mode, SFlag};
            mknod(path, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| wr("create whiteout device", entry)(e.into()))?;
        }
        Ok(())
    }

    fn create<R: Read>(
        &mut self,
        e: &mut tar::Entry<R>,
        entry: &str,
        rel: &Path,
        path: &Path,
    ) -> Result<()> {
        let h = e.header().clone();
        let kind = h.entry_type();
        // A blank mode field reads as 0, as Go's archive/tar (which writes most layers)
        // does; symlinks ignore it anyway.
        let mode = h
            .mode()
            .unwrap_or(if kind.is_symlink() { 0o777 } else { 0 })
            & 0o7777;
        let existing = fs::symlink_metadata(path).ok();
        let keep_dir = kind.is_dir() && existing.as_ref().is_some_and(|m| m.is_dir());
        if existing.is_some() && !keep_dir {
            remove_any(path).map_err(wr("replace existing entry", entry))?;
        }
        match kind {
            tar::EntryType::Directory => {
                if !keep_dir {
                    fs::create_dir(path).map_err(wr("create directory", entry))?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(path)
                    .map_err(wr("create file", entry))?;
                io::copy(e, &mut f).map_err(|source| Error::Corrupt {
                    entry: Some(entry.to_string()),
                    source,
                })?;
            }
            tar::EntryType::Symlink => {
                let target = h
                    .link_name_bytes()
                    .ok_or_else(|| hostile(entry, "symlink without a target"))?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes_compat(&target), path)
                    .map_err(wr("create symlink", entry))?;
            }
            tar::EntryType::Link => return self.hardlink(&h, entry, path),
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                if !self.device(&h, entry, path, mode)? {
                    return Ok(());
                }
            }
            other => {
                return Err(hostile(
                    entry,
                    format!("unsupported tar entry type {other:?}"),
                ))
            }
        }
        self.metadata(e, &h, entry, rel, path, mode)
    }

    fn hardlink(&mut self, h: &tar::Header, entry: &str, path: &Path) -> Result<()> {
        let raw = h
            .link_name_bytes()
            .ok_or_else(|| hostile(entry, "hardlink without a target"))?;
        let target_name = String::from_utf8_lossy(&raw).into_owned();
        let rel = clean_path(entry, &raw).map_err(|_| {
            hostile(
                entry,
                format!("hardlink target {target_name:?} is outside the layer"),
            )
        })?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        let base = rel
            .file_name()
            .ok_or_else(|| hostile(entry, "hardlink to the layer root"))?;
        let dir = self
            .safe_parent(entry, parent, false)
            .map_err(|e| match e {
                Error::Write { .. } => hostile(
                    entry,
                    format!("hardlink target {target_name:?} does not exist in this layer"),
                ),
                other => other,
            })?;
        let target = dir.join(base);
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => Err(hostile(
                entry,
                format!("hardlink target {target_name:?} is a directory"),
            )),
            Ok(_) => fs::hard_link(&target, path).map_err(wr("create hardlink", entry)),
            Err(_) => Err(hostile(
                entry,
                format!("hardlink target {target_name:?} does not exist in this layer"),
            )),
        }
    }

    /// Creates a device node or fifo; returns false when it was skipped.
    fn device(&mut self, h: &tar::Header, entry: &str, path: &Path, mode: u32) -> Result<bool> {
        use nix::sys::stat::{mknod, Mode, SFlag};
        let kind = match h.entry_type() {
            tar::EntryType::Char => SFlag::S_IFCHR,
            tar::EntryType::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        if kind != SFlag::S_IFIFO && self.opts.rootless {
            tracing::warn!(entry, "skipping device node: not privileged to create it");
            self.stats.skipped_devices += 1;
            return Ok(false);
        }
        let dev = if kind == SFlag::S_IFIFO {
            0
        } else {
            let corrupt = |source| Error::Corrupt {
                entry: Some(entry.to_string()),
                source,
            };
            let major = u64::from(h.device_major().map_err(corrupt)?.unwrap_or(0));
            let minor = u64::from(
                h.device_minor()
                    .map_err(|source| Error::Corrupt {
                        entry: Some(entry.to_string()),
                        source,
                    })?
                    .unwrap_or(0),
            );
            ((major & 0xffff_f000) << 32)
                | ((major & 0xfff) << 8)
                | ((minor & 0xffff_ff00) << 12)
                | (minor & 0xff)
        };
        match mknod(path, kind, Mode::from_bits_truncate(mode), dev) {
            Ok(()) => Ok(true),
            // In a user namespace root may not create devices: neutralize, as rootless.
            Err(nix::errno::Errno::EPERM) if kind != SFlag::S_IFIFO => {
                tracing::warn!(entry, "skipping device node: not permitted here");
                self.stats.skipped_devices += 1;
                Ok(false)
            }
            Err(e) => Err(wr("create device node", entry)(e.into())),
        }
    }

    fn metadata<R: Read>(
        &mut self,
        e: &mut tar::Entry<R>,
        h: &tar::Header,
        entry: &str,
        rel: &Path,
        path: &Path,
        mode: u32,
    ) -> Result<()> {
        let is_link = h.entry_type().is_symlink();
        if !self.opts.rootless {
            let (uid, gid) = (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32);
            std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(wr("chown", entry))?;
        }
        if !is_link {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(wr("chmod", entry))?;
        }
        if let Ok(Some(exts)) = e.pax_extensions() {
            for ext in exts.flatten() {
                let Ok(key) = ext.key() else { continue };
                let Some(attr) = key.strip_prefix("SCHILY.xattr.") else {
                    continue;
                };
                if attr.starts_with("trusted.overlay.") {
                    tracing::warn!(entry, attr, "dropping overlay xattr from layer");
                    continue;
                }
                match xattr::set(path, attr, ext.value_bytes()) {
                    Ok(()) => {}
                    // Filesystems without xattrs, and user.* on symlinks, refuse them:
                    // losing the attribute beats refusing the image (docker does too).
                    Err(e)
                        if is_link
                            || e.raw_os_error() == Some(nix::libc::ENOTSUP)
                            || e.raw_os_error() == Some(nix::libc::EPERM) =>
                    {
                        tracing::warn!(entry, attr, error = %e, "cannot set xattr; skipping it");
                    }
                    Err(e) => return Err(wr("set xattr", entry)(e)),
                }
            }
        }
        let mtime = h.mtime().unwrap_or(0) as i64;
        if h.entry_type().is_dir() {
            self.dirs.push((rel.to_path_buf(), mtime, 0));
        } else {
            set_mtime(path, mtime).map_err(wr("set mtime", entry))?;
        }
        Ok(())
    }

    /// Directory mtimes are set last: adding children would change them.
    fn finish_dirs(&mut self) {
        for (rel, mtime, _) in self.dirs.drain(..).rev() {
            let _ = set_mtime(&self.root.join(rel), mtime);
        }
    }
}

/// The entry at `rel` in the merged view of `lowers` (nearest first), found without
/// following any symlink: a lower lacking a parent is skipped, a non-directory parent
/// (symlink, file, whiteout) ends the search.
fn lower_meta(lowers: &[PathBuf], rel: &Path) -> Option<fs::Metadata> {
    let comps: Vec<_> = rel.components().collect();
    'layers: for l in lowers {
        let mut p = l.clone();
        for (i, c) in comps.iter().enumerate() {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Err(_) => continue 'layers,
                Ok(m) if i + 1 == comps.len() => return Some(m),
                Ok(m) if m.is_dir() => {}
                Ok(_) => return None,
            }
        }
    }
    None
}

/// Gives an implicitly created directory the attributes of the lower directory it
/// merges with, or 0755.
fn copy_dir_attrs(path: &Path, lower: Option<&fs::Metadata>, rootless: bool) -> io::Result<()> {
    match lower {
        Some(m) => {
            fs::set_permissions(path, fs::Permissions::from_mode(m.mode() & 0o7777))?;
            if !rootless {
                std::os::unix::fs::lchown(path, Some(m.uid()), Some(m.gid()))?;
            }
            Ok(())
        }
        None => fs::set_permissions(path, fs::Permissions::from_mode(0o755)),
    }
}

/// For a layer applied without its lowers (in parallel with them): refuses it when a
/// directory it created implicitly is a symlink or a non-directory in a lower layer,
/// and gives the others their lower directory's attributes, exactly as applying with
/// `lowers` would have.
pub fn check_implicit_dirs(
    root: &Path,
    implicit: &[(PathBuf, String)],
    lowers: &[PathBuf],
    rootless: bool,
) -> Result<()> {
    for (rel, entry) in implicit {
        let entry = entry.as_str();
        let lower = lower_meta(lowers, rel);
        if let Some(m) = &lower {
            if m.file_type().is_symlink() {
                return Err(hostile(entry, format!("its parent {} is a symlink in a lower layer; entries through symlinks are refused", rel.display())));
            }
            if !m.is_dir() {
                return Err(hostile(
                    entry,
                    format!(
                        "its parent {} is not a directory in a lower layer",
                        rel.display()
                    ),
                ));
            }
        }
        copy_dir_attrs(&root.join(rel), lower.as_ref(), rootless)
            .map_err(wr("set attributes", entry))?;
    }
    Ok(())
}

fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    use nix::sys::time::TimeVal;
    let t = TimeVal::new(secs, 0);
    nix::sys::stat::lutimes(path, &t, &t).map_err(io::Error::from)
}

/// Removes a file, symlink or whole directory at `p` without following links;
/// absent is fine.
fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
