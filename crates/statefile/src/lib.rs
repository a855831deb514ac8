//! A JSON state file changed under an exclusive file lock and written atomically
//! (temporary file, fsync, rename): what the image store and the snapshotters keep
//! their metadata in. Readers and writers in other processes see either the old or
//! the new file, never a torn one.
//!
//! Changes that can be lost in a power failure (a container's writable snapshot,
//! whose container record is not synced either) use [`LockedJson::update_lazy`]: no
//! fsync. Every durable update also names its synced file `<file>.durable`, and a
//! reader that finds `<file>` torn (a lazy write the power failure cut) falls back
//! to it: the last durable state is never lost.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let f = berth_statefile::LockedJson::new(dir.path().join("db.json"), dir.path().join("lock"));
//! f.update(|n: &mut u32| {
//!     *n += 1;
//!     Ok::<_, berth_statefile::Error>(())
//! })?;
//! assert_eq!(f.read::<u32>()?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use nix::fcntl::{Flock, FlockArg};
use serde::{de::DeserializeOwned, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What can go wrong; callers map it into their own error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file does not hold the JSON we expect.
    #[error("{path} is corrupt: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Open (creating) `path` and hold an exclusive lock on it until the guard drops.
pub fn lock_exclusive(path: &Path) -> Result<Flock<File>> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("open lock", path))?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::Io {
        op: "lock",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// The JSON in `path`, or `T::default()` when the file does not exist.
pub fn load_or_default<T: DeserializeOwned + Default>(path: &Path) -> Result<T> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| Error::Corrupt {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// `path` with `suffix` appended.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Write `v` to `path` atomically: `<path>.tmp`, fsync, rename.
pub fn write_atomic<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    write_as(path, v, Durability::Synced, None)
}

/// How an update reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// fsync before the rename
    Synced,
    /// no fsync: may be lost (or torn) in a power failure, never in a process crash
    Lazy,
}

/// `<path>.tmp`, (fsync,) rename; a synced write is also linked as `durable`.
fn write_as<T: Serialize>(
    path: &Path,
    v: &T,
    how: Durability,
    durable: Option<&Path>,
) -> Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let body = serde_json::to_vec_pretty(v).map_err(|source| Error::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    let mut f = File::create(&tmp).map_err(io_err("write", &tmp))?;
    f.write_all(&body)
        .and_then(|_| match how {
            Durability::Synced => f.sync_all(),
            Durability::Lazy => Ok(()),
        })
        .map_err(io_err("write", &tmp))?;
    if let (Durability::Synced, Some(d)) = (how, durable) {
        // the same synced inode under a second name, which lazy writes do not replace
        let dtmp = with_suffix(d, ".tmp");
        let _ = std::fs::remove_file(&dtmp);
        std::fs::hard_link(&tmp, &dtmp).map_err(io_err("link", &dtmp))?;
        std::fs::rename(&dtmp, d).map_err(io_err("rename", d))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err("rename", path))
}

/// A JSON file and the lock file that guards it.
#[derive(Debug, Clone)]
pub struct LockedJson {
    file: PathBuf,
    lock: PathBuf,
}

impl LockedJson {
    /// The state in `file`, guarded by `lock` (both created on first use).
    pub fn new(file: impl Into<PathBuf>, lock: impl Into<PathBuf>) -> Self {
        LockedJson {
            file: file.into(),
            lock: lock.into(),
        }
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// A consistent copy of the state (default when the file does not exist yet).
    pub fn read<T: DeserializeOwned + Default>(&self) -> Result<T> {
        let _l = lock_exclusive(&self.lock)?;
        self.load()
    }

    /// The state; the last durable one when a power failure tore a lazy write.
    fn load<T: DeserializeOwned + Default>(&self) -> Result<T> {
        match load_or_default(&self.file) {
            Err(Error::Corrupt { path, source }) => {
                let durable = with_suffix(&self.file, ".durable");
                match std::fs::read(&durable) {
                    Ok(b) => {
                        serde_json::from_slice(&b).map_err(|_| Error::Corrupt { path, source })
                    }
                    Err(_) => Err(Error::Corrupt { path, source }),
                }
            }
            r => r,
        }
    }

    /// Change the state under the lock; it is saved (synced) only when `f` succeeds.
    pub fn update<D, T, E>(
        &self,
        f: impl FnOnce(&mut D) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        D: DeserializeOwned + Serialize + Default,
        E: From<Error>,
    {
        self.update_choosing(|d| f(d).map(|t| (t, false)))
    }

    /// [`LockedJson::update`] where `f` also says whether the change may be lost in
    /// a power failure (`true`: written without fsync; see the crate doc).
    pub fn update_choosing<D, T, E>(
        &self,
        f: impl FnOnce(&mut D) -> std::result::Result<(T, bool), E>,
    ) -> std::result::Result<T, E>
    where
        D: DeserializeOwned + Serialize + Default,
        E: From<Error>,
    {
        let _l = lock_exclusive(&self.lock)?;
        let mut d: D = self.load()?;
        let (out, lazy) = f(&mut d)?;
        let how = if lazy {
            Durability::Lazy
        } else {
            Durability::Synced
        };
        let durable = with_suffix(&self.file, ".durable");
        write_as(&self.file, &d, how, Some(&durable))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_saves_only_on_success_and_concurrent_updates_all_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = LockedJson::new(dir.path().join("s.json"), dir.path().join("lock"));
        let r: std::result::Result<(), Error> = f.update(|v: &mut Vec<u32>| {
            v.push(1);
            Err(Error::Io {
                op: "test",
                path: PathBuf::new(),
                source: std::io::ErrorKind::Other.into(),
            })
        });
        assert!(r.is_err());
        assert_eq!(f.read::<Vec<u32>>().expect("read"), Vec::<u32>::new());
        std::thread::scope(|s| {
            for i in 0..8 {
                let f = f.clone();
                s.spawn(move || {
                    f.update(|v: &mut Vec<u32>| {
                        v.push(i);
                        Ok::<_, Error>(())
                    })
                    .expect("update")
                });
            }
        });
        let mut v = f.read::<Vec<u32>>().expect("read");
        v.sort_unstable();
        assert_eq!(v, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_torn_lazy_write_falls_back_to_the_last_durable_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = LockedJson::new(dir.path().join("s.json"), dir.path().join("lock"));
        f.update(|v: &mut Vec<u32>| {
            v.push(1);
            Ok::<_, Error>(())
        })
        .expect("durable update");
        f.update_choosing(|v: &mut Vec<u32>| {
            v.push(2);
            Ok::<_, Error>(((), true))
        })
        .expect("lazy update");
        assert_eq!(f.read::<Vec<u32>>().expect("read"), vec![1, 2]);
        // what a power failure can leave of a lazy write: its new file, renamed in
        // place but empty or cut
        let tear = |content: &str| {
            let t = dir.path().join("torn");
            std::fs::write(&t, content).expect("write");
            std::fs::rename(&t, dir.path().join("s.json")).expect("rename");
        };
        tear("");
        assert_eq!(f.read::<Vec<u32>>().expect("read"), vec![1]);
        // and the next durable update carries on from there
        f.update(|v: &mut Vec<u32>| {
            v.push(3);
            Ok::<_, Error>(())
        })
        .expect("durable update");
        tear("[1, 3");
        assert_eq!(f.read::<Vec<u32>>().expect("read"), vec![1, 3]);
    }

    #[test]
    fn corrupt_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("s.json"), "{not json").expect("write");
        let f = LockedJson::new(dir.path().join("s.json"), dir.path().join("lock"));
        let e = f.read::<Vec<u32>>().expect_err("corrupt");
        assert!(e.to_string().contains("s.json is corrupt"), "{e}");
    }
}
