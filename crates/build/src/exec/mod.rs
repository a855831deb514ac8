//! The executor: runs a [`Plan`] against an image store and the runtime and
//! produces a tagged image.
//!
//! Each stage the target needs builds on its own thread as soon as the stages
//! it depends on (its base, `COPY --from`, `RUN --mount=from=`) are built, so
//! independent stages build in parallel; stages the target does not need are
//! not built at all. A stage starts from `scratch`,
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
//! Every RUN container gets the build's container options ([`runopts`]:
//! `--add-host`, `--network`, cgroup limits, `--shm-size`, `--ulimit`,
//! `--security-opt`), checked before the build starts. `--cache-from`
//! images are a second cache source (module `cache_from`); `--squash` makes
//! the target's layers above its base one layer, the diff of the two trees.
//!
//! Progress is a stream of [`progress::Event`]s (steps starting, CACHED,
//! RUN output, durations) rendered by a [`progress::Progress`]: BuildKit's
//! live tty display, plain lines, docker's classic `Step 1/5 : …` text
//! ([`build`] writes that) or the Docker API's JSON messages.
//!
//! RUN containers are created by a single-threaded helper process
//! ([`spawner`]) forked when the build starts, since `berth_runtime` forks
//! from its caller: call [`build`] from a single-threaded process; the
//! build's own threads are safe. A multi-threaded host (berthd) calls
//! [`build_hosted`] instead: it hands over a helper it started as a program
//! (asked for at the first RUN, shared by its builds) and a stop flag, and
//! leaves the process's signals alone. Every mount, snapshot, container and
//! scratch directory a step makes is held by a guard (module `guards`) and
//! removed on failure; when one stage fails the others are cancelled.
//! SIGINT, SIGTERM and SIGHUP are blocked during the build and turn into an
//! error, so Ctrl-C cleans up too ([`build_hosted`]: setting its stop flag).
//!
//! Not yet: ADD of git repositories, SSH mounts, cache mounts seeded from a
//! stage.
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
mod cache_from;
mod copy;
pub mod fsutil;
mod guards;
pub mod layer;
pub mod progress;
mod run;
pub mod runopts;
mod share;
mod signals;
mod sources;
pub mod spawner;
mod store;
pub mod sweep;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
use progress::{Event, Progress, StepInfo};
use spawner::Spawner;

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
    /// Another stage failed (or the build was interrupted) while this one ran.
    #[error("build cancelled")]
    Cancelled,
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
    /// The container options of every RUN (`--add-host`, `--network`,
    /// `--memory`, `--ulimit`, `--security-opt`…); not part of cache keys,
    /// as with docker.
    pub run: runopts::RunOptions,
    /// `--squash`: the target stage's layers become one on top of its base.
    pub squash: bool,
    /// `--cache-from`: local images whose steps may be reused (module
    /// `cache_from` says which).
    pub cache_from: Vec<String>,
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
            run: runopts::RunOptions::default(),
            squash: false,
            cache_from: Vec::new(),
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
    /// The cache key after each step of this stage and the stages below it,
    /// with the layer it made (`BUILDKIT_INLINE_CACHE=1` writes them into
    /// the image: module `cache_from`).
    keys: Vec<cache_from::InlineKey>,
}

impl StageState {
    fn scratch() -> Self {
        Self {
            key: "scratch".into(),
            chain: None,
            layers: Vec::new(),
            config: ImageConfig::default(),
            keys: Vec::new(),
        }
    }
}

/// Cancels the stages of a build: a flag plus a pipe that becomes readable,
/// so that threads blocked on a RUN container can poll it.
struct Cancel {
    set: AtomicBool,
    rd: std::os::fd::OwnedFd,
    wr: std::os::fd::OwnedFd,
}

impl Cancel {
    fn new() -> Result<Self> {
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|error| ExecError::Sys {
                op: "create a pipe".into(),
                error,
            })?;
        Ok(Self {
            set: AtomicBool::new(false),
            rd,
            wr,
        })
    }

    fn cancel(&self) {
        if !self.set.swap(true, Ordering::SeqCst) {
            let _ = nix::unistd::write(&self.wr, b"x");
        }
    }

    fn check(&self) -> Result<()> {
        match self.set.load(Ordering::SeqCst) {
            true => Err(ExecError::Cancelled),
            false => Ok(()),
        }
    }
}

/// One lock per cache key, so that two stages reaching the same step at the
/// same time run it once (the second one finds it in the cache).
#[derive(Default)]
struct KeyLocks(Mutex<HashMap<String, Arc<Mutex<()>>>>);

impl KeyLocks {
    fn get(&self, key: &str) -> Arc<Mutex<()>> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(key.to_string()).or_default().clone()
    }
}

/// What every stage of a build shares.
struct Shared<'a> {
    images: &'a Images,
    context: &'a Context,
    cache: Cache,
    cache_from: cache_from::Sources,
    no_cache: bool,
    clamp: Option<i64>,
    cancel: Cancel,
    secrets: &'a BTreeMap<String, Vec<u8>>,
    run_opts: &'a runopts::RunOptions,
    spawner: SpawnerSlot<'a>,
    locks: KeyLocks,
    next_id: AtomicUsize,
    cached: AtomicUsize,
    executed: AtomicUsize,
}

/// What stage threads tell the thread that drives the build.
enum Msg {
    Event(Event),
    Stage(usize, Box<Result<StageState>>),
}

/// One stage being built (on its own thread).
struct Executor<'a> {
    sh: &'a Shared<'a>,
    images: &'a Images,
    context: &'a Context,
    tx: Sender<Msg>,
    stage: String,
    count: usize,
    index: usize,
}

/// Build `req` with `context`, RUN containers kept under `runtime_root`;
/// progress to `out` in docker's classic format (`Step 1/5 : …`).
pub fn build(
    images: &Images,
    runtime_root: &Path,
    context: &Context,
    req: &Request,
    out: &mut dyn Write,
) -> Result<Built> {
    build_with(
        images,
        runtime_root,
        context,
        req,
        &mut progress::Classic::new(out),
    )
}

/// Build `req` with `context`, RUN containers kept under `runtime_root`,
/// reporting to `progress` (on this thread). Forks the RUN helper: call from
/// a single-threaded process, or use [`build_hosted`].
pub fn build_with(
    images: &Images,
    runtime_root: &Path,
    context: &Context,
    req: &Request,
    progress: &mut dyn Progress,
) -> Result<Built> {
    build_using(images, runtime_root, context, req, progress, || {
        Spawner::start(runtime_root)
    })
}

/// [`build_with`] with the RUN helper from `spawner` (called once the plan
/// is ready), e.g. `|| Spawner::spawn(root, Command::new("/proc/self/exe"))`
/// in a process with other threads.
pub fn build_using(
    images: &Images,
    runtime_root: &Path,
    context: &Context,
    req: &Request,
    progress: &mut dyn Progress,
    spawner: impl FnOnce() -> Result<Spawner>,
) -> Result<Built> {
    let prepared = prepare(images, req, progress)?;
    let signals = signals::Interrupts::block()?;
    let spawner = Arc::new(spawner()?);
    let slot = SpawnerSlot {
        ready: std::sync::OnceLock::from(spawner),
        make: None,
        making: Mutex::new(()),
    };
    let stop = Stop::Signals(&signals);
    execute(
        images,
        runtime_root,
        context,
        req,
        progress,
        prepared,
        slot,
        stop,
    )
}

/// What a build hosted by a long-running, multi-threaded process (a daemon)
/// gets from it, instead of forking a RUN helper and watching signals.
pub struct Host<'a> {
    /// The RUN helper, asked for at the build's first RUN (a build whose
    /// steps are all cached needs none); it may serve other builds too.
    pub spawner: &'a (dyn Fn() -> Result<Arc<Spawner>> + Sync),
    /// Set (from any thread) to stop the build: it fails with
    /// [`ExecError::Interrupted`] by [`Host::stopped_by`] and cleans up.
    pub stop: &'a AtomicBool,
    /// Who stops the build, for the error message ("the client").
    pub stopped_by: &'a str,
}

/// [`build_with`] in a process with other threads (a daemon): RUN containers
/// come from `host.spawner`, signals are left alone, `host.stop` interrupts.
pub fn build_hosted(
    images: &Images,
    runtime_root: &Path,
    context: &Context,
    req: &Request,
    progress: &mut dyn Progress,
    host: &Host<'_>,
) -> Result<Built> {
    let prepared = prepare(images, req, progress)?;
    let slot = SpawnerSlot {
        ready: std::sync::OnceLock::new(),
        make: Some(host.spawner),
        making: Mutex::new(()),
    };
    let stop = Stop::Flag(host.stop, host.stopped_by);
    execute(
        images,
        runtime_root,
        context,
        req,
        progress,
        prepared,
        slot,
        stop,
    )
}

/// The plan of a build, its stages evaluated, and its base images.
struct Prepared {
    plan: Plan,
    plans: BTreeMap<usize, StagePlan>,
    bases: BTreeMap<String, StageState>,
    epoch: i64,
}

fn prepare(images: &Images, req: &Request, progress: &mut dyn Progress) -> Result<Prepared> {
    req.run.check()?;
    let mut opts = req.options.clone();
    let epoch = opts.created.unwrap_or(0);
    opts.created = Some(epoch);
    let plan = Plan::new(&req.dockerfile, opts, req.target.as_deref())?;
    for w in plan.warnings() {
        progress.event(&Event::Warning {
            line: w.line,
            message: w.message,
        });
    }
    let mut bases: BTreeMap<String, StageState> = BTreeMap::new();
    let plans = plan.eval_all(|img, _platform| {
        let st = base_image(images, img).map_err(|e| e.to_string())?;
        let cfg = st.config.clone();
        bases.insert(img.to_string(), st);
        Ok(cfg)
    })?;
    Ok(Prepared {
        plan,
        plans,
        bases,
        epoch,
    })
}

/// What interrupts a build.
enum Stop<'a> {
    /// SIGINT, SIGTERM or SIGHUP (blocked and read from a signalfd).
    Signals(&'a signals::Interrupts),
    /// A flag another thread sets, and who sets it.
    Flag(&'a AtomicBool, &'a str),
}

impl Stop<'_> {
    fn check(&self) -> Result<()> {
        match self {
            Stop::Signals(s) => s.check(),
            Stop::Flag(f, by) => match f.load(Ordering::SeqCst) {
                true => Err(ExecError::Interrupted(by.to_string())),
                false => Ok(()),
            },
        }
    }
}

/// The RUN helper of a build: there from the start, or asked for at the
/// first RUN.
struct SpawnerSlot<'a> {
    ready: std::sync::OnceLock<Arc<Spawner>>,
    make: Option<&'a (dyn Fn() -> Result<Arc<Spawner>> + Sync)>,
    making: Mutex<()>,
}

impl SpawnerSlot<'_> {
    fn get(&self) -> Result<&Spawner> {
        if let Some(s) = self.ready.get() {
            return Ok(s);
        }
        let _one = self.making.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = self.ready.get() {
            return Ok(s);
        }
        let make = self
            .make
            .ok_or_else(|| ExecError::Invalid("no RUN spawner".into()))?;
        let made = make()?;
        Ok(self.ready.get_or_init(|| made))
    }
}

#[allow(clippy::too_many_arguments)]
fn execute(
    images: &Images,
    runtime_root: &Path,
    context: &Context,
    req: &Request,
    progress: &mut dyn Progress,
    prepared: Prepared,
    spawner: SpawnerSlot<'_>,
    stop: Stop<'_>,
) -> Result<Built> {
    let Prepared {
        plan,
        plans,
        bases,
        epoch,
    } = prepared;
    sweep::sweep(images, &Runtime::new(runtime_root));
    let shared = Shared {
        images,
        context,
        cache: Cache::open(images)?,
        cache_from: cache_from::Sources::open(images, &req.cache_from, progress)?,
        no_cache: req.no_cache,
        clamp: req.options.created,
        cancel: Cancel::new()?,
        secrets: &req.secrets,
        run_opts: &req.run,
        spawner,
        locks: KeyLocks::default(),
        next_id: AtomicUsize::new(1),
        cached: AtomicUsize::new(0),
        executed: AtomicUsize::new(0),
    };
    progress.event(&Event::Plan {
        steps: count_steps(&plan, &plans, &bases),
        stages: plan.order().len(),
    });
    let run = Run {
        plan: &plan,
        plans: &plans,
        bases: &bases,
        sh: &shared,
    };
    let mut done = run.stages(&stop, progress)?;
    let base = run.base_of(plan.target, &done);
    let mut target = done
        .remove(&plan.target)
        .ok_or_else(|| ExecError::Invalid("the target stage was not built".into()))?;
    if req.squash {
        // the parent named in the merge entry: the base image, or what the base
        // stage would be stored as
        let parent = match plan.base(plan.target) {
            Base::Scratch => String::new(),
            Base::Image(_) => base.key.clone(),
            Base::Stage(_) => store::image_id(&base.config, &base.layers, epoch)?,
        };
        squash(
            (images, &shared.cache),
            &base,
            &parent,
            &mut target,
            (epoch, req.options.created),
        )?;
    }
    // BuildKit's switch for cache metadata in the image (berth's own format)
    let inline = !req.squash
        && req
            .options
            .build_args
            .get("BUILDKIT_INLINE_CACHE")
            .is_some_and(|v| matches!(v.as_str(), "1" | "true"));
    let keys = inline.then_some(&target.keys[..]);
    let id = store::write_image(
        images,
        &target.config,
        &target.layers,
        (epoch, keys),
        &req.tags,
    )?;
    progress.event(&Event::Finished {
        image: id.clone(),
        tags: req.tags.clone(),
    });
    Ok(Built {
        id,
        cached: shared.cached.load(Ordering::SeqCst),
        executed: shared.executed.load(Ordering::SeqCst),
    })
}

/// `--squash` (docker's experimental squash): the target's layers above its
/// base become one, the difference between the two trees; the base's layers
/// and history stay, the stage's history entries stay marked as adding no
/// layer, and a last entry "merge <unsquashed id> to <base id>" carries the
/// new layer. Nothing changes when the stage added no layer.
/// The merged layer is kept in the build cache (under a key of the base's and
/// the target's keys), so a rebuild with nothing changed does not diff again.
fn squash(
    (images, cache): (&Images, &Cache),
    base: &StageState,
    parent: &str,
    target: &mut StageState,
    (epoch, clamp): (i64, Option<i64>),
) -> Result<()> {
    let n = base.layers.len();
    if target.layers.len() <= n || target.layers[..n] != base.layers[..] {
        return Ok(());
    }
    let key = berth_content::Digest::of(
        format!("berth-squash\n{}\n{}\n{clamp:?}", base.key, target.key).as_bytes(),
    )
    .to_string();
    let layer = match cache.lookup(images, &key) {
        Some(e) => e.layer,
        None => {
            let layer = squashed_layer(images, base, target, clamp)?;
            let e = Entry { layer, chain: None };
            cache.record(images, &key, &e)?;
            e.layer
        }
    };
    let unsquashed = store::image_id(&target.config, &target.layers, epoch)?;
    let mut config = target.config.clone();
    let from = base.config.history.len();
    for h in config.history.iter_mut().skip(from) {
        h.empty_layer = true;
    }
    let mut layers = base.layers.clone();
    if let Some(l) = layer {
        layers.push(l);
        config.history.push(crate::config::History {
            created: Some(crate::config::rfc3339(epoch)),
            comment: Some(format!("merge {unsquashed} to {parent}")),
            ..Default::default()
        });
    }
    target.config = config;
    target.layers = layers;
    Ok(())
}

/// The difference between the target's tree and its base's, as a layer
/// (None: no difference); both are mounted from view snapshots meanwhile.
fn squashed_layer(
    images: &Images,
    base: &StageState,
    target: &StageState,
    clamp: Option<i64>,
) -> Result<Option<LayerDesc>> {
    let id = format!("berth-build-{}", &random_id()[..24]);
    let work = Scratch(images.root().join("tmp").join(&id));
    std::fs::create_dir_all(&work.0).map_err(io_err("create", &work.0))?;
    let owner = work.0.join(sweep::OWNER);
    std::fs::write(&owner, sweep::owner_stamp()).map_err(io_err("write", &owner))?;
    let top = Snap::prepare(images, format!("{id}-top"), target.chain.as_deref(), true)?;
    let top_m = Mounted::new(&top.mounts, &work.0.join("top"))?;
    let lower = match &base.chain {
        Some(c) => {
            let snap = Snap::prepare(images, format!("{id}-base"), Some(c), true)?;
            let m = Mounted::new(&snap.mounts, &work.0.join("base"))?;
            Some((m, snap))
        }
        None => None,
    };
    let empty = work.0.join("empty");
    std::fs::create_dir_all(&empty).map_err(io_err("create", &empty))?;
    let lower_path = lower.as_ref().map_or(empty.as_path(), |(m, _)| m.path());
    let layer = write_layer(images.content(), top_m.path(), Some(lower_path), clamp)?;
    if let Some((m, _snap)) = lower {
        m.unmount()?;
    }
    top_m.unmount()?;
    drop(top);
    Ok(layer)
}

/// The stage scheduler.
struct Run<'a> {
    plan: &'a Plan,
    plans: &'a BTreeMap<usize, StagePlan>,
    bases: &'a BTreeMap<String, StageState>,
    sh: &'a Shared<'a>,
}

impl Run<'_> {
    fn base_of(&self, i: usize, done: &BTreeMap<usize, StageState>) -> StageState {
        match self.plan.base(i) {
            Base::Scratch => StageState::scratch(),
            Base::Stage(s) => done.get(s).cloned().unwrap_or_else(StageState::scratch),
            Base::Image(img) => self
                .bases
                .get(img)
                .cloned()
                .unwrap_or_else(StageState::scratch),
        }
    }

    /// Build every stage the target needs, each on its own thread once its
    /// dependencies are built; events go to `progress` on this thread. The
    /// first failure cancels the other stages and is returned.
    fn stages(
        &self,
        stop: &Stop<'_>,
        progress: &mut dyn Progress,
    ) -> Result<BTreeMap<usize, StageState>> {
        let order = self.plan.order();
        let (tx, rx) = channel::<Msg>();
        let mut done: BTreeMap<usize, StageState> = BTreeMap::new();
        let mut started: Vec<usize> = Vec::new();
        let mut running = 0usize;
        let mut failed: Option<ExecError> = None;
        std::thread::scope(|scope| {
            loop {
                if failed.is_none() {
                    for &i in &order {
                        let deps = &self.plan.graph.nodes[i].deps;
                        if started.contains(&i) || !deps.iter().all(|d| done.contains_key(d)) {
                            continue;
                        }
                        started.push(i);
                        running += 1;
                        let base = self.base_of(i, &done);
                        let deps: BTreeMap<usize, StageState> = done
                            .iter()
                            .filter(|(k, _)| deps.contains(k))
                            .map(|(k, v)| (*k, v.clone()))
                            .collect();
                        let tx = tx.clone();
                        std::thread::Builder::new()
                            .name(format!("build-stage-{i}"))
                            .spawn_scoped(scope, move || {
                                let r = self.stage(i, base, &deps, tx.clone());
                                let _ = tx.send(Msg::Stage(i, Box::new(r)));
                            })
                            .map_err(|e| {
                                ExecError::Invalid(format!("cannot start a thread: {e}"))
                            })?;
                    }
                }
                if running == 0 {
                    break;
                }
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(Msg::Event(e)) => progress.event(&e),
                    Ok(Msg::Stage(i, r)) => {
                        running -= 1;
                        match *r {
                            Ok(st) => {
                                done.insert(i, st);
                            }
                            Err(e) => {
                                if failed.is_none() || matches!(failed, Some(ExecError::Cancelled))
                                {
                                    failed = Some(e);
                                }
                                self.sh.cancel.cancel();
                            }
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => progress.tick(),
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if let Err(e) = stop.check() {
                    if failed.is_none() || matches!(failed, Some(ExecError::Cancelled)) {
                        failed = Some(e);
                    }
                    self.sh.cancel.cancel();
                }
            }
            Ok::<(), ExecError>(())
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// Build stage `i` from `base`; `deps` are the stages it reads from.
    fn stage(
        &self,
        i: usize,
        base: StageState,
        deps: &BTreeMap<usize, StageState>,
        tx: Sender<Msg>,
    ) -> Result<StageState> {
        let sp = self
            .plans
            .get(&i)
            .ok_or_else(|| ExecError::Invalid(format!("stage {i} was not evaluated")))?;
        let s = &self.plan.stages.stages[i];
        let name = match &s.name {
            Some(n) => n.clone(),
            None => format!("stage-{i}"),
        };
        let texts: Vec<String> = s.commands.iter().map(|n| first_line(&n.original)).collect();
        let from = self
            .plan
            .dockerfile
            .instructions
            .iter()
            .find(|n| n.line == s.line)
            .map(|n| first_line(&n.original))
            .unwrap_or_else(|| format!("FROM {}", s.from.image));
        let mut ex = Executor {
            sh: self.sh,
            images: self.sh.images,
            context: self.sh.context,
            tx,
            stage: name,
            count: 1 + sp
                .config
                .history
                .len()
                .saturating_sub(base.config.history.len()),
            index: 0,
        };
        let id = ex.start(from, progress::StepKind::From);
        let result = (base.key != "scratch").then(|| short(&base.key).to_string());
        ex.done(id, Instant::now(), result);
        ex.stage(base, sp, &texts, deps)
    }
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

/// A stored image's config (as the builder reads it) and its layers.
fn config_and_layers(
    img: &berth_image::Image,
    name: &str,
) -> Result<(ImageConfig, Vec<LayerDesc>)> {
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
    Ok((config, layers))
}

/// An image of the store as a stage base: unpacked, with its layers and config.
fn base_image(images: &Images, name: &str) -> Result<StageState> {
    let img = images.resolve(name).map_err(|e| match e {
        berth_image::Error::NotFound(_) => ExecError::NoImage(name.to_string()),
        e => e.into(),
    })?;
    let chain = images.unpack(&img)?;
    let (config, layers) = config_and_layers(&img, name)?;
    Ok(StageState {
        key: img.id.clone(),
        chain,
        layers,
        config,
        keys: Vec::new(),
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
    fn send(&self, e: Event) {
        let _ = self.tx.send(Msg::Event(e));
    }

    /// A new vertex: its id.
    fn start(&mut self, text: String, kind: progress::StepKind) -> usize {
        self.index += 1;
        let id = self.sh.next_id.fetch_add(1, Ordering::SeqCst);
        self.send(Event::Start(StepInfo {
            id,
            stage: self.stage.clone(),
            index: self.index,
            count: self.count,
            text,
            kind,
        }));
        id
    }

    fn done(&self, id: usize, began: Instant, result: Option<String>) {
        self.send(Event::Done {
            id,
            elapsed: began.elapsed(),
            result,
        });
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
            self.sh.cancel.check()?;
            let began = Instant::now();
            match sp.steps.iter().find(|s| s.history_index == h) {
                Some(step) => {
                    let id = self.start(step.original.clone(), progress::StepKind::Exec);
                    let made = match self.step(&mut st, step, done, id) {
                        Ok(m) => m,
                        Err(e) => {
                            self.send(Event::Failed {
                                id,
                                message: e.to_string(),
                            });
                            return Err(e);
                        }
                    };
                    if let Some(e) = st.config.history.get_mut(h) {
                        e.empty_layer = !made;
                    }
                    self.done(id, began, Some(short(&st.key).to_string()));
                }
                None => {
                    let text = (h - first)
                        .checked_sub(triggers)
                        .and_then(|k| texts.get(k).cloned())
                        .unwrap_or_else(|| sp.config.history[h].created_by.clone());
                    let id = self.start(text, progress::StepKind::Meta);
                    let result = (st.key != "scratch").then(|| short(&st.key).to_string());
                    self.done(id, began, result);
                }
            }
        }
        Ok(st)
    }

    /// Run or reuse one step (vertex `id`); true when it made a layer.
    fn step(
        &mut self,
        st: &mut StageState,
        step: &Step,
        done: &BTreeMap<usize, StageState>,
        id: usize,
    ) -> Result<bool> {
        let keys = Keys {
            images: self.images,
            done,
        };
        let inputs = step_inputs(step, self.context, &keys)?;
        let key = cache_key(&st.key, step, &inputs);
        let lock = self.sh.locks.get(&key);
        let _held = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (hit, from_image) = match self.sh.no_cache {
            true => (None, false),
            false => match self.sh.cache.lookup(self.images, &key) {
                Some(e) => (Some(e), false),
                None => (self.sh.cache_from.find(self.images, st, step, &key)?, true),
            },
        };
        let entry = match hit {
            Some(e) => {
                self.sh.cached.fetch_add(1, Ordering::SeqCst);
                self.send(Event::Cached { id });
                if from_image {
                    // (the cache now holds it: kept even when the image goes)
                    self.sh.cache.record(self.images, &key, &e)?;
                }
                e
            }
            None => {
                self.sh.executed.fetch_add(1, Ordering::SeqCst);
                let e = self.execute(st, step, done, id)?;
                self.sh.cache.record(self.images, &key, &e)?;
                e
            }
        };
        let made = entry.layer.is_some();
        st.layers.extend(entry.layer);
        st.keys.push(cache_from::InlineKey {
            key: key.clone(),
            layer: made.then(|| st.layers.len() - 1),
        });
        st.key = key;
        st.chain = entry.chain;
        Ok(made)
    }

    fn execute(
        &mut self,
        st: &StageState,
        step: &Step,
        done: &BTreeMap<usize, StageState>,
        vertex: usize,
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
        let share = match (&step.kind, &style) {
            (StepKind::Copy(_), WhiteoutStyle::Overlay) => Some(share::Share::open(
                self.images.root(),
                &format!("{}\n{}", self.stage, step.original),
                &upper,
                rootfs.path(),
            )),
            _ => None,
        };
        let at = StepAt {
            work: &work.0,
            id: &id,
            vertex,
            share: share.as_ref(),
        };
        self.apply(step, &rootfs, &at, done)?;
        rootfs.unmount()?;
        if let Some(s) = &share {
            s.apply()?;
        }
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
        let layer = write_layer(
            self.images.content(),
            &upper,
            lower.as_deref(),
            self.sh.clamp,
        )?;
        drop(parent);
        let chain = match &layer {
            None => st.chain.clone(),
            Some(l) => {
                let c = next_chain(st.chain.as_deref(), &l.diff_id);
                if snap.commit(&c)? {
                    if let Some(s) = &share {
                        s.save();
                    }
                }
                Some(c)
            }
        };
        Ok(Entry { layer, chain })
    }

    fn apply(
        &mut self,
        step: &Step,
        rootfs: &Mounted,
        at: &StepAt<'_>,
        done: &BTreeMap<usize, StageState>,
    ) -> Result<()> {
        let (work, id, vertex) = (at.work, at.id, at.vertex);
        match &step.kind {
            StepKind::Copy(c) => self.copy(c, rootfs.path(), work, done, at.share),
            StepKind::Workdir(d) => {
                let owner = resolve_user(rootfs.path(), &step.user)?;
                mkdir_all(rootfs.path(), d, Some(owner)).map(|_| ())
            }
            StepKind::Run(r) => {
                self.send(Event::Running {
                    id: vertex,
                    container: short(&id[12..]).to_string(),
                });
                let bundle = work.join("bundle");
                std::fs::create_dir_all(&bundle).map_err(io_err("create", &bundle))?;
                let cache_dir = self.images.root().join("build-cache/mounts");
                let binds = self.bind_sources(r, work, done)?;
                let env = run::RunEnv {
                    spawner: self.sh.spawner.get()?,
                    id,
                    bundle: &bundle,
                    rootfs: rootfs.path(),
                    cache_dir: &cache_dir,
                    cancel: std::os::fd::AsFd::as_fd(&self.sh.cancel.rd),
                    secrets: self.sh.secrets,
                    binds: &binds.map,
                    opts: self.sh.run_opts,
                };
                let mut out = OutputEvents {
                    tx: &self.tx,
                    id: vertex,
                };
                run::run(&env, step, r, &mut out)?;
                drop(binds);
                Ok(())
            }
        }
    }
}

/// Where a step executes: its scratch directory, container id, vertex and
/// the files it may share with the previous run (COPY).
struct StepAt<'b> {
    work: &'b Path,
    id: &'b str,
    vertex: usize,
    share: Option<&'b share::Share>,
}

/// A RUN's output as [`Event::Output`]s.
struct OutputEvents<'a> {
    tx: &'a Sender<Msg>,
    id: usize,
}

impl Write for OutputEvents<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let _ = self.tx.send(Msg::Event(Event::Output {
            id: self.id,
            data: b.to_vec(),
        }));
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
