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

/// The config `write_image` stores for `config` over `layers` at `epoch`.
fn final_config(config: &ImageConfig, layers: &[LayerDesc], epoch: i64) -> ImageConfig {
    let mut cfg = config.clone();
    cfg.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
    cfg.created = Some(rfc3339(epoch));
    cfg
}

/// The id `write_image` would give `config` over `layers` at `epoch`,
/// without storing anything.
pub fn image_id(config: &ImageConfig, layers: &[LayerDesc], epoch: i64) -> Result<String> {
    Ok(Digest::of(&json_bytes(&final_config(config, layers, epoch))?).to_string())
}

/// Store `config` over `layers` as an image created at `epoch` (with the
/// steps' cache keys in it when given), tag it with `tags`; returns the
/// image id.
pub(super) fn write_image(
    images: &Images,
    config: &ImageConfig,
    layers: &[LayerDesc],
    (epoch, keys): (i64, Option<&[super::cache_from::InlineKey]>),
    tags: &[String],
) -> Result<String> {
    let cfg = final_config(config, layers, epoch);
    let content = images.content();
    let cbytes = match keys {
        None => json_bytes(&cfg)?,
        Some(k) => {
            let mut v = serde_json::to_value(&cfg)
                .map_err(|e| ExecError::Invalid(format!("cannot encode the image: {e}")))?;
            v[super::cache_from::INLINE_FIELD] = serde_json::to_value(k)
                .map_err(|e| ExecError::Invalid(format!("cannot encode the image: {e}")))?;
            json_bytes(&v)?
        }
    };
    let layer_json: Vec<_> = layers
        .iter()
        .map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}))
        .collect();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": Digest::of(&cbytes).to_string(), "size": cbytes.len()},
        "layers": layer_json,
    });
    let mbytes = json_bytes(&m)?;
    if let Some(id) = already_stored(images, &cbytes, &mbytes, tags) {
        return Ok(id);
    }
    let lease_id = format!(
        "build-{}-{}",
        std::process::id(),
        &super::fsutil::random_id()[..16]
    );
    let mut lease = content.lease(&lease_id, true)?;
    let cdigest = content.put(&cbytes, None)?;
    lease.add(&cdigest)?;
    let mdigest: Digest = content.put(&mbytes, None)?;
    lease.add(&mdigest)?;
    let id = images.register(&mdigest, &[])?;
    for t in tags {
        images.tag(&id, t)?;
    }
    lease.release()?;
    Ok(id)
}

/// The id of the image these config and manifest bytes make when it is stored and
/// every tag already names it (a rebuild with nothing changed): then nothing needs
/// writing.
fn already_stored(
    images: &Images,
    cbytes: &[u8],
    mbytes: &[u8],
    tags: &[String],
) -> Option<String> {
    let (cdigest, mdigest) = (Digest::of(cbytes), Digest::of(mbytes));
    let content = images.content();
    if !content.exists(&cdigest) || !content.exists(&mdigest) {
        return None;
    }
    let id = cdigest.to_string();
    let db = images.db().ok()?;
    if db.images.get(&id)?.manifest != mdigest.to_string() {
        return None;
    }
    tags.iter()
        .all(|t| {
            berth_image::Reference::parse(t)
                .is_ok_and(|r| r.digest.is_none() && db.refs.get(&r.to_string()) == Some(&id))
        })
        .then_some(id)
}
