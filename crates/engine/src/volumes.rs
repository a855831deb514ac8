//! Named volumes: directories under `<data-root>/volumes/<name>/_data` with a
//! `meta.json`, mounted into containers with `-v name:/path`. A new (empty) volume
//! is filled from the image's content at that path on first use, as docker does;
//! the image's `VOLUME`s become anonymous volumes, removed with the container by
//! `rm -v` and `--rm`.

use crate::error::{Error, Result};
use crate::record::{read_json, write_json, Bind};
use crate::{names, Engine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// its name
    pub name: String,
    /// RFC 3339 creation time
    pub created_at: String,
    /// `-l key=value`
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// made for an image's VOLUME, removed with its container
    #[serde(default)]
    pub anonymous: bool,
    /// where its data lives on the host
    #[serde(skip)]
    pub mountpoint: PathBuf,
}

impl Engine {
    fn volumes_dir(&self) -> PathBuf {
        self.data_root.join("volumes")
    }

    fn load_volume(&self, name: &str) -> Result<Volume> {
        let dir = self.volumes_dir().join(name);
        if !dir.join("_data").is_dir() {
            return Err(Error::Missing(format!("get {name}: no such volume")));
        }
        let mut v: Volume = read_json(&dir.join("meta.json")).unwrap_or(Volume {
            name: name.into(),
            created_at: String::new(),
            labels: BTreeMap::new(),
            anonymous: false,
            mountpoint: PathBuf::new(),
        });
        v.mountpoint = dir.join("_data");
        Ok(v)
    }

    /// Creates volume `name` (a random one when `None`); an existing one is returned
    /// as it is.
    pub fn volume_create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<Volume> {
        let name = match name {
            Some(n) => names::validate(n)?.to_string(),
            None => names::new_id()?,
        };
        let dir = self.volumes_dir().join(&name);
        std::fs::create_dir_all(self.volumes_dir())
            .map_err(|e| Error::io("create directory", self.volumes_dir(), e))?;
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if let Ok(v) = self.load_volume(&name) {
                    return Ok(v);
                }
            }
            Err(e) => return Err(Error::io("create directory", &dir, e)),
        }
        let v = Volume {
            name: name.clone(),
            created_at: crate::record::now(),
            labels,
            anonymous,
            mountpoint: dir.join("_data"),
        };
        write_json(&dir.join("meta.json"), &v)?;
        match std::fs::create_dir(&v.mountpoint) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create directory", &v.mountpoint, e)),
        }
        Ok(v)
    }

    /// Every volume, by name.
    pub fn volume_list(&self) -> Result<Vec<Volume>> {
        let rd = match std::fs::read_dir(self.volumes_dir()) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io("read directory", self.volumes_dir(), e)),
        };
        let mut out: Vec<Volume> = rd
            .flatten()
            .filter_map(|e| self.load_volume(&e.file_name().to_string_lossy()).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Volume `name`.
    pub fn volume_inspect(&self, name: &str) -> Result<Volume> {
        self.load_volume(name)
    }

    /// Ids of the containers that use volume `name`.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for id in self.ids()? {
            if let Ok(r) = self.dir(&id).load() {
                if r.volumes.iter().any(|v| v == name) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Removes volume `name`, unless a container uses it.
    pub fn volume_remove(&self, name: &str) -> Result<()> {
        let v = self.load_volume(name)?;
        let users = self.volume_users(name)?;
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "remove {name}: volume is in use - [{}]: remove those containers first",
                users.join(", ")
            )));
        }
        let dir = self.volumes_dir().join(&v.name);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))
    }

    /// Removes unused anonymous volumes (`all`: every unused volume); returns names.
    pub fn volume_prune(&self, all: bool) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for v in self.volume_list()? {
            if (all || v.anonymous) && self.volume_remove(&v.name).is_ok() {
                removed.push(v.name);
            }
        }
        Ok(removed)
    }

    /// The binds of a new container with its volumes created (and filled from the
    /// image where new), plus anonymous volumes for the image's VOLUMEs no bind
    /// covers. Returns the binds and the names of the volumes used.
    pub(crate) fn resolve_volumes(
        &self,
        binds: &[Bind],
        image_volumes: &[String],
        rootfs: &Path,
    ) -> Result<(Vec<Bind>, Vec<String>)> {
        let mut out = Vec::new();
        let mut used = Vec::new();
        // (bind, volume name; None for a new anonymous volume)
        let mut wanted: Vec<(Bind, Option<String>)> = binds
            .iter()
            .map(|b| (b.clone(), b.volume.clone()))
            .collect();
        let same = |a: &Path, b: &str| {
            a.to_string_lossy().trim_end_matches('/') == b.trim_end_matches('/')
        };
        for path in image_volumes {
            if !binds.iter().any(|b| same(&b.target, path)) {
                let b = Bind {
                    source: PathBuf::new(),
                    volume: None,
                    target: PathBuf::from(path),
                    readonly: false,
                };
                wanted.push((b, None));
            }
        }
        for (mut b, name) in wanted {
            if b.volume.is_none() && name.is_none() && !b.source.as_os_str().is_empty() {
                out.push(b);
                continue;
            }
            let v = self.volume_create(name.as_deref(), BTreeMap::new(), name.is_none())?;
            copy_up(rootfs, &b.target, &v.mountpoint)?;
            b.source = v.mountpoint.clone();
            b.volume = Some(v.name.clone());
            used.push(v.name);
            out.push(b);
        }
        Ok((out, used))
    }

    /// Removes the anonymous ones among `names` (after their container went).
    pub(crate) fn remove_anonymous(&self, names: &[String]) {
        for n in names {
            if self.load_volume(n).is_ok_and(|v| v.anonymous) {
                let _ = self.volume_remove(n);
            }
        }
    }
}

/// Copies what the image has at `target` into the volume if the volume is empty.
/// A path through a symlink in the rootfs is not followed (nothing is copied).
fn copy_up(rootfs: &Path, target: &Path, data: &Path) -> Result<()> {
    let empty = std::fs::read_dir(data)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !empty {
        return Ok(());
    }
    let mut src = rootfs.to_path_buf();
    for c in target.components().skip(1) {
        src.push(c);
        match std::fs::symlink_metadata(&src) {
            Ok(m) if m.file_type().is_symlink() => return Ok(()),
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    if !src.is_dir() {
        return Ok(());
    }
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(data)
        .status()
        .map_err(|e| Error::io("run cp -a to fill volume", data, e))?;
    if !st.success() {
        return Err(Error::Invalid(format!(
            "cannot copy the image's {} into volume {}",
            target.display(),
            data.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_up_fills_only_empty_volumes_and_skips_symlinks() {
        let d = tempfile::tempdir().expect("tempdir");
        let rootfs = d.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("srv/data")).expect("mkdir");
        std::fs::write(rootfs.join("srv/data/f"), "x").expect("write");
        std::os::unix::fs::symlink("/etc", rootfs.join("link")).expect("ln");
        let vol = d.path().join("vol");
        std::fs::create_dir(&vol).expect("mkdir");
        copy_up(&rootfs, Path::new("/srv/data"), &vol).expect("copy");
        assert_eq!(std::fs::read_to_string(vol.join("f")).expect("copied"), "x");
        std::fs::write(rootfs.join("srv/data/g"), "y").expect("write");
        copy_up(&rootfs, Path::new("/srv/data"), &vol).expect("no-op");
        assert!(
            !vol.join("g").exists(),
            "a volume with content is left alone"
        );
        let vol2 = d.path().join("vol2");
        std::fs::create_dir(&vol2).expect("mkdir");
        copy_up(&rootfs, Path::new("/link"), &vol2).expect("symlink skipped");
        assert_eq!(std::fs::read_dir(&vol2).expect("dir").count(), 0);
    }
}
