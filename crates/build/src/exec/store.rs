//! Writing the built image: config (with `rootfs.diff_ids` and a fixed
//! `created`), an OCI manifest, registration and tags.

use berth_content::Digest;
use berth_image::manifest::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use berth_image::Images;
use serde_json::json;

use super::layer::LayerDesc;
use super::{ExecError, Result};
use crate::config::{rfc3339, ImageConfig};

/// The OCI media type for a layer media type (docker's names mapped).
pub fn oci_media_type(mt: &str) -> String {
    match mt {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip".into()
        }
        "application/vnd.docker.image.rootfs.diff.tar" => OCI_LAYER.into(),
        other => other.into(),
    }
}

fn json_bytes(v: &impl serde::Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| ExecError::Invalid(format!("cannot encode the image: {e}")))
}

/// Store `config` over `layers` as an image created at `epoch`, tag it with
/// `tags`; returns the image id.
pub fn write_image(
    images: &Images,
    config: &ImageConfig,
    layers: &[LayerDesc],
    epoch: i64,
    tags: &[String],
) -> Result<String> {
    let mut cfg = config.clone();
    cfg.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
    cfg.created = Some(rfc3339(epoch));
    let content = images.content();
    let lease_id = format!(
        "build-{}-{}",
        std::process::id(),
        &super::fsutil::random_id()[..16]
    );
    let mut lease = content.lease(&lease_id, true)?;
    let cbytes = json_bytes(&cfg)?;
    let cdigest = content.put(&cbytes, None)?;
    lease.add(&cdigest)?;
    let layer_json: Vec<_> = layers
        .iter()
        .map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}))
        .collect();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cdigest.to_string(), "size": cbytes.len()},
        "layers": layer_json,
    });
    let mdigest: Digest = content.put(&json_bytes(&m)?, None)?;
    lease.add(&mdigest)?;
    let id = images.register(&mdigest, &[])?;
    for t in tags {
        images.tag(&id, t)?;
    }
    lease.release()?;
    Ok(id)
}
