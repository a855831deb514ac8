//! Snapshot metadata shared by the directory-based snapshotters: one JSON file,
//! updated under a file lock with write-to-temp and rename.

use crate::{Error, Info, Kind, Result};
use nix::fcntl::{Flock, FlockArg};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
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

impl Meta {
    pub fn open(root: &Path) -> Result<Self> {
        let snaps = root.join("snapshots");
        fs::create_dir_all(&snaps).map_err(io_err("create directory", &snaps))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    fn lock(&self) -> Result<Flock<File>> {
        let p = self.root.join("lock");
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
        let p = self.root.join("metadata.json");
        match fs::read(&p) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|source| Error::Metadata { path: p, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Db::default()),
            Err(e) => Err(Error::Io {
                op: "read",
                path: p,
                source: e,
            }),
        }
    }

    fn save(&self, db: &Db) -> Result<()> {
        let p = self.root.join("metadata.json");
        let tmp = self.root.join("metadata.json.tmp");
        let body = serde_json::to_vec_pretty(db).map_err(|source| Error::Metadata {
            path: p.clone(),
            source,
        })?;
        let mut f = File::create(&tmp).map_err(io_err("write", &tmp))?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &p).map_err(io_err("rename", &p))
    }

    /// Reads the metadata under the lock.
    pub fn read<T>(&self, f: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
        let _l = self.lock()?;
        f(&self.load()?)
    }

    /// Changes the metadata under the lock; saved only when `f` succeeds.
    pub fn update<T>(&self, f: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        let _l = self.lock()?;
        let mut db = self.load()?;
        let out = f(&mut db)?;
        self.save(&db)?;
        Ok(out)
    }
}
