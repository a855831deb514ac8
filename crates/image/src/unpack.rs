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

/// Unpacks the missing layers of one image, possibly while their blobs are still
/// arriving: [`Unpacker::stage`] applies a layer as soon as its blob is stored (from
/// any thread); [`Unpacker::finish`] stages the rest and commits bottom up. With
/// overlayfs, layers are staged side by side in `<data-root>/tmp` and checked against
/// their complete lowers at commit; other snapshotters unpack in order at `finish`.
pub struct Unpacker<'a> {
    images: &'a Images,
    layers: Vec<Descriptor>,
    diff_ids: Vec<String>,
    chain: Vec<String>,
    missing: Vec<bool>,
    stage: Option<tempfile::TempDir>,
    results: Vec<Mutex<Option<Result<ApplyStats>>>>,
}

impl Images {
    /// Makes sure every layer of `img` is unpacked; returns the top chain id (`None`
    /// for an image without layers).
    pub fn unpack(&self, img: &Image) -> Result<Option<String>> {
        let u = self.unpacker(img.manifest.layers().clone(), img.diff_ids().to_vec())?;
        u.finish()
    }

    /// An [`Unpacker`] for these layers (bottom first) and their diff ids.
    pub fn unpacker(&self, layers: Vec<Descriptor>, diff_ids: Vec<String>) -> Result<Unpacker<'_>> {
        if layers.len() != diff_ids.len() {
            return Err(Error::Invalid(format!(
                "image has {} layers but {} diff ids",
                layers.len(),
                diff_ids.len()
            )));
        }
        let chain = manifest::chain_ids(&diff_ids);
        let missing: Vec<bool> = chain
            .iter()
            .map(|c| self.snapshotter.stat(c).is_err())
            .collect();
        let stage = if self.snapshotter.name() == "overlayfs" && missing.iter().any(|m| *m) {
            let tmp = self.root.join("tmp");
            let d = tempfile::Builder::new()
                .prefix("unpack-")
                .tempdir_in(&tmp)
                .map_err(crate::io_err("create staging directory in", &tmp))?;
            Some(d)
        } else {
            None
        };
        let results = layers.iter().map(|_| Mutex::new(None)).collect();
        Ok(Unpacker {
            images: self,
            layers,
            diff_ids,
            chain,
            missing,
            stage,
            results,
        })
    }
}

impl Unpacker<'_> {
    /// Applies layer `i` now if it needs it and can be staged (its blob must be in the
    /// content store). Errors are kept for [`Unpacker::finish`].
    pub fn stage(&self, i: usize) {
        let (Some(stage), Some(true)) = (&self.stage, self.missing.get(i)) else {
            return;
        };
        let Ok(mut slot) = self.results[i].lock() else {
            return;
        };
        if slot.is_none() {
            *slot = Some(self.stage_layer(i, &stage.path().join(i.to_string())));
        }
    }

    /// Stages what is left (in parallel), then commits every layer bottom up.
    /// Returns the top chain id.
    pub fn finish(self) -> Result<Option<String>> {
        let todo: Vec<usize> = (0..self.layers.len())
            .filter(|&i| self.missing[i])
            .collect();
        if self.stage.is_none() {
            for &i in &todo {
                let parent = i.checked_sub(1).map(|p| self.chain[p].as_str());
                self.images.apply_one(
                    &self.layers[i],
                    &self.diff_ids[i],
                    &self.chain[i],
                    parent,
                )?;
            }
            return Ok(self.chain.last().cloned());
        }
        let next = AtomicUsize::new(0);
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 4)
            .min(todo.len());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    while let Some(&i) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                        self.stage(i);
                    }
                });
            }
        });
        let stage = self
            .stage
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default();
        for &i in &todo {
            let stats = self.results[i]
                .lock()
                .ok()
                .and_then(|mut r| r.take())
                .unwrap_or_else(|| {
                    Err(Error::Invalid(format!("unpacking layer {i} did not run")))
                })?;
            if self.images.snapshotter.stat(&self.chain[i]).is_ok() {
                continue; // another process committed it meanwhile
            }
            let parent = i.checked_sub(1).map(|p| self.chain[p].as_str());
            self.images.commit_staged(
                &stage.join(i.to_string()),
                &stats,
                &self.chain[i],
                parent,
            )?;
        }
        Ok(self.chain.last().cloned())
    }

    /// Applies layer `i` into the empty directory `dir` (overlay whiteouts above the
    /// bottom layer), checking its diff id.
    fn stage_layer(&self, i: usize, dir: &Path) -> Result<ApplyStats> {
        std::fs::create_dir(dir).map_err(crate::io_err("create", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(crate::io_err("chmod", dir))?;
        let layer = &self.layers[i];
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
            .images
            .content
            .open_blob(&parse_digest(layer.digest().as_ref())?)?;
        let stats = apply_layer(dir, std::io::BufReader::with_capacity(1 << 20, blob), &opts)?;
        let want = &self.diff_ids[i];
        if stats.diff_id != *want {
            return Err(Error::Invalid(format!(
                "layer {} unpacks to {} but the image config says {want}; the image is corrupt",
                layer.digest(),
                stats.diff_id
            )));
        }
        Ok(stats)
    }
}

impl Images {
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
        // which image the container is of: images can share their layers (one built
        // FROM another with only config changes), so the snapshot's parent cannot say
        let record = self.container_image_path(container_id);
        if let Some(d) = record.parent() {
            std::fs::create_dir_all(d).map_err(|source| Error::Io {
                op: "create",
                path: d.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&record, &img.id).map_err(|source| Error::Io {
            op: "write",
            path: record.clone(),
            source,
        })?;
        let mounts = self
            .snapshotter
            .prepare(&container_key(container_id), top.as_deref())?;
        Ok((img.config, mounts))
    }

    /// Where the id of the image a container was prepared from is kept.
    fn container_image_path(&self, container_id: &str) -> PathBuf {
        self.root
            .join("image")
            .join("containers")
            .join(container_id)
    }

    /// The id of the image container `container_id` was prepared from (`None` for a
    /// container prepared before berth kept it).
    pub fn container_image(&self, container_id: &str) -> Option<String> {
        std::fs::read_to_string(self.container_image_path(container_id)).ok()
    }

    fn forget_container_image(&self, container_id: &str) {
        let _ = std::fs::remove_file(self.container_image_path(container_id));
    }

    /// The mounts of an existing container snapshot.
    pub fn container_mounts(&self, container_id: &str) -> Result<Vec<Mount>> {
        Ok(self.snapshotter.mounts(&container_key(container_id))?)
    }

    /// Removes the container's writable snapshot (absent is not an error).
    pub fn remove_container(&self, container_id: &str) -> Result<()> {
        self.forget_container_image(container_id);
        match self.snapshotter.remove(&container_key(container_id)) {
            Ok(()) | Err(berth_snapshot::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// [`Images::remove_container`], with the files left for
    /// [`Images::empty_snapshot_trash`] (see `Snapshotter::remove_deferred`).
    pub fn remove_container_deferred(&self, container_id: &str) -> Result<()> {
        self.forget_container_image(container_id);
        match self
            .snapshotter
            .remove_deferred(&container_key(container_id))
        {
            Ok(()) | Err(berth_snapshot::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the files of snapshots removed with a deferred removal.
    pub fn empty_snapshot_trash(&self) -> Result<()> {
        Ok(self.snapshotter.empty_trash()?)
    }
}
