//! The build cache index: `<data-root>/build-cache/<key hex>.json` maps a
//! step's cache key to the layer it made (if any) and the snapshot chain id
//! after it. A persistent lease per entry (`build-cache-<key hex>`) keeps the
//! blob and the snapshot from image garbage collection.

use std::path::PathBuf;

use berth_content::Digest;
use berth_image::Images;
use serde::{Deserialize, Serialize};

use super::layer::LayerDesc;
use super::{io_err, Result};

/// What a step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The layer (None: the step changed nothing).
    pub layer: Option<LayerDesc>,
    /// The chain id of the snapshot after the step (None: still empty).
    pub chain: Option<String>,
}

/// The cache index of one data root.
pub struct Cache {
    dir: PathBuf,
}

fn hex_of(key: &str) -> &str {
    key.strip_prefix("sha256:").unwrap_or(key)
}

impl Cache {
    /// The index under `<data-root>/build-cache`.
    pub fn open(images: &Images) -> Result<Self> {
        let dir = images.root().join("build-cache");
        std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok(Self { dir })
    }

    /// The entry of `key`, if recorded and its blob and snapshot still exist.
    pub fn lookup(&self, images: &Images, key: &str) -> Option<Entry> {
        let bytes = std::fs::read(self.dir.join(format!("{}.json", hex_of(key)))).ok()?;
        let e: Entry = serde_json::from_slice(&bytes).ok()?;
        if let Some(l) = &e.layer {
            let d = Digest::parse(&l.digest).ok()?;
            if images.content().info(&d) != Some(l.size) {
                return None;
            }
        }
        if let Some(c) = &e.chain {
            images.snapshotter().stat(c).ok()?;
        }
        Some(e)
    }

    /// Record what `key` produced and lease it.
    pub fn record(&self, images: &Images, key: &str, e: &Entry) -> Result<()> {
        let mut lease = images
            .content()
            .lease(&format!("build-cache-{}", hex_of(key)), false)?;
        if let Some(l) = &e.layer {
            if let Ok(d) = Digest::parse(&l.digest) {
                lease.add(&d)?;
            }
        }
        if let Some(c) = e.chain.as_deref().and_then(|c| Digest::parse(c).ok()) {
            lease.add(&c)?;
        }
        let path = self.dir.join(format!("{}.json", hex_of(key)));
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            hex_of(key),
            std::process::id(),
            &super::fsutil::random_id()[..8]
        ));
        let bytes = serde_json::to_vec(e).map_err(|e| super::ExecError::Invalid(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(io_err("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err("rename", &path))
    }
}
