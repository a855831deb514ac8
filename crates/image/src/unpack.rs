//! Unpacking an image's layers into committed snapshots (one per chain id) and
//! preparing containers' writable snapshots on top.

use crate::apply::{apply_layer, ApplyOptions};
use crate::{manifest, parse_digest, Error, Image, Images, Result};
use berth_snapshot::{Mount, WhiteoutStyle};
use oci_spec::image::{Descriptor, ImageConfiguration};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

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
        for (i, chain_id) in chain.iter().enumerate() {
            if self.snapshotter.stat(chain_id).is_ok() {
                continue;
            }
            let parent = if i == 0 {
                None
            } else {
                Some(chain[i - 1].as_str())
            };
            let layer = &img.manifest.layers()[i];
            self.apply_one(layer, &img.diff_ids()[i], chain_id, parent)?;
        }
        Ok(chain.last().cloned())
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
        match self.snapshotter.commit(chain_id, &key) {
            Ok(()) => Ok(()),
            Err(berth_snapshot::Error::Exists(_)) => {
                // Another process unpacked the same chain meanwhile: use theirs.
                self.snapshotter.remove(&key)?;
                Ok(())
            }
            Err(e) => {
                let _ = self.snapshotter.remove(&key);
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
