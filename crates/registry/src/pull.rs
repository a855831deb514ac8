//! `pull`: manifest (following an index to linux/amd64), then missing blobs in
//! parallel, each verified by the content store, then unpack.

use crate::client::{small_body, status_error, with_auth, Client};
use crate::{Error, Result};
use berth_content::{Digest, Lease, Progress, ProgressReader};
use berth_image::manifest::{self, Parsed};
use berth_image::{Images, Reference};
use oci_spec::image::{Descriptor, ImageManifest};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image id.
    pub id: String,
    /// The digest of the manifest (or index) the registry served.
    pub digest: Digest,
    /// The normalized reference.
    pub reference: Reference,
    /// Whether any blob had to be downloaded.
    pub downloaded: bool,
}

impl Client {
    /// Pulls `reference` into `images` and unpacks it.
    pub fn pull(
        &self,
        images: &Images,
        reference: &str,
        progress: &dyn Progress,
    ) -> Result<Pulled> {
        let r = Reference::parse(reference)?;
        let lease = images
            .content()
            .lease(&format!("pull-{}-{}", std::process::id(), lease_n()), true)?;
        let result = self.pull_leased(images, reference, r, lease, progress);
        if result.is_err() {
            // Nothing half-stored: blobs this pull fetched are no longer leased and no
            // image refers to them, so collection removes them.
            if let Err(e) = images.gc() {
                tracing::warn!(error = %e, "cleanup after a failed pull");
            }
        }
        result
    }

    fn pull_leased(
        &self,
        images: &Images,
        reference: &str,
        r: Reference,
        mut lease: Lease,
        progress: &dyn Progress,
    ) -> Result<Pulled> {
        let (top, man) = self.fetch_image_manifest(images, reference, &r, &mut lease)?;
        // The config first: its diff ids let layers unpack as soon as they arrive.
        let cfg_new = self.fetch_blobs(
            images,
            &r,
            std::slice::from_ref(man.config()),
            &mut lease,
            progress,
            &|_| {},
        )?;
        let cfg_digest = Digest::parse(man.config().digest().as_ref())
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let cfg: oci_spec::image::ImageConfiguration =
            serde_json::from_slice(&images.content().read(&cfg_digest)?).map_err(|e| {
                Error::Invalid(format!("image config {cfg_digest} is not valid: {e}"))
            })?;
        for c in manifest::chain_ids(cfg.rootfs().diff_ids()) {
            // Keeps a concurrent gc off layers committed before the image is registered.
            lease.add(&Digest::parse(&c).map_err(|e| Error::Invalid(e.to_string()))?)?;
        }
        let unpacker = images.unpacker(man.layers().clone(), cfg.rootfs().diff_ids().clone())?;
        let layers_new =
            self.fetch_blobs(images, &r, man.layers(), &mut lease, progress, &|i| {
                unpacker.stage(i)
            })?;
        let downloaded = cfg_new || layers_new;
        let mut names = vec![r.clone()];
        if r.digest.is_some() {
            names = vec![Reference {
                tag: None,
                ..r.clone()
            }];
        }
        let existed = images
            .db()?
            .images
            .contains_key(man.config().digest().as_ref());
        let id = images.register(&top, &names)?;
        images.add_repo_digest(&id, &format!("{}@{top}", r.familiar_repository()))?;
        if let Err(e) = unpacker.finish() {
            if !existed {
                drop(lease);
                let _ = images.remove(&id, true);
            }
            return Err(e.into());
        }
        drop(lease);
        Ok(Pulled {
            id,
            digest: top,
            reference: r,
            downloaded,
        })
    }

    /// Fetches the manifest `r` names, following an index to the host platform.
    /// Returns the digest of what the tag (or digest) points at, and the manifest.
    /// Every tag of `r`'s repository (`GET /v2/<name>/tags/list`, following the
    /// registry's `Link` pages), sorted: what `pull --all-tags` pulls.
    pub fn tags(&self, r: &Reference) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut url = self.url(r, "tags/list?n=1000");
        for _ in 0..1000 {
            let mut resp = self.send(r, "pull", &url, &|auth| {
                with_auth(self.agent.get(&url), auth).call()
            })?;
            if resp.status() == 404 {
                return Err(Error::NotFound(r.repository()));
            }
            if !resp.status().is_success() {
                return Err(status_error(&url, &mut resp));
            }
            let next = resp
                .headers()
                .get("link")
                .and_then(|l| l.to_str().ok())
                .and_then(|l| l.split_once('<'))
                .and_then(|(_, rest)| rest.split_once('>'))
                .map(|(path, _)| path.to_string());
            let bytes = small_body(&url, &mut resp)?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Invalid(format!("tag list of {} is not JSON: {e}", r.repository()))
            })?;
            out.extend(
                v["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(String::from)),
            );
            match next {
                Some(p) if p.starts_with('/') => url = format!("{}{p}", self.base_url(&r.domain)),
                Some(p) => url = p,
                None => break,
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn fetch_image_manifest(
        &self,
        images: &Images,
        reference: &str,
        r: &Reference,
        lease: &mut Lease,
    ) -> Result<(Digest, ImageManifest)> {
        let target = r
            .digest
            .clone()
            .or_else(|| r.tag.clone())
            .unwrap_or_else(|| "latest".into());
        let top = self.fetch_manifest(images, r, &target, lease)?;
        if let Some(want) = &r.digest {
            if top.to_string() != *want {
                return Err(Error::Invalid(format!(
                    "registry served manifest {top} for {reference}; refusing it"
                )));
            }
        }
        let mut m = images.content().read(&top)?;
        if let Parsed::Index(idx) = manifest::parse(&m, None)? {
            let (os, arch) = manifest::host_platform();
            let d = manifest::select_platform(&idx, os, arch)?;
            let child = self.fetch_manifest(images, r, d.digest().as_ref(), lease)?;
            m = images.content().read(&child)?;
        }
        match manifest::parse(&m, None)? {
            Parsed::Manifest(man) => Ok((top, *man)),
            Parsed::Index(_) => Err(Error::Invalid(format!(
                "{reference}: an index points at another index"
            ))),
        }
    }

    fn fetch_manifest(
        &self,
        images: &Images,
        r: &Reference,
        target: &str,
        lease: &mut Lease,
    ) -> Result<Digest> {
        let url = self.url(r, &format!("manifests/{target}"));
        let mut resp = self.send(r, "pull", &url, &|auth| {
            with_auth(self.agent.get(&url).header("Accept", ACCEPT), auth).call()
        })?;
        if resp.status() == 404 {
            return Err(Error::NotFound(format!("{}:{target}", r.repository())));
        }
        if !resp.status().is_success() {
            return Err(status_error(&url, &mut resp));
        }
        let bytes = small_body(&url, &mut resp)?;
        let d = Digest::of(&bytes);
        if target.starts_with("sha256:") && d.to_string() != target {
            return Err(Error::Invalid(format!(
                "manifest {target} from {} does not match its digest (got {d})",
                r.domain
            )));
        }
        lease.add(&d)?;
        images.content().put(&bytes, Some(&d))?;
        Ok(d)
    }

    /// Downloads the blobs not yet in the store, `parallel` at a time. Returns whether
    /// anything was downloaded.
    fn fetch_blobs(
        &self,
        images: &Images,
        r: &Reference,
        blobs: &[Descriptor],
        lease: &mut Lease,
        progress: &dyn Progress,
        done: &(dyn Fn(usize) + Sync),
    ) -> Result<bool> {
        let mut todo = Vec::new();
        for (idx, b) in blobs.iter().enumerate() {
            let d =
                Digest::parse(b.digest().as_ref()).map_err(|e| Error::Invalid(e.to_string()))?;
            lease.add(&d)?;
            if images.content().info(&d) == Some(b.size()) {
                progress.finish(&d.hex()[..12], "Already exists");
            } else {
                todo.push((idx, d, b.size()));
            }
        }
        let next = AtomicUsize::new(0);
        let first_err = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..self.opts.parallel.max(1).min(todo.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((idx, d, size)) = todo.get(i) else {
                        break;
                    };
                    if first_err.lock().map(|e| e.is_some()).unwrap_or(true) {
                        break;
                    }
                    match self.fetch_blob_retrying(images, r, d, *size, progress) {
                        Ok(()) => done(*idx),
                        Err(e) => {
                            if let Ok(mut slot) = first_err.lock() {
                                slot.get_or_insert(e);
                            }
                        }
                    }
                });
            }
        });
        match first_err.into_inner().ok().flatten() {
            Some(e) => Err(e),
            None => Ok(!todo.is_empty()),
        }
    }

    fn fetch_blob_retrying(
        &self,
        images: &Images,
        r: &Reference,
        d: &Digest,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<()> {
        let mut last = None;
        for attempt in 0..3 {
            match self.fetch_blob(images, r, d, size, progress) {
                Ok(()) => return Ok(()),
                Err(e @ (Error::Unauthorized { .. } | Error::NotFound(_))) => return Err(e),
                Err(e) => {
                    tracing::warn!(digest = %d, attempt, error = %e, "blob download failed; restarting it");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Invalid(format!("cannot download {d}"))))
    }

    fn fetch_blob(
        &self,
        images: &Images,
        r: &Reference,
        d: &Digest,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<()> {
        let url = self.url(r, &format!("blobs/{d}"));
        let resp = self.send(r, "pull", &url, &|auth| {
            with_auth(self.agent.get(&url), auth).call()
        })?;
        let mut resp = resp;
        if resp.status() == 404 {
            return Err(Error::NotFound(format!("blob {d} in {}", r.repository())));
        }
        if !resp.status().is_success() {
            return Err(status_error(&url, &mut resp));
        }
        let label = &d.hex()[..12];
        progress.start(label, Some(size));
        let body = resp.into_body().into_reader();
        let reader =
            std::io::BufReader::with_capacity(1 << 20, ProgressReader::new(body, label, progress));
        images.content().ingest(reader, Some(d), Some(size))?;
        progress.finish(label, "Pull complete");
        Ok(())
    }
}

fn lease_n() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
