//! Unpacking an image's layers into committed snapshots (one per chain id) and
//! preparing containers' writable snapshots on top.

use crate::apply::{apply_layer, check_implicit_dirs, ApplyOptions, ApplyStats};
use crate::{manifest, parse_digest, Error, Image, Images, Result};
use berth_snapshot::{Mount, WhiteoutStyle};
use oci_spec::image::{Descriptor, ImageConfiguration};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

static EXTRACT: AtomicU64 = AtomicU64::new(0);

/// The snapshot key of a container's writable layer.
pub(crate) fn container_key(id: &str) -> String {
    format!("container-{id}")
}

impl Images {
    /// Makes sure every layer of `img` is unpacked; returns the top chain id (`None`
    /// for an image without layers).
    pub fn unpack(&self, img: &Image) -> Result<Option<String>> {
        let chain = manifest::chain_ids(img.diff_ids());
        let missing: Vec<usize> = (0..chain.len())
            .filter(|&i| self.snapshotter.stat(&chain[i]).is_err())
            .collect();
        if missing.len() > 1 && self.snapshotter.name() == "overlayfs" {
            self.unpack_parallel(img, &chain, &missing)?;
        } else {
            for i in missing {
                let parent = i.checked_sub(1).map(|p| chain[p].as_str());
                self.apply_one(
                    &img.manifest.layers()[i],
                    &img.diff_ids()[i],
                    &chain[i],
                    parent,
                )?;
            }
        }
        Ok(chain.last().cloned())
    }

    /// Overlay layers are independent directories: apply them side by side into
    /// staging directories, then, bottom up, check each against its (now complete)
    /// lowers, move it into its snapshot and commit.
    fn unpack_parallel(&self, img: &Image, chain: &[String], missing: &[usize]) -> Result<()> {
        let tmp = self.root.join("tmp");
        let stage = tempfile::Builder::new()
            .prefix("unpack-")
            .tempdir_in(&tmp)
            .map_err(crate::io_err("create staging directory in", &tmp))?;
        let results: Vec<Mutex<Option<Result<ApplyStats>>>> =
            missing.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 4)
            .min(missing.len());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = missing.get(k) else { break };
                    let r = self.stage_layer(img, i, &stage.path().join(i.to_string()));
                    if let Ok(mut slot) = results[k].lock() {
                        *slot = Some(r);
                    }
                });
            }
        });
        for (k, &i) in missing.iter().enumerate() {
            let stats = results[k]
                .lock()
                .ok()
                .and_then(|mut r| r.take())
                .unwrap_or_else(|| {
                    Err(Error::Invalid(format!("unpacking layer {i} did not run")))
                })?;
            if self.snapshotter.stat(&chain[i]).is_ok() {
                continue; // another process committed it meanwhile
            }
            let parent = i.checked_sub(1).map(|p| chain[p].as_str());
            self.commit_staged(&stage.path().join(i.to_string()), &stats, &chain[i], parent)?;
        }
        Ok(())
    }

    /// Applies layer `i` of `img` into the empty directory `dir` (overlay whiteouts
    /// above the bottom layer), checking its diff id.
    fn stage_layer(&self, img: &Image, i: usize, dir: &Path) -> Result<ApplyStats> {
        std::fs::create_dir(dir).map_err(crate::io_err("create", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(crate::io_err("chmod", dir))?;
        let layer = &img.manifest.layers()[i];
        let whiteouts = if i == 0 {
            WhiteoutStyle::Delete
        } else {
            WhiteoutStyle::Overlay
        };
        let opts = ApplyOptions {
            whiteouts,
            lowers: Vec::new(),
            ..ApplyOptions::default()
        };
        let blob = self
            .content
            .open_blob(&parse_digest(layer.digest().as_ref())?)?;
        let stats = apply_layer(dir, std::io::BufReader::with_capacity(1 << 20, blob), &opts)?;
        let want = &img.diff_ids()[i];
        if stats.diff_id != *want {
            return Err(Error::Invalid(format!(
                "layer {} unpacks to {} but the image config says {want}; the image is corrupt",
                layer.digest(),
                stats.diff_id
            )));
        }
        Ok(stats)
    }

    /// Moves a staged layer into a fresh snapshot on `parent` and commits it as `chain_id`.
    fn commit_staged(
        &self,
        staged: &Path,
        stats: &ApplyStats,
        chain_id: &str,
        parent: Option<&str>,
    ) -> Result<()> {
        let key = format!(
            "extract-{}-{}-{chain_id}",
            std::process::id(),
            EXTRACT.fetch_add(1, Ordering::Relaxed)
        );
        let mounts = self.snapshotter.prepare(&key, parent)?;
        let result = (|| -> Result<()> {
            let (dir, _) = Mount::writable_dir(&mounts).ok_or_else(|| {
                Error::Invalid(format!(
                    "snapshotter {} gave mounts berth cannot write into",
                    self.snapshotter.name()
                ))
            })?;
            let lowers: Vec<PathBuf> = mounts[0]
                .option("lowerdir")
                .map(|l| l.split(':').map(PathBuf::from).collect())
                .unwrap_or_default();
            check_implicit_dirs(
                staged,
                &stats.implicit_dirs,
                &lowers,
                ApplyOptions::default().rootless,
            )?;
            // The snapshot's directory is empty: the staged tree replaces it whole.
            std::fs::rename(staged, &dir).map_err(crate::io_err("move staged layer to", &dir))
        })();
        if let Err(e) = result {
            let _ = self.snapshotter.remove(&key);
            return Err(e);
        }
        self.finish_commit(&key, chain_id)
    }

    fn apply_one(
        &self,
        layer: &Descriptor,
        diff_id: &str,
        chain_id: &str,
        parent: Option<&str>,
    ) -> Result<()> {
        let n = EXTRACT.fetch_add(1, Ordering::Relaxed);
        let key = format!("extract-{}-{n}-{chain_id}", std::process::id());
        let mounts = self.snapshotter.prepare(&key, parent)?;
        let result = (|| -> Result<()> {
            let (dir, style) = Mount::writable_dir(&mounts).ok_or_else(|| {
                Error::Invalid(format!(
                    "snapshotter {} gave mounts berth cannot write into",
                    self.snapshotter.name()
                ))
            })?;
            let lowers = match (style, mounts[0].option("lowerdir")) {
                (WhiteoutStyle::Overlay, Some(l)) => l.split(':').map(PathBuf::from).collect(),
                _ => Vec::new(),
            };
            let opts = ApplyOptions {
                whiteouts: style,
                lowers,
                ..ApplyOptions::default()
            };
            let blob = self
                .content
                .open_blob(&parse_digest(layer.digest().as_ref())?)?;
            let stats = apply_layer(
                &dir,
                std::io::BufReader::with_capacity(1 << 20, blob),
                &opts,
            )?;
            if stats.diff_id != diff_id {
                return Err(Error::Invalid(format!(
                    "layer {} unpacks to {} but the image config says {diff_id}; the image is corrupt",
                    layer.digest(),
                    stats.diff_id
                )));
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = self.snapshotter.remove(&key);
            return Err(e);
        }
        self.finish_commit(&key, chain_id)
    }

    fn finish_commit(&self, key: &str, chain_id: &str) -> Result<()> {
        match self.snapshotter.commit(chain_id, key) {
            Ok(()) => Ok(()),
            Err(berth_snapshot::Error::Exists(_)) => {
                // Another process unpacked the same chain meanwhile: use theirs.
                self.snapshotter.remove(key)?;
                Ok(())
            }
            Err(e) => {
                let _ = self.snapshotter.remove(key);
                Err(e.into())
            }
        }
    }

    /// Resolves `reference`, unpacks it, and prepares a writable snapshot for the
    /// container `container_id`. Returns the image config and the rootfs mounts.
    pub fn prepare_container(
        &self,
        reference: &str,
        container_id: &str,
    ) -> Result<(ImageConfiguration, Vec<Mount>)> {
        let img = self.resolve(reference)?;
        let top = self.unpack(&img)?;
        let mounts = self
            .snapshotter
            .prepare(&container_key(container_id), top.as_deref())?;
        Ok((img.config, mounts))
    }

    /// The mounts of an existing container snapshot.
    pub fn container_mounts(&self, container_id: &str) -> Result<Vec<Mount>> {
        Ok(self.snapshotter.mounts(&container_key(container_id))?)
    }

    /// Removes the container's writable snapshot (absent is not an error).
    pub fn remove_container(&self, container_id: &str) -> Result<()> {
        match self.snapshotter.remove(&container_key(container_id)) {
            Ok(()) | Err(berth_snapshot::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
