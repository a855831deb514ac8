//! The image metadata store: `<data-root>/image/db.json`, changed under a file lock
//! and written atomically (temp file, fsync, rename).

use nix::fcntl::{Flock, FlockArg};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors from the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("image store: cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The metadata file is corrupt.
    #[error("image store {path} is corrupt: {source}; restore it or remove it and pull again")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, Error>;

/// One image: a manifest in the content store and what it resolves to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageRecord {
    /// Digest of the manifest blob.
    pub manifest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// Digest of the config blob (the image id).
    pub config: String,
    /// Seconds since the epoch when this image entered the store.
    pub added: i64,
    /// `repository@sha256:…` names the image is known by in registries.
    #[serde(default)]
    pub repo_digests: Vec<String>,
}

/// The whole metadata store.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Db {
    /// Image id (config digest) → record.
    pub images: BTreeMap<String, ImageRecord>,
    /// Normalized `repository:tag` → image id.
    pub refs: BTreeMap<String, String>,
}

impl Db {
    /// The names pointing at image `id`.
    pub fn names_of(&self, id: &str) -> Vec<String> {
        self.refs
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Handle on the metadata file.
#[derive(Debug, Clone)]
pub struct MetaStore {
    dir: PathBuf,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl MetaStore {
    /// Opens (creating the directory if needed).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        Ok(Self { dir })
    }

    fn lock(&self) -> Result<Flock<File>> {
        let p = self.dir.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err("open lock", &p))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::Io {
            op: "lock",
            path: p,
            source: e.into(),
        })
    }

    fn load(&self) -> Result<Db> {
        let p = self.dir.join("db.json");
        match fs::read(&p) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|source| Error::Corrupt { path: p, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Db::default()),
            Err(e) => Err(Error::Io {
                op: "read",
                path: p,
                source: e,
            }),
        }
    }

    /// A consistent snapshot of the store.
    pub fn read(&self) -> Result<Db> {
        let _l = self.lock()?;
        self.load()
    }

    /// Changes the store; saved only if `f` succeeds.
    pub fn update<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&mut Db) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let _l = self.lock()?;
        let mut db = self.load()?;
        let out = f(&mut db)?;
        let p = self.dir.join("db.json");
        let tmp = self.dir.join("db.json.tmp");
        let body = serde_json::to_vec_pretty(&db).map_err(|source| Error::Corrupt {
            path: p.clone(),
            source,
        })?;
        let mut file = File::create(&tmp).map_err(io_err("write", &tmp))?;
        file.write_all(&body)
            .and_then(|_| file.sync_all())
            .map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &p).map_err(io_err("rename", &p))?;
        Ok(out)
    }
}
