//! `commit`: a container's changes become a new image — its image's layers plus one
//! layer made from the container's writable layer (OCI whiteouts for deletions), with
//! the container's command, environment, working directory and user as the new
//! image's defaults, then Dockerfile-like `--change` instructions on top.

use crate::error::{Error, Result};
use crate::list::State;
use crate::Engine;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// What `commit` makes.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `REPOSITORY[:TAG]` for the new image (dangling when `None`)
    pub reference: Option<String>,
    /// `--change` instructions (`CMD …`, `ENV …`, …)
    pub changes: Vec<String>,
    /// `--message`
    pub comment: String,
    /// `--author`
    pub author: String,
    /// freeze the container while its layer is read
    pub pause: bool,
}

/// docker's layer media types as their OCI names.
fn oci_media_type(mt: &str) -> String {
    match mt {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip".into()
        }
        "application/vnd.docker.image.rootfs.diff.tar" => berth_image::manifest::OCI_LAYER.into(),
        other => other.into(),
    }
}

impl Engine {
    /// Makes an image of container `what`; returns the image id.
    pub fn commit(&self, what: &str, o: &CommitOptions) -> Result<String> {
        let s = self.inspect(what)?;
        let id = s.record.id.clone();
        let images = self.images()?;
        let img = images.resolve(&s.record.options.image)?;
        let mounts = images.container_mounts(&id)?;
        let upper = mounts
            .iter()
            .find(|m| m.kind == "overlay")
            .and_then(|m| m.option("upperdir"))
            .map(PathBuf::from)
            .ok_or_else(|| Error::Invalid("commit needs the overlayfs snapshotter".into()))?;
        let freeze = o.pause && s.state == State::Running && !s.paused;
        if freeze {
            self.runtime.pause(&id)?;
        }
        let layer = berth_build::exec::layer::write_layer(images.content(), &upper, None, None);
        if freeze {
            let _ = self.runtime.resume(&id);
        }
        let layer = layer.map_err(|e| Error::Invalid(format!("commit: {e}")))?;
        let mut cfg = img.raw_config.clone();
        let mut c = cfg["config"].as_object().cloned().unwrap_or_default();
        self.container_defaults(&s.record, &mut c);
        for ch in &o.changes {
            berth_image::parse_change(ch, &mut c)?;
        }
        let now = crate::record::now();
        cfg["config"] = Value::Object(c);
        cfg["created"] = json!(now);
        if !o.author.is_empty() {
            cfg["author"] = json!(o.author);
        }
        let mut hist = json!({"created": now, "created_by": format!("berth commit {}", &id[..12])});
        if !o.comment.is_empty() {
            hist["comment"] = json!(o.comment);
        }
        if layer.is_none() {
            hist["empty_layer"] = json!(true);
        }
        if let Some(h) = cfg["history"].as_array_mut() {
            h.push(hist);
        } else {
            cfg["history"] = json!([hist]);
        }
        let mut layers: Vec<Value> = img
            .manifest
            .layers()
            .iter()
            .map(|d| {
                json!({"mediaType": oci_media_type(d.media_type().as_ref()),
                    "digest": d.digest().to_string(), "size": d.size()})
            })
            .collect();
        if let Some(l) = &layer {
            layers.push(json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}));
            match cfg["rootfs"]["diff_ids"].as_array_mut() {
                Some(d) => d.push(json!(l.diff_id)),
                None => cfg["rootfs"] = json!({"type": "layers", "diff_ids": [l.diff_id]}),
            }
        }
        self.store_image(&images, &cfg, layers, o.reference.as_deref())
    }

    /// The container's command, environment, directory, user and labels as image
    /// defaults (what `run` changed over its image).
    fn container_defaults(&self, r: &crate::Record, c: &mut Map<String, Value>) {
        let o = &r.options;
        if !o.cmd.is_empty() {
            c.insert("Cmd".into(), json!(o.cmd));
        }
        if let Some(ep) = &o.entrypoint {
            let v = if ep.is_empty() {
                json!(null)
            } else {
                json!([ep])
            };
            c.insert("Entrypoint".into(), v);
        }
        if !o.env.is_empty() {
            let mut env: Vec<String> = c
                .get("Env")
                .and_then(|e| serde_json::from_value(e.clone()).ok())
                .unwrap_or_default();
            for e in &o.env {
                let key = e.split('=').next().unwrap_or("");
                env.retain(|x| x.split('=').next() != Some(key));
                env.push(e.clone());
            }
            c.insert("Env".into(), json!(env));
        }
        if let Some(w) = &o.workdir {
            c.insert("WorkingDir".into(), json!(w));
        }
        if let Some(u) = &o.user {
            c.insert("User".into(), json!(u));
        }
        if !o.labels.is_empty() {
            let mut l = c
                .get("Labels")
                .and_then(|l| l.as_object().cloned())
                .unwrap_or_default();
            for (k, v) in &o.labels {
                l.insert(k.clone(), json!(v));
            }
            c.insert("Labels".into(), Value::Object(l));
        }
    }

    /// Writes config and manifest, registers the image and tags it.
    fn store_image(
        &self,
        images: &berth_image::Images,
        cfg: &Value,
        layers: Vec<Value>,
        reference: Option<&str>,
    ) -> Result<String> {
        use berth_image::manifest::{OCI_CONFIG, OCI_MANIFEST};
        let content = images.content();
        let lease_id = format!("commit-{}-{}", std::process::id(), crate::names::new_id()?);
        let store = |e: berth_content::Error| Error::from(berth_image::Error::from(e));
        let mut lease = content
            .lease(&lease_id[..40.min(lease_id.len())], true)
            .map_err(store)?;
        let bad = |e: serde_json::Error| Error::Invalid(format!("commit: {e}"));
        let cbytes = serde_json::to_vec(cfg).map_err(bad)?;
        let cdigest = content.put(&cbytes, None).map_err(store)?;
        lease.add(&cdigest).map_err(store)?;
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cdigest.to_string(), "size": cbytes.len()},
            "layers": layers,
        });
        let mbytes = serde_json::to_vec(&m).map_err(bad)?;
        let mdigest = content.put(&mbytes, None).map_err(store)?;
        lease.add(&mdigest).map_err(store)?;
        let id = images.register(&mdigest, &[])?;
        if let Some(r) = reference {
            images.tag(&id, r)?;
        }
        lease.release().map_err(store)?;
        Ok(id)
    }
}
