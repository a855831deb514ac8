//! The build context: which files a COPY/ADD selects, and their content hash.
//!
//! Sources are cleaned and confined to the context; a source may hold Go
//! `filepath.Match` wildcards in any path component. `.dockerignore`d
//! paths are invisible (a `!` exception inside an ignored directory keeps
//! that directory visible). A matched directory brings everything under it;
//! a matched top-level symlink is followed (inside the context). The hash
//! covers each selected entry's path, kind, permission bits and contents
//! (file bytes or symlink target), never timestamps.
//!
//! Any directory can serve as a context: for `COPY --from=stage` open the
//! stage's root filesystem with `Context::new(rootfs, Ignore::default())` and
//! use the same selection and [`copy_destinations`] rules.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::glob::{clean, has_meta, Glob, GlobError};
use crate::ignore::{Ignore, IgnoreError};

/// Errors about the build context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A source that matches nothing.
    #[error("source {0:?} not found in the build context (or excluded by .dockerignore): check the path")]
    NotFound(String),
    /// A malformed wildcard.
    #[error("invalid source pattern {pattern:?}: {source}")]
    Pattern {
        /// The source.
        pattern: String,
        /// Why.
        source: GlobError,
    },
    /// Bad ignore or exclude patterns.
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
    /// Symlinks that loop.
    #[error("too many levels of symbolic links at {0:?} in the build context")]
    SymlinkLoop(String),
    /// An I/O failure.
    #[error("cannot read {path} in the build context: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, ContextError>;

/// Kind of a context entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link (copied as a link).
    Symlink,
}

/// One file, directory or symlink of the context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Real path, relative to the context root (`""` is the root).
    pub path: String,
    /// Path as seen from the source (the matched name, then the path below it).
    pub name: String,
    /// Kind.
    pub kind: EntryKind,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Size in bytes (files).
    pub size: u64,
    /// Link target (symlinks).
    pub link_target: Option<String>,
}

/// What one matched path of a source brings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceMatch {
    /// The source as written in the instruction.
    pub source: String,
    /// The matched entry first, then everything under it (for directories), sorted.
    pub entries: Vec<Entry>,
}

type Stamp = (u64, u64, i64, i64, i64, i64);

/// A build context directory.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    ignore: Ignore,
    memo: Mutex<HashMap<PathBuf, (Stamp, String)>>,
    /// The directory a client opened ([`Context::from_dir`]), kept open.
    _dir: Option<std::fs::File>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn join_rel(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// Clean a source and confine it to the context: `""` is the root.
pub fn normalize_source(src: &str) -> String {
    let c = clean(&format!("/{src}"));
    c.trim_start_matches('/').to_string()
}

impl Context {
    /// A context at `root` with the given ignore rules.
    pub fn new(root: impl Into<PathBuf>, ignore: Ignore) -> Self {
        Self {
            root: root.into(),
            ignore,
            memo: Mutex::new(HashMap::new()),
            _dir: None,
        }
    }

    /// The directory `dir`, opened by a client and passed as a descriptor
    /// (so the client could read it), as a context with `ignore`.
    ///
    /// Its path is read back from `/proc/self/fd` and used when it still
    /// names the same directory (RUN bind mounts, made in the container's
    /// own mount namespace, need a path); otherwise (another mount
    /// namespace, a renamed directory) `/proc/<pid>/fd/<fd>` stands for it.
    /// The descriptor is kept open as long as the context.
    pub fn from_dir(dir: std::os::fd::OwnedFd, ignore: Ignore) -> Result<Self> {
        use std::os::fd::AsRawFd;
        let fd_path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let file = std::fs::File::from(dir);
        let m = file.metadata().map_err(io_err(&fd_path))?;
        if !m.is_dir() {
            return Err(ContextError::Io {
                path: fd_path,
                source: std::io::Error::other("the build context is not a directory"),
            });
        }
        let same =
            |p: &Path| std::fs::metadata(p).is_ok_and(|n| n.dev() == m.dev() && n.ino() == m.ino());
        let root = std::fs::read_link(&fd_path)
            .ok()
            .filter(|p| p.is_absolute() && same(p))
            .unwrap_or_else(|| {
                PathBuf::from(format!(
                    "/proc/{}/fd/{}",
                    std::process::id(),
                    file.as_raw_fd()
                ))
            });
        Ok(Self {
            root,
            ignore,
            memo: Mutex::new(HashMap::new()),
            _dir: Some(file),
        })
    }

    /// A context at `root`, reading `<dockerfile>.dockerignore` or `.dockerignore`.
    pub fn open(root: impl Into<PathBuf>, dockerfile: Option<&Path>) -> Result<Self> {
        let root = root.into();
        let ignore = Ignore::for_build(&root, dockerfile)?;
        Ok(Self::new(root, ignore))
    }

    /// Unpack a tar stream (as sent to `POST /build`) into `dir` and open it
    /// as a context; `dockerfile` is the Dockerfile's path inside the archive.
    ///
    /// Entries that would land outside `dir` (absolute or `..` paths, links
    /// through symlinks) are refused by the unpacker.
    pub fn from_tar(
        reader: impl std::io::Read,
        dir: &Path,
        dockerfile: Option<&str>,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut archive = tar::Archive::new(Padded {
            inner: reader,
            read: 0,
            pad: None,
        });
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        archive.unpack(dir).map_err(io_err(dir))?;
        Self::new(dir, Ignore::default()).load_ignore(dockerfile)
    }

    /// This context with the ignore file of a build whose Dockerfile is
    /// `dockerfile` (a path in the context): `<dockerfile>.dockerignore`, else
    /// `.dockerignore`, both read inside the context (a link cannot make it
    /// read a file outside).
    pub fn load_ignore(self, dockerfile: Option<&str>) -> Result<Self> {
        let mut candidates: Vec<String> = dockerfile
            .map(|d| format!("{}.dockerignore", normalize_source(d)))
            .into_iter()
            .collect();
        candidates.push(".dockerignore".into());
        for c in candidates {
            match self.read_file(&c) {
                Ok(b) => {
                    let text = String::from_utf8_lossy(&b);
                    let ignore = Ignore::new(&crate::ignore::read_patterns(&text))?;
                    return Ok(self.with_ignore(ignore));
                }
                Err(ContextError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self)
    }

    /// This context with other ignore rules.
    pub fn with_ignore(mut self, ignore: Ignore) -> Self {
        self.ignore = ignore;
        self
    }

    /// The contents of the file `rel`, symlinks on the way resolved inside the
    /// context (as if it were the root directory), so that a link can never
    /// make it read a file outside.
    pub fn read_file(&self, rel: &str) -> Result<Vec<u8>> {
        let real = self.resolve(&normalize_source(rel))?;
        let p = self.root.join(&real);
        std::fs::read(&p).map_err(io_err(&p))
    }

    /// The context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `.dockerignore` hides `rel`.
    pub fn is_ignored(&self, rel: &str) -> bool {
        !rel.is_empty() && self.ignore.matches(rel)
    }

    fn lstat(&self, rel: &str) -> Result<Option<std::fs::Metadata>> {
        let p = self.root.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    fn list(&self, rel: &str) -> Result<Vec<String>> {
        let p = self.root.join(rel);
        let mut names: Vec<String> = std::fs::read_dir(&p)
            .map_err(io_err(&p))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .map_err(io_err(&p))?;
        names.sort();
        Ok(names)
    }

    /// Whether `rel` can be seen: not ignored, or a directory holding a re-included path.
    fn visible(&self, rel: &str, is_dir: bool) -> Result<bool> {
        if !self.is_ignored(rel) {
            return Ok(true);
        }
        if !is_dir || !self.ignore.has_exclusions() {
            return Ok(false);
        }
        for name in self.list(rel)? {
            let child = join_rel(rel, &name);
            let dir = self.lstat(&child)?.is_some_and(|m| m.is_dir());
            if self.visible(&child, dir)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Expand one source into the visible context paths it names.
    fn expand_source(&self, src: &str) -> Result<Vec<String>> {
        let rel = normalize_source(src);
        if rel.is_empty() {
            return Ok(vec![String::new()]);
        }
        // (name as written, real path inside the context)
        let mut current = vec![(String::new(), String::new())];
        for comp in rel.split('/') {
            let mut next = Vec::new();
            for (dir, real_dir) in &current {
                if !self.lstat(real_dir)?.is_some_and(|m| m.is_dir()) {
                    continue;
                }
                let names = if has_meta(comp) {
                    let g = Glob::new(comp).map_err(|source| ContextError::Pattern {
                        pattern: src.into(),
                        source,
                    })?;
                    self.list(real_dir)?
                        .into_iter()
                        .filter(|n| g.matches(n))
                        .collect()
                } else {
                    vec![comp.to_string()]
                };
                for n in names {
                    let real = self.resolve(&join_rel(real_dir, &n))?;
                    if let Some(m) = self.lstat(&real)? {
                        if self.visible(&real, m.is_dir())? {
                            next.push((join_rel(dir, &n), real));
                        }
                    }
                }
            }
            current = next;
        }
        Ok(current.into_iter().map(|(name, _)| name).collect())
    }

    /// Resolve `rel` inside the context as if the context were the root
    /// directory: every symlink on the way (last component included) is
    /// followed, `..` never climbs above the root, absolute targets restart
    /// at the root.
    fn resolve(&self, rel: &str) -> Result<String> {
        let mut todo: std::collections::VecDeque<String> =
            rel.split('/').map(str::to_string).collect();
        let mut done: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            let candidate = join_rel(&done.join("/"), &c);
            match self.lstat(&candidate)? {
                Some(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 40 {
                        return Err(ContextError::SymlinkLoop(rel.to_string()));
                    }
                    let p = self.root.join(&candidate);
                    let target = std::fs::read_link(&p).map_err(io_err(&p))?;
                    let target = target.to_string_lossy();
                    if target.starts_with('/') {
                        done.clear();
                    }
                    for part in target.split('/').rev() {
                        todo.push_front(part.to_string());
                    }
                }
                _ => done.push(c),
            }
        }
        Ok(done.join("/"))
    }

    fn entry(&self, path: &str, name: &str, m: &std::fs::Metadata) -> Result<Entry> {
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::File
        };
        let link_target = if kind == EntryKind::Symlink {
            let p = self.root.join(path);
            Some(
                std::fs::read_link(&p)
                    .map_err(io_err(&p))?
                    .to_string_lossy()
                    .into_owned(),
            )
        } else {
            None
        };
        let size = if kind == EntryKind::File { m.len() } else { 0 };
        Ok(Entry {
            path: path.into(),
            name: name.into(),
            kind,
            mode: m.permissions().mode() & 0o7777,
            size,
            link_target,
        })
    }

    /// Walk the directory `path` (seen as `name`), appending visible entries;
    /// returns whether anything was added.
    fn walk(
        &self,
        path: &str,
        name: &str,
        hidden: &dyn Fn(&str, &str) -> bool,
        out: &mut Vec<Entry>,
    ) -> Result<bool> {
        let mut added = false;
        for n in self.list(path)? {
            let child = join_rel(path, &n);
            let child_name = join_rel(name, &n);
            let Some(m) = self.lstat(&child)? else {
                continue;
            };
            let is_hidden = hidden(&child, &child_name);
            if m.is_dir() {
                let mut sub = Vec::new();
                if is_hidden && !self.ignore.has_exclusions() {
                    continue;
                }
                let any = self.walk(&child, &child_name, hidden, &mut sub)?;
                if !is_hidden || any {
                    out.push(self.entry(&child, &child_name, &m)?);
                    out.extend(sub);
                    added = true;
                }
            } else if !is_hidden {
                out.push(self.entry(&child, &child_name, &m)?);
                added = true;
            }
        }
        Ok(added)
    }

    /// Select the entries for COPY/ADD `sources`, minus `--exclude` patterns.
    ///
    /// Exclude patterns apply to paths relative to the directory a source
    /// names (or to the fixed directory part of a wildcard source).
    pub fn select(&self, sources: &[String], excludes: &[String]) -> Result<Vec<SourceMatch>> {
        let excl = Ignore::new(excludes)?;
        let mut out = Vec::new();
        for src in sources {
            let rel = normalize_source(src);
            let base = exclude_base(&rel);
            let matched = self.expand_source(src)?;
            // A wildcard may match nothing (`COPY package.json yarn.lock* ./`
            // is docker's "copy if present"); a literal path must exist.
            if matched.is_empty() && !has_meta(&rel) {
                return Err(ContextError::NotFound(src.clone()));
            }
            for name in matched {
                let real = self.resolve(&name)?;
                let Some(m) = self.lstat(&real)? else {
                    return Err(ContextError::NotFound(src.clone()));
                };
                let dir_base = if m.is_dir() && !has_meta(&rel) {
                    name.clone()
                } else {
                    base.clone()
                };
                let rel_to = |p: &str| {
                    p.strip_prefix(&dir_base)
                        .map(|s| s.trim_start_matches('/').to_string())
                };
                let hidden = |real_path: &str, seen: &str| {
                    self.is_ignored(real_path)
                        || rel_to(seen).is_some_and(|r| !r.is_empty() && excl.matches(&r))
                };
                if !m.is_dir() && hidden("", &name) {
                    continue;
                }
                let mut entries = vec![self.entry(&real, &name, &m)?];
                if m.is_dir() {
                    self.walk(&real, &name, &hidden, &mut entries)?;
                }
                out.push(SourceMatch {
                    source: src.clone(),
                    entries,
                });
            }
        }
        Ok(out)
    }

    /// sha256 of a file's contents, memoised on (size, inode, mtime, ctime).
    fn file_digest(&self, rel: &str) -> Result<String> {
        let p = self.root.join(rel);
        let m = std::fs::metadata(&p).map_err(io_err(&p))?;
        let stamp: Stamp = (
            m.dev(),
            m.ino(),
            m.size() as i64,
            m.mtime_nsec() + m.mtime() * 1_000_000_000,
            m.ctime(),
            m.ctime_nsec(),
        );
        if let Ok(memo) = self.memo.lock() {
            if let Some((s, d)) = memo.get(&p) {
                if *s == stamp {
                    return Ok(d.clone());
                }
            }
        }
        let mut f = std::fs::File::open(&p).map_err(io_err(&p))?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h).map_err(io_err(&p))?;
        let d = hex::encode(h.finalize());
        if let Ok(mut memo) = self.memo.lock() {
            memo.insert(p, (stamp, d.clone()));
        }
        Ok(d)
    }

    /// The content hash of a selection: `sha256:<hex>` over every entry's
    /// name, kind, permission bits and contents (never mtimes).
    pub fn content_hash(&self, matches: &[SourceMatch]) -> Result<String> {
        let mut lines: Vec<(String, String)> = Vec::new();
        for m in matches {
            for e in &m.entries {
                let content = match e.kind {
                    EntryKind::File => self.file_digest(&e.path)?,
                    EntryKind::Symlink => e.link_target.clone().unwrap_or_default(),
                    EntryKind::Dir => String::new(),
                };
                let kind = match e.kind {
                    EntryKind::File => 'f',
                    EntryKind::Dir => 'd',
                    EntryKind::Symlink => 'l',
                };
                lines.push((
                    e.name.clone(),
                    format!("{kind} {:o} {}\0{content}\n", e.mode, e.name),
                ));
            }
        }
        lines.sort();
        let mut h = Sha256::new();
        for (_, l) in lines {
            h.update(l.as_bytes());
        }
        Ok(format!("sha256:{}", hex::encode(h.finalize())))
    }
}

/// A tar stream completed at its end: the docker CLI sends a Dockerfile from outside
/// the context (`-f`) as a last entry with neither the padding of its data to a 512-byte
/// block nor the end-of-archive blocks (Go's reader takes that, tar-rs does not). At a
/// clean end of the stream the missing padding and two zero blocks follow; a stream that
/// breaks off is an error from the reader, not an end.
struct Padded<R> {
    inner: R,
    read: u64,
    pad: Option<usize>,
}

impl<R: std::io::Read> std::io::Read for Padded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(left) = self.pad.as_mut() {
            let n = (*left).min(buf.len());
            buf[..n].fill(0);
            *left -= n;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let partial = (self.read % 512) as usize;
            let fill = if partial == 0 { 0 } else { 512 - partial };
            self.pad = Some(fill + 1024);
            return self.read(buf);
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// One entry of a COPY and where it lands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyItem {
    /// The context entry.
    pub entry: Entry,
    /// Absolute path in the image.
    pub dest: String,
}

/// Where every selected entry lands, with docker's COPY rules: a directory
/// source copies its contents (also when matched by a wildcard); a file goes
/// to `dest/<name>` when `dest` ends with `/`, else to `dest` itself;
/// `--parents` keeps the path from the context root, or from a `/./` pivot
/// written in the source.
pub fn copy_destinations(matches: &[SourceMatch], dest: &str, parents: bool) -> Vec<CopyItem> {
    let dir_dest = dest.ends_with('/');
    let dest_root = dest.trim_end_matches('/');
    let mut out = Vec::new();
    for m in matches {
        let Some(root) = m.entries.first() else {
            continue;
        };
        let pivot = match m.source.find("/./") {
            Some(i) => normalize_source(&m.source[..i]),
            None => String::new(),
        };
        let landing = |name: &str| -> String {
            let rel = if parents {
                name.strip_prefix(pivot.as_str())
                    .unwrap_or(name)
                    .trim_start_matches('/')
                    .to_string()
            } else if root.kind == EntryKind::Dir {
                name.strip_prefix(root.name.as_str())
                    .unwrap_or(name)
                    .trim_start_matches('/')
                    .to_string()
            } else if dir_dest {
                name.rsplit('/').next().unwrap_or(name).to_string()
            } else {
                String::new()
            };
            match (rel.is_empty(), dest_root.is_empty()) {
                (true, true) => "/".to_string(),
                (true, false) => dest_root.to_string(),
                (false, _) => format!("{dest_root}/{rel}"),
            }
        };
        for e in &m.entries {
            out.push(CopyItem {
                entry: e.clone(),
                dest: landing(&e.name),
            });
        }
    }
    out
}

/// Compression of a local ADD source that docker unpacks (by magic number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ArchiveKind {
    /// An uncompressed tar.
    Tar,
    /// gzip.
    Gzip,
    /// bzip2.
    Bzip2,
    /// xz.
    Xz,
    /// zstd.
    Zstd,
}

/// Recognise an archive ADD would extract from its first bytes (at least
/// 262 are needed to see an uncompressed tar's `ustar` magic).
pub fn archive_kind(head: &[u8]) -> Option<ArchiveKind> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(ArchiveKind::Gzip)
    } else if head.starts_with(b"BZh") {
        Some(ArchiveKind::Bzip2)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(ArchiveKind::Xz)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(ArchiveKind::Zstd)
    } else if head.get(257..262) == Some(b"ustar") {
        Some(ArchiveKind::Tar)
    } else {
        None
    }
}

/// The directory `--exclude` patterns are relative to: the source's parent,
/// or the fixed part before the first wildcard component.
fn exclude_base(rel: &str) -> String {
    let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    let fixed = comps
        .iter()
        .position(|c| has_meta(c))
        .unwrap_or(comps.len().saturating_sub(1));
    comps[..fixed].join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for (p, c) in [
            ("Dockerfile", "FROM scratch"),
            ("src/main.rs", "fn main() {}"),
            ("src/lib.rs", "pub fn x() {}"),
            ("src/notes.md", "notes"),
            ("src/deep/a.md", "a"),
            ("docs/readme.md", "readme"),
            ("node_modules/pkg/index.js", "js"),
            ("logs/keep.log", "keep"),
            ("logs/drop.log", "drop"),
            ("home.txt", "h"),
            ("homework.bin", "w"),
        ] {
            let p = r.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, c).unwrap();
        }
        symlink("src", r.join("link-to-src")).unwrap();
        symlink("main.rs", r.join("src/alias.rs")).unwrap();
        d
    }

    fn ctx(d: &tempfile::TempDir, ignore: &str) -> Context {
        Context::new(
            d.path(),
            Ignore::new(&crate::ignore::read_patterns(ignore)).unwrap(),
        )
    }

    fn names(m: &[SourceMatch]) -> Vec<String> {
        m.iter()
            .flat_map(|s| s.entries.iter().map(|e| e.name.clone()))
            .collect()
    }

    #[test]
    fn literal_file_and_dir() {
        let d = tree();
        let c = ctx(&d, "");
        assert_eq!(
            names(&c.select(&["/src/../home.txt".into()], &[]).unwrap()),
            ["home.txt"]
        );
        let m = c.select(&["src".into()], &[]).unwrap();
        assert_eq!(
            names(&m),
            [
                "src",
                "src/alias.rs",
                "src/deep",
                "src/deep/a.md",
                "src/lib.rs",
                "src/main.rs",
                "src/notes.md"
            ]
        );
        assert_eq!(m[0].entries[1].kind, EntryKind::Symlink);
        assert_eq!(m[0].entries[1].link_target.as_deref(), Some("main.rs"));
    }

    #[test]
    fn wildcards() {
        let d = tree();
        let c = ctx(&d, "");
        assert_eq!(
            names(&c.select(&["hom*".into()], &[]).unwrap()),
            ["home.txt", "homework.bin"]
        );
        assert_eq!(
            names(&c.select(&["src/*.rs".into()], &[]).unwrap()),
            ["src/alias.rs", "src/lib.rs", "src/main.rs"]
        );
        // As with Go's filepath.Glob, a symlinked directory is entered.
        assert_eq!(
            names(&c.select(&["*/*.md".into()], &[]).unwrap()),
            ["docs/readme.md", "link-to-src/notes.md", "src/notes.md"]
        );
        assert_eq!(
            names(&c.select(&["hom?.txt".into()], &[]).unwrap()),
            ["home.txt"]
        );
        assert!(c.select(&["nothing*".into()], &[]).unwrap().is_empty());
        assert!(matches!(
            c.select(&["nothing".into()], &[]),
            Err(ContextError::NotFound(_))
        ));
        assert!(matches!(
            c.select(&["[".into()], &[]),
            Err(ContextError::Pattern { .. })
        ));
    }

    #[test]
    fn dockerignore_applies() {
        let d = tree();
        let c = ctx(&d, "node_modules\n*.md\n**/*.md\nlogs\n!logs/keep.log\n");
        let all = names(&c.select(&[".".into()], &[]).unwrap());
        assert!(
            !all.iter()
                .any(|n| n.contains("node_modules") || n.ends_with(".md")),
            "{all:?}"
        );
        assert!(all.contains(&"logs/keep.log".to_string()));
        assert!(!all.contains(&"logs/drop.log".to_string()));
        assert!(all.contains(&"logs".to_string()));
        assert!(matches!(
            c.select(&["docs/readme.md".into()], &[]),
            Err(ContextError::NotFound(_))
        ));
        assert!(matches!(
            c.select(&["node_modules".into()], &[]),
            Err(ContextError::NotFound(_))
        ));
        // The ignored dir stays reachable for the re-included file.
        assert_eq!(
            names(&c.select(&["logs".into()], &[]).unwrap()),
            ["logs", "logs/keep.log"]
        );
    }

    #[test]
    fn excludes() {
        let d = tree();
        let c = ctx(&d, "");
        assert_eq!(
            names(&c.select(&["hom*".into()], &["*.txt".into()]).unwrap()),
            ["homework.bin"]
        );
        let m = c.select(&["src".into()], &["*.md".into()]).unwrap();
        assert!(names(&m).contains(&"src/deep/a.md".to_string()));
        assert!(!names(&m).contains(&"src/notes.md".to_string()));
        let m = c
            .select(&["src".into()], &["**/*.md".into(), "deep".into()])
            .unwrap();
        assert_eq!(
            names(&m),
            ["src", "src/alias.rs", "src/lib.rs", "src/main.rs"]
        );
    }

    #[test]
    fn top_level_symlink_followed() {
        let d = tree();
        let c = ctx(&d, "");
        let m = c.select(&["link-to-src".into()], &[]).unwrap();
        assert_eq!(m[0].entries[0].kind, EntryKind::Dir);
        assert_eq!(m[0].entries[0].path, "src");
        assert!(names(&m).contains(&"link-to-src/main.rs".to_string()));
        symlink("../../../etc", d.path().join("escape")).unwrap();
        // Links are resolved inside the context, as in a chroot.
        assert!(matches!(
            c.select(&["escape".into()], &[]),
            Err(ContextError::NotFound(_))
        ));
    }

    #[test]
    fn symlinks_on_the_way_stay_inside_the_context() {
        let d = tree();
        let c = ctx(&d, "");
        // An intermediate symlinked directory is followed.
        assert_eq!(
            names(&c.select(&["link-to-src/main.rs".into()], &[]).unwrap()),
            ["link-to-src/main.rs"]
        );
        assert_eq!(
            names(&c.select(&["link-to-src/*.rs".into()], &[]).unwrap()).len(),
            3
        );
        // A link through an absolute target resolves from the context root, never the host's.
        symlink("/", d.path().join("rootlink")).unwrap();
        let m = c.select(&["rootlink/home.txt".into()], &[]).unwrap();
        assert_eq!(m[0].entries[0].path, "home.txt");
        symlink("/etc", d.path().join("etc-link")).unwrap();
        assert!(matches!(
            c.select(&["etc-link/passwd".into()], &[]),
            Err(ContextError::NotFound(_))
        ));
        // A final link whose target goes through another link.
        symlink("etc-link/passwd", d.path().join("two-hops")).unwrap();
        assert!(matches!(
            c.select(&["two-hops".into()], &[]),
            Err(ContextError::NotFound(_))
        ));
        symlink("loop-b", d.path().join("loop-a")).unwrap();
        symlink("loop-a", d.path().join("loop-b")).unwrap();
        assert!(matches!(
            c.select(&["loop-a".into()], &[]),
            Err(ContextError::SymlinkLoop(_))
        ));
    }

    #[test]
    fn content_hash_ignores_mtime_but_not_content_or_mode() {
        let d = tree();
        let c = ctx(&d, "");
        let sel = |c: &Context| {
            c.content_hash(&c.select(&["src".into()], &[]).unwrap())
                .unwrap()
        };
        let h1 = sel(&c);
        assert!(h1.starts_with("sha256:"));
        let f = d.path().join("src/lib.rs");
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(t)
            .unwrap();
        assert_eq!(sel(&c), h1, "mtime must not matter");
        // Unrelated files do not matter either.
        fs::write(d.path().join("home.txt"), "changed").unwrap();
        assert_eq!(sel(&c), h1);
        fs::write(&f, "pub fn y() {}").unwrap();
        let h2 = sel(&c);
        assert_ne!(h2, h1);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o700)).unwrap();
        assert_ne!(sel(&c), h2);
        // A fresh context (no memo) agrees.
        assert_eq!(sel(&ctx(&d, "")), sel(&c));
    }

    #[test]
    fn tar_context() {
        let src = tree();
        fs::write(src.path().join(".dockerignore"), "*.bin\n").unwrap();
        let mut buf = Vec::new();
        {
            let mut b = tar::Builder::new(&mut buf);
            b.follow_symlinks(false);
            b.append_dir_all(".", src.path()).unwrap();
            b.finish().unwrap();
        }
        let out = tempfile::tempdir().unwrap();
        let c = Context::from_tar(buf.as_slice(), out.path(), Some("Dockerfile")).unwrap();
        assert_eq!(
            names(&c.select(&["hom*".into()], &[]).unwrap()),
            ["home.txt"]
        );
        let orig = ctx(&src, "*.bin\n");
        let sel = |c: &Context| {
            c.content_hash(&c.select(&["src".into()], &[]).unwrap())
                .unwrap()
        };
        assert_eq!(
            sel(&c),
            sel(&orig),
            "same content, same hash, wherever it lives"
        );
    }

    /// The docker CLI's `-f` from outside the context: the Dockerfile is the last
    /// entry, with neither padding nor end-of-archive blocks.
    #[test]
    fn tar_context_whose_last_entry_is_cut_short_as_the_docker_cli_sends_it() {
        let mut buf = Vec::new();
        {
            let mut b = tar::Builder::new(&mut buf);
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "a.txt", &b"abc"[..]).unwrap();
            b.finish().unwrap();
        }
        buf.truncate(buf.len() - 1024); // no end-of-archive blocks
        let text = b"FROM scratch\n";
        let mut h = tar::Header::new_gnu();
        h.set_path(".dockerfile.0123").unwrap();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        buf.extend_from_slice(h.as_bytes());
        buf.extend_from_slice(text); // and no padding
        let out = tempfile::tempdir().unwrap();
        let c = Context::from_tar(buf.as_slice(), out.path(), Some(".dockerfile.0123")).unwrap();
        assert_eq!(c.read_file(".dockerfile.0123").unwrap(), text);
        assert_eq!(c.read_file("a.txt").unwrap(), b"abc");
    }

    #[test]
    fn a_directory_descriptor_is_a_context_and_links_stay_inside() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "host secret").unwrap();
        let d = tree();
        symlink(outside.path().join("secret"), d.path().join("leak")).unwrap();
        symlink("/", d.path().join("root")).unwrap();
        let fd: std::os::fd::OwnedFd = fs::File::open(d.path()).unwrap().into();
        let c = Context::from_dir(fd, Ignore::new(&["*.bin"]).unwrap()).unwrap();
        assert_eq!(
            c.root(),
            d.path(),
            "the directory's own path when it names it"
        );
        assert_eq!(c.read_file("home.txt").unwrap(), b"h");
        // absolute link targets start again at the context's root
        assert!(c.read_file("leak").is_err());
        let rel = outside.path().join("secret");
        let rel = rel.to_str().unwrap().trim_start_matches('/');
        assert!(c.read_file(&format!("root/{rel}")).is_err());
        assert!(c.select(&["leak".into()], &[]).is_err());
        assert!(c.is_ignored("x.bin"));
        // a file is not a context
        let f: std::os::fd::OwnedFd = fs::File::open(d.path().join("home.txt")).unwrap().into();
        assert!(Context::from_dir(f, Ignore::default()).is_err());
    }

    #[test]
    fn empty_wildcards_are_allowed() {
        let d = tree();
        let c = ctx(&d, "");
        let m = c
            .select(&["home.txt".into(), "yarn.lock*".into()], &[])
            .unwrap();
        assert_eq!(names(&m), ["home.txt"]);
    }

    fn dests(c: &Context, srcs: &[&str], dest: &str, parents: bool) -> Vec<String> {
        let srcs: Vec<String> = srcs.iter().map(|s| s.to_string()).collect();
        copy_destinations(&c.select(&srcs, &[]).unwrap(), dest, parents)
            .into_iter()
            .map(|i| i.dest)
            .collect()
    }

    #[test]
    fn destinations_follow_docker_rules() {
        let d = tree();
        let c = ctx(&d, "");
        assert_eq!(dests(&c, &["home.txt"], "/x/", false), ["/x/home.txt"]);
        assert_eq!(dests(&c, &["home.txt"], "/x", false), ["/x"]);
        assert_eq!(dests(&c, &["src/deep"], "/x", false), ["/x", "/x/a.md"]);
        assert_eq!(
            dests(&c, &["src/*.rs"], "/x/", false),
            ["/x/alias.rs", "/x/lib.rs", "/x/main.rs"]
        );
        assert_eq!(
            dests(&c, &["s*"], "/x/", false)[..3],
            ["/x", "/x/alias.rs", "/x/deep"]
        );
        assert_eq!(
            dests(&c, &["src/deep/a.md"], "/x/", true),
            ["/x/src/deep/a.md"]
        );
        assert_eq!(
            dests(&c, &["./src/./deep/a.md"], "/x/", true),
            ["/x/deep/a.md"]
        );
        assert_eq!(dests(&c, &["."], "/", false)[0], "/");
    }

    #[test]
    fn archive_magic() {
        assert_eq!(archive_kind(&[0x1f, 0x8b, 8]), Some(ArchiveKind::Gzip));
        assert_eq!(archive_kind(b"BZh91AY"), Some(ArchiveKind::Bzip2));
        assert_eq!(
            archive_kind(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(ArchiveKind::Zstd)
        );
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(archive_kind(&tar), Some(ArchiveKind::Tar));
        assert_eq!(archive_kind(b"plain text"), None);
    }

    #[test]
    fn normalize() {
        assert_eq!(normalize_source("/"), "");
        assert_eq!(normalize_source("."), "");
        assert_eq!(normalize_source("../../x"), "x");
        assert_eq!(normalize_source("./a//b/"), "a/b");
        assert_eq!(exclude_base("a/b/*.c"), "a/b");
        assert_eq!(exclude_base("a/file"), "a");
        assert_eq!(exclude_base("*"), "");
    }
}
