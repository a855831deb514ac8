//! Layer application: every tar feature, both whiteout styles, and hostile input
//! (each test asserts nothing appeared or changed outside the target directory).

mod common;

use berth_image::apply::{apply_layer, ApplyOptions, Error};
use berth_snapshot::WhiteoutStyle;
use common::{snapshot_tree, TarBuf};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// `<tmp>/outside` holds a sentinel the layer must never touch; `<tmp>/root` is the target.
struct Sandbox {
    t: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let t = tempfile::Builder::new()
            .prefix("berth-test-apply-")
            .tempdir()
            .expect("tempdir");
        fs::create_dir(t.path().join("outside")).expect("mkdir");
        fs::write(t.path().join("outside/secret"), "secret").expect("write");
        fs::create_dir(t.path().join("root")).expect("mkdir");
        Self { t }
    }
    fn root(&self) -> PathBuf {
        self.t.path().join("root")
    }
    fn outside(&self) -> PathBuf {
        self.t.path().join("outside")
    }
    fn apply(
        &self,
        tar: &[u8],
        opts: &ApplyOptions,
    ) -> berth_image::apply::Result<berth_image::apply::ApplyStats> {
        apply_layer(&self.root(), tar, opts)
    }
    /// Applies a hostile layer: it must fail naming `entry`, and nothing outside
    /// `root` may change.
    fn refuse(&self, tar: &[u8], entry: &str) {
        self.refuse_with(tar, entry, &opts());
    }
    fn refuse_with(&self, tar: &[u8], entry: &str, o: &ApplyOptions) {
        let before = snapshot_tree(self.t.path());
        let outside_before = snapshot_tree(&self.outside());
        let err = self
            .apply(tar, o)
            .expect_err("hostile layer must be refused");
        assert!(matches!(err, Error::Hostile { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!("{entry:?}")),
            "error must name {entry}: {err}"
        );
        assert_eq!(
            snapshot_tree(&self.outside()),
            outside_before,
            "outside changed"
        );
        let after = snapshot_tree(self.t.path());
        for line in after.iter().filter(|l| !l.starts_with("root")) {
            assert!(before.contains(line), "new entry outside root: {line}");
        }
        assert!(
            !self.t.path().join("escape").exists()
                && !self.t.path().parent().expect("tmp").join("escape").exists()
        );
        assert!(!Path::new("/berth-test-escape").exists());
    }
}

fn opts() -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutStyle::Delete,
        lowers: Vec::new(),
        rootless: false,
    }
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "layer tests create devices and chown files: run them as root"
    );
}

#[test]
fn rejects_parent_dir_paths() {
    let s = Sandbox::new();
    s.refuse(
        &TarBuf::default().file("../escape", "x").bytes(),
        "../escape",
    );
    s.refuse(
        &TarBuf::default().file("a/../../escape", "x").bytes(),
        "a/../../escape",
    );
    s.refuse(
        &TarBuf::default().dir("../../escape/").bytes(),
        "../../escape/",
    );
}

#[test]
fn rejects_absolute_paths() {
    let s = Sandbox::new();
    s.refuse(
        &TarBuf::default().file("/berth-test-escape", "x").bytes(),
        "/berth-test-escape",
    );
}

#[test]
fn rejects_entries_through_relative_symlink() {
    let s = Sandbox::new();
    s.refuse(
        &TarBuf::default()
            .symlink("link", "../outside")
            .file("link/pwned", "x")
            .bytes(),
        "link/pwned",
    );
    assert!(!s.outside().join("pwned").exists());
}

#[test]
fn rejects_entries_through_absolute_symlink() {
    let s = Sandbox::new();
    let target = s.outside().to_string_lossy().into_owned();
    s.refuse(
        &TarBuf::default()
            .symlink("abs", &target)
            .file("abs/pwned", "x")
            .bytes(),
        "abs/pwned",
    );
    s.refuse(
        &TarBuf::default()
            .symlink("abs", &target)
            .file("abs/secret", "overwritten")
            .bytes(),
        "abs/secret",
    );
}

#[test]
fn rejects_entries_through_symlink_chains() {
    let s = Sandbox::new();
    let tar = TarBuf::default()
        .symlink("l1", "l2")
        .symlink("l2", "d/l3")
        .dir("d")
        .symlink("d/l3", "../../outside")
        .file("l1/pwned", "x")
        .bytes();
    s.refuse(&tar, "l1/pwned");
    let tar = TarBuf::default()
        .dir("d")
        .symlink("d/up", "..")
        .symlink("d/up2", "up/..")
        .file("d/up2/escape", "x")
        .bytes();
    s.refuse(&tar, "d/up2/escape");
}

#[test]
fn rejects_hardlinks_to_outside() {
    let s = Sandbox::new();
    s.refuse(
        &TarBuf::default().hardlink("h", "../outside/secret").bytes(),
        "h",
    );
    s.refuse(&TarBuf::default().hardlink("h", "/etc/passwd").bytes(), "h");
    s.refuse(
        &TarBuf::default()
            .symlink("s", "../outside")
            .hardlink("h", "s/secret")
            .bytes(),
        "h",
    );
    s.refuse(&TarBuf::default().hardlink("h", "missing").bytes(), "h");
}

#[test]
fn rejects_whiteouts_through_symlinks() {
    let s = Sandbox::new();
    s.refuse(
        &TarBuf::default()
            .symlink("s", "../outside")
            .file("s/.wh.secret", "")
            .bytes(),
        "s/.wh.secret",
    );
    s.refuse(
        &TarBuf::default()
            .symlink("s", "../outside")
            .file("s/.wh..wh..opq", "")
            .bytes(),
        "s/.wh..wh..opq",
    );
    assert_eq!(
        fs::read_to_string(s.outside().join("secret")).expect("sentinel"),
        "secret"
    );
}

#[test]
fn never_writes_through_existing_links() {
    require_root();
    let s = Sandbox::new();
    let secret = s.outside().join("secret").to_string_lossy().into_owned();
    // A symlink (or a hardlink to it) replaced by a regular file: the file replaces
    // the link, the link's target is untouched.
    let tar = TarBuf::default()
        .symlink("s", &secret)
        .hardlink("h", "s")
        .file("s", "new")
        .file("h", "new")
        .bytes();
    s.apply(&tar, &opts()).expect("apply");
    assert_eq!(
        fs::read_to_string(s.outside().join("secret")).expect("sentinel"),
        "secret"
    );
    assert!(fs::symlink_metadata(s.root().join("s"))
        .expect("lstat")
        .is_file());
    assert_eq!(fs::read_to_string(s.root().join("h")).expect("read"), "new");
}

#[test]
fn rootless_skips_device_nodes() {
    let s = Sandbox::new();
    let o = ApplyOptions {
        rootless: true,
        ..opts()
    };
    let st = s
        .apply(
            &TarBuf::default()
                .chardev("dev/null", 1, 3)
                .file("ok", "ok")
                .bytes(),
            &o,
        )
        .expect("apply");
    assert_eq!(st.skipped_devices, 1);
    assert!(!s.root().join("dev/null").exists());
    assert!(s.root().join("ok").exists());
}

#[test]
fn drops_overlay_xattrs_from_layers() {
    require_root();
    let s = Sandbox::new();
    let tar = TarBuf::default()
        .pax(&[
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.user.keep", b"v"),
        ])
        .dir("d")
        .bytes();
    s.apply(
        &tar,
        &ApplyOptions {
            whiteouts: WhiteoutStyle::Overlay,
            ..opts()
        },
    )
    .expect("apply");
    assert_eq!(
        xattr::get(s.root().join("d"), "trusted.overlay.opaque").expect("getxattr"),
        None
    );
    assert_eq!(
        xattr::get(s.root().join("d"), "user.keep").expect("getxattr"),
        Some(b"v".to_vec())
    );
}

#[test]
fn rejects_truncated_and_corrupt_gzip() {
    let s = Sandbox::new();
    let mut big = TarBuf::default();
    for i in 0..50 {
        big.file(&format!("f{i}"), &"x".repeat(4096));
    }
    let gz = big.gzip();
    let e = s
        .apply(&gz[..gz.len() / 2], &opts())
        .expect_err("truncated");
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    let mut bad = gz.clone();
    bad[gz.len() / 2] ^= 0xff;
    let e = s.apply(&bad, &opts()).expect_err("corrupt");
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
}

#[test]
fn overlay_refuses_parents_that_are_symlinks_in_lower_layers() {
    let s = Sandbox::new();
    let lower = s.t.path().join("lower");
    fs::create_dir(&lower).expect("mkdir");
    std::os::unix::fs::symlink("/", lower.join("s")).expect("symlink");
    let o = ApplyOptions {
        whiteouts: WhiteoutStyle::Overlay,
        lowers: vec![lower],
        ..opts()
    };
    s.refuse_with(
        &TarBuf::default().file("s/berth-test-escape", "x").bytes(),
        "s/berth-test-escape",
        &o,
    );
}

fn base_layer() -> Vec<u8> {
    TarBuf::default()
        .dir("etc")
        .file_mode("etc/passwd", "root:x:0:0", 0o644, 0, 0)
        .file_mode("usr/bin/su", "suid", 0o4755, 0, 0)
        .file_mode("home/u/file", "mine", 0o600, 1000, 1001)
        .symlink("etc/link", "passwd")
        .hardlink("etc/hard", "etc/passwd")
        .chardev("dev/null", 1, 3)
        .fifo("run/fifo")
        .pax(&[("SCHILY.xattr.user.comment", b"hello")])
        .file("etc/xattr", "x")
        .dir("keep")
        .file("keep/a", "a")
        .dir("opq")
        .file("opq/old", "old")
        .file("gone", "gone")
        .bytes()
}

fn top_layer() -> Vec<u8> {
    TarBuf::default()
        .file(".wh.gone", "")
        .file("opq/.wh..wh..opq", "")
        .file("opq/new", "new")
        .file("keep/b", "b")
        .bytes()
}

#[test]
fn applies_every_entry_kind() {
    require_root();
    let s = Sandbox::new();
    let st = s.apply(&base_layer(), &opts()).expect("apply");
    assert!(st.diff_id.starts_with("sha256:"));
    let r = s.root();
    let m = |p: &str| fs::symlink_metadata(r.join(p)).expect(p);
    assert_eq!(m("usr/bin/su").mode() & 0o7777, 0o4755);
    assert_eq!(
        (m("home/u/file").uid(), m("home/u/file").gid()),
        (1000, 1001)
    );
    assert_eq!(m("home/u/file").mode() & 0o777, 0o600);
    assert_eq!(m("etc/passwd").mtime(), 1_500_000_000);
    assert_eq!(
        fs::read_link(r.join("etc/link")).expect("readlink"),
        Path::new("passwd")
    );
    assert_eq!(m("etc/hard").ino(), m("etc/passwd").ino());
    assert!(m("dev/null").file_type().is_char_device());
    assert_eq!(m("dev/null").rdev(), nix::libc::makedev(1, 3));
    assert!(m("run/fifo").file_type().is_fifo());
    assert_eq!(
        xattr::get(r.join("etc/xattr"), "user.comment").expect("xattr"),
        Some(b"hello".to_vec())
    );
    assert_eq!(
        m("etc").mtime(),
        1_600_000_000,
        "directory mtimes are restored after their children"
    );
}

#[test]
fn whiteouts_delete_in_a_full_tree() {
    require_root();
    let s = Sandbox::new();
    s.apply(&base_layer(), &opts()).expect("base");
    s.apply(&top_layer(), &opts()).expect("top");
    let r = s.root();
    assert!(!r.join("gone").exists());
    assert!(
        !r.join("opq/old").exists(),
        "opaque dir keeps lower content"
    );
    assert_eq!(fs::read_to_string(r.join("opq/new")).expect("new"), "new");
    assert!(r.join("keep/a").exists() && r.join("keep/b").exists());
    assert!(!r.join(".wh.gone").exists() && !r.join("opq/.wh..wh..opq").exists());
}

#[test]
fn whiteouts_become_overlay_form_in_an_upper_dir() {
    require_root();
    let s = Sandbox::new();
    let lower = s.t.path().join("lower");
    fs::create_dir(&lower).expect("mkdir");
    apply_layer(&lower, &base_layer()[..], &opts()).expect("base");
    let o = ApplyOptions {
        whiteouts: WhiteoutStyle::Overlay,
        lowers: vec![lower.clone()],
        ..opts()
    };
    s.apply(&top_layer(), &o).expect("top");
    let r = s.root();
    let gone = fs::symlink_metadata(r.join("gone")).expect("whiteout");
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert_eq!(
        xattr::get(r.join("opq"), "trusted.overlay.opaque").expect("xattr"),
        Some(b"y".to_vec())
    );
    assert_eq!(fs::read_to_string(r.join("opq/new")).expect("new"), "new");
    assert!(!r.join("opq/old").exists());
    // keep/ was created implicitly in the upper dir: it copies the lower dir's mode.
    assert_eq!(
        fs::metadata(r.join("keep")).expect("keep").mode() & 0o7777,
        fs::metadata(lower.join("keep")).expect("keep").mode() & 0o7777
    );
}
