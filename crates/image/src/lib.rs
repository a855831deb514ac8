//! berth-image: images on top of a content store and a snapshotter.
//!
//! [`Images`] owns `<data-root>/content` (blobs), `<data-root>/snapshots/<driver>`
//! (unpacked layers, one committed snapshot per chain id, shared by every image that
//! has that chain) and `<data-root>/image/db.json` (names → images). It resolves
//! references the way docker does, applies layers with hostile-input protection
//! ([`apply`]), and implements import, load (docker-archive and OCI) and save
//! (docker-archive). The engine calls [`Images::prepare_container`] to get an image's
//! config plus the mounts of a fresh writable snapshot, and
//! [`Images::remove_container`] to drop it.
//!
//! ```no_run
//! use berth_image::Images;
//! let images = Images::open("/var/lib/berth")?;
//! let (config, mounts) = images.prepare_container("busybox", "c0ffee")?;
//! println!("{:?} {:?}", config.config(), mounts);
//! images.remove_container("c0ffee")?;
//! # Ok::<(), berth_image::Error>(())
//! ```
//!
//! Logging (`tracing`): `warn` when input is neutralized rather than refused (device
//! nodes skipped, xattrs dropped, a blob download restarted); `info` for choices made
//! on the user's behalf (the snapshotter); `debug` for garbage-collection counts.
//! Entry names from layers are logged at most once per entry and never at `info`.

pub mod apply;
mod archive;
pub mod db;
mod import;
mod manage;
pub mod manifest;
pub mod reference;
mod unpack;

pub use archive::LoadedImage;
pub use import::parse_change;
pub use manage::{DiskUsage, HistoryRow, ImageSummary};
pub use reference::Reference;
pub use unpack::Unpacker;

use berth_content::{Digest, Store};
use berth_snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshotter};
use db::{Db, ImageRecord, MetaStore};
use oci_spec::image::{ImageConfiguration, ImageManifest};
use std::path::{Path, PathBuf};

/// Errors from image operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the content store.
    #[error(transparent)]
    Content(#[from] berth_content::Error),
    /// From the snapshotter.
    #[error(transparent)]
    Snapshot(#[from] berth_snapshot::Error),
    /// From applying a layer.
    #[error(transparent)]
    Apply(#[from] apply::Error),
    /// From manifest handling.
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
    /// From reference parsing.
    #[error(transparent)]
    Reference(#[from] reference::Error),
    /// From the metadata store.
    #[error(transparent)]
    Db(#[from] db::Error),
    /// No image matches.
    #[error("no such image: {0}")]
    NotFound(String),
    /// The operation conflicts with the image's use.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// A filesystem operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A JSON document could not be parsed or written.
    #[error("cannot parse {what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The error.
        source: serde_json::Error,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

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

pub(crate) fn json_err(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Error {
    let what = what.into();
    move |source| Error::Json { what, source }
}

/// A lease id unique to this process and call: `<what>-<pid>-<n>`.
pub(crate) fn lease_id(what: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{what}-{}-{n}", std::process::id())
}

pub(crate) fn parse_digest(s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| Error::Invalid(e.to_string()))
}

/// A resolved image: its id, record, manifest and config.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image id (`sha256:` digest of the config).
    pub id: String,
    /// Its metadata record.
    pub record: ImageRecord,
    /// Its manifest.
    pub manifest: ImageManifest,
    /// Its config.
    pub config: ImageConfiguration,
    /// The config as stored (for fields oci-spec does not model).
    pub raw_config: serde_json::Value,
}

impl Image {
    /// The layers' diff ids, bottom first.
    pub fn diff_ids(&self) -> &[String] {
        self.config.rootfs().diff_ids()
    }

    /// The chain id of the top layer (the parent of a container's snapshot).
    pub fn top_chain_id(&self) -> Option<String> {
        manifest::chain_ids(self.diff_ids()).pop()
    }

    /// Total size of the layer blobs plus the config.
    pub fn size(&self) -> u64 {
        self.manifest.layers().iter().map(|l| l.size()).sum::<u64>() + self.manifest.config().size()
    }
}

/// The image service over one data root.
pub struct Images {
    root: PathBuf,
    content: Store,
    snapshotter: Box<dyn Snapshotter>,
    meta: MetaStore,
}

impl Images {
    /// Opens the image service under `data_root`. The snapshotter is the one the data
    /// root was created with; for a new one `BERTH_SNAPSHOTTER` (`overlayfs` or
    /// `native`), else overlayfs when the kernel has it and the data root is not itself
    /// on overlayfs (an upper dir cannot live there), else native.
    pub fn open(data_root: impl AsRef<Path>) -> Result<Self> {
        let root = data_root.as_ref();
        let chosen = root.join("snapshots/driver");
        let driver = match std::fs::read_to_string(&chosen) {
            Ok(s) => s.trim().to_string(),
            Err(_) => {
                std::env::var("BERTH_SNAPSHOTTER").unwrap_or_else(|_| default_driver(root).into())
            }
        };
        let dir = root.join("snapshots").join(&driver);
        let sn: Box<dyn Snapshotter> = match driver.as_str() {
            "overlayfs" => Box::new(OverlaySnapshotter::new(&dir)?),
            "native" => Box::new(CopySnapshotter::new(&dir)?),
            other => {
                return Err(Error::Invalid(format!(
                    "unknown snapshotter {other:?}: use overlayfs or native"
                )))
            }
        };
        // Record the choice once, atomically: rewriting it on every open let a
        // concurrent open read an empty file ("unknown snapshotter").
        if !chosen.exists() {
            let tmp = root.join(format!("snapshots/.driver.{}", std::process::id()));
            std::fs::write(&tmp, &driver).map_err(io_err("write", &tmp))?;
            std::fs::rename(&tmp, &chosen).map_err(io_err("rename", &chosen))?;
        }
        Self::open_with(root, sn)
    }

    /// Opens with an explicit snapshotter.
    pub fn open_with(
        data_root: impl AsRef<Path>,
        snapshotter: Box<dyn Snapshotter>,
    ) -> Result<Self> {
        let root = data_root.as_ref().to_path_buf();
        let content = Store::open(root.join("content"))?;
        let meta = MetaStore::open(root.join("image"))?;
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io_err("create directory", &tmp))?;
        Ok(Self {
            root,
            content,
            snapshotter,
            meta,
        })
    }

    /// The content store.
    pub fn content(&self) -> &Store {
        &self.content
    }

    /// The snapshotter.
    pub fn snapshotter(&self) -> &dyn Snapshotter {
        self.snapshotter.as_ref()
    }

    /// The data root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A consistent copy of the metadata store.
    pub fn db(&self) -> Result<Db> {
        Ok(self.meta.read()?)
    }

    /// Finds an image by name (`busybox`, `app:1`, `app@sha256:…`), full id, or a
    /// unique id prefix.
    pub fn resolve(&self, name: &str) -> Result<Image> {
        let db = self.meta.read()?;
        let id = find_id(&db, name).ok_or_else(|| Error::NotFound(name.to_string()))?;
        self.load_image(&db, &id)
    }

    pub(crate) fn load_image(&self, db: &Db, id: &str) -> Result<Image> {
        let record = db
            .images
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let mbytes = self.content.read(&parse_digest(&record.manifest)?)?;
        let manifest: ImageManifest = serde_json::from_slice(&mbytes)
            .map_err(json_err(format!("manifest {}", record.manifest)))?;
        let cbytes = self.content.read(&parse_digest(&record.config)?)?;
        let config = serde_json::from_slice(&cbytes)
            .map_err(json_err(format!("config {}", record.config)))?;
        let raw_config = serde_json::from_slice(&cbytes)
            .map_err(json_err(format!("config {}", record.config)))?;
        Ok(Image {
            id: id.to_string(),
            record,
            manifest,
            config,
            raw_config,
        })
    }

    /// Records the image whose manifest (or index) `digest` is in the content store,
    /// under `names`. Checks that every blob it references is present. Returns the id.
    pub fn register(&self, digest: &Digest, names: &[Reference]) -> Result<String> {
        let (mdigest, media_type, manifest) = self.resolve_manifest(digest)?;
        let cfg = manifest.config();
        let cdigest = parse_digest(cfg.digest().as_ref())?;
        let cbytes = self
            .content
            .read(&cdigest)
            .map_err(|e| missing(digest, e))?;
        let config: ImageConfiguration =
            serde_json::from_slice(&cbytes).map_err(json_err(format!("image config {cdigest}")))?;
        for l in manifest.layers() {
            let d = parse_digest(l.digest().as_ref())?;
            if self.content.info(&d) != Some(l.size()) {
                return Err(Error::Invalid(format!("manifest {digest} references missing or incomplete blob {d}; fetch the image again")));
            }
        }
        if config.rootfs().diff_ids().len() != manifest.layers().len() {
            return Err(Error::Invalid(format!(
                "image config {cdigest} lists {} layers but the manifest has {}",
                config.rootfs().diff_ids().len(),
                manifest.layers().len()
            )));
        }
        let id = cdigest.to_string();
        self.meta.update(|db| -> Result<()> {
            let rec = db.images.entry(id.clone()).or_insert_with(|| ImageRecord {
                manifest: mdigest.to_string(),
                media_type: media_type.clone(),
                config: id.clone(),
                added: chrono::Utc::now().timestamp(),
                repo_digests: Vec::new(),
            });
            rec.manifest = mdigest.to_string();
            rec.media_type = media_type.clone();
            for n in names {
                if let Some(d) = &n.digest {
                    let rd = format!("{}@{d}", n.familiar_repository());
                    if !rec.repo_digests.contains(&rd) {
                        rec.repo_digests.push(rd);
                    }
                }
                if let Some(t) = &n.tag {
                    db.refs.insert(n.with_tag(t).to_string(), id.clone());
                }
            }
            Ok(())
        })?;
        Ok(id)
    }

    /// Follows an index to the host platform's manifest.
    fn resolve_manifest(&self, digest: &Digest) -> Result<(Digest, String, ImageManifest)> {
        let mut d = digest.clone();
        for _ in 0..4 {
            let bytes = self.content.read(&d)?;
            match manifest::parse(&bytes, None)? {
                manifest::Parsed::Manifest(m) => {
                    let mt = m
                        .media_type()
                        .as_ref()
                        .map_or(manifest::OCI_MANIFEST.to_string(), |t| t.to_string());
                    return Ok((d, mt, *m));
                }
                manifest::Parsed::Index(idx) => {
                    let (os, arch) = manifest::host_platform();
                    let desc = manifest::select_platform(&idx, os, arch)?;
                    d = parse_digest(desc.digest().as_ref())?;
                }
            }
        }
        Err(Error::Invalid(format!(
            "image index {digest} nests too deeply"
        )))
    }

    /// Adds a repo digest (`repo@sha256:…`) to an image after a push or pull.
    pub fn add_repo_digest(&self, id: &str, repo_digest: &str) -> Result<()> {
        self.meta.update(|db| -> Result<()> {
            if let Some(r) = db.images.get_mut(id) {
                if !r.repo_digests.iter().any(|x| x == repo_digest) {
                    r.repo_digests.push(repo_digest.to_string());
                }
            }
            Ok(())
        })
    }
}

/// `overlayfs` when usable under `root`, else `native`.
fn default_driver(root: &Path) -> &'static str {
    let has_overlay = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|f| f.lines().any(|l| l.ends_with("\toverlay")));
    let mut probe = root.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    let on_overlay = nix::sys::statfs::statfs(&probe)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC);
    if has_overlay && !on_overlay {
        "overlayfs"
    } else {
        tracing::info!(root = %root.display(), "overlayfs unusable here; using the native (copy) snapshotter");
        "native"
    }
}

fn missing(manifest: &Digest, e: berth_content::Error) -> Error {
    match e {
        berth_content::Error::NotFound(d) => Error::Invalid(format!(
            "manifest {manifest} references missing blob {d}; fetch the image again"
        )),
        other => other.into(),
    }
}

/// Looks `name` up as a reference, then as an id or id prefix.
pub(crate) fn find_id(db: &Db, name: &str) -> Option<String> {
    if let Ok(r) = Reference::parse(name) {
        if let Some(d) = &r.digest {
            let rd = format!("{}@{d}", r.familiar_repository());
            if let Some((id, _)) = db
                .images
                .iter()
                .find(|(_, rec)| rec.repo_digests.contains(&rd) || rec.manifest == *d)
            {
                return Some(id.clone());
            }
        } else if let Some(id) = db.refs.get(&r.to_string()) {
            return Some(id.clone());
        }
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut hits = db.images.keys().filter(|id| {
        id.strip_prefix("sha256:")
            .is_some_and(|h| h.starts_with(hex))
    });
    match (hits.next(), hits.next()) {
        (Some(id), None) => Some(id.clone()),
        _ => None,
    }
}
