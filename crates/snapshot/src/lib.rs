//! berth-snapshot: snapshotters that describe mounts and never mount anything.
//!
//! A snapshot is a directory tree identified by a key. [`Snapshotter::prepare`]
//! creates a writable (active) snapshot on top of a committed parent and returns the
//! [`Mount`]s that would show it; [`Snapshotter::commit`] freezes an active snapshot
//! under a name so it can be the parent of others; [`Snapshotter::view`] gives a
//! read-only one. Two implementations: [`OverlaySnapshotter`] (each layer unpacked
//! once, stacked with overlayfs) and [`CopySnapshotter`] (each snapshot a full copy,
//! for filesystems without overlay). Both pass the suite in [`conformance`].
//!
//! ```no_run
//! use berth_snapshot::{OverlaySnapshotter, Snapshotter, Mount};
//! let sn = OverlaySnapshotter::new("/var/lib/berth/snapshots/overlay")?;
//! let mounts = sn.prepare("layer-1", None)?;
//! let (dir, _style) = Mount::writable_dir(&mounts).expect("a fresh snapshot is writable");
//! std::fs::write(dir.join("hello"), "world").expect("write");
//! sn.commit("sha256:chain-1", "layer-1")?;
//! let container = sn.prepare("container-abc", Some("sha256:chain-1"))?;
//! # Ok::<(), berth_snapshot::Error>(())
//! ```

pub mod conformance;
mod dirs;
mod meta;
mod mount;

pub use dirs::{dir_usage, CopySnapshotter, OverlaySnapshotter};
pub use mount::{Mount, WhiteoutStyle};

use std::path::PathBuf;

/// Errors from snapshotters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("snapshotter: cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No snapshot has this key.
    #[error("snapshot {0:?} not found")]
    NotFound(String),
    /// The key is already used.
    #[error("snapshot {0:?} already exists; remove it first or pick another key")]
    Exists(String),
    /// A parent must be committed before children can be prepared on it.
    #[error("snapshot {0:?} is not committed and cannot be a parent; commit it first")]
    NotCommitted(String),
    /// Only active snapshots can be committed.
    #[error("snapshot {0:?} is not active and cannot be committed")]
    NotActive(String),
    /// A snapshot with children cannot be removed.
    #[error("snapshot {key:?} is the parent of {children:?}; remove those first")]
    HasChildren {
        /// The snapshot.
        key: String,
        /// Its children.
        children: Vec<String>,
    },
    /// Copying a parent tree failed.
    #[error("cannot copy snapshot tree {src} to {dst}: {stderr}")]
    Copy {
        /// Source tree.
        src: PathBuf,
        /// Destination tree.
        dst: PathBuf,
        /// What cp said.
        stderr: String,
    },
    /// The metadata file is unreadable.
    #[error("snapshot metadata {path} is corrupt: {source}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// The state of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Writable, not yet committed.
    Active,
    /// Read-only view of a committed snapshot.
    View,
    /// Frozen; may be a parent.
    Committed,
}

/// What a snapshotter knows about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its key (or name, once committed).
    pub key: String,
    /// Its parent's key.
    pub parent: Option<String>,
    /// Its state.
    pub kind: Kind,
    /// Creation time, seconds since the epoch.
    pub created: u64,
}

/// Disk usage of one snapshot's own data (not its parents').
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes used (each inode counted once).
    pub size: u64,
    /// Inodes used.
    pub inodes: u64,
}

/// A snapshotter: creates, freezes and removes snapshots, and describes how to mount
/// them. No method mounts anything.
pub trait Snapshotter: Send + Sync {
    /// A short name (`overlayfs`, `native`).
    fn name(&self) -> &'static str;
    /// Creates a writable snapshot `key` on top of the committed `parent`.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// Creates a read-only snapshot `key` showing the committed `parent`.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>>;
    /// The mounts of an existing active or view snapshot.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// Freezes the active snapshot `key` under `name`; `key` no longer exists after.
    fn commit(&self, name: &str, key: &str) -> Result<()>;
    /// Removes a snapshot that has no children.
    fn remove(&self, key: &str) -> Result<()>;
    /// Like [`Snapshotter::remove`] (the snapshot is gone for every other method at
    /// once), but its files are only moved aside until [`Snapshotter::empty_trash`]:
    /// for a caller with something more urgent to do first.
    fn remove_deferred(&self, key: &str) -> Result<()> {
        self.remove(key)
    }
    /// Deletes the files of every snapshot [`Snapshotter::remove_deferred`] moved
    /// aside (also those a crashed process left).
    fn empty_trash(&self) -> Result<()> {
        Ok(())
    }
    /// Describes one snapshot.
    fn stat(&self, key: &str) -> Result<Info>;
    /// Describes every snapshot.
    fn list(&self) -> Result<Vec<Info>>;
    /// Disk usage of the snapshot's own data.
    fn usage(&self, key: &str) -> Result<Usage>;
}
