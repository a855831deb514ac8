//! Indexes (multi-platform images): berth picks linux/amd64, and says clearly when an
//! index has no image for it. The index is pushed by `skopeo copy --all`.

mod common;

use berth_content::{Digest, NoProgress};
use berth_image::Images;
use berth_registry::{Client, Credentials, Options};
use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;

fn put(layout: &Path, bytes: &[u8]) -> (Digest, usize) {
    let d = Digest::of(bytes);
    std::fs::write(layout.join("blobs/sha256").join(d.hex()), bytes).expect("write blob");
    (d, bytes.len())
}

/// An OCI layout whose `index.json` names (as `tag`) a nested index of `platforms`;
/// the amd64 entry is a real image taken from `images`, the others are tiny fakes.
fn layout(images: &Images, amd64: &str, platforms: &[&str], dir: &Path, tag: &str) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    let mut manifests = Vec::new();
    for arch in platforms {
        let (md, ms) = if *arch == "amd64" {
            let img = images.resolve(amd64).expect("image");
            for l in img.manifest.layers() {
                put(
                    dir,
                    &images
                        .content()
                        .read(&Digest::parse(l.digest().as_ref()).expect("d"))
                        .expect("layer"),
                );
            }
            put(
                dir,
                &images
                    .content()
                    .read(&Digest::parse(&img.record.config).expect("d"))
                    .expect("config"),
            );
            put(
                dir,
                &images
                    .content()
                    .read(&Digest::parse(&img.record.manifest).expect("d"))
                    .expect("manifest"),
            )
        } else {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_ustar();
            h.set_size(4);
            b.append_data(&mut h, arch, &b"fake"[..]).expect("append");
            let (ld, ls) = put(dir, &b.into_inner().expect("tar"));
            let cfg = json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [ld.to_string()]}});
            let (cd, cs) = put(dir, cfg.to_string().as_bytes());
            let m = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cs},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld.to_string(), "size": ls}]});
            put(dir, m.to_string().as_bytes())
        };
        manifests.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md.to_string(), "size": ms,
            "platform": {"architecture": arch, "os": "linux"}}));
    }
    let idx = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
    let (id, is) = put(dir, idx.to_string().as_bytes());
    let top = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": id.to_string(), "size": is,
        "annotations": {"org.opencontainers.image.ref.name": tag}}]});
    std::fs::write(dir.join("index.json"), top.to_string()).expect("index.json");
}

#[test]
fn pull_picks_amd64_from_an_index_and_explains_when_missing() {
    let skopeo = skopeo();
    let reg = Registry::start(false);
    let root = data_root();
    let images = Images::open(root.path()).expect("open");
    let id = images
        .import(&rootfs(1 << 12, 7)[..], Some("berth-test/local:1"), &[], "")
        .expect("import");
    layout(
        &images,
        "berth-test/local:1",
        &["arm64", "amd64", "s390x"],
        &root.path().join("multi"),
        "multi",
    );
    layout(
        &images,
        "berth-test/local:1",
        &["arm64"],
        &root.path().join("armonly"),
        "armonly",
    );
    for tag in ["multi", "armonly"] {
        let dir = root.path().join(tag);
        let out = Command::new(&skopeo)
            .args(["copy", "--all", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", dir.display()))
            .arg(format!("docker://{}/berth-test/plat:{tag}", reg.host))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo copy --all: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let root2 = data_root();
    let images2 = Images::open(root2.path()).expect("open");
    let c = Client::new(Options {
        insecure: vec![],
        credentials: Credentials::new(root2.path().join("auth.json")),
        parallel: 4,
    });
    let pulled = c
        .pull(
            &images2,
            &format!("{}/berth-test/plat:multi", reg.host),
            &NoProgress,
        )
        .expect("pull index");
    assert_eq!(pulled.id, id, "the linux/amd64 image is chosen");
    let e = c
        .pull(
            &images2,
            &format!("{}/berth-test/plat:armonly", reg.host),
            &NoProgress,
        )
        .expect_err("no amd64");
    let msg = e.to_string();
    assert!(
        msg.contains("linux/amd64") && msg.contains("linux/arm64"),
        "{msg}"
    );
}
