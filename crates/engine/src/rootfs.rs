//! Mounting a container's snapshot at `<container dir>/rootfs` and taking it down.
//! The snapshotter describes the mounts; this thin layer applies them.

use crate::error::{Error, Result};
use berth_snapshot::Mount;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::Path;

/// `mounts` with overlayfs's `volatile` option: no sync of the upper filesystem, at
/// unmount either, which under write load costs tens of milliseconds. For containers
/// whose changes are thrown away (`--rm`): after a crash their upper dir is unusable.
pub fn volatile(mut mounts: Vec<Mount>) -> Vec<Mount> {
    for m in &mut mounts {
        if m.kind == "overlay" && !m.options.iter().any(|o| o == "volatile") {
            m.options.push("volatile".into());
        }
    }
    mounts
}

/// Mounts `mounts` (a snapshot's root mount) on `target`, creating it.
pub fn mount_rootfs(mounts: &[Mount], target: &Path) -> Result<()> {
    std::fs::create_dir_all(target).map_err(|e| Error::io("create directory", target, e))?;
    for m in mounts {
        let at = target.join(m.target.trim_start_matches('/'));
        let (fl, data) = m.flags_and_data();
        let data = (!data.is_empty()).then_some(data.as_str());
        let fstype = (m.kind != "bind").then_some(m.kind.as_str());
        mount(Some(m.source.as_str()), &at, fstype, fl, data).map_err(|e| {
            Error::sys(
                format!(
                    "mount the container rootfs ({}) on {}",
                    m.kind,
                    at.display()
                ),
                e,
            )
        })?;
        if m.kind == "bind" && m.is_readonly() {
            let fl = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(None::<&str>, &at, None::<&str>, fl, None::<&str>)
                .map_err(|e| Error::sys(format!("remount {} read-only", at.display()), e))?;
        }
    }
    Ok(())
}

/// Whether `path` is a mount point (listed in /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape(mp) == want)
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Unmounts everything at `target` (absent or not mounted is fine).
pub fn unmount_rootfs(target: &Path) -> Result<()> {
    while is_mounted(target) {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => {}
            Err(nix::Error::EBUSY) => umount2(target, MntFlags::MNT_DETACH)
                .map_err(|e| Error::sys(format!("unmount {}", target.display()), e))?,
            Err(nix::Error::EINVAL | nix::Error::ENOENT) => break,
            Err(e) => return Err(Error::sys(format!("unmount {}", target.display()), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_become_data() {
        let m = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                "lowerdir=/a".into(),
                "upperdir=/b".into(),
                "workdir=/c".into(),
            ],
        };
        let (fl, data) = m.flags_and_data();
        assert!(fl.is_empty());
        assert_eq!(data, "lowerdir=/a,upperdir=/b,workdir=/c");
    }

    #[test]
    fn readonly_bind() {
        let m = Mount::bind("/x", true);
        let (fl, data) = m.flags_and_data();
        assert!(fl.contains(MsFlags::MS_BIND));
        assert!(data.is_empty());
    }

    #[test]
    fn unmounting_a_plain_directory_is_a_no_op() {
        let d = tempfile::tempdir().expect("tempdir");
        unmount_rootfs(d.path()).expect("not mounted");
        assert!(!is_mounted(d.path()));
    }
}
