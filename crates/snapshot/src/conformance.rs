//! The conformance suite every [`Snapshotter`] passes, plus [`MountGuard`], which
//! performs returned mounts (as root) so the suite can check what they show.
//!
//! Each `check_*` function takes a fresh, empty snapshotter. An implementation's test
//! file calls them all (see `tests/conformance.rs`).

use crate::{Error, Kind, Mount, Snapshotter};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mounts a list of [`Mount`]s on a fresh `berth-test` directory; unmounts on drop.
pub struct MountGuard {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl MountGuard {
    /// Performs `mounts` (a single root mount) on a new temporary directory.
    pub fn new(mounts: &[Mount]) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-mnt-")
            .tempdir()?;
        let mut g = Self {
            dir,
            mounted: false,
        };
        for m in mounts {
            g.mount_one(m)?;
        }
        Ok(g)
    }

    fn mount_one(&mut self, m: &Mount) -> std::io::Result<()> {
        let target = self.dir.path().join(m.target.trim_start_matches('/'));
        let ro = m.is_readonly();
        if m.kind == "bind" {
            mount(
                Some(m.source.as_str()),
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            self.mounted = true;
            if ro {
                let fl = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                mount(None::<&str>, &target, None::<&str>, fl, None::<&str>)?;
            }
            return Ok(());
        }
        let (fl, data) = m.flags_and_data();
        mount(
            Some(m.source.as_str()),
            &target,
            Some(m.kind.as_str()),
            fl,
            Some(data.as_str()),
        )?;
        self.mounted = true;
        Ok(())
    }

    /// Where the snapshot is visible.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted {
            let _ = umount2(self.dir.path(), MntFlags::MNT_DETACH);
        }
    }
}

/// Panics with a clear message unless running as root (the suite mounts).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the snapshotter conformance suite mounts filesystems: run it as root"
    );
}

fn write_base(sn: &dyn Snapshotter) -> PathBuf {
    let m = MountGuard::new(&sn.prepare("base-active", None).expect("prepare base"))
        .expect("mount base");
    let p = m.path();
    fs::create_dir_all(p.join("etc/sub")).expect("mkdir");
    fs::write(p.join("etc/keep"), "keep").expect("write");
    fs::write(p.join("etc/change"), "old").expect("write");
    fs::write(p.join("etc/sub/gone"), "gone").expect("write");
    fs::write(p.join("exec"), "#!/bin/sh").expect("write");
    fs::set_permissions(p.join("exec"), fs::Permissions::from_mode(0o4755)).expect("chmod");
    std::os::unix::fs::symlink("etc/keep", p.join("link")).expect("symlink");
    fs::hard_link(p.join("etc/keep"), p.join("hard")).expect("hardlink");
    drop(m);
    sn.commit("base", "base-active").expect("commit base");
    PathBuf::from("base")
}

fn write_child(sn: &dyn Snapshotter) {
    let m = MountGuard::new(
        &sn.prepare("child-active", Some("base"))
            .expect("prepare child"),
    )
    .expect("mount child");
    let p = m.path();
    assert_eq!(
        fs::read_to_string(p.join("etc/keep")).expect("base file visible"),
        "keep"
    );
    fs::write(p.join("etc/change"), "new").expect("write");
    fs::remove_dir_all(p.join("etc/sub")).expect("rm");
    fs::write(p.join("added"), "added").expect("write");
    drop(m);
    sn.commit("child", "child-active").expect("commit child");
}

/// Prepare, write, commit, prepare on top, change, commit, view: every layer shows
/// exactly what was written into it and its parents; modes and links survive.
pub fn check_layering(sn: &dyn Snapshotter) {
    write_base(sn);
    write_child(sn);
    let v =
        MountGuard::new(&sn.view("child-view", Some("child")).expect("view")).expect("mount view");
    let p = v.path();
    assert_eq!(
        fs::read_to_string(p.join("etc/change")).expect("read"),
        "new"
    );
    assert_eq!(
        fs::read_to_string(p.join("etc/keep")).expect("read"),
        "keep"
    );
    assert_eq!(fs::read_to_string(p.join("added")).expect("read"), "added");
    assert!(!p.join("etc/sub").exists(), "deleted dir still visible");
    assert_eq!(
        fs::symlink_metadata(p.join("exec")).expect("stat").mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::read_link(p.join("link")).expect("readlink"),
        Path::new("etc/keep")
    );
    assert!(
        fs::write(p.join("x"), "x").is_err(),
        "a view must be read-only"
    );
    let b =
        MountGuard::new(&sn.view("base-view", Some("base")).expect("view base")).expect("mount");
    assert_eq!(
        fs::read_to_string(b.path().join("etc/change")).expect("read"),
        "old"
    );
    assert!(
        b.path().join("etc/sub/gone").exists(),
        "child changes leaked into the parent"
    );
    let (a, h) = (
        fs::metadata(b.path().join("etc/keep")),
        fs::metadata(b.path().join("hard")),
    );
    assert_eq!(
        a.expect("stat").ino(),
        h.expect("stat").ino(),
        "hardlink lost"
    );
}

/// Two children of one parent do not see each other's writes.
pub fn check_siblings_isolated(sn: &dyn Snapshotter) {
    write_base(sn);
    let a = MountGuard::new(&sn.prepare("a", Some("base")).expect("prepare a")).expect("mount a");
    let b = MountGuard::new(&sn.prepare("b", Some("base")).expect("prepare b")).expect("mount b");
    fs::write(a.path().join("etc/keep"), "from a").expect("write");
    assert_eq!(
        fs::read_to_string(b.path().join("etc/keep")).expect("read"),
        "keep"
    );
    assert_eq!(
        sn.mounts("a").expect("mounts"),
        sn.mounts("a").expect("mounts")
    );
}

/// The state machine: bad parents, duplicate keys, commit of non-active, removal order.
pub fn check_lifecycle_errors(sn: &dyn Snapshotter) {
    assert!(matches!(
        sn.prepare("x", Some("missing")),
        Err(Error::NotFound(_))
    ));
    sn.prepare("active", None).expect("prepare");
    assert!(matches!(sn.prepare("active", None), Err(Error::Exists(_))));
    assert!(matches!(
        sn.prepare("y", Some("active")),
        Err(Error::NotCommitted(_))
    ));
    assert!(matches!(
        sn.view("v", Some("active")),
        Err(Error::NotCommitted(_))
    ));
    sn.commit("layer", "active").expect("commit");
    assert!(matches!(sn.stat("active"), Err(Error::NotFound(_))));
    assert_eq!(sn.stat("layer").expect("stat").kind, Kind::Committed);
    assert!(matches!(
        sn.commit("again", "layer"),
        Err(Error::NotActive(_))
    ));
    sn.view("v", Some("layer")).expect("view");
    assert!(matches!(sn.commit("v2", "v"), Err(Error::NotActive(_))));
    sn.prepare("c", Some("layer")).expect("prepare child");
    assert_eq!(sn.stat("c").expect("stat").parent.as_deref(), Some("layer"));
    assert!(matches!(sn.remove("layer"), Err(Error::HasChildren { .. })));
    sn.remove("c").expect("remove child");
    sn.remove("v").expect("remove view");
    sn.remove("layer").expect("remove layer");
    assert!(sn.list().expect("list").is_empty());
    assert!(matches!(sn.remove("layer"), Err(Error::NotFound(_))));
}

/// A deferred removal is a removal for every method at once; its files go with
/// `empty_trash`.
pub fn check_deferred_removal(sn: &dyn Snapshotter) {
    let mounts = sn.prepare("d", None).expect("prepare");
    {
        let g = MountGuard::new(&mounts).expect("mount");
        fs::write(g.path().join("f"), "data").expect("write");
    }
    sn.remove_deferred("d").expect("remove deferred");
    assert!(matches!(sn.stat("d"), Err(Error::NotFound(_))));
    assert!(sn.list().expect("list").is_empty());
    assert!(matches!(sn.remove_deferred("d"), Err(Error::NotFound(_))));
    // the key is free again, with an empty snapshot
    let mounts = sn.prepare("d", None).expect("prepare again");
    {
        let g = MountGuard::new(&mounts).expect("mount");
        assert!(!g.path().join("f").exists(), "the old files show through");
    }
    sn.empty_trash().expect("empty trash");
    sn.empty_trash().expect("empty trash twice");
    sn.remove("d").expect("remove");
}

/// Usage counts a snapshot's own data; removal frees it.
pub fn check_usage(sn: &dyn Snapshotter) {
    let mounts = sn.prepare("u", None).expect("prepare");
    let (dir, _) =
        Mount::writable_dir(&mounts).expect("a parentless snapshot is directly writable");
    fs::write(dir.join("big"), vec![7u8; 1 << 20]).expect("write");
    let u = sn.usage("u").expect("usage");
    assert!(u.size >= 1 << 20 && u.inodes >= 1, "{u:?}");
    sn.commit("u1", "u").expect("commit");
    assert!(sn.usage("u1").expect("usage").size >= 1 << 20);
}

/// A long chain of layers still mounts and shows the top and the bottom.
pub fn check_deep_chain(sn: &dyn Snapshotter) {
    let mut parent: Option<String> = None;
    for i in 0..20 {
        let key = format!("l{i}-active");
        let mounts = sn.prepare(&key, parent.as_deref()).expect("prepare");
        let m = MountGuard::new(&mounts).expect("mount");
        fs::write(m.path().join(format!("f{i}")), i.to_string()).expect("write");
        drop(m);
        let name = format!("l{i}");
        sn.commit(&name, &key).expect("commit");
        parent = Some(name);
    }
    let v = MountGuard::new(&sn.view("top", parent.as_deref()).expect("view")).expect("mount");
    assert_eq!(
        fs::read_to_string(v.path().join("f0")).expect("bottom"),
        "0"
    );
    assert_eq!(fs::read_to_string(v.path().join("f19")).expect("top"), "19");
    let c = MountGuard::new(&sn.mounts("l19").expect("committed mounts")).expect("mount committed");
    assert!(c.path().join("f0").exists());
}
