//! berth-engine: containers from images.
//!
//! The engine turns `run`-style options into a container: a record and an OCI bundle
//! under `<data-root>/containers/<id>/`, the image's writable snapshot mounted at
//! `rootfs/`, and a per-container supervisor (the *shim*) that runs the container
//! through the runtime library, writes its output to a docker json-file log, reaps it
//! and records its exit status. It knows nothing of HTTP or of the command line: the
//! daemon (berthd) calls it.
//!
//! Process model: [`Engine::start`] spawns the shim (a binary given with
//! [`Engine::with_shim`]) which detaches with `setsid`; the shim calls [`Engine::shim`]
//! and serves attach requests on a socket ([`attach`]). An exec runs under its own
//! helper process ([`Engine::spawn_exec`] → [`Engine::exec_session`]). Both call the
//! runtime, which forks: the multi-threaded daemon never does it in-process.
//!
//! ```no_run
//! use berth_engine::{CreateOptions, Engine};
//! let engine = Engine::new("/var/lib/berth", "/run/berth/runtime")?
//!     .with_shim(vec!["/usr/bin/berth".into(), "container-shim".into()]);
//! let id = engine.create(&CreateOptions {
//!     image: "someapp:1.0".into(),
//!     name: Some("X".into()),
//!     ..Default::default()
//! })?;
//! let shim = engine.start(&id, &mut |_dir| {})?;
//! for c in engine.list(true)? {
//!     println!("{} {} {}", &c.record.id[..12], c.record.name, c.state);
//! }
//! engine.remove(&id, true, false)?;
//! # Ok::<(), berth_engine::Error>(())
//! ```

pub mod attach;
mod commit;
mod cp;
mod create;
pub mod diff;
pub mod error;
mod exec;
mod export;
pub mod health;
pub mod hostconfig;
mod list;
pub mod logs;
mod manage;
pub mod names;
pub mod netns;
pub mod network;
pub mod reconcile;
pub mod record;
mod remove;
pub mod restart;
pub mod rootfs;
pub mod sealed;
mod shim;
mod slim;
pub mod spec;
mod start;
pub mod stats;
pub mod user;
pub mod volumes;

pub use commit::CommitOptions;
pub use error::{Error, Result};
pub use exec::{ExecHandle, ExecOptions};
pub use health::{Health, HealthConfig};
pub use list::{State, Summary};
pub use manage::Update;
pub use network::{EndpointConfig, NetworkInfo, Networking};
pub use reconcile::Reconciled;
pub use record::{
    Bind, CreateOptions, DeviceMapping, DeviceRate, ExitStatus, LogOptions, NetworkMode, Record,
};
pub use restart::{RestartPolicy, RestartState};
pub use shim::Shim;
pub use volumes::Volume;

use berth_runtime::Runtime;
use record::ContainerDir;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The engine over one data root and one runtime state root.
#[derive(Debug, Clone)]
pub struct Engine {
    data_root: PathBuf,
    containers: PathBuf,
    runtime: Runtime,
    shim: Vec<OsString>,
    network: Option<std::sync::Arc<network::Networking>>,
}

impl Engine {
    /// The engine keeping containers under `<data_root>/containers` and runtime state
    /// under `runtime_root`.
    pub fn new(data_root: impl Into<PathBuf>, runtime_root: impl Into<PathBuf>) -> Result<Self> {
        let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        let data_root = abs(data_root.into());
        let containers = data_root.join("containers");
        std::fs::create_dir_all(&containers)
            .map_err(|e| Error::io("create directory", &containers, e))?;
        Ok(Engine {
            data_root,
            containers,
            // the daemon lets the shared parent cgroup go when it stops
            runtime: Runtime::new(abs(runtime_root.into())).keeping_shared_cgroup(),
            shim: Vec::new(),
            network: None,
        })
    }

    /// Sets the command that runs a shim: program and leading arguments, the last of
    /// them `container-shim`; the engine appends `--status-fd <n>` and the container
    /// id. Exec helpers run the same command with `container-exec` in its place.
    pub fn with_shim(mut self, argv: Vec<OsString>) -> Self {
        self.shim = argv;
        self
    }

    /// The data root.
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    /// The runtime state root.
    pub fn runtime_root(&self) -> &Path {
        self.runtime.root()
    }

    pub(crate) fn dir(&self, id: &str) -> ContainerDir {
        ContainerDir::new(&self.containers, id)
    }

    pub(crate) fn names(&self) -> names::Names {
        names::Names::new(&self.containers)
    }

    /// The full id of the container named by `what`: a full id, a name, or a unique
    /// id prefix (docker's order).
    pub fn resolve(&self, what: &str) -> Result<String> {
        if what.len() == 64 && self.dir(what).exists() {
            return Ok(what.to_string());
        }
        if let Some(id) = self.names().lookup(what) {
            if self.dir(&id).exists() {
                return Ok(id);
            }
        }
        if !what.is_empty() && what.chars().all(|c| c.is_ascii_hexdigit()) {
            let matches: Vec<String> = self
                .ids()?
                .into_iter()
                .filter(|id| id.starts_with(what))
                .collect();
            match matches.len() {
                1 => return Ok(matches.into_iter().next().unwrap_or_default()),
                0 => {}
                _ => return Err(Error::Ambiguous(what.into())),
            }
        }
        Err(Error::NotFound(what.into()))
    }

    /// Ids of every container.
    pub(crate) fn ids(&self) -> Result<Vec<String>> {
        let rd = std::fs::read_dir(&self.containers)
            .map_err(|e| Error::io("read directory", &self.containers, e))?;
        Ok(rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64 && n.chars().all(|c| c.is_ascii_hexdigit()))
            .collect())
    }

    /// Opens the image service. `Images::open` rewrites `snapshots/driver` each time,
    /// and a concurrent open can read it half-written, so engine processes take turns.
    pub(crate) fn images(&self) -> Result<berth_image::Images> {
        let _turn = record::lock_file(&self.containers.join(".images.lock"))?;
        Ok(berth_image::Images::open(&self.data_root)?)
    }

    /// The container's directory (`<data-root>/containers/<id>`).
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir(id).dir
    }

    /// The OCI runtime spec container `id` runs with, as JSON.
    pub fn runtime_spec(&self, id: &str) -> Result<serde_json::Value> {
        record::read_json(&self.dir(id).bundle().join("config.json"))
    }

    /// The json-file log of container `id`.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).log_path()
    }
}
