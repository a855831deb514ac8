//! Guards of what a step makes: snapshots (removed unless committed),
//! mounted source trees, scratch directories.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_image::Images;
use berth_snapshot::Mount;

use super::fsutil::Mounted;
use super::Result;

/// A snapshot removed on drop unless committed.
pub(super) struct Snap<'a> {
    pub(super) images: &'a Images,
    pub(super) key: String,
    pub(super) mounts: Vec<Mount>,
    pub(super) live: bool,
}

impl<'a> Snap<'a> {
    pub(super) fn prepare(
        images: &'a Images,
        key: String,
        parent: Option<&str>,
        view: bool,
    ) -> Result<Self> {
        let sn = images.snapshotter();
        let mounts = if view {
            sn.view(&key, parent)?
        } else {
            sn.prepare(&key, parent)?
        };
        Ok(Self {
            images,
            key,
            mounts,
            live: true,
        })
    }

    /// Commit as `chain` (true), or drop ours when another build made it
    /// already (false).
    pub(super) fn commit(mut self, chain: &str) -> Result<bool> {
        let sn = self.images.snapshotter();
        if sn.stat(chain).is_ok() {
            return Ok(false);
        }
        match sn.commit(chain, &self.key) {
            Ok(()) => {
                self.live = false;
                Ok(true)
            }
            // A concurrent build committed the same chain first: keep theirs.
            Err(berth_snapshot::Error::Exists(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Snap<'_> {
    fn drop(&mut self) {
        if self.live {
            let _ = self.images.snapshotter().remove(&self.key);
        }
    }
}

/// Files to read from: a directory, with the mount and view snapshot behind
/// it (fields drop in order: unmount, then remove the view).
pub(super) struct SourceRoot<'a> {
    pub(super) path: PathBuf,
    pub(super) _mount: Option<Mounted>,
    pub(super) _view: Option<Snap<'a>>,
}

/// The sources of a RUN's bind mounts (overlays unmounted before their roots).
pub(super) struct BindSources<'a> {
    pub(super) overlays: Vec<Mounted>,
    pub(super) roots: Vec<SourceRoot<'a>>,
    pub(super) map: BTreeMap<usize, PathBuf>,
}

/// A scratch directory removed on drop.
pub(super) struct Scratch(pub(super) PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
