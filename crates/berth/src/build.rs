//! `berth build` / `berth image build`: a Dockerfile and a context directory
//! (or a tar stream on stdin) to a tagged image, built by berthd (`POST /build`).
//! The context directory is not copied: it is opened here and its descriptor passed
//! to the daemon, which reads it in place. Progress is docker's classic plain output
//! on stdout (BuildKit's displays with `--progress` or on a terminal); `-q` prints
//! only the id.

use anyhow::{bail, Context as _, Result};
use berth_build::eval::{BuildOptions, Platform};
use berth_client::{enc, Body};
use clap::{Args, Subcommand};
use std::io::{IsTerminal, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
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
    #[command(flatten)]
    run: Box<RunFlags>,
    /// The build context: a directory, or - for a tar stream on stdin
    context: String,
}

/// docker's container flags of `build`: what every RUN container gets.
#[derive(Args)]
struct RunFlags {
    /// Add a custom host-to-IP mapping (host:ip) to the RUN containers' /etc/hosts
    #[arg(long = "add-host", value_parser = add_host)]
    add_host: Vec<String>,
    /// Images to consider as cache sources (local images: RUN and WORKDIR steps whose history and layers below match; any step of one built with --build-arg BUILDKIT_INLINE_CACHE=1)
    #[arg(long = "cache-from")]
    cache_from: Vec<String>,
    /// Parent cgroup for the RUN containers
    #[arg(long = "cgroup-parent")]
    cgroup_parent: Option<String>,
    /// Compress the build context using gzip (accepted; the context is read in place, nothing is sent)
    #[arg(long)]
    compress: bool,
    /// Limit the CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period", default_value_t = 0)]
    cpu_period: i64,
    /// Limit the CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", default_value_t = 0)]
    cpu_quota: i64,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares", default_value_t = 0)]
    cpu_shares: i64,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Skip image verification (accepted; berth does not verify signatures)
    #[arg(long = "disable-content-trust", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", require_equals = true,
          action = clap::ArgAction::Set)]
    disable_content_trust: bool,
    /// Always remove intermediate containers (berth always removes its RUN containers)
    #[arg(long = "force-rm")]
    force_rm: bool,
    /// Container isolation technology (only default on Linux)
    #[arg(long)]
    isolation: Option<String>,
    /// Memory limit of the RUN containers
    #[arg(short = 'm', long, value_parser = memory)]
    memory: Option<i64>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", value_parser = memory_swap, allow_hyphen_values = true)]
    memory_swap: Option<i64>,
    /// Set the networking mode for the RUN instructions during build: default, none or host
    #[arg(long, default_value = "default")]
    network: String,
    /// Remove intermediate containers after a successful build (berth always removes its RUN containers)
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          require_equals = true, action = clap::ArgAction::Set)]
    rm: bool,
    /// Security options for the RUN containers: seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Size of /dev/shm of the RUN containers
    #[arg(long = "shm-size", value_parser = size)]
    shm_size: Option<i64>,
    /// Squash the layers of the final stage into one new layer on top of its base
    #[arg(long)]
    squash: bool,
    /// Ulimit options of the RUN containers (name=soft[:hard])
    #[arg(long, value_parser = ulimit)]
    ulimit: Vec<serde_json::Value>,
}

/// `--add-host` as docker's client checks and sends it (`name:ip`).
fn add_host(v: &str) -> std::result::Result<String, String> {
    let mut o = berth_build::exec::runopts::RunOptions::default();
    o.add_host(v).map_err(|e| e.to_string())?;
    let (name, ip) = o.extra_hosts.remove(0);
    Ok(format!("{name}:{ip}"))
}

/// docker's sizes (`64m`, `1g`, bytes).
fn size(v: &str) -> std::result::Result<i64, String> {
    berth_engine::record::parse_size(v)
        .map(|n| n as i64)
        .map_err(|_| {
            format!(
                "invalid size: {v:?}: use a number with an optional unit (b, k, m, g), e.g. 64m"
            )
        })
}

/// `--memory`: at least 6 MB.
fn memory(v: &str) -> std::result::Result<i64, String> {
    let n = size(v)?;
    if n < 6 << 20 {
        return Err(format!("{v}: the minimum memory limit allowed is 6MB"));
    }
    Ok(n)
}

/// `--memory-swap`: a size, or -1 for unlimited.
fn memory_swap(v: &str) -> std::result::Result<i64, String> {
    match v {
        "-1" => Ok(-1),
        _ => size(v),
    }
}

/// `--ulimit name=soft[:hard]` as docker's `{"Name","Soft","Hard"}`.
/// (checked against the builder's limits up front)
fn ulimit(v: &str) -> std::result::Result<serde_json::Value, String> {
    let u = crate::container::ulimit_entry(v)?;
    let (name, soft, hard) = (
        u["Name"].as_str().unwrap_or_default(),
        u["Soft"].as_i64().unwrap_or_default(),
        u["Hard"].as_i64().unwrap_or_default(),
    );
    berth_build::exec::runopts::RunOptions::ulimit(name, soft, hard).map_err(|e| e.to_string())?;
    Ok(u)
}

/// `--security-opt`: a seccomp profile file goes as its JSON (as docker's client
/// sends it for containers), the rest as given.
fn security_opt(v: &str) -> Result<String> {
    match v.split_once(['=', ':']) {
        Some(("seccomp", p)) if p != "unconfined" && !p.trim_start().starts_with('{') => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("--security-opt seccomp: cannot read the profile {p}"))?;
            Ok(format!("seccomp={text}"))
        }
        _ => Ok(v.to_string()),
    }
}

/// The container flags' query parameters, named and sent as docker's client does
/// (only what differs from the defaults).
fn run_query(r: &RunFlags, q: &mut Vec<String>) -> Result<()> {
    for s in &r.security_opt {
        q.push(format!("securityopt={}", enc(&security_opt(s)?)));
    }
    for h in &r.add_host {
        q.push(format!("extrahosts={}", enc(h)));
    }
    if !r.rm {
        q.push("rm=0".into());
    }
    for (k, on) in [("forcerm", r.force_rm), ("squash", r.squash)] {
        if on {
            q.push(format!("{k}=1"));
        }
    }
    let text = [
        (
            "isolation",
            r.isolation.as_deref().filter(|i| *i != "default"),
        ),
        ("cpusetcpus", r.cpuset_cpus.as_deref()),
        (
            "networkmode",
            Some(r.network.as_str()).filter(|n| *n != "default"),
        ),
        ("cpusetmems", r.cpuset_mems.as_deref()),
    ];
    for (k, v) in text {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            q.push(format!("{k}={}", enc(v)));
        }
    }
    let nums = [
        ("cpushares", r.cpu_shares),
        ("cpuquota", r.cpu_quota),
        ("cpuperiod", r.cpu_period),
        ("memory", r.memory.unwrap_or(0)),
        ("memswap", r.memory_swap.unwrap_or(0)),
    ];
    for (k, v) in nums {
        if v != 0 {
            q.push(format!("{k}={v}"));
        }
    }
    if let Some(p) = r.cgroup_parent.as_deref().filter(|p| !p.is_empty()) {
        q.push(format!("cgroupparent={}", enc(p)));
    }
    if let Some(s) = r.shm_size.filter(|s| *s != 0) {
        q.push(format!("shmsize={s}"));
    }
    if !r.ulimit.is_empty() {
        q.push(format!(
            "ulimits={}",
            enc(&serde_json::to_string(&r.ulimit)?)
        ));
    }
    if !r.cache_from.is_empty() {
        q.push(format!(
            "cachefrom={}",
            enc(&serde_json::to_string(&r.cache_from)?)
        ));
    }
    Ok(())
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
    run_query(&a.run, &mut q)?;
    for (k, on) in [("nocache", a.no_cache), ("pull", a.pull), ("q", quiet)] {
        if on {
            q.push(format!("{k}=1"));
        }
    }
    Ok(q.join("&"))
}

/// How the context goes to the daemon.
enum Upload {
    /// A tar stream (the context came on stdin), and the Dockerfile's name in it.
    Tar(Box<dyn Read + Send>, String),
    /// The context directory, opened here and passed as a descriptor (the daemon reads
    /// it in place), the Dockerfile's name in it, and berth's body: the Dockerfile's
    /// text when it is not in the context, and its ignore file.
    Dir(OwnedFd, String, serde_json::Value),
}

/// The context to send: a tar from stdin (`-`), else the directory itself.
fn context_upload(a: &BuildArgs) -> Result<Upload> {
    let df_name = a.file.clone().unwrap_or_else(|| "Dockerfile".into());
    if a.context == "-" {
        if df_name == "-" {
            bail!("cannot read both the context and the Dockerfile from stdin");
        }
        return Ok(Upload::Tar(Box::new(std::io::stdin()), df_name));
    }
    let dir = PathBuf::from(&a.context);
    let fd: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_directory())
        .open(&dir)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                anyhow::anyhow!("unable to prepare context: path {:?} not found", a.context)
            }
            _ => anyhow::anyhow!(
                "unable to prepare context: cannot open the directory {:?}: {e}",
                a.context
            ),
        })?
        .into();
    let mut body = serde_json::json!({});
    let name = match a.file.as_deref() {
        None => df_name,
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the Dockerfile from stdin")?;
            body["dockerfile"] = s.into();
            "Dockerfile".to_string()
        }
        Some(f) => {
            let p = std::fs::canonicalize(f)
                .with_context(|| format!("cannot read the Dockerfile {f}"))?;
            let d = std::fs::canonicalize(&dir)?;
            match p.strip_prefix(&d) {
                Ok(rel) => rel.to_string_lossy().into_owned(),
                Err(_) => {
                    body["dockerfile"] = std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read the Dockerfile {f}"))?
                        .into();
                    // docker's <Dockerfile>.dockerignore next to it wins
                    let mut ig = p.clone().into_os_string();
                    ig.push(".dockerignore");
                    if let Ok(t) = std::fs::read_to_string(&ig) {
                        body["ignore"] = t.into();
                    }
                    "Dockerfile".to_string()
                }
            }
        }
    };
    Ok(Upload::Dir(fd, name, body))
}

fn libc_o_directory() -> i32 {
    nix::fcntl::OFlag::O_DIRECTORY.bits()
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

/// The signal that interrupted the build (the daemon only sees the connection close).
static INTERRUPTED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

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
        if let Ok(Some(info)) = fd.read_signal() {
            let sig = Signal::try_from(info.ssi_signo as i32)
                .map_or_else(|_| "a signal".to_string(), |s| s.to_string());
            let _ = INTERRUPTED.set(sig);
            let _ = conn.shutdown(std::net::Shutdown::Write);
        }
    });
    Ok(())
}

/// `berth build`: the context directory goes to the daemon as a descriptor (a tar
/// from stdin goes as the body), `POST /build`; its output comes back as docker's JSON
/// lines.
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
    let upload = context_upload(a)?;
    let df = match &upload {
        Upload::Tar(_, df) | Upload::Dir(_, df, _) => df.clone(),
    };
    let q = build_query(a, &df, quiet)?;
    let mut headers = vec![("X-Registry-Config", "e30=".to_string())];
    if let Some(s) = secrets {
        headers.push(("X-Berth-Build-Secrets", s));
    }
    let path = format!("/build?{q}");
    let resp = match upload {
        Upload::Tar(mut body, _) => {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            c.request_with(
                "POST",
                &path,
                Body::Stream(&mut body, "application/x-tar"),
                &headers,
            )?
        }
        Upload::Dir(fd, _, body) => {
            headers.push(("X-Berth-Context", "fd".to_string()));
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let body = body.to_string();
            c.request_with_fd(
                "POST",
                &path,
                (body.as_bytes(), "application/json"),
                &headers,
                fd.as_fd(),
            )?
        }
    }
    .ok()?;
    forward_interrupts(resp.stream_handle()?)?;
    let shown = crate::progress::show_json_stream(resp.reader(), quiet);
    if let (Err(_), Some(sig)) = (&shown, INTERRUPTED.get()) {
        bail!("build interrupted by {sig}");
    }
    let (aux, _) = shown?;
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
