//! `export`: the container's filesystem as a tar stream (its rootfs as the host sees
//! it: image layers plus the container's changes, without the mounts made inside
//! the container). A stopped container's snapshot is mounted for the time it takes.

use crate::error::{Error, Result};
use crate::{rootfs, Engine};
use std::process::Stdio;

impl Engine {
    /// Writes the container's filesystem as a tar archive to `out`.
    pub fn export(&self, what: &str, out: Stdio) -> Result<()> {
        let s = self.inspect(what)?;
        let dir = self.dir(&s.record.id);
        let lock = dir.lock()?;
        let path = dir.rootfs();
        let mounted_here = !rootfs::is_mounted(&path);
        if mounted_here {
            let mounts = self.images()?.container_mounts(&s.record.id)?;
            rootfs::mount_rootfs(&mounts, &path)?;
        } else {
            // a running container's rootfs is unmounted when it exits: hold it
            drop(lock);
        }
        let st = std::process::Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "-C"])
            .arg(&path)
            .args(["-cf", "-", "."])
            .stdout(out)
            .status();
        if mounted_here {
            rootfs::unmount_rootfs(&path)?;
        }
        let st = st.map_err(|e| Error::io("run tar to export", &path, e))?;
        if !st.success() {
            return Err(Error::Invalid(format!(
                "exporting container {}: tar failed ({st})",
                &s.record.id[..12]
            )));
        }
        Ok(())
    }
}
