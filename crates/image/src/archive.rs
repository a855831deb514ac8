//! `image load` (docker-archive, OCI archive, OCI layout directory) and `image save`
//! (docker-archive that is also an OCI layout, like docker 25+ writes).

use crate::apply::decompress;
use crate::{manifest, parse_digest, Error, Images, Reference, Result};
use berth_content::{Digest, Lease, Progress, ProgressReader};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};

/// One image `load` brought in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// The image id.
    pub id: String,
    /// The names it was loaded under (familiar form); empty when it had none.
    pub names: Vec<String>,
}

/// Files of an archive, ingested as blobs: normalized path → blob, plus symlinks.
#[derive(Default)]
struct Archive {
    files: HashMap<String, (Digest, u64)>,
    links: HashMap<String, String>,
    fresh: BTreeSet<Digest>,
}

fn norm(p: &Path) -> String {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.to_string_lossy().into_owned()
}

impl Archive {
    fn get(&self, path: &str) -> Option<&(Digest, u64)> {
        let mut p = norm(Path::new(path));
        for _ in 0..8 {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }

    fn require(&self, path: &str) -> Result<&(Digest, u64)> {
        self.get(path).ok_or_else(|| {
            Error::Invalid(format!(
                "archive is incomplete: {path:?} is referenced but missing"
            ))
        })
    }
}

fn expected_digest(path: &str) -> Option<Digest> {
    Digest::parse(&format!("sha256:{}", path.strip_prefix("blobs/sha256/")?)).ok()
}

impl Images {
    /// Loads a docker-archive or OCI archive (a tar, optionally compressed) or an OCI
    /// layout directory.
    pub fn load(&self, path: &Path, progress: &dyn Progress) -> Result<Vec<LoadedImage>> {
        if path.is_dir() {
            let mut lease = self.content.lease(&crate::lease_id("load"), true)?;
            let mut ar = Archive::default();
            return match self.ingest_dir(path, path, &mut ar, &mut lease, progress) {
                Ok(()) => self.finish_load(ar, lease),
                Err(e) => {
                    self.discard(&ar, lease)?;
                    Err(e)
                }
            };
        }
        let f = File::open(path).map_err(crate::io_err("open", path))?;
        self.load_reader(f, progress)
    }

    /// Loads an archive from a stream.
    pub fn load_reader(&self, r: impl Read, progress: &dyn Progress) -> Result<Vec<LoadedImage>> {
        let mut lease = self.content.lease(&crate::lease_id("load"), true)?;
        let mut ar = Archive::default();
        match self.ingest_tar(r, &mut ar, &mut lease, progress) {
            Ok(()) => self.finish_load(ar, lease),
            Err(e) => {
                self.discard(&ar, lease)?;
                Err(e)
            }
        }
    }

    fn ingest_tar(
        &self,
        r: impl Read,
        ar: &mut Archive,
        lease: &mut Lease,
        progress: &dyn Progress,
    ) -> Result<()> {
        let plain =
            decompress(r).map_err(|e| Error::Invalid(format!("cannot read archive: {e}")))?;
        let mut tar = tar::Archive::new(plain);
        let bad = |e: io::Error| Error::Invalid(format!("archive is corrupt or truncated: {e}"));
        for e in tar.entries().map_err(bad)? {
            let mut e = e.map_err(bad)?;
            let path = norm(&e.path().map_err(bad)?);
            match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = e.header().size().map_err(bad)?;
                    self.ingest_one(&path, &mut e, size, ar, lease, progress)?;
                }
                tar::EntryType::Symlink => {
                    let target = e.link_name().map_err(bad)?.unwrap_or_default();
                    let base = Path::new(&path)
                        .parent()
                        .unwrap_or(Path::new(""))
                        .join(target);
                    ar.links.insert(path, norm(&base));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Releases the load's lease and deletes the blobs it brought that no image uses
    /// and no other live lease holds (archive metadata, or everything after a failure).
    fn discard(&self, ar: &Archive, lease: Lease) -> Result<()> {
        drop(lease);
        let mut keep = self.roots(&self.meta.read()?)?.0;
        keep.extend(self.content.leased()?);
        for d in ar.fresh.iter().filter(|d| !keep.contains(*d)) {
            let _ = self.content.delete(d);
        }
        Ok(())
    }

    fn ingest_dir(
        &self,
        root: &Path,
        dir: &Path,
        ar: &mut Archive,
        lease: &mut Lease,
        progress: &dyn Progress,
    ) -> Result<()> {
        for e in std::fs::read_dir(dir).map_err(crate::io_err("read directory", dir))? {
            let e = e.map_err(crate::io_err("read directory", dir))?;
            let p = e.path();
            let ft = e.file_type().map_err(crate::io_err("stat", &p))?;
            let rel = norm(p.strip_prefix(root).unwrap_or(&p));
            if ft.is_dir() {
                self.ingest_dir(root, &p, ar, lease, progress)?;
            } else if ft.is_file() {
                let f = File::open(&p).map_err(crate::io_err("open", &p))?;
                let size = f.metadata().map_err(crate::io_err("stat", &p))?.len();
                self.ingest_one(&rel, f, size, ar, lease, progress)?;
            }
        }
        Ok(())
    }

    fn ingest_one(
        &self,
        path: &str,
        r: impl Read,
        size: u64,
        ar: &mut Archive,
        lease: &mut Lease,
        progress: &dyn Progress,
    ) -> Result<()> {
        let expected = expected_digest(path);
        // `blobs/sha256/<hex>` or legacy `<id>/layer.tar`: label with the hex.
        let mut parts = path.rsplit('/');
        let label = match (parts.next(), parts.next()) {
            (Some("layer.tar"), Some(dir)) => dir,
            (Some(name), _) => name,
            _ => path,
        };
        let label: String = label.chars().take(12).collect();
        let label = label.as_str();
        let big = size > 1 << 20;
        if big {
            progress.start(label, Some(size));
        }
        let (d, n) = self.content.ingest(
            ProgressReader::new(r, label, progress),
            expected.as_ref(),
            Some(size),
        )?;
        if big {
            progress.finish(label, "Loading layer");
        }
        lease.add(&d)?;
        ar.fresh.insert(d.clone());
        ar.files.insert(path.to_string(), (d, n));
        Ok(())
    }

    fn finish_load(&self, ar: Archive, lease: Lease) -> Result<Vec<LoadedImage>> {
        let result = if ar.get("manifest.json").is_some() {
            self.load_docker(&ar)
        } else if ar.get("index.json").is_some() {
            self.load_oci(&ar)
        } else {
            Err(Error::Invalid(
                "not a docker-archive or OCI image: neither manifest.json nor index.json found"
                    .into(),
            ))
        };
        self.discard(&ar, lease)?;
        result
    }

    fn load_docker(&self, ar: &Archive) -> Result<Vec<LoadedImage>> {
        let (md, _) = ar.require("manifest.json")?;
        let entries: Vec<Value> = serde_json::from_slice(&self.content.read(md)?)
            .map_err(crate::json_err("manifest.json"))?;
        let mut out = Vec::new();
        for e in entries {
            let cfg_path = e["Config"]
                .as_str()
                .ok_or_else(|| Error::Invalid("manifest.json entry without Config".into()))?;
            let (cd, cs) = ar.require(cfg_path)?.clone();
            let mut layers = Vec::new();
            for l in e["Layers"].as_array().into_iter().flatten() {
                let (ld, ls) = ar.require(l.as_str().unwrap_or(""))?.clone();
                layers.push(json!({"mediaType": self.layer_media_type(&ld)?, "digest": ld.to_string(), "size": ls}));
            }
            let m = json!({
                "schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST,
                "config": {"mediaType": manifest::OCI_CONFIG, "digest": cd.to_string(), "size": cs},
                "layers": layers,
            });
            let mbytes = serde_json::to_vec(&m).map_err(crate::json_err("manifest"))?;
            let mdigest = self.content.put(&mbytes, None)?;
            let names = e["RepoTags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str())
                .map(Reference::parse)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let id = self.register(&mdigest, &names)?;
            out.push(LoadedImage {
                id,
                names: names.iter().map(Reference::familiar).collect(),
            });
        }
        Ok(out)
    }

    fn layer_media_type(&self, d: &Digest) -> Result<&'static str> {
        let mut head = [0u8; 4];
        let mut f = self.content.open_blob(d)?;
        let n = f
            .read(&mut head)
            .map_err(crate::io_err("read", &self.content.blob_path(d)))?;
        Ok(match &head[..n] {
            [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
            [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => manifest::OCI_LAYER,
        })
    }

    fn load_oci(&self, ar: &Archive) -> Result<Vec<LoadedImage>> {
        let (id, _) = ar.require("index.json")?;
        let index: oci_spec::image::ImageIndex = serde_json::from_slice(&self.content.read(id)?)
            .map_err(crate::json_err("index.json"))?;
        let mut out = Vec::new();
        for d in index.manifests() {
            let digest = parse_digest(d.digest().as_ref())?;
            let ann = d.annotations().clone().unwrap_or_default();
            let name = ann
                .get("io.containerd.image.name")
                .or_else(|| {
                    ann.get("org.opencontainers.image.ref.name")
                        .filter(|n| n.contains('/') || n.contains(':'))
                })
                .and_then(|n| Reference::parse(n).ok());
            let names: Vec<Reference> = name.into_iter().collect();
            let id = self.register(&digest, &names)?;
            out.push(LoadedImage {
                id,
                names: names.iter().map(Reference::familiar).collect(),
            });
        }
        Ok(out)
    }

    /// Writes the named images as a docker-archive (also a valid OCI layout) to `out`.
    pub fn save(&self, names: &[String], out: impl Write, progress: &dyn Progress) -> Result<()> {
        let mut by_id: BTreeMap<String, Vec<Reference>> = BTreeMap::new();
        for n in names {
            let img = self.resolve(n)?;
            let tags = by_id.entry(img.id.clone()).or_default();
            if let Ok(r) = Reference::parse(n) {
                if r.digest.is_none()
                    && crate::find_id(&self.meta.read()?, &r.to_string()).is_some()
                {
                    tags.push(r);
                }
            }
        }
        let mut tar = tar::Builder::new(out);
        let mut written = BTreeSet::new();
        let (mut docker_manifest, mut index) = (Vec::new(), Vec::new());
        for (id, refs) in &by_id {
            let img = self.resolve(id)?;
            let (entry, descs) = self.save_one(&mut tar, &mut written, &img, refs, progress)?;
            docker_manifest.push(entry);
            index.extend(descs);
        }
        let js = |v: Value| serde_json::to_vec(&v).map_err(crate::json_err("archive metadata"));
        append_bytes(
            &mut tar,
            &mut written,
            "manifest.json",
            &js(Value::Array(docker_manifest))?,
        )?;
        append_bytes(
            &mut tar,
            &mut written,
            "index.json",
            &js(json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": index}))?,
        )?;
        append_bytes(
            &mut tar,
            &mut written,
            "oci-layout",
            &js(json!({"imageLayoutVersion": "1.0.0"}))?,
        )?;
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| Error::Invalid(format!("cannot write archive: {e}")))
    }

    /// Writes one image's blobs; returns its `manifest.json` entry and its
    /// `index.json` descriptors.
    fn save_one<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        written: &mut BTreeSet<String>,
        img: &crate::Image,
        refs: &[Reference],
        progress: &dyn Progress,
    ) -> Result<(Value, Vec<Value>)> {
        let cfg = parse_digest(&img.record.config)?;
        let cfg_path = format!("blobs/sha256/{}", cfg.hex());
        self.append_blob(tar, written, &cfg_path, &cfg, progress)?;
        let (mut layer_paths, mut layer_descs) = (Vec::new(), Vec::new());
        for (l, diff) in img.manifest.layers().iter().zip(img.diff_ids()) {
            let diff = parse_digest(diff)?;
            let p = format!("blobs/sha256/{}", diff.hex());
            let blob = parse_digest(l.digest().as_ref())?;
            let size = self.append_layer(tar, written, &p, &blob, &diff, progress)?;
            layer_paths.push(p);
            layer_descs.push(
                json!({"mediaType": manifest::OCI_LAYER, "digest": diff.to_string(), "size": size}),
            );
        }
        let m = json!({"schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST,
            "config": {"mediaType": manifest::OCI_CONFIG, "digest": cfg.to_string(), "size": img.manifest.config().size()},
            "layers": layer_descs});
        let mbytes = serde_json::to_vec(&m).map_err(crate::json_err("manifest"))?;
        let md = Digest::of(&mbytes);
        append_bytes(tar, written, &format!("blobs/sha256/{}", md.hex()), &mbytes)?;
        let tags: Vec<String> = refs.iter().map(Reference::familiar).collect();
        let entry = json!({"Config": cfg_path, "RepoTags": tags, "Layers": layer_paths});
        let desc = |ann: Value| json!({"mediaType": manifest::OCI_MANIFEST, "digest": md.to_string(), "size": mbytes.len(), "annotations": ann});
        let mut descs: Vec<Value> = refs
            .iter()
            .map(|r| desc(json!({"io.containerd.image.name": r.to_string(), "org.opencontainers.image.ref.name": r.tag.clone().unwrap_or_default()})))
            .collect();
        if descs.is_empty() {
            descs.push(desc(json!({})));
        }
        Ok((entry, descs))
    }

    fn append_blob<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        written: &mut BTreeSet<String>,
        path: &str,
        d: &Digest,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let f = self.content.open_blob(d)?;
        let size = self.content.info(d).unwrap_or(0);
        if written.insert(path.to_string()) {
            let label = &d.hex()[..12];
            progress.start(label, Some(size));
            append(tar, path, ProgressReader::new(f, label, progress), size)?;
            progress.finish(label, "Saved");
        }
        Ok(size)
    }

    /// Appends a layer uncompressed (docker-archive layers are plain tars).
    fn append_layer<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        written: &mut BTreeSet<String>,
        path: &str,
        blob: &Digest,
        diff: &Digest,
        progress: &dyn Progress,
    ) -> Result<u64> {
        if blob == diff {
            return self.append_blob(tar, written, path, blob, progress);
        }
        if written.contains(path) {
            return Ok(0);
        }
        let tmp_dir = self.root.join("tmp");
        let mut tmp = tempfile::tempfile_in(&tmp_dir)
            .map_err(crate::io_err("create temporary file in", &tmp_dir))?;
        let mut plain = decompress(self.content.open_blob(blob)?)
            .map_err(|e| Error::Invalid(format!("cannot read layer {blob}: {e}")))?;
        let size = io::copy(&mut plain, &mut tmp)
            .map_err(|e| Error::Invalid(format!("cannot decompress layer {blob}: {e}")))?;
        tmp.rewind().map_err(crate::io_err("rewind", &tmp_dir))?;
        let label = &diff.hex()[..12];
        progress.start(label, Some(size));
        append(tar, path, ProgressReader::new(tmp, label, progress), size)?;
        progress.finish(label, "Saved");
        written.insert(path.to_string());
        Ok(size)
    }
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &str, r: impl Read, size: u64) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, path, r)
        .map_err(|e| Error::Invalid(format!("cannot write {path} to the archive: {e}")))
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    written: &mut BTreeSet<String>,
    path: &str,
    b: &[u8],
) -> Result<()> {
    if written.insert(path.to_string()) {
        append(tar, path, b, b.len() as u64)?;
    }
    Ok(())
}
