//! Container routes: list, create, inspect, start, wait, attach, stop, kill, remove, logs.

use super::{engine_error, flag, lock, unix, Conn, Ctx, Reply};
use crate::http::Request;
use berth_engine::{CreateOptions, State, Summary};
use serde_json::{json, Value};
use std::sync::Arc;

/// What this module serves; `{id}` stands for a container.
pub const ROUTES: &[(&str, &str)] = &[
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
];

/// Dispatch within this module; `None` when the route is not ours. Streamed routes
/// (wait, attach) answer on `conn` and return `Some(None)`.
pub fn route(
    ctx: &Arc<Ctx>,
    req: &Request,
    parts: &[&str],
    conn: &mut Conn,
) -> Option<Option<Reply>> {
    let reply = match (req.method.as_str(), parts) {
        ("GET", ["containers", "json"]) => list(ctx, flag(req, "all")),
        ("POST", ["containers", "create"]) => create(ctx, req),
        ("GET", ["containers", id, "json"]) => inspect(ctx, id),
        ("POST", ["containers", id, "start"]) => start(ctx, id),
        ("POST", ["containers", id, "wait"]) => {
            // Clients send `wait` before `start` and block until its headers arrive:
            // answer at once, then the status when the container exits (as dockerd).
            let _ = wait_streaming(ctx, req, id, conn.writer);
            return Some(None);
        }
        ("POST", ["containers", id, "attach"]) => {
            let _ = attach_streaming(ctx, req, id, conn.writer);
            return Some(None);
        }
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
        _ => return None,
    };
    Some(Some(reply))
}

fn done(r: berth_engine::Result<()>) -> Reply {
    match r {
        Ok(()) => Reply::empty(204),
        Err(e) => engine_error(e),
    }
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
                "Ports": super::networks::port_list(ctx, r), "Labels": r.options.labels, "Mounts": [],
                "HostConfig": {"NetworkMode": super::networks::network_mode(r)},
                "NetworkSettings": {"Networks": super::networks::settings(ctx, r)["Networks"]}
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
                "PidsLimit": r.options.pids_limit, "NetworkMode": super::networks::network_mode(r),
                "PortBindings": super::networks::host_config(r)["PortBindings"],
                "PublishAllPorts": r.options.publish_all, "Dns": r.options.dns,
                "DnsSearch": r.options.dns_search, "ExtraHosts": r.options.extra_hosts,
                "ReadonlyRootfs": r.options.read_only},
            "Mounts": [], "NetworkSettings": super::networks::settings(ctx, r)
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
    super::networks::apply_create_body(body, &mut o)?;
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

/// Headers now, `{"StatusCode": …}` once the container has exited.
fn wait_streaming(
    ctx: &Ctx,
    req: &Request,
    id: &str,
    w: &mut impl std::io::Write,
) -> std::io::Result<()> {
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
fn attach_streaming(
    ctx: &Ctx,
    req: &Request,
    id: &str,
    w: &mut impl std::io::Write,
) -> std::io::Result<()> {
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
