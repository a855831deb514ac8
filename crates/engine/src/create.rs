//! `create`: reserve a name, prepare and mount the image's snapshot, write the OCI
//! bundle and the record. Every step is undone when a later one fails.

use crate::error::{Error, Result};
use crate::record::{ContainerDir, CreateOptions, NetworkMode, Record};
use crate::{hostconfig, names, rootfs, spec, user, Engine};

/// Undoes a half-made container.
struct Undo<'a> {
    engine: &'a Engine,
    dir: ContainerDir,
    id: String,
    name: Option<String>,
    snapshot: bool,
    volumes: Vec<String>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = rootfs::unmount_rootfs(&self.dir.rootfs());
        let _ = rootfs::unmount_rootfs(&self.dir.dir.join(hostconfig::SHM_DIR));
        if self.snapshot {
            if let Ok(images) = self.engine.images() {
                let _ = images.remove_container(&self.id);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir.dir);
        self.engine.remove_anonymous(&self.volumes);
        if let Some(n) = &self.name {
            let _ = self.engine.names().release(n, &self.id);
        }
    }
}

impl Engine {
    /// Creates a container from `opts` and returns its id. Nothing runs yet.
    pub fn create(&self, opts: &CreateOptions) -> Result<String> {
        let mut checked = opts.clone();
        hostconfig::check(&mut checked)?;
        self.resolve_shared_modes(&mut checked)?;
        let host = hostconfig::resolve(&checked)?;
        let opts = &checked;
        let wanted = opts.name.as_deref().map(names::validate).transpose()?;
        let id = names::new_id()?;
        let dir = self.dir(&id);
        let mut undo = Undo {
            engine: self,
            dir: dir.clone(),
            id: id.clone(),
            name: None,
            snapshot: false,
            volumes: Vec::new(),
            armed: true,
        };
        let logs = dir.dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| Error::io("create directory", &logs, e))?;
        let name = match wanted {
            Some(n) => {
                self.names().reserve(n, &id)?;
                n.to_string()
            }
            None => self.names().reserve_generated(&id)?,
        };
        undo.name = Some(name.clone());
        let images = self.images()?;
        undo.snapshot = true;
        let (image, mounts) = images
            .prepare_container(&opts.image, &id)
            .map_err(|e| match e {
                berth_image::Error::NotFound(_) => Error::Invalid(format!(
                    "unable to find image '{}' locally: pull it first with `berth pull {}` (or import it)",
                    opts.image, opts.image
                )),
                e => e.into(),
            })?;
        berth_runtime::signal::parse(opts.stop_signal.as_deref().unwrap_or("SIGTERM"))
            .map_err(|e| Error::Invalid(format!("--stop-signal: {e}")))?;
        let mounts = if opts.auto_remove {
            rootfs::volatile(mounts)
        } else {
            mounts
        };
        rootfs::mount_rootfs(&mounts, &dir.rootfs())?;
        let cfg = image.config().as_ref();
        let exposed = cfg
            .and_then(|c| c.exposed_ports().clone())
            .unwrap_or_default();
        let with_net = self.net_resolve(opts, &exposed)?;
        let opts = &with_net;
        let user_spec = opts
            .user
            .clone()
            .or_else(|| cfg.and_then(|c| c.user().clone()))
            .unwrap_or_default();
        let mut user = user::resolve_in(&dir.rootfs(), &user_spec)?;
        for g in hostconfig::group_ids(&dir.rootfs(), &opts.group_add)? {
            if !user.additional_gids.contains(&g) {
                user.additional_gids.push(g);
            }
        }
        let args = spec::command(cfg, opts)?;
        let hostname = match opts.uts_mode.as_deref() {
            // `--uts host`: the host's name, as the container sees it
            Some("host") => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| spec::hostname(opts, &id)),
            _ => spec::hostname(opts, &id),
        };
        let image_volumes = cfg.and_then(|c| c.volumes().clone()).unwrap_or_default();
        let (binds, volumes) = self.resolve_volumes(&opts.binds, &image_volumes, &dir.rootfs())?;
        undo.volumes = volumes.clone();
        let resolved = CreateOptions {
            binds,
            ..opts.clone()
        };
        write_etc_files(&dir, &hostname, &opts.network)?;
        let rootfs_path = dir.rootfs();
        let ctx = spec::Context {
            id: &id,
            dir: &dir.dir,
            rootfs: &rootfs_path,
            user,
            args: args.clone(),
            hostname,
        };
        let mut oci = spec::build(cfg, &resolved, &ctx)?;
        hostconfig::apply(&mut oci, &resolved, &id, &dir.dir, host);
        hostconfig::mount_shareable_shm(&dir, opts)?;
        let bundle = dir.bundle();
        std::fs::create_dir_all(&bundle).map_err(|e| Error::io("create directory", &bundle, e))?;
        crate::record::write_json(&bundle.join("config.json"), &oci)?;
        let stop_signal = opts
            .stop_signal
            .clone()
            .or_else(|| cfg.and_then(|c| c.stop_signal().clone()))
            .unwrap_or_else(|| "SIGTERM".into());
        let record = Record {
            id: id.clone(),
            name,
            created: crate::record::now(),
            path: args[0].clone(),
            args: args[1..].to_vec(),
            options: CreateOptions {
                healthcheck: crate::health::for_container(&images, opts),
                ..opts.clone()
            },
            stop_signal,
            shim_pid: None,
            pid: None,
            started_at: None,
            volumes,
            image_id: images.container_image(&id),
        };
        dir.save(&record)?;
        undo.armed = false;
        tracing::info!(container = %id, image = %opts.image, "created");
        Ok(id)
    }
}

/// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` as the container sees them.
fn write_etc_files(dir: &ContainerDir, hostname: &str, net: &NetworkMode) -> Result<()> {
    let w = |name: &str, data: String| {
        let p = dir.dir.join(name);
        std::fs::write(&p, data).map_err(|e| Error::io("write", &p, e))
    };
    w("hostname", format!("{hostname}\n"))?;
    w("hosts", spec::hosts_file(hostname, net))?;
    let resolv = match net {
        NetworkMode::Host => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        // rewritten at each start by the networking service (crate::network)
        NetworkMode::Bridge | NetworkMode::Container(_) => {
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
        }
        NetworkMode::None => String::new(),
    };
    w("resolv.conf", resolv)
}
