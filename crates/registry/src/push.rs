//! `push`: blobs in parallel (skipping ones the registry has, mounting ones another
//! repository of the same registry has), then the manifest.

use crate::client::{status_error, with_auth, Client};
use crate::{Error, Result};
use berth_content::{Digest, Progress, ProgressReader};
use berth_image::{Images, Reference};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

impl Client {
    /// Pushes the local image `reference` to its registry. Returns the manifest digest
    /// and size.
    pub fn push(
        &self,
        images: &Images,
        reference: &str,
        progress: &dyn Progress,
    ) -> Result<(Digest, u64)> {
        let r = Reference::parse(reference)?;
        let tag = r
            .tag
            .clone()
            .ok_or_else(|| Error::Invalid(format!("push {reference}: give a tag, not a digest")))?;
        let img = images.resolve(reference)?;
        let mut blobs: Vec<(Digest, u64)> = Vec::new();
        for l in img.manifest.layers() {
            blobs.push((
                Digest::parse(l.digest().as_ref()).map_err(|e| Error::Invalid(e.to_string()))?,
                l.size(),
            ));
        }
        let cfg = img.manifest.config();
        blobs.push((
            Digest::parse(cfg.digest().as_ref()).map_err(|e| Error::Invalid(e.to_string()))?,
            cfg.size(),
        ));
        let mounts: Vec<String> = img
            .record
            .repo_digests
            .iter()
            .filter_map(|rd| Reference::parse(rd).ok())
            .filter(|o| o.domain == r.domain && o.path != r.path)
            .map(|o| o.path)
            .collect();
        self.push_blobs(images, &r, &blobs, &mounts, progress)?;
        let mdigest =
            Digest::parse(&img.record.manifest).map_err(|e| Error::Invalid(e.to_string()))?;
        let body = images.content().read(&mdigest)?;
        let url = self.url(&r, &format!("manifests/{tag}"));
        let mut resp = self.send(&r, "pull,push", &url, &|auth| {
            let req = self
                .agent
                .put(&url)
                .header("Content-Type", &img.record.media_type);
            with_auth(req, auth).send(&body[..])
        })?;
        if !resp.status().is_success() {
            return Err(status_error(&url, &mut resp));
        }
        images.add_repo_digest(&img.id, &format!("{}@{mdigest}", r.familiar_repository()))?;
        Ok((mdigest, body.len() as u64))
    }

    fn push_blobs(
        &self,
        images: &Images,
        r: &Reference,
        blobs: &[(Digest, u64)],
        mounts: &[String],
        progress: &dyn Progress,
    ) -> Result<()> {
        let next = AtomicUsize::new(0);
        let first_err = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..self.opts.parallel.max(1).min(blobs.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((d, size)) = blobs.get(i) else { break };
                    if let Err(e) = self.push_blob(images, r, d, *size, mounts, progress) {
                        if let Ok(mut slot) = first_err.lock() {
                            slot.get_or_insert(e);
                        }
                        break;
                    }
                });
            }
        });
        match first_err.into_inner().ok().flatten() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn push_blob(
        &self,
        images: &Images,
        r: &Reference,
        d: &Digest,
        size: u64,
        mounts: &[String],
        progress: &dyn Progress,
    ) -> Result<()> {
        let label = &d.hex()[..12];
        let head = self.url(r, &format!("blobs/{d}"));
        let resp = self.send(r, "pull,push", &head, &|auth| {
            with_auth(self.agent.head(&head), auth).call()
        })?;
        if resp.status().is_success() {
            progress.finish(label, "Layer already exists");
            return Ok(());
        }
        for from in mounts {
            let url = self.url(r, &format!("blobs/uploads/?mount={d}&from={from}"));
            let resp = self.send(r, "pull,push", &url, &|auth| {
                with_auth(self.agent.post(&url), auth).send_empty()
            })?;
            if resp.status() == 201 {
                progress.finish(label, &format!("Mounted from {from}"));
                return Ok(());
            }
        }
        let put = self.start_upload(r, d)?;
        progress.start(label, Some(size));
        let f = images.content().open_blob(d)?;
        let mut reader = ProgressReader::new(
            std::io::BufReader::with_capacity(1 << 20, f),
            label,
            progress,
        );
        let req = self
            .agent
            .put(&put)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", size.to_string());
        let mut resp = with_auth(req, self.auth_for(r).as_deref())
            .send(ureq::SendBody::from_reader(&mut reader))
            .map_err(|e| Error::Http {
                url: put.clone(),
                source: e,
            })?;
        if resp.status() != 201 {
            return Err(status_error(&put, &mut resp));
        }
        progress.finish(label, "Pushed");
        Ok(())
    }

    /// Opens an upload session; returns the URL to `PUT` the blob `d` to.
    fn start_upload(&self, r: &Reference, d: &Digest) -> Result<String> {
        let start = self.url(r, "blobs/uploads/");
        let mut resp = self.send(r, "pull,push", &start, &|auth| {
            with_auth(self.agent.post(&start), auth).send_empty()
        })?;
        if resp.status() != 202 {
            return Err(status_error(&start, &mut resp));
        }
        let loc = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "registry {} started an upload without a Location",
                    r.domain
                ))
            })?;
        let loc = if loc.starts_with('/') {
            format!("{}{loc}", self.base_url(&r.domain))
        } else {
            loc.to_string()
        };
        Ok(format!(
            "{loc}{}digest={d}",
            if loc.contains('?') { '&' } else { '?' }
        ))
    }
}
