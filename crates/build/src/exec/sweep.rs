//! Cleaning up after builds that died without running their guards
//! (SIGKILL, a crash): each step's scratch directory
//! `<data-root>/tmp/berth-build-<id>` holds an `owner` file (pid and process
//! start time); when that process is gone, its RUN container, mounts,
//! snapshots (`berth-build-<id>*`) and the directory are removed.

use std::path::Path;

use berth_image::Images;
use berth_runtime::Runtime;
use nix::mount::{umount2, MntFlags};

/// The name of the owner file in a step's scratch directory.
pub const OWNER: &str = "owner";

/// `<pid> <start time>` of this process.
pub fn owner_stamp() -> String {
    let pid = std::process::id();
    format!("{pid} {}", start_time(pid).unwrap_or_default())
}

/// The start time of process `pid`; None when it is gone or a zombie (a killed
/// process whose parent has not reaped it yet is gone for this purpose).
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18).map(str::to_string)
}

/// Whether process `pid` runs (exists and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    start_time(pid).is_some()
}

/// Whether the process named in `owner` still runs (a missing file counts as
/// alive: the step may be about to write it).
fn owner_alive(owner: &Path) -> bool {
    let Ok(s) = std::fs::read_to_string(owner) else {
        return true;
    };
    let mut it = s.split_whitespace();
    let (Some(pid), Some(start)) = (it.next(), it.next()) else {
        return false;
    };
    pid.parse::<u32>()
        .ok()
        .and_then(start_time)
        .is_some_and(|t| t == start)
}

/// Remove what dead builds left under `images`' data root.
pub fn sweep(images: &Images, runtime: &Runtime) {
    let tmp = images.root().join("tmp");
    let Ok(rd) = std::fs::read_dir(&tmp) else {
        return;
    };
    for e in rd.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        if !id.starts_with("berth-build-") || owner_alive(&e.path().join(OWNER)) {
            continue;
        }
        tracing::info!(step = %id, "cleaning up after a build that died");
        let _ = runtime.delete(&id, true);
        unmount_under(&e.path());
        if let Ok(list) = images.snapshotter().list() {
            let prefix = format!("{id}-");
            for s in list
                .iter()
                .filter(|s| s.key == id || s.key.starts_with(&prefix))
            {
                let _ = images.snapshotter().remove(&s.key);
            }
        }
        let _ = std::fs::remove_dir_all(e.path());
    }
}

fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let root = dir.to_string_lossy().into_owned();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = umount2(p, MntFlags::MNT_DETACH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_alive_and_dead() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join(OWNER);
        assert!(owner_alive(&f), "a missing owner file counts as alive");
        std::fs::write(&f, owner_stamp()).unwrap();
        assert!(owner_alive(&f));
        std::fs::write(&f, format!("{} 1", std::process::id())).unwrap();
        assert!(!owner_alive(&f), "same pid, other start time: a reused pid");
    }
}
