//! A JSON state file changed under an exclusive file lock and written atomically
//! (temporary file, fsync, rename): what the image store and the snapshotters keep
//! their metadata in. Readers and writers in other processes see either the old or
//! the new file, never a torn one.
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

/// Write `v` to `path` atomically: `<path>.tmp`, fsync, rename.
pub fn write_atomic<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let body = serde_json::to_vec_pretty(v).map_err(|source| Error::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    let mut f = File::create(&tmp).map_err(io_err("write", &tmp))?;
    f.write_all(&body)
        .and_then(|_| f.sync_all())
        .map_err(io_err("write", &tmp))?;
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
        load_or_default(&self.file)
    }

    /// Change the state under the lock; it is saved only when `f` succeeds.
    pub fn update<D, T, E>(
        &self,
        f: impl FnOnce(&mut D) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        D: DeserializeOwned + Serialize + Default,
        E: From<Error>,
    {
        let _l = lock_exclusive(&self.lock)?;
        let mut d: D = load_or_default(&self.file)?;
        let out = f(&mut d)?;
        write_atomic(&self.file, &d)?;
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
    fn corrupt_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("s.json"), "{not json").expect("write");
        let f = LockedJson::new(dir.path().join("s.json"), dir.path().join("lock"));
        let e = f.read::<Vec<u32>>().expect_err("corrupt");
        assert!(e.to_string().contains("s.json is corrupt"), "{e}");
    }
}
