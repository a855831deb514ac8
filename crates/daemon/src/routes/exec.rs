//! Exec routes: create, start (hijacked: the connection goes to the exec's helper
//! process, see `berth_engine::exec`), resize, inspect.

use super::{engine_error, lock, Conn, Ctx, Reply};
use crate::http::Request;
use berth_engine::attach::{parse_detach_keys, AttachOptions};
use berth_engine::ExecOptions;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What this module serves; `{id}` is a container for create, an exec otherwise.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/containers/{id}/exec"),
    ("POST", "/exec/{id}/start"),
    ("POST", "/exec/{id}/resize"),
    ("GET", "/exec/{id}/json"),
];

/// One exec, as created and then run.
#[derive(Clone)]
pub struct Exec {
    container: String,
    options: ExecOptions,
    attach: AttachOptions,
    running: bool,
    started: bool,
    exit_code: Option<i32>,
    pid: i32,
}

/// The daemon's execs, by id.
#[derive(Default)]
pub struct Execs(Mutex<HashMap<String, Exec>>);

/// Dispatch within this module; `None` when the route is not ours.
pub fn route(
    ctx: &Arc<Ctx>,
    req: &Request,
    parts: &[&str],
    conn: &mut Conn,
) -> Option<Option<Reply>> {
    let r = match (req.method.as_str(), parts) {
        ("POST", ["containers", id, "exec"]) => create(ctx, req, id),
        ("POST", ["exec", id, "start"]) => return Some(start(ctx, req, id, conn)),
        ("POST", ["exec", id, "resize"]) => resize(ctx, req, id),
        ("GET", ["exec", id, "json"]) => inspect(ctx, id),
        _ => return None,
    };
    Some(Some(r))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn console_size(v: &Value) -> Option<(u16, u16)> {
    let a = v.as_array()?;
    let h = u16::try_from(a.first()?.as_u64()?).ok()?;
    let w = u16::try_from(a.get(1)?.as_u64()?).ok()?;
    (h > 0 && w > 0).then_some((h, w))
}

fn create(ctx: &Ctx, req: &Request, id: &str) -> Reply {
    let b: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return Reply::error(400, format!("invalid JSON body: {e}")),
    };
    let s = match ctx.engine.inspect(id) {
        Ok(s) => s,
        Err(e) => return engine_error(e),
    };
    if s.state != berth_engine::State::Running {
        return Reply::error(409, format!("container {} is not running", s.record.id));
    }
    let cmd = strings(&b["Cmd"]);
    if cmd.is_empty() {
        return Reply::error(400, "No exec command specified");
    }
    let keys = match b["DetachKeys"].as_str().filter(|k| !k.is_empty()) {
        Some(k) => match parse_detach_keys(k) {
            Ok(k) => k,
            Err(e) => return Reply::error(400, e),
        },
        None => berth_engine::attach::DEFAULT_DETACH_KEYS.to_vec(),
    };
    let text = |k: &str| b[k].as_str().filter(|s| !s.is_empty()).map(String::from);
    let options = ExecOptions {
        cmd,
        tty: b["Tty"].as_bool().unwrap_or(false),
        interactive: b["AttachStdin"].as_bool().unwrap_or(false),
        env: strings(&b["Env"]),
        user: text("User"),
        workdir: text("WorkingDir"),
        console_size: console_size(&b["ConsoleSize"]),
        privileged: b["Privileged"].as_bool().unwrap_or(false),
    };
    let attach = AttachOptions {
        stdin: options.interactive,
        stdout: b["AttachStdout"].as_bool().unwrap_or(false),
        stderr: b["AttachStderr"].as_bool().unwrap_or(false),
        detach_keys: keys,
    };
    let exec_id = match berth_engine::names::new_id() {
        Ok(i) => i,
        Err(e) => return engine_error(e),
    };
    let mut m = lock(&ctx.execs.0);
    // forget finished execs once there are many
    if m.len() > 1024 {
        m.retain(|_, e| e.running);
    }
    m.insert(
        exec_id.clone(),
        Exec {
            container: s.record.id.clone(),
            options,
            attach,
            running: false,
            started: false,
            exit_code: None,
            pid: 0,
        },
    );
    drop(m);
    super::containers::publish(
        ctx,
        &format!(
            "exec_create: {}",
            b["Cmd"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default()
        ),
        &s.record.id,
        &s.record.name,
        &s.record.options.image,
        vec![("execID", exec_id.clone())],
    );
    Reply::json(201, &json!({"Id": exec_id}))
}

/// An exec event (`exec_start: <cmd>`, `exec_die`) on the exec's container.
fn publish_exec(ctx: &Ctx, action: &str, e: &Exec, exec_id: &str, code: Option<i32>) {
    let action = match action {
        "exec_start" => format!("exec_start: {}", e.options.cmd.join(" ")),
        a => a.to_string(),
    };
    let mut extra = vec![("execID", exec_id.to_string())];
    if let Some(c) = code {
        extra.push(("exitCode", c.to_string()));
    }
    super::containers::publish_now(ctx, &action, &e.container, extra);
}

fn no_such(id: &str) -> Reply {
    Reply::error(404, format!("No such exec instance: {id}"))
}

/// `POST /exec/{id}/start`: hand the upgraded connection (or none, detached) to a
/// helper that runs the process; its exit is recorded for `GET /exec/{id}/json`.
fn start(ctx: &Arc<Ctx>, req: &Request, id: &str, conn: &mut Conn) -> Option<Reply> {
    let b: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let detach = b["Detach"].as_bool().unwrap_or(false);
    let mut e = {
        let mut m = lock(&ctx.execs.0);
        let Some(e) = m.get_mut(id) else {
            return Some(no_such(id));
        };
        if e.started {
            return Some(Reply::error(409, format!("exec {id} has already started")));
        }
        e.started = true;
        e.clone()
    };
    if let Some(cs) = console_size(&b["ConsoleSize"]) {
        e.options.console_size = Some(cs);
    }
    let client = if detach {
        None
    } else {
        let upgrade = req
            .headers
            .get("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("tcp"));
        let ct = if e.options.tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        };
        let (status, extra) = if upgrade {
            ("101 UPGRADED", "Upgrade: tcp\r\n")
        } else {
            ("200 OK", "")
        };
        use std::io::Write;
        let w = &mut *conn.writer;
        let sent = write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nApi-Version: {}\r\n{extra}Connection: close\r\n\r\n",
            crate::API_VERSION
        )
        .and_then(|_| w.flush());
        if sent.is_err() {
            return None;
        }
        Some((&*conn.writer, e.attach.clone()))
    };
    match ctx.engine.spawn_exec(&e.container, id, &e.options, client) {
        Ok(h) => {
            if let Some(x) = lock(&ctx.execs.0).get_mut(id) {
                x.running = true;
                x.pid = h.pid;
            }
            publish_exec(ctx, "exec_start", &e, id, None);
            let ctx = ctx.clone();
            let id = id.to_string();
            std::thread::spawn(move || {
                let code = h.wait_exit();
                if let Some(x) = lock(&ctx.execs.0).get_mut(&id) {
                    x.running = false;
                    x.exit_code = Some(code.unwrap_or(-1));
                }
                publish_exec(&ctx, "exec_die", &e, &id, code);
            });
            if detach {
                Some(Reply::empty(200))
            } else {
                None
            }
        }
        Err(err) => {
            if let Some(x) = lock(&ctx.execs.0).get_mut(id) {
                x.exit_code = Some(err.exit_code());
            }
            if detach {
                return Some(engine_error(err));
            }
            // the stream is already upgraded: say it there, as dockerd does
            use std::io::Write;
            let msg = format!("{err}\r\n");
            let _ = if e.options.tty {
                conn.writer.write_all(msg.as_bytes())
            } else {
                conn.writer.write_all(&berth_engine::attach::frame(
                    false,
                    berth_engine::logs::Stream::Stderr,
                    msg.as_bytes(),
                ))
            };
            None
        }
    }
}

fn resize(ctx: &Ctx, req: &Request, id: &str) -> Reply {
    let n = |k: &str| req.query.get(k).and_then(|v| v.parse::<u16>().ok());
    let Some(e) = lock(&ctx.execs.0).get(id).cloned() else {
        return no_such(id);
    };
    match (n("h"), n("w")) {
        (Some(h), Some(w)) => match ctx.engine.resize_exec(&e.container, id, h, w) {
            Ok(()) => Reply::empty(200),
            Err(err) => engine_error(err),
        },
        _ => Reply::error(400, "resize: h and w must be numbers of rows and columns"),
    }
}

fn inspect(ctx: &Ctx, id: &str) -> Reply {
    let Some(mut e) = lock(&ctx.execs.0).get(id).cloned() else {
        return no_such(id);
    };
    // the helper records the code before the client's stream ends: a client asking
    // right after its stream ended gets it even if our watcher has not read it yet
    // (or the start has not yet marked the exec running)
    if e.exit_code.is_none() && e.started {
        e.exit_code = ctx.engine.exec_exit_code(&e.container, id);
    }
    e.running = e.started && e.exit_code.is_none();
    Reply::json(
        200,
        &json!({
            "ID": id, "Running": e.running, "ExitCode": e.exit_code, "Pid": e.pid,
            "ContainerID": e.container, "OpenStdin": e.attach.stdin, "OpenStdout": e.attach.stdout,
            "OpenStderr": e.attach.stderr, "CanRemove": false, "DetachKeys": "",
            "ProcessConfig": {"tty": e.options.tty, "entrypoint": e.options.cmd[0],
                "arguments": &e.options.cmd[1..], "privileged": e.options.privileged,
                "user": e.options.user.clone().unwrap_or_default()},
        }),
    )
}
