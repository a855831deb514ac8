//! The image metadata store: `<data-root>/image/db.json`, changed under a file lock
//! and written atomically (temp file, fsync, rename).

use std::collections::BTreeMap;
use std::path::PathBuf;

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
    file: berth_statefile::LockedJson,
}

impl From<berth_statefile::Error> for Error {
    fn from(e: berth_statefile::Error) -> Self {
        match e {
            berth_statefile::Error::Io { op, path, source } => Error::Io { op, path, source },
            berth_statefile::Error::Corrupt { path, source } => Error::Corrupt { path, source },
        }
    }
}

impl MetaStore {
    /// Opens (creating the directory if needed).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir: PathBuf = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            op: "create directory",
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            file: berth_statefile::LockedJson::new(dir.join("db.json"), dir.join("lock")),
        })
    }

    /// A consistent snapshot of the store.
    pub fn read(&self) -> Result<Db> {
        Ok(self.file.read()?)
    }

    /// Changes the store; saved only if `f` succeeds.
    pub fn update<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&mut Db) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.file
            .update(|db: &mut Db| f(db).map_err(UpdateError))
            .map_err(|e| e.0)
    }
}

/// Carries the caller's error through [`berth_statefile::LockedJson::update`].
struct UpdateError<E>(E);

impl<E: From<Error>> From<berth_statefile::Error> for UpdateError<E> {
    fn from(e: berth_statefile::Error) -> Self {
        UpdateError(E::from(Error::from(e)))
    }
}
