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
    /// the local driver's options (`--opt type=tmpfs --opt device=tmpfs --opt
    /// o=size=64m`): what is mounted on the volume's data directory while a
    /// container uses it
    #[serde(default)]
    pub options: BTreeMap<String, String>,
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
            options: BTreeMap::new(),
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
        self.volume_create_with(name, labels, BTreeMap::new(), anonymous)
    }

    /// [`Engine::volume_create`] with the local driver's options (see
    /// [`VolumeMount::from_options`]), checked here.
    pub fn volume_create_with(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<Volume> {
        VolumeMount::from_options(&options)?;
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
            options,
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
        // a mount left by a container that died without its supervisor's clean-up
        if !v.options.is_empty() && crate::rootfs::is_mounted(&v.mountpoint) {
            crate::rootfs::unmount_rootfs(&v.mountpoint)?;
            // never delete through a mount (a bind volume's host directory)
            if crate::rootfs::is_mounted(&v.mountpoint) {
                return Err(Error::Conflict(format!(
                    "remove {name}: {} is still mounted: unmount it first",
                    v.mountpoint.display()
                )));
            }
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
            // filled from the image when empty, as docker: a bind volume through its
            // host directory; one mounted for each use (tmpfs) starts empty
            match VolumeMount::from_options(&v.options)? {
                None => copy_up(rootfs, &b.target, &v.mountpoint)?,
                Some(m) if m.flags.contains(nix::mount::MsFlags::MS_BIND) => {
                    copy_up(rootfs, &b.target, Path::new(&m.device))?
                }
                Some(_) => {}
            }
            b.source = v.mountpoint.clone();
            b.volume = Some(v.name.clone());
            used.push(v.name);
            out.push(b);
        }
        Ok((out, used))
    }

    /// Mounts what the options of the volumes of `rec` ask for on their data
    /// directories, unless mounted already (another container uses the volume).
    pub(crate) fn volumes_mount(&self, rec: &crate::Record) -> Result<()> {
        for name in &rec.volumes {
            let Ok(v) = self.load_volume(name) else {
                continue;
            };
            if let Some(m) = VolumeMount::from_options(&v.options)? {
                if !crate::rootfs::is_mounted(&v.mountpoint) {
                    m.mount(&v.mountpoint)
                        .map_err(|e| Error::Invalid(format!("volume {name}: {e}")))?;
                }
            }
        }
        Ok(())
    }

    /// Unmounts the volumes of `rec` that were mounted for it, once no other running
    /// container uses them (the local driver's reference count).
    pub(crate) fn volumes_release(&self, rec: &crate::Record) {
        for name in &rec.volumes {
            let Ok(v) = self.load_volume(name) else {
                continue;
            };
            if v.options.is_empty() || !crate::rootfs::is_mounted(&v.mountpoint) {
                continue;
            }
            let others = self.volume_users(name).unwrap_or_default();
            let busy = others.iter().filter(|id| **id != rec.id).any(|id| {
                self.inspect(id)
                    .is_ok_and(|s| s.state == crate::list::State::Running)
            });
            if !busy {
                if let Err(e) = crate::rootfs::unmount_rootfs(&v.mountpoint) {
                    tracing::warn!(volume = %name, error = %e, "volume unmount failed");
                }
            }
        }
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

/// What the local driver mounts for a volume's options, as docker's: `type` (the
/// filesystem type; `none` with `o=bind` for a bind mount), `device` (the source)
/// and `o` (mount options: flags such as `ro`, `nosuid` or `bind`, and data such as
/// `size=64m`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// the filesystem type (`none` for a bind)
    pub fstype: String,
    /// the source (a device, `tmpfs`, or the host directory of a bind)
    pub device: String,
    /// mount flags from `o`
    pub flags: nix::mount::MsFlags,
    /// the rest of `o`, passed to the filesystem
    pub data: String,
}

impl VolumeMount {
    /// The mount of `options`; `None` without options. Unknown keys, a bind of a
    /// relative or missing directory, and a type without device fail.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Option<VolumeMount>> {
        use nix::mount::MsFlags as F;
        if options.is_empty() {
            return Ok(None);
        }
        if let Some(k) = options
            .keys()
            .find(|k| !["type", "device", "o"].contains(&k.as_str()))
        {
            return Err(Error::Invalid(format!(
                "invalid option key: {k:?}: the local volume driver takes type, device and o"
            )));
        }
        let fstype = options.get("type").cloned().unwrap_or_default();
        let device = options.get("device").cloned().unwrap_or_default();
        if fstype.is_empty() {
            return Err(Error::Invalid(
                "missing required option: \"type\" (e.g. --opt type=tmpfs, or type=none with o=bind)".into(),
            ));
        }
        if device.is_empty() {
            return Err(Error::Invalid(
                "missing required option: \"device\" (e.g. --opt device=tmpfs, or the host directory of a bind)".into(),
            ));
        }
        let (mut flags, mut data) = (F::empty(), Vec::new());
        for o in options.get("o").into_iter().flat_map(|o| o.split(',')) {
            let f = match o {
                "" => continue,
                "ro" => F::MS_RDONLY,
                "rw" => F::empty(),
                "bind" => F::MS_BIND,
                "rbind" => F::MS_BIND | F::MS_REC,
                "nosuid" => F::MS_NOSUID,
                "nodev" => F::MS_NODEV,
                "noexec" => F::MS_NOEXEC,
                "noatime" => F::MS_NOATIME,
                "nodiratime" => F::MS_NODIRATIME,
                "relatime" => F::MS_RELATIME,
                "sync" => F::MS_SYNCHRONOUS,
                _ => {
                    data.push(o.to_string());
                    continue;
                }
            };
            flags |= f;
        }
        if flags.contains(F::MS_BIND) {
            let p = Path::new(&device);
            if !p.is_absolute() || !p.is_dir() {
                return Err(Error::Invalid(format!(
                    "bind volume device {device:?}: use the absolute path of an existing host directory"
                )));
            }
        }
        Ok(Some(VolumeMount {
            fstype,
            device,
            flags,
            data: data.join(","),
        }))
    }

    /// Mounts it on `target`; a bind read-only is remounted so (the kernel ignores
    /// `ro` on the first pass of a bind).
    fn mount(&self, target: &Path) -> std::result::Result<(), String> {
        use nix::mount::{mount, MsFlags as F};
        let bind = self.flags.contains(F::MS_BIND);
        let fstype = (!bind).then_some(self.fstype.as_str());
        let data = (!self.data.is_empty()).then_some(self.data.as_str());
        mount(Some(self.device.as_str()), target, fstype, self.flags, data).map_err(|e| {
            format!(
                "mount {} ({}) on {}: {e}",
                self.device,
                self.fstype,
                target.display()
            )
        })?;
        if bind && self.flags.contains(F::MS_RDONLY) {
            mount(
                None::<&str>,
                target,
                None::<&str>,
                self.flags | F::MS_REMOUNT,
                None::<&str>,
            )
            .map_err(|e| format!("remount {} read-only: {e}", target.display()))?;
        }
        Ok(())
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

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn local_driver_options_follow_docker() {
        use nix::mount::MsFlags as F;
        assert_eq!(
            VolumeMount::from_options(&BTreeMap::new()).expect("none"),
            None
        );
        let m = VolumeMount::from_options(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=64m,nosuid,uid=1000"),
        ]))
        .expect("tmpfs")
        .expect("a mount");
        assert_eq!((m.fstype.as_str(), m.device.as_str()), ("tmpfs", "tmpfs"));
        assert_eq!(
            (m.flags, m.data.as_str()),
            (F::MS_NOSUID, "size=64m,uid=1000")
        );
        let d = tempfile::tempdir().expect("tempdir");
        let dev = d.path().display().to_string();
        let b = VolumeMount::from_options(&opts(&[
            ("type", "none"),
            ("o", "bind,ro"),
            ("device", &dev),
        ]))
        .expect("bind")
        .expect("a mount");
        assert_eq!(b.flags, F::MS_BIND | F::MS_RDONLY);
        for bad in [
            opts(&[("type", "tmpfs")]),
            opts(&[("device", "tmpfs")]),
            opts(&[("type", "tmpfs"), ("device", "tmpfs"), ("size", "1m")]),
            opts(&[("type", "none"), ("o", "bind"), ("device", "relative/dir")]),
            opts(&[
                ("type", "none"),
                ("o", "bind"),
                ("device", "/no/such/dir/berth"),
            ]),
        ] {
            assert!(VolumeMount::from_options(&bad).is_err(), "{bad:?}");
        }
    }

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
