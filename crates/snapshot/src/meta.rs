//! Snapshot metadata shared by the directory-based snapshotters: one JSON file,
//! updated under a file lock with write-to-temp and rename.

use crate::{Error, Info, Kind, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Record {
    pub id: u64,
    pub parent: Option<String>,
    pub kind: Kind,
    pub created: u64,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Db {
    pub next_id: u64,
    pub snapshots: BTreeMap<String, Record>,
}

impl Db {
    pub fn get(&self, key: &str) -> Result<&Record> {
        self.snapshots
            .get(key)
            .ok_or_else(|| Error::NotFound(key.to_string()))
    }

    pub fn info(&self, key: &str) -> Result<Info> {
        let r = self.get(key)?;
        Ok(Info {
            key: key.to_string(),
            parent: r.parent.clone(),
            kind: r.kind,
            created: r.created,
        })
    }

    /// The ids of `key` and its ancestors, nearest first.
    pub fn chain(&self, key: &str) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        let mut cur = Some(key.to_string());
        while let Some(k) = cur {
            let r = self.get(&k)?;
            out.push(r.id);
            cur = r.parent.clone();
        }
        Ok(out)
    }

    pub fn children(&self, key: &str) -> Vec<String> {
        self.snapshots
            .iter()
            .filter(|(_, r)| r.parent.as_deref() == Some(key))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// The metadata file plus its lock.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    root: PathBuf,
    file: berth_statefile::LockedJson,
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl From<berth_statefile::Error> for Error {
    fn from(e: berth_statefile::Error) -> Self {
        match e {
            berth_statefile::Error::Io { op, path, source } => Error::Io { op, path, source },
            berth_statefile::Error::Corrupt { path, source } => Error::Metadata { path, source },
        }
    }
}

impl Meta {
    pub fn open(root: &Path) -> Result<Self> {
        let snaps = root.join("snapshots");
        fs::create_dir_all(&snaps).map_err(io_err("create directory", &snaps))?;
        Ok(Self {
            root: root.to_path_buf(),
            file: berth_statefile::LockedJson::new(root.join("metadata.json"), root.join("lock")),
        })
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    /// Where removed snapshots' directories wait to be deleted.
    pub fn trash(&self) -> PathBuf {
        self.root.join("trash")
    }

    /// Reads the metadata under the lock.
    pub fn read<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        f(&self.file.read()?)
    }

    /// Changes the metadata under the lock; saved only when `f` succeeds.
    pub fn update<T>(&self, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        self.file.update(f)
    }

    /// [`Meta::update`] where `f` also says whether the change may be lost in a power
    /// failure (written without fsync, see `berth_statefile`): the creation and
    /// removal of active snapshots, whose containers' records are not synced either.
    pub fn update_choosing<T>(&self, f: impl FnOnce(&mut Db) -> Result<(T, bool)>) -> Result<T> {
        self.file.update_choosing(f)
    }
}
