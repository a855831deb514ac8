//! `berth build` / `berth image build`: a Dockerfile and a context directory
//! (or a tar stream on stdin) to a tagged image, through `berth_build::exec`.
//! Progress is docker's classic plain output on stdout; `-q` prints only the id.

use anyhow::{bail, Context as _, Result};
use berth_build::context::Context;
use berth_build::eval::{BuildOptions, Platform};
use berth_build::exec::Request;
use berth_build::plan::Plan;
use berth_build::stages::Base;
use berth_client::{enc, Body};
use clap::{Args, Subcommand};
use std::io::{IsTerminal, Read, Write};
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
    // SOURCE_DATE_EPOCH comes as a build arg (as BuildKit takes it): it sets the
    // image's timestamps and is not an ARG of the Dockerfile.
    if let Some(epoch) = opts.build_args.remove("SOURCE_DATE_EPOCH") {
        opts.created = epoch.trim().parse().ok();
    }
    opts.labels.extend(map("labels"));
    let df_name = v["dockerfile"].as_str().unwrap_or("Dockerfile").to_string();
    sweep_contexts(root);
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
        secrets: worker_secrets(a)?,
    };
    pull_bases(root, &req, v["pull"].as_bool().unwrap_or(false), true)?;
    let images = crate::image::open(root)?;
    let mode = v["progress"].as_str().unwrap_or("classic");
    let width = v["width"].as_u64().unwrap_or(80) as usize;
    // docker's classic text ends with "Successfully built ID" (docker-py reads the id
    // from it); BuildKit's displays do not
    use berth_build::exec::progress::{for_mode, Classic, Progress};
    let mut progress: Box<dyn Progress> = match mode {
        "classic" => Box::new(Classic::new(std::io::stdout()).with_summary(true)),
        m => for_mode(m, std::io::stdout(), m == "tty", width)
            .with_context(|| format!("unknown progress mode {m:?}"))?,
    };
    let built =
        berth_build::exec::build_with(&images, &runtime_root(), &ctx, &req, progress.as_mut())?;
    drop(progress);
    std::io::stdout().flush()?;
    std::fs::write(&a.iidfile, &built.id)
        .with_context(|| format!("cannot write {}", a.iidfile.display()))?;
    Ok(())
}

/// Removes the unpacked contexts of workers that died without cleaning up (killed).
fn sweep_contexts(root: &Path) {
    let Ok(rd) = std::fs::read_dir(root.join("tmp")) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("build-context-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The secrets the daemon wrote next to the request (`secrets/<id>`).
fn worker_secrets(a: &WorkerArgs) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    let dir = a.request.with_file_name("secrets");
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let data = std::fs::read(e.path())
                .with_context(|| format!("cannot read secret {}", e.path().display()))?;
            out.insert(e.file_name().to_string_lossy().into_owned(), data);
        }
    }
    Ok(out)
}

/// The build's query string (docker's `POST /build` parameters).
fn build_query(a: &BuildArgs, dockerfile: &str, quiet: bool) -> Result<String> {
    let mut opts = options(a)?;
    if let Some(epoch) = BuildOptions::source_date_epoch() {
        opts.build_args
            .entry("SOURCE_DATE_EPOCH".into())
            .or_insert(epoch.to_string());
    }
    let mut q = vec![format!("dockerfile={}", enc(dockerfile))];
    for t in &a.tags {
        q.push(format!("t={}", enc(t)));
    }
    q.push(format!(
        "buildargs={}",
        enc(&serde_json::to_string(&opts.build_args)?)
    ));
    q.push(format!(
        "labels={}",
        enc(&serde_json::to_string(&opts.labels)?)
    ));
    if let Some(t) = &a.target {
        q.push(format!("target={}", enc(t)));
    }
    if let Some(p) = &a.platform {
        q.push(format!("platform={}", enc(p)));
    }
    // BuildKit's displays where asked for (or on a terminal); docker's classic text
    // otherwise, which scripts and logs know.
    let tty = std::io::stdout().is_terminal();
    let mode = match a.progress.as_str() {
        "tty" => "tty",
        "plain" => "plain",
        "auto" if tty => "tty",
        _ => "classic",
    };
    q.push(format!("progress={mode}"));
    if mode == "tty" {
        let width = crate::attach::terminal_size().map_or(80, |(_, w)| w);
        q.push(format!("width={width}"));
    }
    for (k, on) in [("nocache", a.no_cache), ("pull", a.pull), ("q", quiet)] {
        if on {
            q.push(format!("{k}=1"));
        }
    }
    Ok(q.join("&"))
}

/// The context as a tar stream (written by a thread), and the Dockerfile's name in it:
/// a Dockerfile from stdin or outside the context travels inside the tar.
fn context_stream(a: &BuildArgs) -> Result<(Box<dyn Read + Send>, String)> {
    let df_name = a.file.clone().unwrap_or_else(|| "Dockerfile".into());
    if a.context == "-" {
        if df_name == "-" {
            bail!("cannot read both the context and the Dockerfile from stdin");
        }
        return Ok((Box::new(std::io::stdin()), df_name));
    }
    let dir = PathBuf::from(&a.context);
    if !dir.is_dir() {
        bail!("unable to prepare context: path {:?} not found", a.context);
    }
    // (name inside the context, or the text to add under a name of our own)
    let (name, extra) = match a.file.as_deref() {
        None => (df_name, None),
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            (".berth-dockerfile".to_string(), Some(s))
        }
        Some(f) => {
            let p = std::fs::canonicalize(f)
                .with_context(|| format!("cannot read the Dockerfile {f}"))?;
            let d = std::fs::canonicalize(&dir)?;
            match p.strip_prefix(&d) {
                Ok(rel) => (rel.to_string_lossy().into_owned(), None),
                Err(_) => (
                    ".berth-dockerfile".to_string(),
                    Some(
                        std::fs::read_to_string(&p)
                            .with_context(|| format!("cannot read the Dockerfile {f}"))?,
                    ),
                ),
            }
        }
    };
    let (r, w) = std::io::pipe()?;
    std::thread::spawn(move || {
        let mut t = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, w));
        t.follow_symlinks(false);
        t.mode(tar::HeaderMode::Complete);
        let mut go = || -> std::io::Result<()> {
            t.append_dir_all(".", &dir)?;
            if let Some(text) = &extra {
                let mut h = tar::Header::new_gnu();
                h.set_size(text.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                t.append_data(&mut h, ".berth-dockerfile", text.as_bytes())?;
            }
            t.finish()
        };
        if let Err(e) = go() {
            eprintln!(
                "Error: cannot send the build context {}: {e}",
                dir.display()
            );
        }
    });
    Ok((Box::new(r), name))
}

/// `--secret` values for the daemon (berth's `X-Berth-Build-Secrets` header).
fn secrets_header(a: &BuildArgs) -> Result<Option<String>> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    if a.secrets.is_empty() {
        return Ok(None);
    }
    let mut m = serde_json::Map::new();
    for spec in &a.secrets {
        let (id, data) = secret(spec)?;
        m.insert(id, STANDARD.encode(data).into());
    }
    Ok(Some(
        STANDARD.encode(serde_json::Value::Object(m).to_string()),
    ))
}

/// Ctrl-C (and SIGTERM) during a build: half-close the connection so the daemon
/// interrupts the build, which fails and cleans up; its error then ends our output.
fn forward_interrupts(conn: std::os::unix::net::UnixStream) -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;
    let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)?;
    std::thread::spawn(move || {
        if let Ok(Some(_)) = fd.read_signal() {
            let _ = conn.shutdown(std::net::Shutdown::Write);
        }
    });
    Ok(())
}

/// `berth build`: the context goes to the daemon as a tar (`POST /build`); its output
/// comes back as docker's JSON lines.
pub fn build(root: &Path, a: &BuildArgs) -> Result<()> {
    let quiet = a.quiet || a.progress == "quiet";
    if !["auto", "plain", "tty", "quiet"].contains(&a.progress.as_str()) {
        bail!("--progress {}: use auto, plain, tty or quiet", a.progress);
    }
    for t in &a.tags {
        berth_image::Reference::parse(t)
            .with_context(|| format!("invalid argument {t:?} for \"-t, --tag\" flag"))?;
    }
    let secrets = secrets_header(a)?;
    let c = crate::daemon::client(root)?;
    let (mut body, df) = context_stream(a)?;
    let q = build_query(a, &df, quiet)?;
    let mut headers = vec![("X-Registry-Config", "e30=".to_string())];
    if let Some(s) = secrets {
        headers.push(("X-Berth-Build-Secrets", s));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resp = c
        .request_with(
            "POST",
            &format!("/build?{q}"),
            Body::Stream(&mut body, "application/x-tar"),
            &headers,
        )?
        .ok()?;
    forward_interrupts(resp.stream_handle()?)?;
    let (aux, _) = crate::progress::show_json_stream(resp.reader(), quiet)?;
    let id = aux
        .iter()
        .find_map(|a| a["ID"].as_str().map(String::from))
        .context("the daemon did not report the built image's id")?;
    if let Some(p) = &a.iidfile {
        std::fs::write(p, &id).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if quiet {
        println!("{id}");
    }
    Ok(())
}
