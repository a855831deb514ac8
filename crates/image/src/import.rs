//! `image import`: a rootfs tarball becomes a one-layer image, with Dockerfile-like
//! `--change` instructions applied to its config.

use crate::apply::decompress;
use crate::{manifest, Error, Images, Reference, Result};
use berth_content::Digest;
use serde_json::{json, Map, Value};
use std::io::Read;

impl Images {
    /// Imports the rootfs tarball `r` (plain, gzip or zstd) as a new image named
    /// `reference` (dangling when `None`), applying `changes` (`CMD …`, `ENV …`, …).
    /// The layer is unpacked right away, so a hostile tarball is refused here and
    /// leaves nothing behind. Returns the image id.
    pub fn import(
        &self,
        r: impl Read,
        reference: Option<&str>,
        changes: &[String],
        message: &str,
    ) -> Result<String> {
        let name = reference.map(Reference::parse).transpose()?;
        let mut cfg = Map::new();
        for c in changes {
            parse_change(c, &mut cfg)?;
        }
        let mut lease = self.content.lease(&crate::lease_id("import"), true)?;
        let mut plain = decompress(r)
            .map_err(|e| Error::Invalid(format!("cannot read the import tarball: {e}")))?;
        let mut w = self.content.writer(None, None)?;
        std::io::copy(&mut plain, &mut w).map_err(|e| {
            Error::Invalid(format!(
                "cannot read the import tarball (truncated or corrupt?): {e}"
            ))
        })?;
        let size = w.written();
        let layer = w.commit()?;
        lease.add(&layer)?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (os, arch) = manifest::host_platform();
        let config = json!({
            "architecture": arch, "os": os, "created": now, "config": Value::Object(cfg),
            "rootfs": {"type": "layers", "diff_ids": [layer.to_string()]},
            "history": [{"created": now, "comment": if message.is_empty() { "Imported from -".to_string() } else { message.to_string() }}],
        });
        let cbytes = serde_json::to_vec(&config).map_err(crate::json_err("image config"))?;
        let cdigest = self.content.put(&cbytes, None)?;
        lease.add(&cdigest)?;
        let m = json!({
            "schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST,
            "config": {"mediaType": manifest::OCI_CONFIG, "digest": cdigest.to_string(), "size": cbytes.len()},
            "layers": [{"mediaType": manifest::OCI_LAYER, "digest": layer.to_string(), "size": size}],
        });
        let mbytes = serde_json::to_vec(&m).map_err(crate::json_err("image manifest"))?;
        let mdigest = self.content.put(&mbytes, None)?;
        lease.add(&mdigest)?;
        let result = self.finish_import(&mdigest, name);
        drop(lease);
        if result.is_err() {
            let _ = self.gc();
        }
        result
    }

    /// Registers and unpacks; on failure unregisters the image (the caller collects
    /// its blobs once its lease is gone).
    fn finish_import(&self, mdigest: &Digest, name: Option<Reference>) -> Result<String> {
        let id = self.register(mdigest, &[])?;
        let img = self.resolve(&id)?;
        if let Err(e) = self.unpack(&img) {
            if self.db()?.names_of(&id).is_empty() {
                self.meta.update(|db| -> Result<()> {
                    db.images.remove(&id);
                    Ok(())
                })?;
            }
            return Err(e);
        }
        if let Some(n) = name {
            self.tag(&id, &n.to_string())?;
        }
        Ok(id)
    }
}

/// Applies one Dockerfile-like instruction to a config object (the `config` member of
/// an image config): CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, VOLUME,
/// STOPSIGNAL, ONBUILD.
pub fn parse_change(change: &str, cfg: &mut Map<String, Value>) -> Result<()> {
    let change = change.trim();
    let (verb, rest) = change
        .split_once(char::is_whitespace)
        .unwrap_or((change, ""));
    let rest = rest.trim();
    let bad = |why: &str| Error::Invalid(format!("invalid --change {change:?}: {why}"));
    match verb.to_ascii_uppercase().as_str() {
        "CMD" | "ENTRYPOINT" => {
            let v = exec_form(rest).ok_or_else(|| bad("give a JSON array or a shell command"))?;
            cfg.insert(if verb.eq_ignore_ascii_case("CMD") { "Cmd" } else { "Entrypoint" }.into(), json!(v));
        }
        "ENV" => {
            for (k, v) in key_values(rest).ok_or_else(|| bad("use ENV key=value or ENV key value"))? {
                let list = cfg.entry("Env").or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.retain(|e| e.as_str().and_then(|s| s.split_once('=')).is_none_or(|(ek, _)| ek != k));
                    a.push(json!(format!("{k}={v}")));
                }
            }
        }
        "LABEL" => {
            for (k, v) in key_values(rest).ok_or_else(|| bad("use LABEL key=value"))? {
                let m = cfg.entry("Labels").or_insert_with(|| json!({}));
                if let Some(o) = m.as_object_mut() {
                    o.insert(k, json!(v));
                }
            }
        }
        "WORKDIR" | "USER" | "STOPSIGNAL" if !rest.is_empty() => {
            let key = match verb.to_ascii_uppercase().as_str() {
                "WORKDIR" => "WorkingDir",
                "USER" => "User",
                _ => "StopSignal",
            };
            cfg.insert(key.into(), json!(rest));
        }
        "EXPOSE" | "VOLUME" if !rest.is_empty() => {
            let (key, items) = if verb.eq_ignore_ascii_case("EXPOSE") {
                ("ExposedPorts", rest.split_whitespace().map(|p| if p.contains('/') { p.to_string() } else { format!("{p}/tcp") }).collect::<Vec<_>>())
            } else {
                ("Volumes", exec_form(rest).filter(|_| rest.starts_with('[')).unwrap_or_else(|| rest.split_whitespace().map(str::to_string).collect()))
            };
            let m = cfg.entry(key).or_insert_with(|| json!({}));
            if let Some(o) = m.as_object_mut() {
                for i in items {
                    o.insert(i, json!({}));
                }
            }
        }
        "ONBUILD" => {}
        _ => return Err(bad("supported: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR")),
    }
    Ok(())
}

/// JSON array form, or shell form wrapped in `/bin/sh -c`.
fn exec_form(s: &str) -> Option<Vec<String>> {
    if s.starts_with('[') {
        return serde_json::from_str(s).ok();
    }
    if s.is_empty() {
        return None;
    }
    Some(vec!["/bin/sh".into(), "-c".into(), s.into()])
}

/// `k=v k2="v 2"` or the legacy `k v`.
fn key_values(s: &str) -> Option<Vec<(String, String)>> {
    let first = s.split_whitespace().next()?;
    if !first.contains('=') {
        let (k, v) = s.split_once(char::is_whitespace)?;
        return Some(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while chars.peek().is_some() {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            chars.next();
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, '\\') => val.extend(chars.next()),
                _ => val.push(c),
            }
        }
        out.push((key, val));
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> Value {
        let mut m = Map::new();
        for c in changes {
            parse_change(c, &mut m).unwrap();
        }
        Value::Object(m)
    }

    #[test]
    fn changes_map_to_config() {
        let v = apply(&[
            r#"CMD ["/bin/busybox", "sh"]"#,
            "ENTRYPOINT echo hi",
            "ENV A=1 B=\"two words\"",
            "ENV A 3",
            "WORKDIR /srv",
            "EXPOSE 80 53/udp",
            "LABEL k=v",
            "USER 1000:1000",
        ]);
        assert_eq!(v["Cmd"], json!(["/bin/busybox", "sh"]));
        assert_eq!(v["Entrypoint"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(v["Env"], json!(["B=two words", "A=3"]));
        assert_eq!(v["WorkingDir"], json!("/srv"));
        assert_eq!(v["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(v["Labels"], json!({"k": "v"}));
        assert_eq!(v["User"], json!("1000:1000"));
    }

    #[test]
    fn unknown_change_is_refused() {
        assert!(parse_change("RUN rm -rf /", &mut Map::new()).is_err());
        assert!(parse_change("CMD", &mut Map::new()).is_err());
    }
}
