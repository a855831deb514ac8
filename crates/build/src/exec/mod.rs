//! The executor: runs a [`Plan`] against an image store and the runtime and
//! produces a tagged image.
//!
//! For each stage the target needs (in plan order) it starts from `scratch`,
//! an image of the store (unpacked; its top chain id is the parent snapshot)
//! or an earlier stage. Each step gets a cache key (parent key, the step,
//! the content hashes of what it reads). A key recorded in the cache index
//! ([`cache`]) whose layer and snapshot still exist is reused; otherwise a
//! snapshot is prepared on the parent and mounted, the step runs in it
//! (COPY/ADD copy files in, RUN runs a container, WORKDIR creates the
//! directory), and what changed is written as a layer ([`layer`]); the
//! snapshot is committed under the new chain id, as an unpacked image would
//! be. Metadata instructions only add history. The target's config (history,
//! `rootfs.diff_ids`, `created` = SOURCE_DATE_EPOCH or 0) and an OCI
//! manifest are stored and registered under the `-t` names.
//!
//! With the native snapshotter the writable directory is a full copy, and
//! the layer is its comparison with the parent snapshot. RUN mounts: bind
//! (context, stage or image; `rw` over a throw-away overlay), cache
//! (`<data-root>/build-cache/mounts`), tmpfs and secret (from
//! [`Request::secrets`], bound from the bundle directory, never in a layer);
//! mount points they needed are taken out of the layer again.
//!
//! Progress goes to a writer in docker's classic format (`Step 1/5 : FROM …`,
//! ` ---> Using cache`, ` ---> Running in …`), RUN output included.
//!
//! RUN forks (through `berth_runtime`): build from a single-threaded process.
//! Every mount, snapshot, container and scratch directory a step makes is
//! held by a guard (module `guards`) and removed on failure; SIGINT, SIGTERM and
//! SIGHUP are blocked during the build and turn into an error, so Ctrl-C
//! cleans up too.
//!
//! Not yet: ADD of git repositories, SSH mounts, cache mounts
//! seeded from a stage, building independent stages in parallel.
//!
//! ```no_run
//! use berth_build::context::Context;
//! use berth_build::exec::{build, Request};
//! let images = berth_image::Images::open("/var/lib/berth")?;
//! let ctx = Context::open("/src/app", None)?;
//! let req = Request::new("FROM scratch\nCOPY app /app\n".into(), vec!["app:1".into()]);
//! let built = build(&images, "/run/berth/runtime".as_ref(), &ctx, &req, &mut std::io::stdout())?;
//! println!("{}", built.id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cache;
mod copy;
pub mod fsutil;
mod guards;
pub mod layer;
mod run;
mod signals;
mod sources;
mod store;
mod sweep;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use berth_image::Images;
use berth_runtime::Runtime;
use berth_snapshot::{Mount, WhiteoutStyle};

use crate::cache::{cache_key, step_inputs, KeySource};
use crate::config::ImageConfig;
use crate::context::Context;
use crate::eval::{BuildOptions, StagePlan, Step, StepKind};
use crate::plan::Plan;
use crate::stages::Base;
use cache::{Cache, Entry};
use fsutil::{mkdir_all, random_id, resolve_user, Mounted};
use guards::{Scratch, Snap};
use layer::{write_layer, LayerDesc};

/// Errors of executing a build.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The Dockerfile or its evaluation is wrong.
    #[error("{0}")]
    Plan(crate::plan::PlanError),
    /// A cache input could not be computed (a COPY source is missing...).
    #[error("{0}")]
    Cache(crate::cache::CacheError),
    /// The context (or a stage's files) could not be read.
    #[error("{0}")]
    Context(crate::context::ContextError),
    /// Bad ignore patterns.
    #[error("{0}")]
    Ignore(crate::ignore::IgnoreError),
    /// From the image store.
    #[error("{0}")]
    Image(berth_image::Error),
    /// From the content store.
    #[error("{0}")]
    Content(berth_content::Error),
    /// From the snapshotter.
    #[error("{0}")]
    Snapshot(berth_snapshot::Error),
    /// From the runtime.
    #[error("RUN container: {0}")]
    Runtime(berth_runtime::Error),
    /// A RUN exited non-zero (docker's message).
    #[error("The command '{command}' returned a non-zero code: {code}")]
    RunFailed {
        /// The argv, joined by spaces.
        command: String,
        /// The exit code.
        code: i32,
    },
    /// SIGINT, SIGTERM or SIGHUP arrived.
    #[error("build interrupted by {0}")]
    Interrupted(String),
    /// A base or `--from` image is not in the store.
    #[error("image {0:?} is not in the image store: pull or import it first")]
    NoImage(String),
    /// A feature this executor does not have yet.
    #[error("not supported yet: {0}")]
    Unsupported(String),
    /// Anything else that is wrong with the input.
    #[error("{0}")]
    Invalid(String),
    /// A system call failed.
    #[error("cannot {op}: {error}")]
    Sys {
        /// What was being done.
        op: String,
        /// The error (in the message, so not a `source`).
        error: nix::Error,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} {path}: {error}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error (in the message, so not a `source`).
        error: std::io::Error,
    },
}

// The wrapped errors' messages already carry their causes: they are kept out
// of `source()` so that a cause chain prints each message once.
macro_rules! wrap {
    ($($variant:ident($ty:ty)),* $(,)?) => {$(
        impl From<$ty> for ExecError {
            fn from(e: $ty) -> Self {
                ExecError::$variant(e)
            }
        }
    )*};
}

wrap!(
    Plan(crate::plan::PlanError),
    Cache(crate::cache::CacheError),
    Context(crate::context::ContextError),
    Ignore(crate::ignore::IgnoreError),
    Image(berth_image::Error),
    Content(berth_content::Error),
    Snapshot(berth_snapshot::Error),
    Runtime(berth_runtime::Error),
);

/// Result alias of the executor.
pub type Result<T> = std::result::Result<T, ExecError>;

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ExecError + 'a {
    move |error| ExecError::Io {
        op,
        path: path.to_path_buf(),
        error,
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Request {
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// Build args, labels, platform, SOURCE_DATE_EPOCH.
    pub options: BuildOptions,
    /// `--target`.
    pub target: Option<String>,
    /// `-t` names.
    pub tags: Vec<String>,
    /// `--no-cache`: run every step (results are still recorded).
    pub no_cache: bool,
    /// `--secret` values by id (for `RUN --mount=type=secret`; never in a layer or key).
    pub secrets: BTreeMap<String, Vec<u8>>,
}

impl Request {
    /// A request with default options (`created` from SOURCE_DATE_EPOCH).
    pub fn new(dockerfile: String, tags: Vec<String>) -> Self {
        let options = BuildOptions {
            created: BuildOptions::source_date_epoch(),
            ..BuildOptions::default()
        };
        Self {
            dockerfile,
            options,
            target: None,
            tags,
            no_cache: false,
            secrets: BTreeMap::new(),
        }
    }
}

/// The result of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The image id (`sha256:` of the config).
    pub id: String,
    /// How many steps were taken from the cache.
    pub cached: usize,
    /// How many steps ran.
    pub executed: usize,
}

/// A stage being built: its cache key, top snapshot, layers and config.
#[derive(Debug, Clone)]
struct StageState {
    key: String,
    chain: Option<String>,
    layers: Vec<LayerDesc>,
    config: ImageConfig,
}

impl StageState {
    fn scratch() -> Self {
        Self {
            key: "scratch".into(),
            chain: None,
            layers: Vec::new(),
            config: ImageConfig::default(),
        }
    }
}

struct Executor<'a> {
    images: &'a Images,
    runtime: Runtime,
    context: &'a Context,
    cache: Cache,
    no_cache: bool,
    out: &'a mut dyn Write,
    clamp: Option<i64>,
    signals: signals::Interrupts,
    secrets: &'a BTreeMap<String, Vec<u8>>,
    total: usize,
    n: usize,
    cached: usize,
    executed: usize,
}

/// Build `req` with `context`, RUN containers kept under `runtime_root`;
/// progress to `out`.
pub fn build(
    images: &Images,
    runtime_root: &Path,
    context: &Context,
    req: &Request,
    out: &mut dyn Write,
) -> Result<Built> {
    let mut opts = req.options.clone();
    let epoch = opts.created.unwrap_or(0);
    opts.created = Some(epoch);
    let clamp = req.options.created;
    let plan = Plan::new(&req.dockerfile, opts, req.target.as_deref())?;
    for w in plan.warnings() {
        let _ = writeln!(out, "[WARNING]: line {}: {}", w.line, w.message);
    }
    let mut bases: BTreeMap<String, StageState> = BTreeMap::new();
    let plans = plan.eval_all(|img, _platform| {
        let st = base_image(images, img).map_err(|e| e.to_string())?;
        let cfg = st.config.clone();
        bases.insert(img.to_string(), st);
        Ok(cfg)
    })?;
    let mut ex = Executor {
        images,
        runtime: Runtime::new(runtime_root),
        context,
        cache: Cache::open(images)?,
        no_cache: req.no_cache,
        out,
        clamp,
        signals: signals::Interrupts::block()?,
        secrets: &req.secrets,
        total: count_steps(&plan, &plans, &bases),
        n: 0,
        cached: 0,
        executed: 0,
    };
    sweep::sweep(images, &ex.runtime);
    let starts = |i: usize, done: &BTreeMap<usize, StageState>| match plan.base(i) {
        Base::Scratch => StageState::scratch(),
        Base::Stage(s) => done.get(s).cloned().unwrap_or_else(StageState::scratch),
        Base::Image(img) => bases.get(img).cloned().unwrap_or_else(StageState::scratch),
    };
    let mut done: BTreeMap<usize, StageState> = BTreeMap::new();
    for i in plan.order() {
        let base = starts(i, &done);
        ex.say_from(&plan, i, &base)?;
        let texts: Vec<String> = plan.stages.stages[i]
            .commands
            .iter()
            .map(|n| first_line(&n.original))
            .collect();
        let sp = plans
            .get(&i)
            .ok_or_else(|| ExecError::Invalid(format!("stage {i} was not evaluated")))?;
        let st = ex.stage(base, sp, &texts, &done)?;
        done.insert(i, st);
    }
    let target = done
        .remove(&plan.target)
        .ok_or_else(|| ExecError::Invalid("the target stage was not built".into()))?;
    let id = store::write_image(images, &target.config, &target.layers, epoch, &req.tags)?;
    Ok(Built {
        id,
        cached: ex.cached,
        executed: ex.executed,
    })
}

/// The number of `Step n/N` lines: each needed stage's FROM and instructions
/// (its history entries beyond its base's).
fn count_steps(
    plan: &Plan,
    plans: &BTreeMap<usize, StagePlan>,
    bases: &BTreeMap<String, StageState>,
) -> usize {
    plan.order()
        .iter()
        .map(|i| {
            let base_len = match plan.base(*i) {
                Base::Scratch => 0,
                Base::Stage(s) => plans.get(s).map_or(0, |p| p.config.history.len()),
                Base::Image(img) => bases.get(img).map_or(0, |b| b.config.history.len()),
            };
            let own = plans.get(i).map_or(0, |p| p.config.history.len());
            1 + own.saturating_sub(base_len)
        })
        .sum()
}

/// An image of the store as a stage base: unpacked, with its layers and config.
fn base_image(images: &Images, name: &str) -> Result<StageState> {
    let img = images.resolve(name).map_err(|e| match e {
        berth_image::Error::NotFound(_) => ExecError::NoImage(name.to_string()),
        e => e.into(),
    })?;
    let chain = images.unpack(&img)?;
    let config: ImageConfig = serde_json::from_value(img.raw_config.clone())
        .map_err(|e| ExecError::Invalid(format!("image {name}: bad config: {e}")))?;
    let layers = img
        .manifest
        .layers()
        .iter()
        .zip(img.diff_ids())
        .map(|(d, diff)| LayerDesc {
            digest: d.digest().to_string(),
            size: d.size(),
            media_type: store::oci_media_type(d.media_type().as_ref()),
            diff_id: diff.clone(),
        })
        .collect();
    Ok(StageState {
        key: img.id.clone(),
        chain,
        layers,
        config,
    })
}

struct Keys<'a> {
    images: &'a Images,
    done: &'a BTreeMap<usize, StageState>,
}

impl KeySource for Keys<'_> {
    fn stage_key(&self, stage: usize) -> Option<String> {
        self.done.get(&stage).map(|s| s.key.clone())
    }
    fn image_digest(&self, reference: &str) -> String {
        self.images
            .resolve(reference)
            .map_or_else(|_| reference.to_string(), |i| i.id)
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim().to_string()
}

fn short(id: &str) -> &str {
    let h = id.strip_prefix("sha256:").unwrap_or(id);
    h.get(..12).unwrap_or(h)
}

fn next_chain(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(p) => berth_content::Digest::of(format!("{p} {diff_id}").as_bytes()).to_string(),
    }
}

impl<'a> Executor<'a> {
    fn say(&mut self, line: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }

    fn say_from(&mut self, plan: &Plan, i: usize, base: &StageState) -> Result<()> {
        let line = plan.stages.stages[i].line;
        let text = plan
            .dockerfile
            .instructions
            .iter()
            .find(|n| n.line == line)
            .map(|n| first_line(&n.original))
            .unwrap_or_else(|| format!("FROM {}", plan.stages.stages[i].from.image));
        self.n += 1;
        self.say(format!("Step {}/{} : {text}", self.n, self.total));
        if base.key != "scratch" {
            self.say(format!(" ---> {}", short(&base.key)));
        }
        Ok(())
    }

    fn stage(
        &mut self,
        mut st: StageState,
        sp: &StagePlan,
        texts: &[String],
        done: &BTreeMap<usize, StageState>,
    ) -> Result<StageState> {
        let first = st.config.history.len();
        // ONBUILD triggers of the base come first, then one entry per instruction.
        let triggers = sp
            .config
            .history
            .len()
            .saturating_sub(first)
            .saturating_sub(texts.len());
        st.config = sp.config.clone();
        for h in first..sp.config.history.len() {
            self.n += 1;
            match sp.steps.iter().find(|s| s.history_index == h) {
                Some(step) => {
                    self.say(format!(
                        "Step {}/{} : {}",
                        self.n, self.total, step.original
                    ));
                    let made = self.step(&mut st, step, done)?;
                    if let Some(e) = st.config.history.get_mut(h) {
                        e.empty_layer = !made;
                    }
                }
                None => {
                    let text = (h - first)
                        .checked_sub(triggers)
                        .and_then(|k| texts.get(k).cloned())
                        .unwrap_or_else(|| sp.config.history[h].created_by.clone());
                    self.say(format!("Step {}/{} : {text}", self.n, self.total));
                    if st.key != "scratch" {
                        self.say(format!(" ---> {}", short(&st.key)));
                    }
                }
            }
        }
        Ok(st)
    }

    /// Run or reuse one step; true when it made a layer.
    fn step(
        &mut self,
        st: &mut StageState,
        step: &Step,
        done: &BTreeMap<usize, StageState>,
    ) -> Result<bool> {
        self.signals.check()?;
        let keys = Keys {
            images: self.images,
            done,
        };
        let inputs = step_inputs(step, self.context, &keys)?;
        let key = cache_key(&st.key, step, &inputs);
        let hit = if self.no_cache {
            None
        } else {
            self.cache.lookup(self.images, &key)
        };
        let entry = match hit {
            Some(e) => {
                self.cached += 1;
                self.say(" ---> Using cache");
                e
            }
            None => {
                self.executed += 1;
                let e = self.execute(st, step, done)?;
                self.cache.record(self.images, &key, &e)?;
                e
            }
        };
        self.say(format!(" ---> {}", short(&key)));
        st.key = key;
        st.chain = entry.chain;
        let made = entry.layer.is_some();
        st.layers.extend(entry.layer);
        Ok(made)
    }

    fn execute(
        &mut self,
        st: &StageState,
        step: &Step,
        done: &BTreeMap<usize, StageState>,
    ) -> Result<Entry> {
        let id = format!("berth-build-{}", &random_id()[..24]);
        let work = Scratch(self.images.root().join("tmp").join(&id));
        std::fs::create_dir_all(&work.0).map_err(io_err("create", &work.0))?;
        let owner = work.0.join(sweep::OWNER);
        std::fs::write(&owner, sweep::owner_stamp()).map_err(io_err("write", &owner))?;
        let snap = Snap::prepare(self.images, id.clone(), st.chain.as_deref(), false)?;
        let (upper, style) = Mount::writable_dir(&snap.mounts).ok_or_else(|| {
            ExecError::Invalid("the snapshotter gave a snapshot berth cannot write into".into())
        })?;
        let rootfs = Mounted::new(&snap.mounts, &work.0.join("rootfs"))?;
        self.apply(step, &rootfs, &work.0, &id, done)?;
        rootfs.unmount()?;
        // A full copy (native snapshotter) is compared with its parent.
        let parent = match (style, &st.chain) {
            (WhiteoutStyle::Delete, Some(c)) => Some(Snap::prepare(
                self.images,
                format!("{id}-parent"),
                Some(c),
                true,
            )?),
            _ => None,
        };
        let lower = parent
            .as_ref()
            .and_then(|v| v.mounts.first())
            .map(|m| PathBuf::from(&m.source));
        let layer = write_layer(self.images.content(), &upper, lower.as_deref(), self.clamp)?;
        drop(parent);
        let chain = match &layer {
            None => st.chain.clone(),
            Some(l) => {
                let c = next_chain(st.chain.as_deref(), &l.diff_id);
                snap.commit(&c)?;
                Some(c)
            }
        };
        Ok(Entry { layer, chain })
    }

    fn apply(
        &mut self,
        step: &Step,
        rootfs: &Mounted,
        work: &Path,
        id: &str,
        done: &BTreeMap<usize, StageState>,
    ) -> Result<()> {
        match &step.kind {
            StepKind::Copy(c) => self.copy(c, rootfs.path(), work, done),
            StepKind::Workdir(d) => {
                let owner = resolve_user(rootfs.path(), &step.user)?;
                mkdir_all(rootfs.path(), d, Some(owner)).map(|_| ())
            }
            StepKind::Run(r) => {
                self.say(format!(" ---> Running in {}", short(&id[12..])));
                let bundle = work.join("bundle");
                std::fs::create_dir_all(&bundle).map_err(io_err("create", &bundle))?;
                let cache_dir = self.images.root().join("build-cache/mounts");
                let binds = self.bind_sources(r, work, done)?;
                let env = run::RunEnv {
                    runtime: &self.runtime,
                    id,
                    bundle: &bundle,
                    rootfs: rootfs.path(),
                    cache_dir: &cache_dir,
                    signals: &self.signals,
                    secrets: self.secrets,
                    binds: &binds.map,
                };
                run::run(&env, step, r, &mut *self.out)?;
                drop(binds);
                self.say(format!(
                    " ---> Removed intermediate container {}",
                    short(&id[12..])
                ));
                Ok(())
            }
        }
    }
}
