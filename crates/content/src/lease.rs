//! Leases: named sets of digests that garbage collection must not delete.

use crate::digest::Digest;
use crate::store::{Error, Result};
use nix::fcntl::{Flock, FlockArg};
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct LeaseFile {
    temporary: bool,
    digests: BTreeSet<Digest>,
}

/// A named lease. Temporary leases hold a file lock for their lifetime, so a lease
/// left by a killed process is recognized as dead and ignored.
pub struct Lease {
    id: String,
    dir: PathBuf,
    data: LeaseFile,
    lock: Option<Flock<File>>,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl Lease {
    pub(crate) fn open(dir: PathBuf, id: &str, temporary: bool) -> Result<Self> {
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(Error::LeaseId(id.to_string()));
        }
        let json = dir.join(format!("{id}.json"));
        let mut data = match fs::read(&json) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| Error::Lease {
                id: id.to_string(),
                source,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => LeaseFile::default(),
            Err(e) => {
                return Err(Error::Io {
                    op: "read lease",
                    path: json,
                    source: e,
                })
            }
        };
        data.temporary = temporary;
        let lock = if temporary {
            let p = dir.join(format!("{id}.lock"));
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&p)
                .map_err(io_err("open lease lock", &p))?;
            Some(
                Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| Error::Io {
                    op: "lock lease (is another pull using this lease id?)",
                    path: p.clone(),
                    source: e.into(),
                })?,
            )
        } else {
            None
        };
        let l = Self {
            id: id.to_string(),
            dir,
            data,
            lock,
        };
        l.save()?;
        Ok(l)
    }

    /// The lease id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Protects `d` from garbage collection while this lease lives.
    pub fn add(&mut self, d: &Digest) -> Result<()> {
        if self.data.digests.insert(d.clone()) {
            self.save()?;
        }
        Ok(())
    }

    /// The digests held.
    pub fn digests(&self) -> &BTreeSet<Digest> {
        &self.data.digests
    }

    /// Deletes the lease (its digests become collectable).
    pub fn release(mut self) -> Result<()> {
        self.remove_files()
    }

    fn remove_files(&mut self) -> Result<()> {
        let json = self.dir.join(format!("{}.json", self.id));
        match fs::remove_file(&json) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::Io {
                    op: "remove lease",
                    path: json,
                    source: e,
                })
            }
            _ => {}
        }
        if self.lock.take().is_some() {
            let _ = fs::remove_file(self.dir.join(format!("{}.lock", self.id)));
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let json = self.dir.join(format!("{}.json", self.id));
        // one temporary file per writer: two builds in one daemon may save the same
        // lease (the same cache step) at once
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.dir.join(format!(
            ".{}.json.{}-{seq}.tmp",
            self.id,
            std::process::id()
        ));
        let body = serde_json::to_vec(&self.data).map_err(|source| Error::Lease {
            id: self.id.clone(),
            source,
        })?;
        let mut f = File::create(&tmp).map_err(io_err("write lease", &tmp))?;
        f.write_all(&body)
            .and_then(|_| f.sync_all())
            .map_err(io_err("write lease", &tmp))?;
        fs::rename(&tmp, &json).map_err(io_err("write lease", &json))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.data.temporary {
            let _ = self.remove_files();
        }
    }
}

/// Digests held by live leases; dead temporary leases are deleted on the way.
pub(crate) fn live_digests(dir: &Path) -> Result<BTreeSet<Digest>> {
    let mut out = BTreeSet::new();
    for e in fs::read_dir(dir).map_err(io_err("list leases", dir))? {
        let p = e.map_err(io_err("list leases", dir))?.path();
        if p.extension().is_none_or(|x| x != "json")
            || p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        let Ok(b) = fs::read(&p) else { continue };
        let Ok(data) = serde_json::from_slice::<LeaseFile>(&b) else {
            tracing::warn!(path = %p.display(), "ignoring corrupt lease file");
            continue;
        };
        if data.temporary && !temporary_alive(&p.with_extension("lock")) {
            let _ = fs::remove_file(&p);
            let _ = fs::remove_file(p.with_extension("lock"));
            continue;
        }
        out.extend(data.digests);
    }
    Ok(out)
}

fn temporary_alive(lock: &Path) -> bool {
    let Ok(f) = OpenOptions::new().write(true).open(lock) else {
        return false;
    };
    Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err()
}
