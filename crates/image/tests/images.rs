//! End-to-end: import, unpack into both snapshotters, container snapshots, save/load
//! round trips, interop with skopeo, removal and garbage collection (needs root).

mod common;

use berth_content::NoProgress;
use berth_image::Images;
use berth_snapshot::conformance::MountGuard;
use berth_snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshotter};
use common::{busybox_rootfs, TarBuf};
use std::fs;
use std::path::Path;
use std::process::Command;

fn root_dir() -> tempfile::TempDir {
    assert!(
        nix::unistd::geteuid().is_root(),
        "image end-to-end tests mount snapshots: run them as root"
    );
    tempfile::Builder::new()
        .prefix("berth-test-images-")
        .tempdir()
        .expect("tempdir")
}

fn open(dir: &Path, overlay: bool) -> Images {
    let sn: Box<dyn Snapshotter> = if overlay {
        Box::new(OverlaySnapshotter::new(dir.join("snapshots/overlayfs")).expect("overlay"))
    } else {
        Box::new(CopySnapshotter::new(dir.join("snapshots/native")).expect("copy"))
    };
    Images::open_with(dir, sn).expect("open images")
}

fn skopeo() -> &'static str {
    assert!(
        Path::new("/usr/bin/skopeo").exists(),
        "these tests need Debian's skopeo package (apt-get install skopeo)"
    );
    "/usr/bin/skopeo"
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A two-layer image: the busybox rootfs plus a layer that deletes and adds files.
fn two_layer_image(images: &Images, name: &str) -> String {
    let base = images
        .import(
            &busybox_rootfs()[..],
            Some("berth-test/base:1"),
            &["CMD [\"/bin/sh\"]".to_string()],
            "",
        )
        .expect("import");
    let tmp = tempfile::Builder::new()
        .prefix("berth-test-archive-")
        .tempdir()
        .expect("tmp");
    let saved = tmp.path().join("base.tar");
    images
        .save(
            std::slice::from_ref(&base),
            fs::File::create(&saved).expect("create"),
            &NoProgress,
        )
        .expect("save");
    // Build a second layer and a docker-archive holding both, then load it.
    let top = TarBuf::default()
        .file("etc/.wh.hostname", "")
        .file("etc/motd", "hello\n")
        .gzip();
    let img = images.resolve(&base).expect("resolve");
    let base_layer = images
        .content()
        .read(
            &berth_content::Digest::parse(img.manifest.layers()[0].digest().as_ref())
                .expect("digest"),
        )
        .expect("layer");
    let mut cfg = img.raw_config.clone();
    let top_plain = {
        use std::io::Read;
        let mut v = Vec::new();
        flate2::read::GzDecoder::new(&top[..])
            .read_to_end(&mut v)
            .expect("gunzip");
        v
    };
    cfg["rootfs"]["diff_ids"]
        .as_array_mut()
        .expect("diff ids")
        .push(berth_content::Digest::of(&top_plain).to_string().into());
    cfg["history"]
        .as_array_mut()
        .expect("history")
        .push(serde_json::json!({"created_by": "add motd"}));
    let cfg_bytes = serde_json::to_vec(&cfg).expect("json");
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |p: &str, d: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, p, d).expect("append");
    };
    add("l1/layer.tar", &base_layer);
    add("l2/layer.tar", &top);
    add("config.json", &cfg_bytes);
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": [name], "Layers": ["l1/layer.tar", "l2/layer.tar"]}]);
    add(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("json"),
    );
    let loaded = images
        .load_reader(&b.into_inner().expect("tar")[..], &NoProgress)
        .expect("load");
    assert_eq!(loaded[0].names, vec![name.to_string()]);
    loaded[0].id.clone()
}

fn check_container_rootfs(overlay: bool) {
    let dir = root_dir();
    let images = open(dir.path(), overlay);
    two_layer_image(&images, "berth-test/two:latest");
    let (cfg, mounts) = images
        .prepare_container("berth-test/two", "c1")
        .expect("prepare container");
    assert_eq!(
        cfg.config().as_ref().and_then(|c| c.cmd().clone()),
        Some(vec!["/bin/sh".to_string()])
    );
    {
        let m = MountGuard::new(&mounts).expect("mount rootfs");
        let r = m.path();
        assert!(r.join("bin/busybox").is_file());
        assert_eq!(
            fs::read_link(r.join("bin/sh")).expect("applet link"),
            Path::new("busybox")
        );
        assert!(
            !r.join("etc/hostname").exists(),
            "whiteout from the top layer must hide the file"
        );
        assert_eq!(
            fs::read_to_string(r.join("etc/motd")).expect("motd"),
            "hello\n"
        );
        fs::write(r.join("container-file"), "x").expect("container writes");
        let out = run(Command::new("chroot")
            .arg(r)
            .args(["/bin/busybox", "cat", "/etc/motd"]));
        assert_eq!(out, "hello\n");
    }
    // The same chain is shared by a second container; nothing is unpacked twice.
    let before = images.snapshotter().list().expect("list").len();
    images
        .prepare_container("berth-test/two", "c2")
        .expect("second container");
    assert_eq!(images.snapshotter().list().expect("list").len(), before + 1);
    let e = images.remove("berth-test/two", false).expect_err("in use");
    assert!(e.to_string().contains("being used by container"), "{e}");
    images.remove_container("c1").expect("remove c1");
    images.remove_container("c2").expect("remove c2");
    images
        .remove("berth-test/two", false)
        .expect("remove image");
    images
        .remove("berth-test/base:1", false)
        .expect("remove base");
    assert!(images.list().expect("list").is_empty());
    assert!(
        images.snapshotter().list().expect("list").is_empty(),
        "gc must remove unused layers"
    );
    assert!(
        images.content().list().expect("list").is_empty(),
        "gc must remove unused blobs"
    );
}

#[test]
fn images_sharing_their_layers_count_only_their_own_containers() {
    let dir = root_dir();
    let images = open(dir.path(), true);
    // the same layer under two configs: two images, one top snapshot
    let a = images
        .import(
            &busybox_rootfs()[..],
            Some("berth-test/a:1"),
            &["CMD [\"a\"]".into()],
            "",
        )
        .expect("import a");
    let b = images
        .import(
            &busybox_rootfs()[..],
            Some("berth-test/b:1"),
            &["CMD [\"b\"]".into()],
            "",
        )
        .expect("import b");
    assert_ne!(a, b);
    images
        .prepare_container("berth-test/b:1", "cb")
        .expect("container of b");
    let count = |id: &str| {
        images
            .list()
            .expect("list")
            .into_iter()
            .find(|s| s.id == id)
            .map(|s| s.containers)
    };
    assert_eq!(count(&b), Some(1));
    assert_eq!(count(&a), Some(0), "a's layers, b's container");
    // a goes (unused), b stays (used); its container's rootfs is intact
    let e = images
        .remove("berth-test/b:1", false)
        .expect_err("b in use");
    assert!(e.to_string().contains("being used by container cb"), "{e}");
    images.remove("berth-test/a:1", false).expect("a is unused");
    let (pruned, _) = images.prune(true).expect("prune");
    assert!(pruned.is_empty(), "b is used: {pruned:?}");
    images
        .container_mounts("cb")
        .expect("the container's snapshot is still there");
    images.remove_container("cb").expect("remove cb");
    assert_eq!(count(&b), Some(0));
    let (pruned, _) = images.prune(true).expect("prune");
    assert_eq!(pruned, vec![b]);
}

#[test]
fn container_rootfs_on_overlay() {
    check_container_rootfs(true);
}

#[test]
fn container_rootfs_on_copy() {
    check_container_rootfs(false);
}

#[test]
fn save_is_read_by_skopeo_and_loads_back_identically() {
    let skopeo = skopeo();
    let dir = root_dir();
    let images = open(dir.path(), true);
    let id = two_layer_image(&images, "berth-test/rt:v1");
    let out = dir.path().join("berth-test-save.tar");
    images
        .save(
            &["berth-test/rt:v1".to_string()],
            fs::File::create(&out).expect("create"),
            &NoProgress,
        )
        .expect("save");
    let js = run(Command::new(skopeo)
        .args(["inspect", "--config"])
        .arg(format!("docker-archive:{}", out.display())));
    let cfg: serde_json::Value = serde_json::from_str(&js).expect("skopeo json");
    assert_eq!(
        cfg["rootfs"]["diff_ids"]
            .as_array()
            .expect("diff ids")
            .len(),
        2
    );
    let raw = run(Command::new(skopeo)
        .args(["inspect", "--raw"])
        .arg(format!("docker-archive:{}", out.display())));
    assert!(raw.contains("layers"), "{raw}");
    // Into a fresh store: same image id, same diff ids.
    let dir2 = root_dir();
    let other = open(dir2.path(), false);
    let loaded = other.load(&out, &NoProgress).expect("load saved archive");
    assert_eq!(loaded[0].id, id);
    assert_eq!(loaded[0].names, vec!["berth-test/rt:v1".to_string()]);
    other
        .prepare_container("berth-test/rt:v1", "c")
        .expect("unpack loaded image");
}

#[test]
fn loads_oci_archive_and_layout_written_by_skopeo() {
    let skopeo = skopeo();
    let dir = root_dir();
    let images = open(dir.path(), true);
    let id = two_layer_image(&images, "berth-test/oci:v2");
    let docker_archive = dir.path().join("berth-test-da.tar");
    images
        .save(
            &["berth-test/oci:v2".to_string()],
            fs::File::create(&docker_archive).expect("create"),
            &NoProgress,
        )
        .expect("save");
    let oci_archive = dir.path().join("berth-test-oci.tar");
    let layout = dir.path().join("berth-test-layout");
    run(Command::new(skopeo)
        .arg("copy")
        .arg(format!("docker-archive:{}", docker_archive.display()))
        .arg(format!(
            "oci-archive:{}:berth-test/oci:v2",
            oci_archive.display()
        )));
    run(Command::new(skopeo)
        .arg("copy")
        .arg(format!("docker-archive:{}", docker_archive.display()))
        .arg(format!("oci:{}:v2", layout.display())));
    for (src, name) in [
        (&oci_archive, vec!["berth-test/oci:v2".to_string()]),
        (&layout, vec![]),
    ] {
        let dir2 = root_dir();
        let other = open(dir2.path(), true);
        let loaded = other.load(src, &NoProgress).expect("load skopeo output");
        let (a, b) = (
            other.resolve(&loaded[0].id).expect("loaded"),
            images.resolve(&id).expect("original"),
        );
        assert_eq!(a.diff_ids(), b.diff_ids(), "layers survive skopeo");
        assert_eq!(loaded[0].names, name);
        other.prepare_container(&loaded[0].id, "c").expect("unpack");
        other.remove_container("c").expect("cleanup");
    }
}

#[test]
fn hostile_import_leaves_nothing_behind() {
    let dir = root_dir();
    let images = open(dir.path(), true);
    let tar = TarBuf::default()
        .symlink("evil", "/")
        .file("evil/berth-test-escape", "x")
        .bytes();
    let e = images
        .import(&tar[..], Some("berth-test/evil"), &[], "")
        .expect_err("hostile import");
    assert!(e.to_string().contains("evil/berth-test-escape"), "{e}");
    assert!(!Path::new("/berth-test-escape").exists());
    assert!(images.list().expect("list").is_empty());
    assert!(
        images.content().list().expect("blobs").is_empty(),
        "no blob may remain"
    );
    assert!(images.snapshotter().list().expect("snapshots").is_empty());
}

#[test]
fn corrupt_archives_are_refused_cleanly() {
    let dir = root_dir();
    let images = open(dir.path(), true);
    // manifest.json referencing a layer that is not in the archive
    let mut b = tar::Builder::new(Vec::new());
    let m = br#"[{"Config":"c.json","RepoTags":["berth-test/x:1"],"Layers":["missing.tar"]}]"#;
    let mut h = tar::Header::new_ustar();
    h.set_size(m.len() as u64);
    b.append_data(&mut h, "manifest.json", &m[..])
        .expect("append");
    let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let mut h = tar::Header::new_ustar();
    h.set_size(cfg.len() as u64);
    b.append_data(&mut h, "c.json", &cfg[..]).expect("append");
    let e = images
        .load_reader(&b.into_inner().expect("tar")[..], &NoProgress)
        .expect_err("incomplete");
    assert!(e.to_string().contains("missing.tar"), "{e}");
    // an archive cut in the middle of its second file: the first one must not stay
    let mut b = tar::Builder::new(Vec::new());
    for (p, d) in [("c.json", cfg.to_vec()), ("layer.tar", busybox_rootfs())] {
        let mut h = tar::Header::new_ustar();
        h.set_size(d.len() as u64);
        b.append_data(&mut h, p, &d[..]).expect("append");
    }
    let whole = b.into_inner().expect("tar");
    let e = images
        .load_reader(&whole[..whole.len() / 2], &NoProgress)
        .expect_err("cut archive");
    assert!(e.to_string().contains("truncated"), "{e}");
    assert!(
        images.content().list().expect("blobs").is_empty(),
        "the complete first file was discarded"
    );
    // a truncated archive
    let full = busybox_rootfs();
    let e = images
        .load_reader(&full[..full.len() / 3], &NoProgress)
        .expect_err("truncated");
    assert!(!e.to_string().is_empty());
    assert!(images.list().expect("list").is_empty());
    assert!(
        images.content().list().expect("blobs").is_empty(),
        "nothing half-stored"
    );
    // an OCI blob whose content does not match its name
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(3);
    b.append_data(
        &mut h,
        format!("blobs/sha256/{}", "0".repeat(64)),
        &b"abc"[..],
    )
    .expect("append");
    let e = images
        .load_reader(&b.into_inner().expect("tar")[..], &NoProgress)
        .expect_err("digest mismatch");
    assert!(e.to_string().contains("digest mismatch"), "{e}");
    assert!(images.content().list().expect("blobs").is_empty());
}

#[test]
fn tag_inspect_history_prune() {
    let dir = root_dir();
    let images = open(dir.path(), true);
    let id = images
        .import(&busybox_rootfs()[..], None, &["ENV A=1".into()], "imported")
        .expect("import");
    assert!(
        images.list().expect("list")[0].tags.is_empty(),
        "no name: dangling"
    );
    images
        .tag(&id[7..19], "berth-test/t:1")
        .expect("tag by short id");
    images
        .tag("berth-test/t:1", "berth-test/t:2")
        .expect("tag by name");
    let v = images.inspect("berth-test/t:2").expect("inspect");
    assert_eq!(v["Id"], serde_json::json!(id));
    assert_eq!(v["Config"]["Env"], serde_json::json!(["A=1"]));
    assert_eq!(v["RepoTags"].as_array().expect("tags").len(), 2);
    let h = images.history("berth-test/t:1").expect("history");
    assert_eq!(h[0].id, id);
    assert_eq!(h[0].comment, "imported");
    let e = images.remove(&id, false).expect_err("two names");
    assert!(e.to_string().contains("must be forced"), "{e}");
    assert_eq!(
        images.remove("berth-test/t:2", false).expect("untag"),
        vec!["Untagged: berth-test/t:2".to_string()]
    );
    let (gone, _) = images.prune(false).expect("prune dangling");
    assert!(gone.is_empty(), "a named image is not dangling");
    let (gone, _) = images.prune(true).expect("prune all");
    assert_eq!(gone, vec![id]);
    assert!(images.content().list().expect("blobs").is_empty());
}

/// Loads a docker-archive made of `layers` (plain tars) under `name`.
fn load_layers(images: &Images, name: &str, layers: &[Vec<u8>]) {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| berth_content::Digest::of(l).to_string())
        .collect();
    let cfg = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let paths: Vec<String> = (0..layers.len()).map(|i| format!("l{i}.tar")).collect();
    let manifest = serde_json::json!([{"Config": "c.json", "RepoTags": [name], "Layers": paths}]);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |p: &str, d: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, p, d).expect("append");
    };
    for (p, l) in paths.iter().zip(layers) {
        add(p, l);
    }
    add("c.json", cfg.to_string().as_bytes());
    add("manifest.json", manifest.to_string().as_bytes());
    images
        .load_reader(&b.into_inner().expect("tar")[..], &NoProgress)
        .expect("load");
}

#[test]
fn parallel_unpack_checks_lower_layers() {
    use std::os::unix::fs::PermissionsExt;
    let dir = root_dir();
    let images = open(dir.path(), true);
    // An implicit directory takes the attributes of the lower directory it merges with.
    let mut l1 = TarBuf::default();
    l1.dir("d");
    let mut h = tar::Header::new_ustar();
    h.set_path("private/").expect("path");
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o700);
    h.set_size(0);
    h.set_cksum();
    let mut l1 = l1.bytes();
    {
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b""[..]).expect("append");
        let extra = b.into_inner().expect("tar");
        l1.truncate(l1.len() - 1024); // drop the end-of-archive blocks
        l1.extend_from_slice(&extra);
    }
    let l2 = TarBuf::default()
        .file("private/x", "x")
        .file("d/y", "y")
        .bytes();
    let l3 = TarBuf::default().file("d/z", "z").bytes();
    load_layers(&images, "berth-test/par:1", &[l1, l2, l3]);
    let (_, mounts) = images
        .prepare_container("berth-test/par:1", "c")
        .expect("prepare");
    {
        let m = MountGuard::new(&mounts).expect("mount");
        let mode = fs::metadata(m.path().join("private"))
            .expect("private")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700, "implicit dir must keep the lower dir's mode");
        for f in ["private/x", "d/y", "d/z"] {
            assert!(m.path().join(f).exists(), "{f}");
        }
    }
    images.remove_container("c").expect("cleanup");
    // An entry under a symlink that only a lower layer has is refused.
    let evil1 = TarBuf::default().symlink("s", "/").bytes();
    let evil2 = TarBuf::default().file("s/berth-test-escape", "x").bytes();
    load_layers(&images, "berth-test/evil:1", &[evil1, evil2]);
    let e = images
        .prepare_container("berth-test/evil:1", "c2")
        .expect_err("hostile");
    assert!(e.to_string().contains("s/berth-test-escape"), "{e}");
    assert!(!Path::new("/berth-test-escape").exists());
    assert!(images.snapshotter().stat("c2").is_err());
    assert!(
        fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .next()
            .is_none(),
        "staging removed"
    );
}
