//! The blob store proper: verified ingest, reads, leases and garbage collection.

use crate::digest::{Digest, Hasher};
use nix::fcntl::{Flock, FlockArg};
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Errors from the content store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("content store: cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The bytes written do not hash to the digest they were announced with.
    #[error("digest mismatch: expected {expected}, got {actual}; the source is corrupt or was changed, fetch it again")]
    DigestMismatch {
        /// The announced digest.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// The number of bytes written differs from the announced size.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}; the transfer was truncated or the source is corrupt")]
    SizeMismatch {
        /// The announced (or resulting) digest.
        digest: String,
        /// The announced size.
        expected: u64,
        /// The size that arrived.
        actual: u64,
    },
    /// The blob is not in the store.
    #[error("blob {0} not found in the content store; pull or load the image again")]
    NotFound(Digest),
    /// A lease file could not be parsed.
    #[error("lease {id}: corrupt lease file: {source}")]
    Lease {
        /// The lease id.
        id: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A lease id holds characters other than `[A-Za-z0-9._-]`.
    #[error("invalid lease id {0:?}: use letters, digits, '.', '_' and '-'")]
    LeaseId(String),
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, Error>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A digest-addressed blob store rooted at a directory.
///
/// Layout: `blobs/sha256/<hex>` (committed, immutable), `ingest/*.partial`
/// (in-flight writes, each locked by its writer), `leases/<id>.json` (+ `.lock`).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// What a garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcStats {
    /// Blobs deleted.
    pub blobs: usize,
    /// Bytes freed (blobs and abandoned partial writes).
    pub bytes: u64,
    /// Abandoned partial writes deleted.
    pub partials: usize,
}

impl Store {
    /// Opens (creating if needed) a store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for d in ["blobs/sha256", "ingest", "leases"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err("create directory", &p))?;
        }
        Ok(Self { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `d` lives (whether or not it exists).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// The size of blob `d`, or `None` when absent.
    pub fn info(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    /// True when blob `d` is present.
    pub fn exists(&self, d: &Digest) -> bool {
        self.info(d).is_some()
    }

    /// Opens blob `d` for reading.
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(d.clone()),
            _ => Error::Io {
                op: "open blob",
                path: p.clone(),
                source: e,
            },
        })
    }

    /// Reads the whole blob `d` into memory (for manifests and configs).
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut f = self.open_blob(d)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)
            .map_err(io_err("read blob", &self.blob_path(d)))?;
        Ok(v)
    }

    /// Starts a verified write. With `expected`, commit fails unless the bytes hash to it;
    /// with `size`, commit fails unless exactly that many bytes were written.
    pub fn writer(&self, expected: Option<&Digest>, size: Option<u64>) -> Result<Writer> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{}-{}.partial", std::process::id(), n, nanos());
        let path = self.root.join("ingest").join(name);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create partial blob", &path))?;
        let file = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| Error::Io {
            op: "lock partial blob",
            path: path.clone(),
            source: e.into(),
        })?;
        Ok(Writer {
            file: Some(file),
            path,
            hasher: Hasher::default(),
            expected: expected.cloned(),
            size,
            blobs: self.root.join("blobs/sha256"),
        })
    }

    /// Copies `r` into the store, verifying it against `expected` and `size` when given.
    /// Returns the digest and size. Nothing is visible unless verification passed.
    pub fn ingest(
        &self,
        r: impl Read,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<(Digest, u64)> {
        if let Some(d) = expected {
            if let Some(have) = self.info(d) {
                if size.is_none_or(|s| s == have) {
                    return Ok((d.clone(), have));
                }
            }
        }
        let mut w = self.writer(expected, size)?;
        let mut r = r;
        io::copy(&mut r, &mut w).map_err(|e| Error::Io {
            op: "write blob",
            path: w.path.clone(),
            source: e,
        })?;
        let n = w.written();
        Ok((w.commit()?, n))
    }

    /// Stores `data` (verified against `expected` when given) and returns its digest.
    pub fn put(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        Ok(self.ingest(data, expected, Some(data.len() as u64))?.0)
    }

    /// Deletes blob `d` (absent is not an error).
    pub fn delete(&self, d: &Digest) -> Result<()> {
        let p = self.blob_path(d);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io {
                op: "delete blob",
                path: p,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Every committed blob with its size.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let e = e.map_err(io_err("list", &dir))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Ok(d) = Digest::parse(&format!("sha256:{name}")) {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((d, len));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Partial writes currently on disk (live or abandoned).
    pub fn partials(&self) -> Result<Vec<PathBuf>> {
        let dir = self.root.join("ingest");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            out.push(e.map_err(io_err("list", &dir))?.path());
        }
        Ok(out)
    }

    /// Removes partial writes whose writer is gone (their lock is free). Returns (count, bytes).
    pub fn clean_partials(&self) -> Result<(usize, u64)> {
        let (mut n, mut bytes) = (0, 0);
        for p in self.partials()? {
            let Ok(f) = OpenOptions::new().write(true).open(&p) else {
                continue;
            };
            if let Ok(locked) = Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                bytes += locked.metadata().map(|m| m.len()).unwrap_or(0);
                if fs::remove_file(&p).is_ok() {
                    n += 1;
                }
                drop(locked);
            }
        }
        Ok((n, bytes))
    }

    /// Creates or reopens the lease `id`. A temporary lease lives only as long as the
    /// returned value (and its process); a permanent one until [`Lease::release`].
    pub fn lease(&self, id: &str, temporary: bool) -> Result<Lease> {
        crate::lease::Lease::open(self.root.join("leases"), id, temporary)
    }

    /// Digests protected by live leases.
    pub fn leased(&self) -> Result<BTreeSet<Digest>> {
        crate::lease::live_digests(&self.root.join("leases"))
    }

    /// Deletes every blob neither in `roots` nor held by a live lease, and abandoned
    /// partial writes.
    pub fn gc(&self, roots: &BTreeSet<Digest>) -> Result<GcStats> {
        let leased = self.leased()?;
        let mut st = GcStats::default();
        for (d, size) in self.list()? {
            if roots.contains(&d) || leased.contains(&d) {
                continue;
            }
            self.delete(&d)?;
            st.blobs += 1;
            st.bytes += size;
        }
        let (n, b) = self.clean_partials()?;
        st.partials = n;
        st.bytes += b;
        tracing::debug!(
            blobs = st.blobs,
            partials = st.partials,
            bytes = st.bytes,
            "content gc"
        );
        Ok(st)
    }
}

pub use crate::lease::Lease;

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// An in-flight, verified blob write. Dropping it without [`Writer::commit`] deletes
/// the partial data; a killed process leaves a partial file that nothing reads and
/// that [`Store::clean_partials`] removes.
pub struct Writer {
    file: Option<Flock<File>>,
    path: PathBuf,
    hasher: Hasher,
    expected: Option<Digest>,
    size: Option<u64>,
    blobs: PathBuf,
}

impl Writer {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// Verifies, fsyncs and atomically publishes the blob; returns its digest.
    pub fn commit(mut self) -> Result<Digest> {
        let file = self
            .file
            .take()
            .expect("file is present until commit or drop");
        let actual = std::mem::take(&mut self.hasher);
        let n = actual.len();
        let digest = actual.finish();
        let cleanup = |e: Error| {
            let _ = fs::remove_file(&self.path);
            e
        };
        if let Some(want) = self.size {
            if want != n {
                let d = self
                    .expected
                    .as_ref()
                    .map_or(digest.to_string(), |d| d.to_string());
                return Err(cleanup(Error::SizeMismatch {
                    digest: d,
                    expected: want,
                    actual: n,
                }));
            }
        }
        if let Some(want) = &self.expected {
            if *want != digest {
                return Err(cleanup(Error::DigestMismatch {
                    expected: want.clone(),
                    actual: digest,
                }));
            }
        }
        file.sync_all()
            .map_err(io_err("fsync", &self.path))
            .map_err(cleanup)?;
        let dst = self.blobs.join(digest.hex());
        fs::rename(&self.path, &dst)
            .map_err(io_err("publish blob", &dst))
            .map_err(cleanup)?;
        if let Ok(dir) = File::open(&self.blobs) {
            let _ = dir.sync_all();
        }
        drop(file);
        Ok(digest)
    }
}

impl Write for Writer {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_ref()
            .ok_or_else(|| io::Error::other("writer already committed"))?;
        let n = (&**f).write(b)?;
        self.hasher.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path().join("content")).unwrap();
        (t, s)
    }

    #[test]
    fn put_read_roundtrip() {
        let (_t, s) = store();
        let d = s.put(b"abc", None).unwrap();
        assert_eq!(d, Digest::of(b"abc"));
        assert_eq!(s.read(&d).unwrap(), b"abc");
        assert_eq!(s.info(&d), Some(3));
        assert_eq!(s.list().unwrap(), vec![(d, 3)]);
    }

    #[test]
    fn digest_mismatch_leaves_nothing() {
        let (_t, s) = store();
        let wrong = Digest::of(b"other");
        let e = s.put(b"abc", Some(&wrong)).unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
        assert!(s.list().unwrap().is_empty());
        assert!(s.partials().unwrap().is_empty());
    }

    #[test]
    fn size_mismatch_leaves_nothing() {
        let (_t, s) = store();
        let d = Digest::of(b"abc");
        let e = s.ingest(&b"abc"[..], Some(&d), Some(4)).unwrap_err();
        assert!(matches!(e, Error::SizeMismatch { .. }), "{e}");
        assert!(!s.exists(&d));
        assert!(s.partials().unwrap().is_empty());
    }

    #[test]
    fn dropped_writer_removes_partial() {
        let (_t, s) = store();
        let mut w = s.writer(None, None).unwrap();
        w.write_all(b"half").unwrap();
        assert_eq!(s.partials().unwrap().len(), 1);
        drop(w);
        assert!(s.partials().unwrap().is_empty());
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn clean_partials_spares_live_writers() {
        let (_t, s) = store();
        let mut w = s.writer(None, None).unwrap();
        w.write_all(b"live").unwrap();
        fs::write(s.root().join("ingest/999-0-0.partial"), b"abandoned").unwrap();
        assert_eq!(s.clean_partials().unwrap(), (1, 9));
        assert_eq!(s.partials().unwrap().len(), 1);
        let d = w.commit().unwrap();
        assert_eq!(s.read(&d).unwrap(), b"live");
    }

    #[test]
    fn gc_keeps_roots_and_leases() {
        let (_t, s) = store();
        let a = s.put(b"a", None).unwrap();
        let b = s.put(b"b", None).unwrap();
        let c = s.put(b"c", None).unwrap();
        let mut lease = s.lease("pull-1", true).unwrap();
        lease.add(&b).unwrap();
        let st = s.gc(&BTreeSet::from([a.clone()])).unwrap();
        assert_eq!(st.blobs, 1);
        assert!(s.exists(&a) && s.exists(&b) && !s.exists(&c));
        drop(lease);
        s.gc(&BTreeSet::from([a.clone()])).unwrap();
        assert!(!s.exists(&b));
    }

    #[test]
    fn permanent_lease_survives_until_released() {
        let (_t, s) = store();
        let a = s.put(b"a", None).unwrap();
        {
            let mut l = s.lease("container-x", false).unwrap();
            l.add(&a).unwrap();
        }
        s.gc(&BTreeSet::new()).unwrap();
        assert!(s.exists(&a));
        s.lease("container-x", false).unwrap().release().unwrap();
        s.gc(&BTreeSet::new()).unwrap();
        assert!(!s.exists(&a));
    }
}
