//! `POST /build`: the legacy builder protocol (`DOCKER_BUILDKIT=0 docker build`): options
//! in the query, docker's JSON lines back (`{"stream"}`, `{"aux":{"ID"}}`,
//! `{"error","errorDetail"}`).
//!
//! docker's container parameters (`extrahosts`, `networkmode`, `memory`, `memswap`,
//! `cpushares`, `cpuperiod`, `cpuquota`, `cpusetcpus`, `cpusetmems`, `shmsize`,
//! `ulimits`, `cgroupparent`, `securityopt`) apply to every RUN container and are
//! checked before the reply starts (a 400, the tar body drained first); `squash` and
//! `cachefrom` go to the builder; `rm`, `forcerm` and `isolation=default` are
//! accepted (RUN containers are always removed).
//!
//! The context comes one of two ways:
//! - a tar body (every Docker client), unpacked once into a scratch directory that is
//!   removed after the reply;
//! - berth's own (`X-Berth-Context: fd`): the client opens the context directory and
//!   passes the descriptor (`Expect: 100-continue`, then a small JSON body with the
//!   descriptor attached, see [`http::receive_fd_body`]), and the build reads the
//!   directory in place: nothing is copied. The body may carry the Dockerfile's text
//!   (from stdin or outside the context) and its ignore file.
//!
//! The build runs in this process, on the connection's thread (its stages on threads of
//! their own); RUN containers come from one helper process per daemon, `berthd
//! build-spawner` ([`Builds`]), started at the first RUN and shared by every build,
//! since forking from this multi-threaded daemon is not safe. A client that goes away
//! (or half-closes, as berth does on Ctrl-C) interrupts its build, which cleans up.

use super::{flag, lock, Conn, Ctx, Reply};
use crate::http::{self, BodyReader, Request};
use berth_build::context::Context;
use berth_build::eval::BuildOptions;
use berth_build::exec::progress::{self as bp, Progress};
use berth_build::exec::runopts::RunOptions;
use berth_build::exec::spawner::Spawner;
use berth_build::exec::{self, ExecError};
use berth_build::ignore::{read_patterns, Ignore};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What this module serves.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/build")];

/// The argument that makes berthd serve as the RUN helper of its builds.
pub const SPAWNER_ARG: &str = "build-spawner";

/// Whether `req` uploads a build context.
pub fn streams_body(req: &Request) -> bool {
    req.method == "POST" && req.path.trim_end_matches('/') == "/build"
}

/// Dispatch within this module; `None` when the route is not ours.
pub fn route(ctx: &Ctx, req: &Request, parts: &[&str], conn: &mut Conn) -> Option<Option<Reply>> {
    match (req.method.as_str(), parts) {
        ("POST", ["build"]) => Some(build(ctx, req, conn)),
        _ => None,
    }
}

/// The daemon's RUN helper, shared by its builds: started at the first RUN, started
/// again when it died.
#[derive(Default)]
pub struct Builds {
    spawner: Mutex<Option<Arc<Spawner>>>,
}

impl Builds {
    /// The running helper, or a new one (this executable with [`SPAWNER_ARG`]).
    fn spawner(&self, runtime_root: &Path) -> exec::Result<Arc<Spawner>> {
        let mut s = lock(&self.spawner);
        if let Some(sp) = s.as_ref().filter(|sp| sp.alive()) {
            return Ok(sp.clone());
        }
        // /proc/self/exe: this very program, even when its file was replaced meanwhile
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("/proc/self/exe");
        cmd.arg0(
            std::env::args_os()
                .next()
                .unwrap_or_else(|| "berthd".into()),
        )
        .arg(SPAWNER_ARG)
        .stdout(std::process::Stdio::null());
        let sp = Arc::new(Spawner::spawn(runtime_root, cmd)?);
        *s = Some(sp.clone());
        Ok(sp)
    }
}

/// `berthd build-spawner`'s main: serve the daemon's RUN requests on stdin until it
/// closes; the exit code.
pub fn serve_spawner() -> i32 {
    berth_build::exec::spawner::serve_stdin()
}

/// How the build's progress is shown (berth's `progress` parameter; docker clients get
/// the classic text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Classic,
    Plain,
    Tty,
}

/// A `POST /build` request, checked.
#[derive(Debug)]
struct Query {
    dockerfile: String,
    tags: Vec<String>,
    build_args: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    target: Option<String>,
    no_cache: bool,
    pull: bool,
    quiet: bool,
    mode: Mode,
    width: usize,
    /// The RUN containers' options (`extrahosts`, `networkmode`, `memory`…).
    run: RunOptions,
    squash: bool,
    /// `cachefrom`: local images whose steps the build may reuse.
    cache_from: Vec<String>,
}

/// A JSON object of strings from a query value (`buildargs`, `labels`); `null` values
/// (docker's "take it from the environment") are dropped.
fn json_map(req: &Request, k: &str) -> Result<BTreeMap<String, String>, String> {
    let Some(raw) = req.query.get(k).filter(|v| !v.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| format!("invalid {k} {raw:?}: {e}; send a JSON object of strings"))?;
    let Value::Object(o) = v else {
        return Err(format!(
            "invalid {k} {raw:?}: send a JSON object of strings"
        ));
    };
    let mut out = BTreeMap::new();
    for (key, val) in o {
        match val {
            Value::String(s) => {
                out.insert(key, s);
            }
            Value::Null => {}
            other => {
                return Err(format!(
                    "invalid {k}: the value of {key:?} must be a string, not {other}"
                ))
            }
        }
    }
    Ok(out)
}

/// The request's query, checked.
fn query(req: &Request) -> Result<Query, String> {
    if let Some(r) = req.query.get("remote").filter(|r| !r.is_empty()) {
        return Err(format!(
            "remote build contexts ({r}) are not supported: send the context as a tar"
        ));
    }
    let tags = req.query_all("t");
    for t in &tags {
        berth_image::Reference::parse(t).map_err(|e| format!("invalid tag {t:?}: {e}"))?;
    }
    let dockerfile = req
        .query
        .get("dockerfile")
        .filter(|d| !d.is_empty())
        .cloned()
        .unwrap_or_else(|| "Dockerfile".into());
    if dockerfile.starts_with('/') || dockerfile.split('/').any(|c| c == "..") {
        return Err(format!(
            "dockerfile {dockerfile:?} must be a path inside the build context"
        ));
    }
    if let Some(p) = req.query.get("platform").filter(|p| !p.is_empty()) {
        if !matches!(p.as_str(), "linux" | "linux/amd64") {
            return Err(format!(
                "platform {p} is not supported: berth builds linux/amd64 images"
            ));
        }
    }
    let mode = match req.query.get("progress").map(String::as_str) {
        None | Some("") | Some("classic") => Mode::Classic,
        Some("plain") => Mode::Plain,
        Some("tty") => Mode::Tty,
        Some(m) => return Err(format!("progress {m:?}: use classic, plain or tty")),
    };
    let cache_from = match req.query.get("cachefrom").filter(|c| !c.is_empty()) {
        None => Vec::new(),
        Some(raw) => serde_json::from_str(raw).map_err(|e| {
            format!("invalid cachefrom {raw:?}: {e}; send a JSON array of image names")
        })?,
    };
    match req.query.get("isolation").map(String::as_str) {
        None | Some("" | "default") => {}
        Some(i) => {
            return Err(format!(
                "Invalid isolation: {i:?} - linux only supports 'default'"
            ))
        }
    }
    Ok(Query {
        run: run_options(req)?,
        squash: flag(req, "squash"),
        cache_from,
        dockerfile,
        tags,
        build_args: json_map(req, "buildargs")?,
        labels: json_map(req, "labels")?,
        target: req.query.get("target").filter(|t| !t.is_empty()).cloned(),
        no_cache: flag(req, "nocache"),
        pull: flag(req, "pull"),
        quiet: flag(req, "q"),
        mode,
        width: req
            .query
            .get("width")
            .and_then(|w| w.parse::<u16>().ok())
            .map_or(80, usize::from),
    })
}

/// A number of the query (absent, empty or 0: unset, as docker's client sends 0).
fn number<T: std::str::FromStr + Default + PartialEq>(
    req: &Request,
    k: &str,
) -> Result<Option<T>, String> {
    match req.query.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            let n: T = v
                .parse()
                .map_err(|_| format!("invalid {k} {v:?}: send a whole number"))?;
            Ok(Some(n).filter(|n| *n != T::default()))
        }
    }
}

/// `securityopt=seccomp=…`: the profile's JSON as berth's client sends it, or
/// the path docker's client sends (read here: the daemon is on this machine).
fn security_opt(o: &mut RunOptions, opt: &str) -> Result<(), String> {
    if let Some(p) = opt
        .strip_prefix("seccomp=")
        .or_else(|| opt.strip_prefix("seccomp:"))
        .filter(|p| *p != "unconfined" && !p.trim_start().starts_with('{'))
    {
        if !p.starts_with('/') {
            return Err(format!(
                "--security-opt seccomp={p}: give the profile's absolute path (the daemon reads it)"
            ));
        }
        let text = std::fs::read_to_string(p)
            .map_err(|e| format!("--security-opt seccomp: cannot read the profile {p}: {e}"))?;
        return o
            .security_opt(&format!("seccomp={text}"))
            .map_err(|e| e.to_string());
    }
    o.security_opt(opt).map_err(|e| e.to_string())
}

/// The RUN containers' options from docker's `/build` parameters, checked against
/// this machine (limits it cannot honour fail before the build starts).
fn run_options(req: &Request) -> Result<RunOptions, String> {
    use berth_build::ast::NetworkMode;
    let mut o = RunOptions::default();
    for h in req.query_all("extrahosts") {
        // (docker's client sends each as a parameter; older ones comma-joined)
        for h in h.split(',').filter(|h| !h.is_empty()) {
            o.add_host(h).map_err(|e| e.to_string())?;
        }
    }
    for s in req.query_all("securityopt") {
        security_opt(&mut o, &s)?;
    }
    o.network = match req.query.get("networkmode").map(String::as_str) {
        None | Some("" | "default") => None,
        Some("none") => Some(NetworkMode::None),
        Some("host") => Some(NetworkMode::Host),
        Some(n) => {
            return Err(format!(
                "network mode {n:?} is not supported for builds: use default, none or host"
            ))
        }
    };
    o.memory = number(req, "memory")?;
    o.memory_swap = number(req, "memswap")?;
    o.cpu_shares = number(req, "cpushares")?;
    o.cpu_period = number(req, "cpuperiod")?;
    o.cpu_quota = number(req, "cpuquota")?;
    o.shm_size = number(req, "shmsize")?;
    let text = |k: &str| req.query.get(k).filter(|v| !v.is_empty()).cloned();
    o.cpuset_cpus = text("cpusetcpus");
    o.cpuset_mems = text("cpusetmems");
    o.cgroup_parent = text("cgroupparent");
    if let Some(raw) = text("ulimits") {
        let bad = |why: String| {
            format!("invalid ulimits {raw:?}: {why}; send [{{\"Name\",\"Soft\",\"Hard\"}}]")
        };
        let list: Value = serde_json::from_str(&raw).map_err(|e| bad(e.to_string()))?;
        for u in list.as_array().into_iter().flatten() {
            let (Some(name), Some(soft), Some(hard)) =
                (u["Name"].as_str(), u["Soft"].as_i64(), u["Hard"].as_i64())
            else {
                return Err(bad(format!("{u} lacks a Name, Soft or Hard")));
            };
            o.ulimits
                .push(RunOptions::ulimit(name, soft, hard).map_err(|e| e.to_string())?);
        }
    }
    o.check().map_err(|e| e.to_string())?;
    Ok(o)
}

/// Registry credentials of `X-Registry-Config` (base64 JSON `{"host": {"username",
/// "password"}}`) in a private credentials file under `dir`, for base-image pulls.
fn registry_options(req: &Request, dir: &Path) -> Result<berth_registry::Options, String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let creds = berth_registry::Credentials::new(dir.join("auth.json"));
    let opts = berth_registry::Options {
        credentials: creds.clone(),
        ..Default::default()
    };
    let Some(h) = req
        .headers
        .get("x-registry-config")
        .filter(|h| !h.trim().is_empty())
    else {
        return Ok(opts);
    };
    let raw = [URL_SAFE, URL_SAFE_NO_PAD, STANDARD]
        .iter()
        .find_map(|e| e.decode(h.trim()).ok())
        .ok_or("X-Registry-Config is not base64")?;
    let v: Map<String, Value> = serde_json::from_slice(&raw)
        .map_err(|e| format!("X-Registry-Config is not base64 of a JSON object: {e}"))?;
    for (host, a) in v {
        let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        if !s("username").is_empty() {
            let host = super::system::registry_host(&host);
            creds
                .set(&host, &s("username"), &s("password"))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(opts)
}

/// `X-Berth-Build-Secrets` (berth's own header: base64 JSON `{"id": base64(value)}`,
/// for `RUN --mount=type=secret`).
fn secrets(req: &Request) -> Result<BTreeMap<String, Vec<u8>>, String> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let mut out = BTreeMap::new();
    let Some(h) = req
        .headers
        .get("x-berth-build-secrets")
        .filter(|h| !h.trim().is_empty())
    else {
        return Ok(out);
    };
    let bad = |e: &dyn std::fmt::Display| {
        format!("X-Berth-Build-Secrets: {e}: send base64 of {{\"id\": base64(value)}}")
    };
    let raw = STANDARD.decode(h.trim()).map_err(|e| bad(&e))?;
    let v: Map<String, Value> = serde_json::from_slice(&raw).map_err(|e| bad(&e))?;
    for (id, val) in v {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(format!("secret id {id:?} is not a plain name"));
        }
        let data = STANDARD
            .decode(val.as_str().unwrap_or_default())
            .map_err(|e| bad(&e))?;
        out.insert(id, data);
    }
    Ok(out)
}

/// A scratch directory (an unpacked context, credentials), removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new scratch directory `<data-root>/tmp/build-<pid>-<n>`; those of daemons that
/// are gone are removed first.
fn scratch(ctx: &Ctx) -> Result<Scratch, String> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = ctx.data_root.join("tmp");
    if let Ok(rd) = std::fs::read_dir(&tmp) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("build-")
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !exec::sweep::process_alive(p)) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = tmp.join(format!("build-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(Scratch(dir))
}

/// The build context and the Dockerfile's text.
struct Source {
    context: Context,
    dockerfile: String,
}

/// berth's descriptor body: `{"dockerfile": text?, "ignore": text?}`, and the context
/// directory's descriptor.
fn from_fd(q: &Query, body: &[u8], fd: std::os::fd::OwnedFd) -> Result<Source, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!("the build request body is not JSON: {e}; send {{\"dockerfile\": …}}")
    })?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(String::from);
    let context = Context::from_dir(fd, Ignore::default())
        .map_err(|e| format!("cannot use the build context: {e}"))?;
    let context = match text("ignore") {
        Some(t) => Ignore::new(&read_patterns(&t))
            .map(|i| context.with_ignore(i))
            .map_err(|e| e.to_string()),
        // (a Dockerfile from outside the context: only the context's .dockerignore)
        None => {
            let df = text("dockerfile")
                .is_none()
                .then_some(q.dockerfile.as_str());
            context.load_ignore(df).map_err(|e| e.to_string())
        }
    }?;
    let dockerfile = match text("dockerfile") {
        Some(t) => t,
        None => read_dockerfile(&context, &q.dockerfile)?,
    };
    Ok(Source {
        context,
        dockerfile,
    })
}

/// The Dockerfile `name` of the context (symlinks resolved inside it).
fn read_dockerfile(context: &Context, name: &str) -> Result<String, String> {
    let b = context.read_file(name).map_err(|_| {
        format!("Cannot locate specified Dockerfile: {name} (it is not in the build context)")
    })?;
    String::from_utf8(b).map_err(|_| format!("the Dockerfile {name} is not UTF-8 text"))
}

/// A tar body (docker clients): unpacked once into `dir`.
fn from_tar(
    q: &Query,
    req: &Request,
    reader: &mut std::io::BufReader<UnixStream>,
    dir: &Path,
) -> Result<Source, String> {
    let body = BodyReader::new(reader, &req.headers).map_err(|e| e.to_string())?;
    let context = Context::from_tar(body, dir, Some(&q.dockerfile))
        .map_err(|e| format!("cannot read the build context: {e}"))?;
    let dockerfile = read_dockerfile(&context, &q.dockerfile)?;
    Ok(Source {
        context,
        dockerfile,
    })
}

/// Pull the images the build needs (bases and `--from` images) that the store lacks
/// (all of them with `pull`), before the build starts.
fn pull_bases(
    images: &berth_image::Images,
    req: &exec::Request,
    always: bool,
    registry: berth_registry::Options,
) -> Result<(), String> {
    use berth_build::plan::Plan;
    use berth_build::stages::Base;
    let plan = Plan::new(&req.dockerfile, req.options.clone(), req.target.as_deref())
        .map_err(|e| e.to_string())?;
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
    wanted.sort();
    wanted.dedup();
    let wanted: Vec<String> = wanted
        .into_iter()
        .filter(|img| always || images.resolve(img).is_err())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let client = berth_registry::Client::new(registry);
    for img in wanted {
        let r = berth_image::Reference::parse(&img).map_err(|e| e.to_string())?;
        client
            .pull(images, &img, &berth_content::NoProgress)
            .map_err(|e| format!("cannot pull the image {}: {e}", r.familiar()))?;
    }
    Ok(())
}

/// The reply stream of JSON messages: what was written up to its last newline goes
/// out as one chunk (docker-py fails on a chunk that is only the newline ending the
/// last message); a failed write means the client left, which stops the build.
struct Chunks<'a> {
    w: &'a UnixStream,
    gone: &'a AtomicBool,
    pending: Vec<u8>,
}

impl<'a> Chunks<'a> {
    fn new(w: &'a UnixStream, gone: &'a AtomicBool) -> Self {
        Self {
            w,
            gone,
            pending: Vec::new(),
        }
    }

    fn send(&mut self, upto: usize) {
        let msg: Vec<u8> = self.pending.drain(..upto).collect();
        if !self.gone.load(Ordering::SeqCst) && http::write_chunk(&mut self.w, &msg).is_err() {
            self.gone.store(true, Ordering::SeqCst);
        }
    }
}

impl Write for Chunks<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(b);
        if let Some(p) = self.pending.iter().rposition(|&c| c == b'\n') {
            self.send(p + 1);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Chunks<'_> {
    fn drop(&mut self) {
        self.send(self.pending.len());
    }
}

/// Text as docker's `{"stream"}` messages, one per line as docker sends them
/// (docker-py finds the image id in a message that is exactly `Successfully built ID`);
/// with `raw` (a terminal display, which redraws without newlines) what is pending goes
/// out at each flush. Whole UTF-8 characters per message.
struct StreamLines<'a> {
    out: Chunks<'a>,
    raw: bool,
    pending: Vec<u8>,
}

impl StreamLines<'_> {
    fn send(&mut self, text: String) {
        if !text.is_empty() {
            let msg = json!({ "stream": text });
            let _ = self.out.write_all(format!("{msg}\n").as_bytes());
        }
    }
}

impl Write for StreamLines<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(b);
        while let Some(p) = self.pending.iter().position(|&c| c == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=p).collect();
            let text = utf8_prefix(&mut line);
            self.send(text);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.raw {
            let text = utf8_prefix(&mut self.pending);
            self.send(text);
        }
        Ok(())
    }
}

impl Drop for StreamLines<'_> {
    fn drop(&mut self) {
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned();
        self.send(rest);
    }
}

/// The renderer for `mode` on the reply (nothing with `q`).
fn renderer<'a>(q: &Query, out: Chunks<'a>) -> Box<dyn Progress + 'a> {
    if q.quiet {
        return Box::new(bp::Quiet);
    }
    match q.mode {
        Mode::Classic => Box::new(bp::JsonLines::new(out)),
        Mode::Plain => Box::new(bp::Plain::new(StreamLines {
            out,
            raw: false,
            pending: Vec::new(),
        })),
        Mode::Tty => Box::new(bp::Tty::new(
            StreamLines {
                out,
                raw: true,
                pending: Vec::new(),
            },
            q.width,
        )),
    }
}

/// docker's error message for a failed build; a failed RUN carries its exit code,
/// which the docker CLI exits with (as with dockerd).
fn error_message(e: &ExecError) -> Value {
    let msg = e.to_string();
    let mut detail = json!({ "message": msg });
    if let ExecError::RunFailed { code, .. } = e {
        detail["code"] = json!(code);
    }
    json!({"errorDetail": detail, "error": msg})
}

/// The library's request from the query (SOURCE_DATE_EPOCH, docker's way of asking
/// for reproducible timestamps, comes as a build arg).
fn exec_request(q: &Query, dockerfile: String, req: &Request) -> Result<exec::Request, String> {
    let mut options = BuildOptions {
        created: BuildOptions::source_date_epoch(),
        build_args: q.build_args.clone(),
        labels: q.labels.clone(),
        ..BuildOptions::default()
    };
    if let Some(epoch) = options.build_args.remove("SOURCE_DATE_EPOCH") {
        options.created = epoch.trim().parse().ok();
    }
    Ok(exec::Request {
        dockerfile,
        options,
        target: q.target.clone(),
        tags: q.tags.clone(),
        no_cache: q.no_cache,
        secrets: secrets(req)?,
        run: q.run.clone(),
        squash: q.squash,
        cache_from: q.cache_from.clone(),
    })
}

/// What a build needs once its request is read.
struct Prepared {
    source: Source,
    images: berth_image::Images,
    breq: exec::Request,
    registry: berth_registry::Options,
}

/// The context (the descriptor's, else the tar body's), the image store, the library's
/// request and the registry options.
fn prepare(
    ctx: &Ctx,
    q: &Query,
    req: &Request,
    fd_body: Option<(Vec<u8>, std::os::fd::OwnedFd)>,
    reader: &mut std::io::BufReader<UnixStream>,
    scratch: &Path,
) -> Result<Prepared, String> {
    let source = match fd_body {
        Some((body, fd)) => from_fd(q, &body, fd)?,
        None => from_tar(q, req, reader, &scratch.join("context"))?,
    };
    let images =
        super::images::store(ctx).map_err(|r| String::from_utf8_lossy(&r.body).into_owned())?;
    let breq = exec_request(q, source.dockerfile.clone(), req)?;
    let registry = registry_options(req, scratch)?;
    Ok(Prepared {
        source,
        images,
        breq,
        registry,
    })
}

/// Read and drop a tar body we refuse (up to 1 GiB), so that a client that writes it
/// all before reading (docker's) gets our answer instead of a broken pipe.
fn drain(req: &Request, reader: &mut std::io::BufReader<UnixStream>) {
    if let Ok(body) = BodyReader::new(reader, &req.headers) {
        let _ = std::io::copy(
            &mut std::io::Read::take(body, 1 << 30),
            &mut std::io::sink(),
        );
    }
}

fn build(ctx: &Ctx, req: &Request, conn: &mut Conn) -> Option<Reply> {
    let by_fd = req
        .headers
        .get("x-berth-context")
        .is_some_and(|v| v.eq_ignore_ascii_case("fd"));
    let q = match query(req) {
        Ok(q) => q,
        Err(e) => {
            // (berth's client waits for 100 Continue: it has sent nothing yet)
            if !by_fd {
                drain(req, conn.reader);
            }
            return Some(Reply::error(400, e));
        }
    };
    let scratch = match scratch(ctx) {
        Ok(s) => s,
        Err(e) => return Some(Reply::error(500, e)),
    };
    // berth's descriptor comes before the reply starts (after a 100 Continue)
    let mut fd_body = None;
    if by_fd {
        let len = req
            .headers
            .get("content-length")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(0);
        match http::receive_fd_body(conn.reader, conn.writer, len) {
            Ok(b) => fd_body = Some(b),
            Err(e) => return Some(Reply::error(400, e)),
        }
    }
    let w = &*conn.writer;
    if http::start_chunked(&mut &*w, 200, "application/json").is_err() {
        return None;
    }
    // From here on errors are messages of the stream, as dockerd sends them.
    let result = prepare(ctx, &q, req, fd_body, &mut *conn.reader, &scratch.0)
        .map_err(ExecError::Invalid)
        .and_then(|p| {
            let sock = conn.reader.get_ref();
            let built = watched(sock, |gone| run(ctx, &q, &p, w, gone));
            drop(p); // the context's descriptor, before the end
            built
        });
    // Gone before the last message, so a client that reads it finds nothing left over.
    drop(scratch);
    finish(ctx, &q, w, result);
    None
}

/// Runs `build` while a thread watches `sock`: the flag it gets is set when the client
/// closes or half-closes the connection (berth does on Ctrl-C), which stops the build.
fn watched<T>(
    sock: &UnixStream,
    build: impl FnOnce(&AtomicBool) -> exec::Result<T>,
) -> exec::Result<T> {
    let gone = AtomicBool::new(false);
    let (done_rd, done_wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|error| ExecError::Sys {
            op: "create a pipe".into(),
            error,
        })?;
    std::thread::scope(|s| {
        let gone = &gone;
        s.spawn(move || watch_client(sock, &done_rd, gone));
        let r = build(gone);
        drop(done_wr); // the watcher sees the pipe close and ends
        r
    })
}

/// The reply's last messages: the id (and the tag events), or the error. A client that
/// half-closed still reads them; one that left gets nothing.
fn finish(ctx: &Ctx, q: &Query, w: &UnixStream, result: exec::Result<exec::Built>) {
    let still = AtomicBool::new(false);
    let mut out = Chunks::new(w, &still);
    let mut send = |v: Value| out.write_all(format!("{v}\n").as_bytes());
    match result {
        Ok(built) => {
            if q.quiet || q.mode != Mode::Classic {
                // (the classic renderer sent the aux message itself)
                let _ = send(json!({"aux": {"ID": built.id}}));
            }
            if q.quiet {
                let _ = send(json!({ "stream": format!("{}\n", built.id) }));
            }
            for t in &q.tags {
                ctx.events
                    .publish("image", "tag", &built.id, [("name", t.as_str())]);
            }
        }
        Err(e) => {
            let _ = send(error_message(&e));
        }
    }
    drop(out);
    let _ = http::end_chunked(&mut &*w);
}

/// Until `done` closes: when the client closes or half-closes `sock`, set `gone`.
fn watch_client(sock: &UnixStream, done: &std::os::fd::OwnedFd, gone: &AtomicBool) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    // Linux's POLLRDHUP (the peer shut its writing side down), which nix leaves out
    const POLLRDHUP: PollFlags = PollFlags::from_bits_retain(0x2000);
    loop {
        let mut fds = [
            PollFd::new(sock.as_fd(), POLLRDHUP),
            PollFd::new(done.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        // (nix reports events it has no name for, POLLRDHUP among them, as None)
        if fds[1].any() != Some(false) {
            return;
        }
        if fds[0].any() != Some(false) {
            gone.store(true, Ordering::SeqCst);
            return;
        }
    }
}

/// Pull what is missing, then build, rendering progress on `w`.
fn run(
    ctx: &Ctx,
    q: &Query,
    p: &Prepared,
    w: &UnixStream,
    gone: &AtomicBool,
) -> exec::Result<exec::Built> {
    let Prepared {
        source,
        images,
        breq,
        registry,
    } = p;
    pull_bases(images, breq, q.pull, registry.clone()).map_err(ExecError::Invalid)?;
    let mut progress = renderer(q, Chunks::new(w, gone));
    let runtime_root = ctx.engine.runtime_root().to_path_buf();
    let spawner = || ctx.builds.spawner(&runtime_root);
    let host = exec::Host {
        spawner: &spawner,
        stop: gone,
        stopped_by: "the client",
    };
    exec::build_hosted(
        images,
        &runtime_root,
        &source.context,
        breq,
        progress.as_mut(),
        &host,
    )
}

/// Takes the longest prefix of `b` that is whole UTF-8 (invalid bytes replaced),
/// leaving an incomplete trailing character for the next write.
fn utf8_prefix(b: &mut Vec<u8>) -> String {
    let keep = match std::str::from_utf8(b) {
        Ok(_) => 0,
        Err(e) if e.error_len().is_none() => b.len() - e.valid_up_to(),
        Err(_) => 0,
    };
    let rest = b.split_off(b.len() - keep);
    let text = String::from_utf8_lossy(b).into_owned();
    *b = rest;
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(q: &[(&str, &str)]) -> Request {
        let list: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Request {
            method: "POST".into(),
            path: "/build".into(),
            query: list.iter().cloned().collect(),
            query_list: list,
            ..Default::default()
        }
    }

    #[test]
    fn query_to_build_request() {
        let r = query(&req(&[
            ("t", "a:1"),
            ("t", "b"),
            ("buildargs", r#"{"V":"2","U":null}"#),
            ("nocache", "1"),
        ]))
        .expect("test input");
        assert_eq!(r.tags, ["a:1", "b"]);
        assert_eq!(r.build_args.get("V").map(String::as_str), Some("2"));
        assert_eq!(r.build_args.len(), 1);
        assert_eq!(r.dockerfile, "Dockerfile");
        assert!(r.no_cache);
        assert_eq!(r.mode, Mode::Classic);
    }

    #[test]
    fn container_flags_as_docker_sends_them() {
        let r = query(&req(&[
            ("extrahosts", "db:10.0.0.1"),
            ("extrahosts", "v6:fd00::1"),
            ("networkmode", "host"),
            ("memory", "67108864"),
            ("memswap", "-1"),
            ("cpushares", "0"),
            ("shmsize", "8388608"),
            ("ulimits", r#"[{"Name":"nofile","Hard":512,"Soft":256}]"#),
            ("securityopt", "no-new-privileges"),
            ("squash", "1"),
            ("rm", "0"),
            ("forcerm", "1"),
            ("cachefrom", r#"["base:1"]"#),
        ]))
        .expect("test input");
        let o = &r.run;
        assert_eq!(o.extra_hosts.len(), 2);
        assert_eq!(o.network, Some(berth_build::ast::NetworkMode::Host));
        assert_eq!((o.memory, o.memory_swap), (Some(64 << 20), Some(-1)));
        assert_eq!(o.cpu_shares, None, "docker's 0 is unset");
        assert_eq!(o.shm_size, Some(8 << 20));
        assert_eq!((o.ulimits[0].soft(), o.ulimits[0].hard()), (256, 512));
        assert!(o.no_new_privileges && r.squash);
        assert_eq!(r.cache_from, ["base:1"]);
    }

    #[test]
    fn build_errors_carry_the_run_status() {
        let e = error_message(&ExecError::RunFailed {
            command: "/bin/sh -c exit 3".into(),
            code: 3,
        });
        assert_eq!(e["errorDetail"]["code"], 3);
        assert_eq!(
            e["error"],
            "The command '/bin/sh -c exit 3' returned a non-zero code: 3"
        );
        assert!(
            error_message(&ExecError::Invalid("bad Dockerfile".into()))["errorDetail"]
                .get("code")
                .is_none()
        );
    }

    fn streams(raw: bool, writes: &[&[u8]], flush: bool) -> Vec<String> {
        let (a, b) = UnixStream::pair().expect("pair");
        let gone = AtomicBool::new(false);
        {
            let mut s = StreamLines {
                out: Chunks::new(&a, &gone),
                raw,
                pending: Vec::new(),
            };
            for w in writes {
                s.write_all(w).expect("write");
                if flush {
                    s.flush().expect("flush");
                }
            }
        }
        drop(a);
        let mut got = String::new();
        std::io::Read::read_to_string(&mut &b, &mut got).expect("read");
        got.split("\r\n")
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object) // not the chunk sizes
            .map(|v| v["stream"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn output_goes_out_a_line_per_message() {
        let out = b"Step 1/1 : FROM x\nSuccessfully built 0123\ntail";
        assert_eq!(
            streams(false, &[out], true),
            ["Step 1/1 : FROM x\n", "Successfully built 0123\n", "tail"]
        );
        // a terminal display's redraw goes out at its flush, cut at whole characters
        let e = "é".as_bytes();
        assert_eq!(
            streams(true, &[b"\x1b[1Aa", &e[..1], &e[1..]], true),
            ["\x1b[1Aa", "é"]
        );
    }

    #[test]
    fn a_client_that_half_closes_stops_the_build_and_done_ends_the_watch() {
        use std::os::fd::OwnedFd;
        let pipe = || -> (OwnedFd, OwnedFd) {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
        };
        // the build ends first: the watcher returns, the client is not gone
        let (a, _b) = UnixStream::pair().expect("pair");
        let gone = AtomicBool::new(false);
        let (rd, wr) = pipe();
        std::thread::scope(|s| {
            s.spawn(|| watch_client(&a, &rd, &gone));
            drop(wr);
        });
        assert!(!gone.load(Ordering::SeqCst));
        // the client half-closes (berth on Ctrl-C): gone
        let (a, b) = UnixStream::pair().expect("pair");
        let (rd, _wr) = pipe();
        b.shutdown(std::net::Shutdown::Write).expect("shutdown");
        watch_client(&a, &rd, &gone);
        assert!(gone.load(Ordering::SeqCst));
        // or goes away altogether
        let (a, b) = UnixStream::pair().expect("pair");
        let gone = AtomicBool::new(false);
        drop(b);
        watch_client(&a, &rd, &gone);
        assert!(gone.load(Ordering::SeqCst));
    }

    #[test]
    fn output_is_cut_at_whole_characters() {
        let mut b = "aé".as_bytes().to_vec();
        b.pop();
        assert_eq!(utf8_prefix(&mut b), "a");
        assert_eq!(b, [0xc3]);
        b.push(0xa9);
        assert_eq!(utf8_prefix(&mut b), "é");
        assert!(b.is_empty());
    }

    #[test]
    fn bad_build_queries_are_refused() {
        for q in [
            [("buildargs", "[1]")],
            [("buildargs", r#"{"V":1}"#)],
            [("t", "UPPER:case")],
            [("dockerfile", "../etc/passwd")],
            [("remote", "https://example.invalid/x.git")],
            [("platform", "windows/arm64")],
            [("progress", "rainbow")],
            [("networkmode", "bridge")],
            [("memory", "lots")],
            [("memswap", "1048576")],
            [("ulimits", r#"[{"Name":"nofile"}]"#)],
            [("extrahosts", "nohost")],
            [("securityopt", "seccomp=relative.json")],
            [("isolation", "hyperv")],
            [("cachefrom", "base:1")],
            [("cgroupparent", "a/../b")],
        ] {
            assert!(query(&req(&q)).is_err(), "{q:?}");
        }
    }
}
