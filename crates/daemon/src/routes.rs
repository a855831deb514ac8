//! Routes of the Docker Engine API that berth serves: each turns a request into an
//! engine call and its result into docker's JSON (STYLE habit 6: no HTTP in the engine).

use crate::http::Request;
use berth_engine::{CreateOptions, Engine, NetworkMode, State, Summary};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A reply: status, content type and body.
pub struct Reply {
    /// HTTP status
    pub status: u16,
    /// Content-Type
    pub content_type: &'static str,
    /// body
    pub body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
        }
    }
    fn empty(status: u16) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            body: Vec::new(),
        }
    }
    /// docker's error shape: `{"message": …}`
    pub fn error(status: u16, msg: impl std::fmt::Display) -> Reply {
        Reply::json(status, &json!({ "message": msg.to_string() }))
    }
}

/// What the routes need.
pub struct Ctx {
    /// the engine
    pub engine: Engine,
    /// the data root (for the image store)
    pub data_root: PathBuf,
    /// containers created with AutoRemove: the daemon removes them after their exit
    /// (as dockerd does), so it can still report their exit status
    auto_remove: Mutex<HashSet<String>>,
    /// exit codes of auto-removed containers, for `wait?condition=removed`
    exited: Mutex<HashMap<String, i32>>,
}

impl Ctx {
    /// Routes over `engine`, with images under `data_root`.
    pub fn new(engine: Engine, data_root: PathBuf) -> Arc<Ctx> {
        Arc::new(Ctx {
            engine,
            data_root,
            auto_remove: Mutex::default(),
            exited: Mutex::default(),
        })
    }
}

fn engine_error(e: berth_engine::Error) -> Reply {
    use berth_engine::Error as E;
    let status = match &e {
        E::NotFound(_) => 404,
        E::Image(berth_image::Error::NotFound(_)) => 404,
        E::NameInUse { .. } | E::Conflict(_) => 409,
        E::Invalid(_) | E::Ambiguous(_) => 400,
        _ => 500,
    };
    Reply::error(status, e)
}

fn flag(req: &Request, k: &str) -> bool {
    req.query
        .get(k)
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Every (method, path template) we serve; `{id}` stands for a container. Kept in step
/// with the dispatcher and with api/openapi.yaml by the tests below.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/_ping"),
    ("HEAD", "/_ping"),
    ("GET", "/version"),
    ("GET", "/info"),
    ("GET", "/containers/json"),
    ("POST", "/containers/create"),
    ("GET", "/containers/{id}/json"),
    ("POST", "/containers/{id}/start"),
    ("POST", "/containers/{id}/wait"),
    ("POST", "/containers/{id}/attach"),
    ("POST", "/containers/{id}/stop"),
    ("POST", "/containers/{id}/kill"),
    ("DELETE", "/containers/{id}"),
    ("GET", "/containers/{id}/logs"),
    ("GET", "/images/json"),
];

/// Dispatch one request.
pub fn route(ctx: &Arc<Ctx>, req: &Request) -> Reply {
    if let Some(v) = &req.version {
        let ok = v.split('.').nth(1).and_then(|m| m.parse::<u32>().ok());
        match ok {
            Some(minor) if minor > 45 => {
                return Reply::error(400, format!("client version {v} is too new. Maximum supported API version is {}", crate::API_VERSION))
            }
            Some(minor) if minor < 24 => {
                return Reply::error(400, format!("client version {v} is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"))
            }
            Some(_) => {}
            None => return Reply::error(400, format!("invalid API version {v:?}")),
        }
    }
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let m = req.method.as_str();
    match (m, parts.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => Reply {
            status: 200,
            content_type: "text/plain",
            body: b"OK".to_vec(),
        },
        ("GET", ["version"]) => Reply::json(200, &version()),
        ("GET", ["info"]) => info(ctx),
        ("GET", ["containers", "json"]) => list(ctx, flag(req, "all")),
        ("POST", ["containers", "create"]) => create(ctx, req),
        ("GET", ["containers", id, "json"]) => inspect(ctx, id),
        ("POST", ["containers", id, "start"]) => start(ctx, id),
        ("POST", ["containers", id, "stop"]) => {
            let t = req
                .query
                .get("t")
                .and_then(|t| t.parse().ok())
                .map(std::time::Duration::from_secs);
            done(ctx.engine.stop(id, t).map(|_| ()))
        }
        ("POST", ["containers", id, "kill"]) => {
            let sig = req
                .query
                .get("signal")
                .cloned()
                .unwrap_or_else(|| "KILL".into());
            done(ctx.engine.kill(id, &sig).map(|_| ()))
        }
        ("DELETE", ["containers", id]) => {
            done(ctx.engine.remove(id, flag(req, "force"), flag(req, "v")))
        }
        ("GET", ["containers", id, "logs"]) => logs(ctx, id, req),
        ("GET", ["images", "json"]) => images(ctx),
        _ => Reply::error(404, format!("page not found: {} {}", req.method, req.path)),
    }
}

fn done(r: berth_engine::Result<()>) -> Reply {
    match r {
        Ok(()) => Reply::empty(204),
        Err(e) => engine_error(e),
    }
}

fn version() -> Value {
    let uts = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": env!("CARGO_PKG_VERSION"), "Details": {"ApiVersion": crate::API_VERSION, "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64", "KernelVersion": uts.trim()}}],
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": crate::API_VERSION,
        "MinAPIVersion": "1.24",
        "GitCommit": "berth",
        "GoVersion": "none (Rust)",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": uts.trim(),
        "BuildTime": ""
    })
}

fn info(ctx: &Ctx) -> Reply {
    let all = ctx.engine.list(true).unwrap_or_default();
    let running = all
        .iter()
        .filter(|s| s.state == State::Running && !s.paused)
        .count();
    let paused = all.iter().filter(|s| s.paused).count();
    let images = berth_image::Images::open(&ctx.data_root)
        .and_then(|i| i.list())
        .map(|l| l.len())
        .unwrap_or(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    Reply::json(
        200,
        &json!({
            "ID": "berth", "Containers": all.len(), "ContainersRunning": running,
            "ContainersPaused": paused, "ContainersStopped": all.len() - running - paused,
            "Images": images, "Driver": "overlayfs", "DriverStatus": [],
            "DockerRootDir": ctx.data_root, "Name": host.trim(), "ServerVersion": env!("CARGO_PKG_VERSION"),
            "OperatingSystem": "linux", "OSType": "linux", "Architecture": "x86_64",
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "MemTotal": 0, "KernelVersion": kernel.trim(), "CgroupDriver": "cgroupfs",
            "CgroupVersion": if v2 { "2" } else { "1" }, "LoggingDriver": "json-file",
            "Runtimes": {"berth": {"path": "berth-runtime"}}, "DefaultRuntime": "berth",
            "SecurityOptions": ["name=seccomp,profile=berth"], "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Log": ["json-file"]},
            "Labels": [], "ExperimentalBuild": false, "Swarm": {"LocalNodeState": "inactive"}, "Warnings": []
        }),
    )
}

fn unix(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

fn status_text(s: &Summary) -> (&'static str, String) {
    match s.state {
        State::Running if s.paused => ("paused", "Up (Paused)".into()),
        State::Running => ("running", "Up".into()),
        State::Created => ("created", "Created".into()),
        State::Exited(c) => ("exited", format!("Exited ({c})")),
        State::Dead => ("dead", "Dead".into()),
    }
}

fn list(ctx: &Ctx, all: bool) -> Reply {
    let l = match ctx.engine.list(all) {
        Ok(l) => l,
        Err(e) => return engine_error(e),
    };
    let rows: Vec<Value> = l
        .iter()
        .map(|s| {
            let r = &s.record;
            let (state, status) = status_text(s);
            let cmd = std::iter::once(r.path.clone()).chain(r.args.iter().cloned()).collect::<Vec<_>>().join(" ");
            json!({
                "Id": r.id, "Names": [format!("/{}", r.name)], "Image": r.options.image, "ImageID": "",
                "Command": cmd, "Created": unix(&r.created), "State": state, "Status": status,
                "Ports": [], "Labels": r.options.labels, "Mounts": [],
                "HostConfig": {"NetworkMode": if r.options.network == NetworkMode::Host { "host" } else { "none" }},
                "NetworkSettings": {"Networks": {}}
            })
        })
        .collect();
    Reply::json(200, &Value::Array(rows))
}

fn inspect(ctx: &Ctx, id: &str) -> Reply {
    let s = match ctx.engine.inspect(id) {
        Ok(s) => s,
        Err(e) => return engine_error(e),
    };
    let r = &s.record;
    let (state, _) = status_text(&s);
    let code = match s.state {
        State::Exited(c) => c,
        _ => 0,
    };
    Reply::json(
        200,
        &json!({
            "Id": r.id, "Name": format!("/{}", r.name), "Created": r.created, "Path": r.path, "Args": r.args,
            "State": {"Status": state, "Running": s.state == State::Running, "Paused": s.paused,
                "Restarting": false, "OOMKilled": false, "Dead": s.state == State::Dead,
                "Pid": if s.state == State::Running { r.pid.unwrap_or(0) } else { 0 }, "ExitCode": code,
                "Error": "", "StartedAt": r.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "FinishedAt": s.exit.as_ref().map(|e| e.finished_at.clone()).unwrap_or_else(|| "0001-01-01T00:00:00Z".into())},
            "Image": r.options.image, "LogPath": ctx.engine.log_path(&r.id),
            "Config": {"Hostname": r.id.get(..12).unwrap_or(&r.id), "Image": r.options.image, "Cmd": r.args,
                "Env": r.options.env, "Tty": r.options.tty, "OpenStdin": r.options.interactive,
                "Labels": r.options.labels, "WorkingDir": r.options.workdir.clone().unwrap_or_default(), "User": r.options.user.clone().unwrap_or_default()},
            "HostConfig": {"AutoRemove": r.options.auto_remove, "Memory": r.options.memory.unwrap_or(0),
                "PidsLimit": r.options.pids_limit, "NetworkMode": if r.options.network == NetworkMode::Host { "host" } else { "none" },
                "ReadonlyRootfs": r.options.read_only},
            "Mounts": [], "NetworkSettings": {"Networks": {}}
        }),
    )
}

/// The docker create body → engine options. Unknown fields are ignored, as docker does.
fn create_options(body: &Value, name: Option<String>) -> Result<CreateOptions, String> {
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    let image = body["Image"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("Image: required (the image to run)")?;
    let hc = &body["HostConfig"];
    let mut o = CreateOptions {
        image: image.to_string(),
        name,
        ..Default::default()
    };
    o.cmd = strings(&body["Cmd"]);
    let ep = strings(&body["Entrypoint"]);
    if !ep.is_empty() {
        o.entrypoint = Some(ep.join(" "));
    }
    o.env = strings(&body["Env"]);
    o.workdir = body["WorkingDir"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(String::from);
    o.user = body["User"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(String::from);
    o.hostname = body["Hostname"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(String::from);
    o.tty = body["Tty"].as_bool().unwrap_or(false);
    o.interactive = body["OpenStdin"].as_bool().unwrap_or(false);
    if let Some(l) = body["Labels"].as_object() {
        o.labels = l
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
    }
    o.memory = hc["Memory"].as_i64().filter(|m| *m > 0);
    o.pids_limit = hc["PidsLimit"].as_i64().filter(|p| *p > 0);
    o.read_only = hc["ReadonlyRootfs"].as_bool().unwrap_or(false);
    o.auto_remove = hc["AutoRemove"].as_bool().unwrap_or(false);
    o.network = match hc["NetworkMode"].as_str().unwrap_or("default") {
        "host" => NetworkMode::Host,
        "none" | "default" | "" | "bridge" => NetworkMode::None,
        other => {
            return Err(format!(
                "HostConfig.NetworkMode: network {other:?} is not supported yet: use none or host"
            ))
        }
    };
    Ok(o)
}

fn create(ctx: &Ctx, req: &Request) -> Reply {
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return Reply::error(400, format!("invalid JSON body: {e}")),
    };
    if !body.is_object() {
        return Reply::error(400, "invalid JSON body: expected an object");
    }
    let name = req.query.get("name").filter(|n| !n.is_empty()).cloned();
    let mut opts = match create_options(&body, name) {
        Ok(o) => o,
        Err(m) => return Reply::error(400, m),
    };
    let auto_remove = std::mem::take(&mut opts.auto_remove);
    match ctx.engine.create(&opts) {
        Ok(id) => {
            if auto_remove {
                lock(&ctx.auto_remove).insert(id.clone());
            }
            Reply::json(201, &json!({"Id": id, "Warnings": []}))
        }
        Err(berth_engine::Error::Image(berth_image::Error::NotFound(_))) => {
            Reply::error(404, format!("No such image: {}", opts.image))
        }
        Err(e) => engine_error(e),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn start(ctx: &Arc<Ctx>, id: &str) -> Reply {
    let full = match ctx.engine.inspect(id) {
        Ok(s) if s.state == State::Running => return Reply::empty(304),
        Ok(s) => s.record.id,
        Err(e) => return engine_error(e),
    };
    if let Err(e) = ctx.engine.start_existing(&full, false) {
        return engine_error(e);
    }
    if lock(&ctx.auto_remove).remove(&full) {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            if let Ok(code) = ctx.engine.wait(&full) {
                lock(&ctx.exited).insert(full.clone(), code);
            }
            let _ = ctx.engine.remove(&full, true, true);
        });
    }
    Reply::empty(204)
}

/// The container id of `POST /containers/{id}/{verb}`, for the routes that answer on
/// the connection itself.
fn streamed_container<'a>(req: &'a Request, verb: &str) -> Option<&'a str> {
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["containers", id, v] if req.method == "POST" && *v == verb => Some(id),
        _ => None,
    }
}

/// `POST /containers/{id}/wait`, answered by [`wait_streaming`].
pub fn is_wait(req: &Request) -> bool {
    streamed_container(req, "wait").is_some()
}

/// Headers now, `{"StatusCode": …}` once the container has exited.
pub fn wait_streaming(
    ctx: &Ctx,
    req: &Request,
    w: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let id = streamed_container(req, "wait").unwrap_or_default();
    if let Err(e) = ctx.engine.inspect(id) {
        let r = engine_error(e);
        return crate::http::respond(w, r.status, r.content_type, &r.body);
    }
    write!(
        w,
        "HTTP/1.1 200 OK\r\nApi-Version: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        crate::API_VERSION
    )?;
    w.flush()?;
    let removed = req.query.get("condition").is_some_and(|c| c == "removed");
    let body = match wait_exit(ctx, id, removed) {
        Ok(code) => json!({"StatusCode": code, "Error": null}),
        Err(e) => json!({"StatusCode": -1, "Error": {"Message": e.to_string()}}),
    };
    w.write_all(body.to_string().as_bytes())?;
    w.flush()
}

/// Poll until the container has exited (and, for `removed`, is gone). Polling here
/// rather than engine.wait keeps the exit code of an --rm container that its
/// supervisor removes right after the exit.
fn wait_exit(ctx: &Ctx, id: &str, removed: bool) -> berth_engine::Result<i32> {
    let id = ctx.engine.resolve(id)?;
    let mut code = None;
    loop {
        match ctx.engine.inspect(&id) {
            Ok(s) => match s.state {
                State::Exited(c) if !removed => return Ok(c),
                State::Exited(c) => code = Some(c),
                State::Dead => {
                    return Err(berth_engine::Error::Conflict(format!(
                        "container {} is dead: its exit status is unknown",
                        &id[..12.min(id.len())]
                    )))
                }
                State::Running | State::Created => {}
            },
            Err(berth_engine::Error::NotFound(_)) => {
                let known = code.or_else(|| lock(&ctx.exited).get(&id).copied());
                return known.ok_or_else(|| {
                    berth_engine::Error::Conflict(
                        "container was removed before its exit status was seen".into(),
                    )
                });
            }
            Err(e) => return Err(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `POST /containers/{id}/attach`: upgrade the connection and stream the container's
/// output (multiplexed frames without a TTY, raw with one) until it exits. It follows
/// the container's json log, which its supervisor writes. Stdin is not forwarded yet.
pub fn is_attach(req: &Request) -> bool {
    streamed_container(req, "attach").is_some()
}

/// Serve an attach on the hijacked connection.
pub fn attach_streaming(
    ctx: &Ctx,
    req: &Request,
    w: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let id = streamed_container(req, "attach").unwrap_or_default();
    let s = match ctx.engine.inspect(id) {
        Ok(s) => s,
        Err(e) => {
            let r = engine_error(e);
            return crate::http::respond(w, r.status, r.content_type, &r.body);
        }
    };
    let tty = s.record.options.tty;
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    write!(w, "HTTP/1.1 101 UPGRADED\r\nContent-Type: {ct}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nApi-Version: {}\r\n\r\n", crate::API_VERSION)?;
    w.flush()?;
    let (want_out, want_err) = (flag(req, "stdout"), flag(req, "stderr"));
    let log = ctx.engine.log_path(&s.record.id);
    let mut sent = 0;
    loop {
        let running = ctx
            .engine
            .inspect(id)
            .is_ok_and(|s| matches!(s.state, State::Running | State::Created));
        let entries = berth_engine::logs::read(&log).unwrap_or_default();
        for e in entries.iter().skip(sent) {
            let is_err = e.stream == "stderr";
            if (is_err && want_err) || (!is_err && want_out) {
                w.write_all(&frame(tty, is_err, e.log.as_bytes()))?;
            }
        }
        sent = sent.max(entries.len());
        w.flush()?;
        if !running {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// One frame of docker's stream: raw with a TTY, else an 8-byte header
/// `[stream, 0, 0, 0, len (u32 big endian)]` and the payload.
fn frame(tty: bool, is_err: bool, data: &[u8]) -> Vec<u8> {
    if tty {
        return data.to_vec();
    }
    let mut f = Vec::with_capacity(8 + data.len());
    f.push(if is_err { 2 } else { 1 });
    f.extend_from_slice(&[0, 0, 0]);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// Logs as docker's multiplexed stream (8-byte frame headers) for non-tty containers.
fn logs(ctx: &Ctx, id: &str, req: &Request) -> Reply {
    let s = match ctx.engine.inspect(id) {
        Ok(s) => s,
        Err(e) => return engine_error(e),
    };
    let entries = match berth_engine::logs::read(&ctx.engine.log_path(&s.record.id)) {
        Ok(e) => e,
        Err(e) => return engine_error(e),
    };
    let (want_out, want_err) = (flag(req, "stdout"), flag(req, "stderr"));
    let tail: Option<usize> = req.query.get("tail").and_then(|t| t.parse().ok());
    let skip = tail.map(|t| entries.len().saturating_sub(t)).unwrap_or(0);
    let mut body = Vec::new();
    for e in entries.iter().skip(skip) {
        let is_err = e.stream == "stderr";
        if (is_err && !want_err) || (!is_err && !want_out) {
            continue;
        }
        body.extend_from_slice(&frame(s.record.options.tty, is_err, e.log.as_bytes()));
    }
    let ct = if s.record.options.tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Reply {
        status: 200,
        content_type: ct,
        body,
    }
}

fn images(ctx: &Ctx) -> Reply {
    let list = match berth_image::Images::open(&ctx.data_root).and_then(|i| i.list()) {
        Ok(l) => l,
        Err(e) => return Reply::error(500, e),
    };
    let rows: Vec<Value> = list
        .iter()
        .map(|i| json!({
            "Id": i.id, "ParentId": "", "RepoTags": i.tags, "RepoDigests": i.repo_digests,
            "Created": i.created.as_deref().map(unix).unwrap_or(0), "Size": i.size, "VirtualSize": i.size,
            "SharedSize": -1, "Labels": {}, "Containers": i.containers
        }))
        .collect();
    Reply::json(200, &Value::Array(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = include_str!("../api/openapi.yaml");

    /// (method, path) pairs listed under `paths:` in the OpenAPI file.
    fn spec_routes() -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut path = None;
        for line in SPEC.lines() {
            let t = line.trim_end();
            if let Some(p) = t.strip_prefix("  /").and_then(|p| p.strip_suffix(':')) {
                path = Some(format!("/{p}"));
            } else if let (Some(p), Some(m)) = (
                &path,
                t.strip_prefix("    ").and_then(|m| m.strip_suffix(':')),
            ) {
                if !m.starts_with(' ') {
                    out.push((m.to_ascii_uppercase(), p.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_served_route_is_in_the_openapi_contract() {
        let spec = spec_routes();
        for (m, p) in ROUTES {
            assert!(
                spec.iter().any(|(sm, sp)| sm == m && sp == p),
                "{m} {p} is served but missing from api/openapi.yaml"
            );
        }
        for (m, p) in &spec {
            assert!(
                ROUTES.iter().any(|(rm, rp)| rm == m && rp == p),
                "{m} {p} is in api/openapi.yaml but not served"
            );
        }
    }

    #[test]
    fn the_dispatcher_answers_every_listed_route() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = Ctx::new(
            Engine::new(dir.path().join("data"), dir.path().join("rt")).expect("engine"),
            dir.path().join("data"),
        );
        for (m, p) in ROUTES {
            let req = Request {
                method: m.to_string(),
                path: p.replace("{id}", "nosuch"),
                ..Default::default()
            };
            if is_wait(&req) || is_attach(&req) {
                continue; // answered on the connection itself
            }
            let r = route(&ctx, &req);
            let body = String::from_utf8_lossy(&r.body);
            assert!(
                !body.contains("page not found"),
                "{m} {p} is listed but the dispatcher does not serve it"
            );
        }
        let unknown = Request {
            method: "GET".into(),
            path: "/nope".into(),
            ..Default::default()
        };
        assert_eq!(route(&ctx, &unknown).status, 404);
    }
}
