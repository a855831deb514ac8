//! Listing, tagging, removing, pruning, history, inspect, disk usage and garbage
//! collection.

use crate::db::Db;
use crate::unpack::container_key;
use crate::{find_id, manifest, parse_digest, Error, Image, Images, Reference, Result};
use berth_content::{Digest, GcStats};
use berth_snapshot::Kind;
use std::collections::BTreeSet;

/// One row of `image ls`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSummary {
    /// Image id.
    pub id: String,
    /// Familiar `repo:tag` names (empty for a dangling image).
    pub tags: Vec<String>,
    /// `repo@sha256:…` names.
    pub repo_digests: Vec<String>,
    /// Creation time from the config (RFC 3339), if any.
    pub created: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Containers using it.
    pub containers: usize,
}

/// One row of `image history`, newest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryRow {
    /// The image id for the top row, `<missing>` for the others (as docker prints).
    pub id: String,
    /// RFC 3339 creation time.
    pub created: Option<String>,
    /// The command that made the layer.
    pub created_by: String,
    /// The layer's size (0 for an empty layer).
    pub size: u64,
    /// Comment.
    pub comment: String,
}

/// `system df` figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DiskUsage {
    /// Images in the store.
    pub images: usize,
    /// Images used by at least one container.
    pub images_active: usize,
    /// Bytes used by all images.
    pub images_size: u64,
    /// Bytes freed if unused images were removed.
    pub images_reclaimable: u64,
    /// Container snapshots.
    pub containers: usize,
    /// Bytes in containers' writable layers.
    pub containers_size: u64,
}

impl Images {
    fn containers_using(&self, img: &Image) -> Result<Vec<String>> {
        let Some(top) = img.top_chain_id() else {
            return Ok(Vec::new());
        };
        Ok(self
            .snapshotter
            .list()?
            .into_iter()
            .filter(|i| i.kind == Kind::Active && i.parent.as_deref() == Some(top.as_str()))
            .filter_map(|i| i.key.strip_prefix("container-").map(str::to_string))
            // another image with the same layers is not this one
            .filter(|c| self.container_image(c).is_none_or(|id| id == img.id))
            .collect())
    }

    /// Every image, newest first.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let db = self.meta.read()?;
        let mut out = Vec::new();
        for id in db.images.keys() {
            let img = self.load_image(&db, id)?;
            let tags = familiar_names(&db, id);
            out.push(ImageSummary {
                id: id.clone(),
                tags,
                repo_digests: img.record.repo_digests.clone(),
                created: img.config.created().clone(),
                size: img.size(),
                containers: self.containers_using(&img)?.len(),
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Gives `source`'s image the name `target`.
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let r = Reference::parse(target)?;
        if r.digest.is_some() {
            return Err(Error::Invalid(format!(
                "refusing to create a tag with a digest reference {target:?}; give a tag"
            )));
        }
        self.meta.update(|db| -> Result<()> {
            let id = find_id(db, source).ok_or_else(|| Error::NotFound(source.to_string()))?;
            db.refs.insert(r.to_string(), id);
            Ok(())
        })
    }

    /// Removes a name, or (by id, or when it was the last name) the image itself.
    /// Returns docker's `Untagged: …` / `Deleted: …` lines.
    pub fn remove(&self, name: &str, force: bool) -> Result<Vec<String>> {
        let db = self.meta.read()?;
        let id = find_id(&db, name).ok_or_else(|| Error::NotFound(name.to_string()))?;
        let img = self.load_image(&db, &id)?;
        let by_name = Reference::parse(name)
            .ok()
            .and_then(|r| db.refs.get(&r.to_string()).map(|_| r));
        let names = db.names_of(&id);
        if by_name.is_none() && names.len() > 1 && !force {
            return Err(Error::Conflict(format!(
                "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                short_id(&id)
            )));
        }
        let users = self.containers_using(&img)?;
        let last_name = by_name.is_none() || names.len() <= 1;
        if last_name && !users.is_empty() && !force {
            return Err(Error::Conflict(format!(
                "unable to remove image {name} (must force) - image is being used by container {}",
                &users[0][..users[0].len().min(12)]
            )));
        }
        let mut lines = Vec::new();
        let deleted = self.meta.update(|db| -> Result<bool> {
            let drop: Vec<String> = match &by_name {
                Some(r) => vec![r.to_string()],
                None => db.names_of(&id),
            };
            for n in drop {
                db.refs.remove(&n);
                lines.push(format!("Untagged: {}", familiar(&n)));
            }
            if db.names_of(&id).is_empty() {
                for rd in db
                    .images
                    .get(&id)
                    .map(|r| r.repo_digests.clone())
                    .unwrap_or_default()
                {
                    lines.push(format!("Untagged: {rd}"));
                }
                db.images.remove(&id);
                return Ok(true);
            }
            Ok(false)
        })?;
        if deleted {
            lines.push(format!("Deleted: {id}"));
            self.gc()?;
        }
        Ok(lines)
    }

    /// Removes dangling images (all unused ones with `all`). Returns the deleted ids
    /// and the bytes reclaimed.
    pub fn prune(&self, all: bool) -> Result<(Vec<String>, u64)> {
        let db = self.meta.read()?;
        let mut victims = Vec::new();
        for id in db.images.keys() {
            let img = self.load_image(&db, id)?;
            let named = !db.names_of(id).is_empty();
            if (!named || all) && self.containers_using(&img)?.is_empty() {
                victims.push(id.clone());
            }
        }
        self.meta.update(|db| -> Result<()> {
            for id in &victims {
                db.refs.retain(|_, v| v != id);
                db.images.remove(id);
            }
            Ok(())
        })?;
        let st = self.gc()?;
        Ok((victims, st.bytes))
    }

    /// Deletes blobs and layer snapshots no image, container or live lease needs. Returns what the
    /// content store freed (snapshot bytes included in `bytes`).
    pub fn gc(&self) -> Result<GcStats> {
        let db = self.meta.read()?;
        let (roots, chains) = self.roots(&db)?;
        let mut st = self.content.gc(&roots)?;
        // In-flight pulls lease the chain ids they are about to register.
        let leased: BTreeSet<String> = self
            .content
            .leased()?
            .iter()
            .map(|d| d.to_string())
            .collect();
        loop {
            let infos = self.snapshotter.list()?;
            let parents: BTreeSet<String> = infos.iter().filter_map(|i| i.parent.clone()).collect();
            let mut removed = false;
            for i in infos {
                let stale_extract = i.key.starts_with("extract-") && !extract_alive(&i.key);
                let unused_layer = i.kind == Kind::Committed
                    && !chains.contains(&i.key)
                    && !leased.contains(&i.key)
                    && !parents.contains(&i.key);
                if (stale_extract || unused_layer) && !parents.contains(&i.key) {
                    st.bytes += self.snapshotter.usage(&i.key).map(|u| u.size).unwrap_or(0);
                    self.snapshotter.remove(&i.key)?;
                    removed = true;
                }
            }
            if !removed {
                return Ok(st);
            }
        }
    }

    pub(crate) fn roots(&self, db: &Db) -> Result<(BTreeSet<Digest>, BTreeSet<String>)> {
        let mut roots = BTreeSet::new();
        let mut chains = BTreeSet::new();
        for id in db.images.keys() {
            let img = self.load_image(db, id)?;
            roots.insert(parse_digest(&img.record.manifest)?);
            roots.insert(parse_digest(&img.record.config)?);
            for l in img.manifest.layers() {
                roots.insert(parse_digest(l.digest().as_ref())?);
            }
            chains.extend(manifest::chain_ids(img.diff_ids()));
        }
        Ok((roots, chains))
    }

    /// The image's history, newest first.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryRow>> {
        let img = self.resolve(name)?;
        let hist = img.config.history().clone().unwrap_or_default();
        let mut layer_sizes = img.manifest.layers().iter().map(|l| l.size());
        let mut rows: Vec<HistoryRow> = hist
            .iter()
            .map(|h| HistoryRow {
                id: "<missing>".into(),
                created: h.created().clone(),
                created_by: h.created_by().clone().unwrap_or_default(),
                size: if h.empty_layer().unwrap_or(false) {
                    0
                } else {
                    layer_sizes.next().unwrap_or(0)
                },
                comment: h.comment().clone().unwrap_or_default(),
            })
            .collect();
        rows.reverse();
        match rows.first_mut() {
            Some(top) => top.id = img.id.clone(),
            None => rows.push(HistoryRow {
                id: img.id.clone(),
                created: img.config.created().clone(),
                created_by: String::new(),
                size: img.size(),
                comment: String::new(),
            }),
        }
        Ok(rows)
    }

    /// Docker's `image inspect` JSON for one image.
    pub fn inspect(&self, name: &str) -> Result<serde_json::Value> {
        let db = self.meta.read()?;
        let id = find_id(&db, name).ok_or_else(|| Error::NotFound(name.to_string()))?;
        let img = self.load_image(&db, &id)?;
        let raw = &img.raw_config;
        let get = |k: &str| raw.get(k).cloned().unwrap_or(serde_json::Value::Null);
        Ok(serde_json::json!({
            "Id": id,
            "RepoTags": familiar_names(&db, &id),
            "RepoDigests": img.record.repo_digests,
            "Parent": "",
            "Comment": raw.get("comment").cloned().unwrap_or_else(|| "".into()),
            "Created": get("created"),
            "DockerVersion": raw.get("docker_version").cloned().unwrap_or_else(|| "".into()),
            "Author": raw.get("author").cloned().unwrap_or_else(|| "".into()),
            "Config": get("config"),
            "Architecture": get("architecture"),
            "Variant": raw.get("variant"),
            "Os": get("os"),
            "Size": img.size(),
            "GraphDriver": {"Name": self.snapshotter.name(), "Data": null},
            "RootFS": {"Type": "layers", "Layers": img.diff_ids()},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
            "Descriptor": {"mediaType": img.record.media_type, "digest": img.record.manifest},
        }))
    }

    /// Disk usage for `system df`.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let mut du = DiskUsage::default();
        for s in self.list()? {
            du.images += 1;
            du.images_size += s.size;
            if s.containers > 0 {
                du.images_active += 1;
            } else {
                du.images_reclaimable += s.size;
            }
        }
        for i in self.snapshotter.list()? {
            if i.key.starts_with(&container_key("")) {
                du.containers += 1;
                du.containers_size += self.snapshotter.usage(&i.key).map(|u| u.size).unwrap_or(0);
            }
        }
        Ok(du)
    }
}

fn extract_alive(key: &str) -> bool {
    let pid = key.split('-').nth(1).unwrap_or("");
    !pid.is_empty() && std::path::Path::new("/proc").join(pid).exists()
}

/// `sha256:abcdef…` → `abcdef012345`.
pub fn short_id(id: &str) -> &str {
    let h = id.strip_prefix("sha256:").unwrap_or(id);
    &h[..h.len().min(12)]
}

fn familiar(n: &str) -> String {
    Reference::parse(n)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| n.to_string())
}

fn familiar_names(db: &Db, id: &str) -> Vec<String> {
    db.names_of(id).iter().map(|n| familiar(n)).collect()
}
