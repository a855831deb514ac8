//! A registry serving corrupt, missing or hostile content: the pull fails with a
//! clear error and leaves nothing in the store.

mod common;

use berth_content::{Digest, NoProgress};
use berth_image::Images;
use berth_registry::{Client, Credentials, Options};
use common::*;
use std::path::Path;
use std::process::Command;

fn client(root: &Path) -> Client {
    Client::new(Options {
        insecure: vec![],
        credentials: Credentials::new(root.join("auth.json")),
        parallel: 4,
    })
}

fn blob_file(reg: &Registry, d: &Digest) -> std::path::PathBuf {
    reg.dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&d.hex()[..2])
        .join(d.hex())
        .join("data")
}

fn assert_empty(images: &Images) {
    assert!(
        images.list().expect("list").is_empty(),
        "no image may be registered"
    );
    assert!(
        images.content().list().expect("blobs").is_empty(),
        "no blob may remain"
    );
    assert!(
        images.content().partials().expect("partials").is_empty(),
        "no partial may remain"
    );
    assert!(
        images.snapshotter().list().expect("snapshots").is_empty(),
        "no snapshot may remain"
    );
}

/// Pushes a fresh one-layer image and returns its name and layer digest.
fn pushed(reg: &Registry, root: &Path, repo: &str) -> (String, Digest) {
    let images = Images::open(root).expect("open");
    let name = format!("{}/berth-test/{repo}:1", reg.host);
    images
        .import(&rootfs(1 << 16, 11)[..], Some(&name), &[], "")
        .expect("import");
    client(root)
        .push(&images, &name, &NoProgress)
        .expect("push");
    let layer = Digest::parse(
        images.resolve(&name).expect("img").manifest.layers()[0]
            .digest()
            .as_ref(),
    )
    .expect("digest");
    (name, layer)
}

#[test]
fn corrupt_blob_is_refused() {
    let reg = Registry::start(false);
    let src = data_root();
    let (name, layer) = pushed(&reg, src.path(), "corrupt");
    let f = blob_file(&reg, &layer);
    let mut bytes = std::fs::read(&f).expect("registry blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&f, bytes).expect("corrupt it");
    let dst = data_root();
    let images = Images::open(dst.path()).expect("open");
    let e = client(dst.path())
        .pull(&images, &name, &NoProgress)
        .expect_err("corrupt layer");
    assert!(e.to_string().contains("digest mismatch"), "{e}");
    assert_empty(&images);
}

#[test]
fn truncated_blob_is_refused() {
    let reg = Registry::start(false);
    let src = data_root();
    let (name, layer) = pushed(&reg, src.path(), "short");
    let f = blob_file(&reg, &layer);
    let bytes = std::fs::read(&f).expect("registry blob");
    std::fs::write(&f, &bytes[..bytes.len() - 100]).expect("truncate it");
    let dst = data_root();
    let images = Images::open(dst.path()).expect("open");
    let e = client(dst.path())
        .pull(&images, &name, &NoProgress)
        .expect_err("short layer");
    assert!(
        e.to_string().contains("mismatch") || e.to_string().contains("cannot reach"),
        "{e}"
    );
    assert_empty(&images);
}

#[test]
fn missing_blob_is_reported() {
    let reg = Registry::start(false);
    let src = data_root();
    let (name, layer) = pushed(&reg, src.path(), "missing");
    std::fs::remove_dir_all(blob_file(&reg, &layer).parent().expect("dir")).expect("delete blob");
    let dst = data_root();
    let images = Images::open(dst.path()).expect("open");
    let e = client(dst.path())
        .pull(&images, &name, &NoProgress)
        .expect_err("missing layer");
    assert!(
        e.to_string().contains(&layer.to_string()) && e.to_string().contains("not found"),
        "{e}"
    );
    assert_empty(&images);
}

#[test]
fn hostile_layer_from_a_registry_is_refused() {
    let skopeo = skopeo();
    let reg = Registry::start(false);
    let work = data_root();
    // A docker-archive whose layer writes through a symlink to /.
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    layer.append_link(&mut h, "evil", "/").expect("symlink");
    let mut h = tar::Header::new_ustar();
    h.set_size(1);
    layer
        .append_data(&mut h, "evil/berth-test-escape", &b"x"[..])
        .expect("file");
    let layer = layer.into_inner().expect("tar");
    let cfg = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]}});
    let mut ar = tar::Builder::new(Vec::new());
    for (p, d) in [
        ("layer.tar", layer.clone()),
        ("config.json", cfg.to_string().into_bytes()),
        (
            "manifest.json",
            br#"[{"Config":"config.json","RepoTags":["x/evil:1"],"Layers":["layer.tar"]}]"#
                .to_vec(),
        ),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(d.len() as u64);
        ar.append_data(&mut h, p, &d[..]).expect("append");
    }
    let archive = work.path().join("evil.tar");
    std::fs::write(&archive, ar.into_inner().expect("tar")).expect("write");
    let name = format!("{}/berth-test/evil:1", reg.host);
    let out = Command::new(&skopeo)
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{name}"))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dst = data_root();
    let images = Images::open(dst.path()).expect("open");
    let e = client(dst.path())
        .pull(&images, &name, &NoProgress)
        .expect_err("hostile layer");
    assert!(e.to_string().contains("evil/berth-test-escape"), "{e}");
    assert!(!Path::new("/berth-test-escape").exists());
    assert_empty(&images);
}
