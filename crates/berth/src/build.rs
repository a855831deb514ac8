//! `berth build` / `berth image build`: a Dockerfile and a context directory
//! (or a tar stream on stdin) to a tagged image, through `berth_build::exec`.
//! Progress is docker's classic plain output on stdout; `-q` prints only the id.

use anyhow::{bail, Context as _, Result};
use berth_build::context::Context;
use berth_build::eval::{BuildOptions, Platform};
use berth_build::exec::{build as exec_build, Request};
use berth_build::plan::Plan;
use berth_build::stages::Base;
use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// `berth image …`: build, plus the image commands.
#[derive(Subcommand)]
pub enum ImageCmd {
    /// Build an image from a Dockerfile
    Build(BuildArgs),
    #[command(flatten)]
    Other(crate::image::ImageCmd),
}

/// Runs an `image` subcommand.
pub fn image(root: &Path, cmd: ImageCmd) -> Result<()> {
    match cmd {
        ImageCmd::Build(a) => build(root, &a),
        ImageCmd::Other(c) => crate::image::run(root, c),
    }
}

/// Flags of `build`.
#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag); repeatable
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: PATH/Dockerfile; - reads stdin)
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// Set build-time variables (KEY=value, or KEY to take it from the environment)
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    no_cache: bool,
    /// Always pull the base and --from images (missing ones are pulled anyway)
    #[arg(long)]
    pull: bool,
    /// Suppress the build output and print the image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Set metadata for an image (KEY=value)
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Set the target platform (only linux/amd64)
    #[arg(long)]
    platform: Option<String>,
    /// Type of progress output: auto, plain, tty, quiet
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Secret to expose to RUN --mount=type=secret (id=ID,src=FILE or id=ID,env=VAR)
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// The build context: a directory, or - for a tar stream on stdin
    context: String,
}

fn runtime_root() -> PathBuf {
    std::env::var_os("BERTH_RUNTIME_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/berth/runtime"))
}

fn options(a: &BuildArgs) -> Result<BuildOptions> {
    let mut o = BuildOptions {
        created: BuildOptions::source_date_epoch(),
        ..BuildOptions::default()
    };
    if let Some(p) = &a.platform {
        let want = Platform::parse(p).map_err(|e| anyhow::anyhow!("--platform {p}: {e}"))?;
        if want.os != "linux" || want.arch != "amd64" {
            bail!("--platform {p} is not supported: berth builds for linux/amd64 only");
        }
        o.platform = want;
    }
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => o.build_args.insert(k.into(), v.into()),
            None => match std::env::var(b) {
                Ok(v) => o.build_args.insert(b.clone(), v),
                Err(_) => None,
            },
        };
    }
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        o.labels.insert(k.into(), v.into());
    }
    Ok(o)
}

/// `--secret id=ID[,src=FILE|,env=VAR]` (no source: the variable named ID).
fn secret(spec: &str) -> Result<(String, Vec<u8>)> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    for kv in spec.split(',') {
        match kv.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(v.to_string()),
            Some(("env", v)) => env = Some(v.to_string()),
            Some(("type", _)) => {}
            _ => bail!("--secret {spec:?}: use id=ID,src=FILE or id=ID,env=VAR"),
        }
    }
    let Some(id) = id else {
        bail!("--secret {spec:?}: id=ID is missing");
    };
    let data = match (src, env) {
        (Some(f), _) => {
            std::fs::read(&f).with_context(|| format!("cannot read secret file {f}"))?
        }
        (None, var) => {
            let var = var.unwrap_or_else(|| id.clone());
            std::env::var(&var)
                .with_context(|| format!("secret {id}: environment variable {var} is not set"))?
                .into_bytes()
        }
    };
    Ok((id, data))
}

/// A context directory unpacked from stdin, removed on drop.
struct TempContext(Option<PathBuf>);

impl Drop for TempContext {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn open_context(root: &Path, a: &BuildArgs) -> Result<(Context, String, TempContext)> {
    let df_name = a.file.clone().unwrap_or_else(|| "Dockerfile".into());
    if a.context == "-" {
        if df_name == "-" {
            bail!("cannot read both the context and the Dockerfile from stdin");
        }
        let dir = root
            .join("tmp")
            .join(format!("build-context-{}", std::process::id()));
        let guard = TempContext(Some(dir.clone()));
        let ctx = Context::from_tar(std::io::stdin().lock(), &dir, Some(&df_name))
            .context("cannot read the build context from stdin")?;
        let df = std::fs::read_to_string(dir.join(&df_name))
            .with_context(|| format!("cannot read the Dockerfile {df_name} in the context"))?;
        return Ok((ctx, df, guard));
    }
    let dir = PathBuf::from(&a.context);
    if !dir.is_dir() {
        bail!("unable to prepare context: path {:?} not found", a.context);
    }
    let (df_text, df_path) = if df_name == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        (s, None)
    } else {
        let p = if a.file.is_some() {
            PathBuf::from(&df_name)
        } else {
            dir.join(&df_name)
        };
        let t = std::fs::read_to_string(&p)
            .with_context(|| format!("cannot read the Dockerfile {}", p.display()))?;
        (t, Some(p))
    };
    let ctx = Context::open(&dir, df_path.as_deref()).context("cannot open the build context")?;
    Ok((ctx, df_text, TempContext(None)))
}

/// Pull the images the build needs (bases and `--from` images) that the
/// store lacks (all of them with `--pull`), before any RUN forks.
fn pull_bases(root: &Path, req: &Request, always: bool, quiet: bool) -> Result<()> {
    let plan = Plan::new(&req.dockerfile, req.options.clone(), req.target.as_deref())?;
    let images = crate::image::open(root)?;
    let mut wanted: Vec<String> = Vec::new();
    for i in plan.order() {
        if let Base::Image(img) = plan.base(i) {
            wanted.push(img.clone());
        }
        for (line, r) in plan.refs.get(i).map_or(&[][..], |r| &r.from_refs[..]) {
            if let Ok(None) = plan.stages.resolve_from(r, i, *line) {
                wanted.push(r.clone());
            }
        }
    }
    wanted.dedup();
    for img in wanted {
        if !always && images.resolve(&img).is_ok() {
            continue;
        }
        let r = berth_image::Reference::parse(&img)?;
        let progress = crate::progress::for_cli(quiet);
        berth_registry::Client::new(berth_registry::Options::default())
            .pull(&images, &img, progress.as_ref())
            .with_context(|| format!("cannot pull the image {}", r.familiar()))?;
    }
    Ok(())
}

/// What berthd asks of `berth build-worker` (it writes this JSON from the query of
/// `POST /build`); the context tar comes on stdin.
#[derive(Args)]
pub struct WorkerArgs {
    /// The request: {dockerfile, tags, build_args, labels, target, no_cache, pull}
    #[arg(long)]
    request: PathBuf,
    /// Where to write the image id
    #[arg(long)]
    iidfile: PathBuf,
}

/// `berth build-worker` (internal): one build for the daemon, in its own process
/// because RUN steps fork (the daemon is multi-threaded). Prints docker's classic
/// build output on stdout and the error on stderr.
pub fn worker(root: &Path, a: &WorkerArgs) -> Result<()> {
    let raw = std::fs::read(&a.request)
        .with_context(|| format!("cannot read the build request {}", a.request.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&raw).context("invalid build request")?;
    let strs = |k: &str| -> Vec<String> {
        v[k].as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(String::from))
            .collect()
    };
    let map = |k: &str| -> Vec<(String, String)> {
        v[k].as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, x)| Some((k.clone(), x.as_str()?.to_string())))
            .collect()
    };
    let mut opts = BuildOptions {
        created: BuildOptions::source_date_epoch(),
        ..BuildOptions::default()
    };
    opts.build_args.extend(map("build_args"));
    opts.labels.extend(map("labels"));
    let df_name = v["dockerfile"].as_str().unwrap_or("Dockerfile").to_string();
    let dir = root
        .join("tmp")
        .join(format!("build-context-{}", std::process::id()));
    let _guard = TempContext(Some(dir.clone()));
    let ctx = Context::from_tar(std::io::stdin().lock(), &dir, Some(&df_name))
        .context("cannot read the build context")?;
    let dockerfile = std::fs::read_to_string(dir.join(&df_name)).with_context(|| {
        format!("Cannot locate specified Dockerfile: {df_name} (it is not in the build context)")
    })?;
    let req = Request {
        dockerfile,
        options: opts,
        target: v["target"].as_str().map(String::from),
        tags: strs("tags"),
        no_cache: v["no_cache"].as_bool().unwrap_or(false),
        secrets: Default::default(),
    };
    pull_bases(root, &req, v["pull"].as_bool().unwrap_or(false), true)?;
    let images = crate::image::open(root)?;
    let mut out = std::io::stdout();
    let built = exec_build(&images, &runtime_root(), &ctx, &req, &mut out)?;
    out.flush()?;
    std::fs::write(&a.iidfile, &built.id)
        .with_context(|| format!("cannot write {}", a.iidfile.display()))?;
    Ok(())
}

/// `berth build`.
pub fn build(root: &Path, a: &BuildArgs) -> Result<()> {
    let quiet = a.quiet || a.progress == "quiet";
    if !["auto", "plain", "tty", "quiet"].contains(&a.progress.as_str()) {
        bail!("--progress {}: use auto, plain, tty or quiet", a.progress);
    }
    for t in &a.tags {
        berth_image::Reference::parse(t)
            .with_context(|| format!("invalid argument {t:?} for \"-t, --tag\" flag"))?;
    }
    let opts = options(a)?;
    let (ctx, dockerfile, _tmp) = open_context(root, a)?;
    let req = Request {
        dockerfile,
        options: opts,
        target: a.target.clone(),
        tags: a.tags.clone(),
        no_cache: a.no_cache,
        secrets: a.secrets.iter().map(|s| secret(s)).collect::<Result<_>>()?,
    };
    pull_bases(root, &req, a.pull, quiet)?;
    let images = crate::image::open(root)?;
    let mut sink = std::io::sink();
    let mut stdout = std::io::stdout();
    let out: &mut dyn Write = if quiet { &mut sink } else { &mut stdout };
    let built = exec_build(&images, &runtime_root(), &ctx, &req, out)?;
    if let Some(p) = &a.iidfile {
        std::fs::write(p, &built.id).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if quiet {
        println!("{}", built.id);
        return Ok(());
    }
    let short = built.id.trim_start_matches("sha256:");
    println!("Successfully built {}", &short[..short.len().min(12)]);
    for t in &a.tags {
        println!("Successfully tagged {t}");
    }
    Ok(())
}
