//! `--cache-from IMAGE`: a local image as a cache source, as docker's classic
//! builder uses one. A step may take the image's next layer when everything
//! below it is the same (the image's history up to the step matches the
//! stage's entry by entry, and its first layers are the stage's layers so
//! far) and the step's own history entry matches too.
//!
//! Only steps whose result follows from that are taken: a RUN without
//! mounts or heredoc files (its history entry carries its command and build
//! args; its parent filesystem is pinned by the layers), and WORKDIR. COPY
//! and ADD are not: their history names the files, not their contents, so
//! they always run, and the steps after them match again only when they
//! produced the very same layer. A step that made no layer in the image is
//! run (a squashed image marks every step so).
//!
//! An image built with `--build-arg BUILDKIT_INLINE_CACHE=1` (BuildKit's
//! switch; berth's own format, [`INLINE_FIELD`] in its config) carries the
//! cache key after each step and the layer the step made: a step whose key
//! (its parent's key, the step, the content hashes of what it reads) is
//! listed takes that layer, COPY and ADD included.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use berth_image::Images;

use super::cache::Entry;
use super::layer::LayerDesc;
use super::progress::{Event, Progress};
use super::{next_chain, Result, StageState};
use crate::config::History;
use crate::eval::{Step, StepKind};

/// The config field of an image's inline cache keys.
pub const INLINE_FIELD: &str = "berth.cache.v0";

/// A step's cache key and the index of the layer it made (None: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineKey {
    /// The cache key after the step.
    pub key: String,
    /// Its layer in the image's `rootfs.diff_ids`.
    pub layer: Option<usize>,
}

/// One `--cache-from` image.
struct Source {
    image: berth_image::Image,
    history: Vec<History>,
    layers: Vec<LayerDesc>,
    /// Inline cache keys (an image built with `BUILDKIT_INLINE_CACHE=1`).
    keys: HashMap<String, Option<usize>>,
    unpacked: Mutex<bool>,
}

/// The cache-from images of a build.
#[derive(Default)]
pub(super) struct Sources(Vec<Source>);

impl Sources {
    /// The images named; those the store lacks are left out with a warning.
    pub(super) fn open(
        images: &Images,
        names: &[String],
        progress: &mut dyn Progress,
    ) -> Result<Self> {
        let mut out = Vec::new();
        for name in names {
            let image = match images.resolve(name) {
                Ok(i) => i,
                Err(berth_image::Error::NotFound(_)) => {
                    progress.event(&Event::Warning {
                        line: 0,
                        message: format!(
                            "--cache-from {name}: no such image here, not used (pull it first: cache sources are not pulled)"
                        ),
                    });
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let (config, layers) = super::config_and_layers(&image, name)?;
            let keys: Vec<InlineKey> = image
                .raw_config
                .get(INLINE_FIELD)
                .and_then(|k| serde_json::from_value(k.clone()).ok())
                .unwrap_or_default();
            out.push(Source {
                history: config.history,
                layers,
                keys: keys.into_iter().map(|k| (k.key, k.layer)).collect(),
                image,
                unpacked: Mutex::new(false),
            });
        }
        Ok(Self(out))
    }

    /// What `step` (cache key `key`) produced in a source image, on top of
    /// `st` (whose config holds the stage's whole history): the image's layer
    /// and its snapshot (the image is unpacked for it), or nothing changed.
    pub(super) fn find(
        &self,
        images: &Images,
        st: &StageState,
        step: &Step,
        key: &str,
    ) -> Result<Option<Entry>> {
        for s in &self.0 {
            if let Some(e) = s.by_key(images, st, key)? {
                return Ok(Some(e));
            }
        }
        let reusable = match &step.kind {
            StepKind::Run(r) => r.mounts.is_empty() && r.files.is_empty(),
            StepKind::Workdir(_) => true,
            StepKind::Copy(_) => false,
        };
        let h = step.history_index;
        let Some(ours) = st.config.history.get(..=h).filter(|_| reusable) else {
            return Ok(None);
        };
        for s in &self.0 {
            if let Some(e) = s.entry(images, st, ours)? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}

impl Source {
    /// The entry of an inline cache key.
    fn by_key(&self, images: &Images, st: &StageState, key: &str) -> Result<Option<Entry>> {
        match self.keys.get(key) {
            None => Ok(None),
            Some(None) => Ok(Some(Entry {
                layer: None,
                chain: st.chain.clone(),
            })),
            Some(Some(i)) => self.layer_on(images, st, *i),
        }
    }

    /// The image's layer `i` on top of `st`, when its snapshot is there once
    /// the image is unpacked (the layers below are the same).
    fn layer_on(&self, images: &Images, st: &StageState, i: usize) -> Result<Option<Entry>> {
        let Some(layer) = self.layers.get(i).filter(|_| i == st.layers.len()) else {
            return Ok(None);
        };
        {
            let mut done = self.unpacked.lock().unwrap_or_else(|e| e.into_inner());
            if !*done {
                images.unpack(&self.image)?;
                *done = true;
            }
        }
        let chain = next_chain(st.chain.as_deref(), &layer.diff_id);
        if images.snapshotter().stat(&chain).is_err() {
            return Ok(None);
        }
        Ok(Some(Entry {
            layer: Some(layer.clone()),
            chain: Some(chain),
        }))
    }

    fn entry(&self, images: &Images, st: &StageState, ours: &[History]) -> Result<Option<Entry>> {
        let h = ours.len() - 1;
        let Some(theirs) = self.history.get(..=h) else {
            return Ok(None);
        };
        let same = |a: &History, b: &History| a.created_by == b.created_by;
        let below_same = ours[..h]
            .iter()
            .zip(&theirs[..h])
            .all(|(a, b)| same(a, b) && a.empty_layer == b.empty_layer);
        let n = st.layers.len();
        let layers_same = self.layers.len() >= n
            && self.layers[..n]
                .iter()
                .zip(&st.layers)
                .all(|(a, b)| a.diff_id == b.diff_id)
            && theirs[..h].iter().filter(|e| !e.empty_layer).count() == n;
        if !below_same || !layers_same || !same(&ours[h], &theirs[h]) {
            return Ok(None);
        }
        // (a step that made no layer there is run: in a squashed image every
        // step's entry is marked so, its changes being in the merged layer)
        if theirs[h].empty_layer {
            return Ok(None);
        }
        self.layer_on(images, st, n)
    }
}
