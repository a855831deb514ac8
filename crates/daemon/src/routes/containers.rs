//! Container routes: list, create, inspect, start, stop, restart, kill, wait, remove,
//! pause, unpause, rename, update, resize, top, changes, prune. The streamed ones
//! (attach, logs, stats, archive, export) are in [`super::streams`], exec in
//! [`super::exec`].

use super::{engine_error, flag, lock, unix, Conn, Ctx, Reply};
use crate::http::Request;
use berth_engine::attach::AttachOptions;
use berth_engine::{CreateOptions, Shim, State, Summary};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What this module serves; `{id}` stands for a container.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/containers/json"),
    ("POST", "/containers/create"),
    ("POST", "/containers/prune"),
    ("GET", "/containers/{id}/json"),
    ("POST", "/containers/{id}/start"),
    ("POST", "/containers/{id}/wait"),
    ("POST", "/containers/{id}/stop"),
    ("POST", "/containers/{id}/restart"),
    ("POST", "/containers/{id}/kill"),
    ("POST", "/containers/{id}/pause"),
    ("POST", "/containers/{id}/unpause"),
    ("POST", "/containers/{id}/rename"),
    ("POST", "/containers/{id}/update"),
    ("POST", "/containers/{id}/resize"),
    ("GET", "/containers/{id}/top"),
    ("GET", "/containers/{id}/changes"),
    ("DELETE", "/containers/{id}"),
    ("POST", "/commit"),
];

/// The daemon's memory of its containers: clients attached before the start, and
/// the exits its shims reported (so `wait` learns of an exit at once, and of the
/// status of an `--rm` container after it is gone).
#[derive(Default)]
pub struct Shared {
    /// clients that attached to a created container, handed to its shim at start
    pending: Mutex<HashMap<String, Vec<(UnixStream, AttachOptions)>>>,
    /// per container: how many exits we have seen and the last code
    exits: Mutex<HashMap<String, (u64, i32)>>,
    /// containers whose shim we watch: their exit is still to be reported
    watched: Mutex<std::collections::HashSet<String>>,
    exited: Condvar,
}

impl Shared {
    /// Parks an attached client until the container starts.
    pub(crate) fn park(&self, id: &str, client: UnixStream, opts: AttachOptions) {
        lock(&self.pending)
            .entry(id.to_string())
            .or_default()
            .push((client, opts));
    }

    fn exit_seen(&self, id: &str) -> Option<(u64, i32)> {
        lock(&self.exits).get(id).copied()
    }

    fn record_exit(&self, id: &str, code: i32) {
        let mut m = lock(&self.exits);
        if m.len() > 4096 {
            m.clear();
        }
        let e = m.entry(id.to_string()).or_insert((0, 0));
        *e = (e.0 + 1, code);
        lock(&self.watched).remove(id);
        drop(m);
        self.exited.notify_all();
    }

    /// Whether a shim we watch has yet to report its container's exit.
    fn exit_pending(&self, id: &str) -> bool {
        lock(&self.watched).contains(id)
    }

    /// Waits for a change of the exits (or `timeout`, for containers whose shim we
    /// do not hold: started before this daemon).
    /// `seen` is the count the caller last saw; no wait when it has changed since.
    fn wait_change(&self, id: &str, seen: Option<u64>, timeout: Duration) {
        let g = lock(&self.exits);
        if g.get(id).map(|e| e.0) != seen {
            return;
        }
        let _ = self.exited.wait_timeout(g, timeout);
    }
}

/// Dispatch within this module; `None` when the route is not ours.
pub fn route(
    ctx: &Arc<Ctx>,
    req: &Request,
    parts: &[&str],
    conn: &mut Conn,
) -> Option<Option<Reply>> {
    let q = |k: &str| req.query.get(k).map(String::as_str);
    // the container as it was, for the event of an action that succeeds
    let acted = before_action(ctx, req, parts);
    let reply = match (req.method.as_str(), parts) {
        ("GET", ["containers", "json"]) => list(ctx, req),
        ("POST", ["containers", "create"]) => create(ctx, req),
        ("POST", ["containers", "prune"]) => prune(ctx, req),
        ("GET", ["containers", id, "json"]) => match ctx.engine.inspect(id) {
            Ok(s) => {
                let mut v = inspect_json(ctx, &s);
                if flag(req, "size") {
                    let (rw, root) = ctx.engine.sizes(&s.record.id).unwrap_or((0, 0));
                    v["SizeRw"] = json!(rw);
                    v["SizeRootFs"] = json!(root);
                }
                Reply::json(200, &v)
            }
            Err(e) => engine_error(e),
        },
        ("POST", ["containers", id, "start"]) => start(ctx, id),
        ("POST", ["containers", id, "wait"]) => {
            // Clients send `wait` before `start` and block until its headers arrive:
            // answer at once, then the status when the container exits (as dockerd).
            let _ = wait_streaming(ctx, req, id, conn.writer);
            return Some(None);
        }
        ("POST", ["containers", id, "stop"]) => done(
            ctx.engine
                .stop_with(id, seconds(q("t")), q("signal"))
                .map(|_| ()),
        ),
        ("POST", ["containers", id, "restart"]) => restart(ctx, id, seconds(q("t")), q("signal")),
        ("POST", ["containers", id, "kill"]) => done(
            ctx.engine
                .kill(id, q("signal").unwrap_or("KILL"))
                .map(|_| ()),
        ),
        ("POST", ["containers", id, "pause"]) => done(ctx.engine.pause(id).map(|_| ())),
        ("POST", ["containers", id, "unpause"]) => done(ctx.engine.unpause(id).map(|_| ())),
        ("POST", ["containers", id, "rename"]) => match q("name") {
            Some(n) if !n.is_empty() => done(ctx.engine.rename(id, n)),
            _ => Reply::error(400, "rename: the new name is required (?name=)"),
        },
        ("POST", ["containers", id, "update"]) => update(ctx, id, req),
        ("POST", ["containers", id, "resize"]) => {
            let n = |k: &str| q(k).and_then(|v| v.parse::<u16>().ok());
            match (n("h"), n("w")) {
                (Some(h), Some(w)) => done(ctx.engine.resize(id, h, w)),
                _ => Reply::error(400, "resize: h and w must be numbers of rows and columns"),
            }
        }
        ("GET", ["containers", id, "top"]) => top(ctx, id, q("ps_args").unwrap_or("-ef")),
        ("GET", ["containers", id, "changes"]) => changes(ctx, id),
        ("POST", ["commit"]) => commit(ctx, req),
        ("DELETE", ["containers", id]) => {
            let r = ctx.engine.remove(id, flag(req, "force"), flag(req, "v"));
            if r.is_ok() {
                lock(&ctx.containers.pending).remove(*id);
            }
            done(r)
        }
        _ => return None,
    };
    if let (Some((action, s)), true) = (acted, reply.status < 300) {
        after_action(ctx, req, action, &s);
    }
    Some(Some(reply))
}

/// The container an action route is about to change, and the event's name.
fn before_action(ctx: &Ctx, req: &Request, parts: &[&str]) -> Option<(&'static str, Summary)> {
    let action = match (req.method.as_str(), parts) {
        ("POST", ["containers", _, a]) => match *a {
            "stop" => "stop",
            "restart" => "restart",
            "kill" => "kill",
            "pause" => "pause",
            "unpause" => "unpause",
            "rename" => "rename",
            "update" => "update",
            _ => return None,
        },
        ("DELETE", ["containers", _]) => "destroy",
        _ => return None,
    };
    ctx.engine.inspect(parts[1]).ok().map(|s| (action, s))
}

/// The event of a successful action (docker's extra attributes for kill, rename).
fn after_action(ctx: &Ctx, req: &Request, action: &str, s: &Summary) {
    let q = |k: &str| req.query.get(k).map(String::as_str);
    let mut extra = Vec::new();
    match action {
        "kill" => extra.push(("signal", q("signal").unwrap_or("KILL").to_string())),
        "rename" => extra.push(("oldName", format!("/{}", s.record.name))),
        _ => {}
    }
    let name = match action {
        "rename" => q("name").unwrap_or("").to_string(),
        _ => s.record.name.clone(),
    };
    publish(
        ctx,
        action,
        &s.record.id,
        &name,
        &s.record.options.image,
        extra,
    );
}

/// A container event: docker's attributes (name, image) and `extra`.
pub(crate) fn publish(
    ctx: &Ctx,
    action: &str,
    id: &str,
    name: &str,
    image: &str,
    extra: Vec<(&str, String)>,
) {
    let attrs = [("name", name.to_string()), ("image", image.to_string())]
        .into_iter()
        .chain(extra);
    ctx.events.publish("container", action, id, attrs);
}

/// The event of `action` on container `id` as it is now.
pub(crate) fn publish_now(ctx: &Ctx, action: &str, id: &str, extra: Vec<(&str, String)>) {
    if let Ok(s) = ctx.engine.inspect(id) {
        publish(
            ctx,
            action,
            &s.record.id,
            &s.record.name,
            &s.record.options.image,
            extra,
        );
    }
}

/// `?t=`: seconds to wait before SIGKILL; a negative one waits for ever (docker's -1).
fn seconds(v: Option<&str>) -> Option<Duration> {
    v.and_then(|t| t.parse::<i64>().ok()).map(|t| {
        if t < 0 {
            Duration::from_secs(100 * 365 * 86_400)
        } else {
            Duration::from_secs(t as u64)
        }
    })
}

pub(crate) fn done(r: berth_engine::Result<()>) -> Reply {
    match r {
        Ok(()) => Reply::empty(204),
        Err(e) => engine_error(e),
    }
}

/// docker's state name.
pub(crate) fn state_name(s: &Summary) -> &'static str {
    match s.state {
        State::Running if s.paused => "paused",
        State::Running => "running",
        State::Created => "created",
        State::Exited(_) => "exited",
        State::Dead => "dead",
    }
}

/// docker's `units.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let h = s / 3600;
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        _ if s < 3600 => format!("{} minutes", s / 60),
        _ if h < 2 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}

fn since(t: Option<&str>) -> String {
    let then = t.map(unix).unwrap_or(0);
    human_duration(chrono::Utc::now().timestamp() - then)
}

/// docker's Status column: "Up 3 seconds", "Exited (0) 2 minutes ago", ...
pub fn status_text(s: &Summary) -> String {
    match s.state {
        State::Running if s.paused => {
            format!("Up {} (Paused)", since(s.record.started_at.as_deref()))
        }
        State::Running => format!("Up {}", since(s.record.started_at.as_deref())),
        State::Created => "Created".into(),
        State::Exited(c) => format!(
            "Exited ({c}) {} ago",
            since(s.exit.as_ref().map(|e| e.finished_at.as_str()))
        ),
        State::Dead => "Dead".into(),
    }
}

fn network_mode(o: &CreateOptions) -> String {
    berth_engine::network::mode_name(&o.network, &o.endpoints)
}

/// `filters` of the list: docker's JSON map of name → values (or → {value: true}).
fn parse_filters(raw: Option<&String>) -> Result<Vec<(String, String)>, String> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(Vec::new());
    };
    let v: Value = serde_json::from_str(raw).map_err(|e| format!("invalid filters: {e}"))?;
    let mut out = Vec::new();
    for (k, vals) in v.as_object().ok_or("invalid filters: expected an object")? {
        if !["name", "id", "status", "exited", "ancestor", "label"].contains(&k.as_str()) {
            return Err(format!(
                "invalid filter '{k}': use name, id, status, exited, ancestor or label"
            ));
        }
        match vals {
            Value::Array(a) => out.extend(
                a.iter()
                    .filter_map(|x| x.as_str())
                    .map(|x| (k.clone(), x.to_string())),
            ),
            Value::Object(m) => out.extend(m.keys().map(|x| (k.clone(), x.clone()))),
            _ => {}
        }
    }
    Ok(out)
}

fn matches(s: &Summary, k: &str, v: &str) -> bool {
    let r = &s.record;
    match k {
        "name" => r.name.contains(v.trim_start_matches('/')),
        "id" => r.id.starts_with(v),
        "status" => state_name(s) == v,
        "exited" => matches!(s.state, State::Exited(c) if c.to_string() == v),
        "ancestor" => r.options.image == v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => r.options.labels.get(lk).is_some_and(|x| x == lv),
            None => r.options.labels.contains_key(v),
        },
        _ => true,
    }
}

fn list(ctx: &Ctx, req: &Request) -> Reply {
    let filters = match parse_filters(req.query.get("filters")) {
        Ok(f) => f,
        Err(m) => return Reply::error(400, m),
    };
    let all = flag(req, "all") || filters.iter().any(|(k, _)| k == "status" || k == "exited");
    let mut l = match ctx.engine.list(all) {
        Ok(l) => l,
        Err(e) => return engine_error(e),
    };
    // values of one filter name are alternatives, except labels, which must all match
    // (as dockerd: compose asks for project=P and oneoff=False at once); different
    // names must all match
    let mut names: Vec<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    names.dedup();
    l.retain(|s| {
        names.iter().all(|n| {
            let mut vals = filters.iter().filter(|(k, _)| k == n);
            if *n == "label" {
                vals.all(|(k, v)| matches(s, k, v))
            } else {
                vals.any(|(k, v)| matches(s, k, v))
            }
        })
    });
    if let Some(n) = req.query.get("limit").and_then(|n| n.parse::<i64>().ok()) {
        if n > 0 {
            l.truncate(n as usize);
        }
    }
    let size = flag(req, "size");
    let rows: Vec<Value> = l
        .iter()
        .map(|s| {
            let mut v = summary_json(s);
            super::networks::summary_fields(ctx, &s.record, &mut v);
            if size {
                let (rw, root) = ctx.engine.sizes(&s.record.id).unwrap_or((0, 0));
                v["SizeRw"] = json!(rw);
                v["SizeRootFs"] = json!(root);
            }
            crate::lifecycle::list_row(&ctx.engine, s, &mut v);
            v
        })
        .collect();
    Reply::json(200, &Value::Array(rows))
}

fn summary_json(s: &Summary) -> Value {
    let r = &s.record;
    let cmd = std::iter::once(r.path.clone())
        .chain(r.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    json!({
        "Id": r.id, "Names": [format!("/{}", r.name)], "Image": r.options.image, "ImageID": r.image_id.clone().unwrap_or_default(),
        "Command": cmd, "Created": unix(&r.created), "State": state_name(s), "Status": status_text(s),
        "Ports": [], "Labels": r.options.labels, "Mounts": mounts_json(&r.options),
        "HostConfig": {"NetworkMode": network_mode(&r.options)},
        "NetworkSettings": {"Networks": {}}
    })
}

fn mounts_json(o: &CreateOptions) -> Vec<Value> {
    o.binds
        .iter()
        .map(|b| match &b.volume {
            Some(v) => json!({"Type": "volume", "Name": v, "Source": b.source, "Destination": b.target,
                "Driver": "local", "Mode": if b.readonly { "ro" } else { "" }, "RW": !b.readonly, "Propagation": ""}),
            None => json!({"Type": "bind", "Source": b.source, "Destination": b.target,
                "Mode": if b.readonly { "ro" } else { "" }, "RW": !b.readonly, "Propagation": "rprivate"}),
        })
        .chain(o.tmpfs.iter().map(|t| {
            let dst = t.split(':').next().unwrap_or(t);
            json!({"Type": "tmpfs", "Source": "", "Destination": dst, "Mode": "", "RW": true, "Propagation": ""})
        }))
        .collect()
}

/// docker's `container inspect` document.
pub fn inspect_json(ctx: &Ctx, s: &Summary) -> Value {
    let r = &s.record;
    let o = &r.options;
    let spec = ctx.engine.runtime_spec(&r.id).unwrap_or(Value::Null);
    let process = &spec["process"];
    let dir = ctx.engine.container_dir(&r.id);
    let zero = "0001-01-01T00:00:00Z";
    let running = s.state == State::Running;
    let mut doc = json!({
        "Id": r.id, "Created": r.created, "Path": r.path, "Args": r.args,
        "State": {
            "Status": state_name(s), "Running": running, "Paused": s.paused, "Restarting": false,
            "OOMKilled": false, "Dead": s.state == State::Dead,
            "Pid": if running { r.pid.unwrap_or(0) } else { 0 },
            "ExitCode": s.exit.as_ref().map(|x| x.code).unwrap_or(0), "Error": "",
            "StartedAt": r.started_at.as_deref().unwrap_or(zero),
            "FinishedAt": s.exit.as_ref().map(|x| x.finished_at.as_str()).unwrap_or(zero),
        },
        // docker's: the image's id; Config.Image keeps the name as given
        "Image": r.image_id.as_deref().unwrap_or(&o.image),
        "ResolvConfPath": dir.join("resolv.conf"), "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"), "LogPath": ctx.engine.log_path(&r.id),
        "Name": format!("/{}", r.name), "RestartCount": 0, "Driver": "overlay2", "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": null,
        "HostConfig": host_config_json(r),
        "Mounts": mounts_json(o),
        "Config": {
            "Hostname": spec["hostname"], "Domainname": o.domainname.clone().unwrap_or_default(), "User": o.user.clone().unwrap_or_default(),
            "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
            "Tty": o.tty, "OpenStdin": o.interactive, "StdinOnce": o.stdin_once,
            "Env": process["env"],
            "Cmd": if o.cmd.is_empty() { std::iter::once(r.path.clone()).chain(r.args.iter().cloned()).collect::<Vec<_>>() } else { o.cmd.clone() },
            "Image": o.image, "Volumes": null, "WorkingDir": process["cwd"],
            "Entrypoint": o.entrypoint.as_ref().map(|x| vec![x.clone()]),
            "Labels": o.labels, "StopSignal": r.stop_signal, "StopTimeout": o.stop_timeout,
        },
        "NetworkSettings": super::networks::settings(ctx, r),
    });
    crate::lifecycle::inspect(&ctx.engine, s, &mut doc);
    doc
}

fn host_config_json(r: &berth_engine::Record) -> Value {
    let mut hc = host_config_basics(r);
    if let Some(m) = hc.as_object_mut() {
        super::host_options::inspect(&r.options, &r.name, m);
    }
    hc
}

fn host_config_basics(r: &berth_engine::Record) -> Value {
    let o = &r.options;
    json!({
        "VolumesFrom": null,
        "Binds": o.binds.iter().map(|b| format!(
            "{}:{}{}",
            b.volume.clone().unwrap_or_else(|| b.source.display().to_string()),
            b.target.display(),
            if b.readonly { ":ro" } else { "" }
        )).collect::<Vec<_>>(),
        "LogConfig": {"Type": "json-file", "Config": {
            "max-size": o.log.max_size.to_string(), "max-file": o.log.max_files.to_string()}},
        "NetworkMode": network_mode(o),
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": o.auto_remove, "Privileged": false, "Init": o.init,
        "Memory": o.memory.unwrap_or(0), "MemorySwap": o.memory_swap.unwrap_or(0),
        "PidsLimit": o.pids_limit, "ReadonlyRootfs": o.read_only,
        "CapAdd": o.cap_add, "CapDrop": o.cap_drop,
        "NanoCpus": o.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
        "CpuShares": o.cpu_shares.unwrap_or(0), "CpusetCpus": o.cpuset_cpus.clone().unwrap_or_default(),
        "Tmpfs": o.tmpfs.iter().map(|t| {
            let (p, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
            (p.to_string(), opts.to_string())
        }).collect::<std::collections::BTreeMap<_, _>>(),
        "Ulimits": o.ulimits.iter().filter_map(|u| {
            let (name, v) = u.split_once('=')?;
            let (soft, hard) = v.split_once(':').unwrap_or((v, v));
            Some(json!({"Name": name, "Soft": soft.parse::<i64>().ok()?, "Hard": hard.parse::<i64>().ok()?}))
        }).collect::<Vec<_>>(),
        "SecurityOpt": security_opts(o),
        "ConsoleSize": o.console_size.map(|(h, w)| [h, w]).unwrap_or([0, 0]),
        "Volumes": r.volumes,
        "PortBindings": super::networks::host_config(r)["PortBindings"],
        "PublishAllPorts": o.publish_all, "Dns": o.dns, "DnsSearch": o.dns_search,
        "DnsOptions": o.dns_options, "ExtraHosts": o.extra_hosts,
    })
}

fn security_opts(o: &CreateOptions) -> Option<Vec<&'static str>> {
    let mut v = Vec::new();
    if o.seccomp_unconfined {
        v.push("seccomp=unconfined");
    }
    if o.no_new_privileges {
        v.push("no-new-privileges");
    }
    (!v.is_empty()).then_some(v)
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(String::from)
}

/// The docker create body → engine options. Unknown fields are ignored, as docker does.
pub fn create_options(body: &Value, name: Option<String>) -> Result<CreateOptions, String> {
    let image = body["Image"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("Image: required (the image to run)")?;
    let hc = &body["HostConfig"];
    let mut o = CreateOptions {
        image: image.to_string(),
        name,
        cmd: strings(&body["Cmd"]),
        env: strings(&body["Env"]),
        workdir: text(&body["WorkingDir"]),
        user: text(&body["User"]),
        hostname: text(&body["Hostname"]),
        tty: body["Tty"].as_bool().unwrap_or(false),
        interactive: body["OpenStdin"].as_bool().unwrap_or(false),
        stdin_once: body["StdinOnce"].as_bool().unwrap_or(false),
        stop_signal: text(&body["StopSignal"]),
        stop_timeout: body["StopTimeout"].as_u64(),
        ..Default::default()
    };
    match &body["Entrypoint"] {
        Value::Null => {}
        ep => o.entrypoint = Some(strings(ep).join(" ")),
    }
    if let Some(l) = body["Labels"].as_object() {
        o.labels = l
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
    }
    host_config(hc, &mut o)?;
    super::host_options::apply(body, &mut o)?;
    super::networks::apply_create_body(body, &mut o)?;
    crate::lifecycle::create_options(body, &mut o)?;
    Ok(o)
}

/// HostConfig → engine options.
fn host_config(hc: &Value, o: &mut CreateOptions) -> Result<(), String> {
    o.memory = hc["Memory"].as_i64().filter(|m| *m > 0);
    o.memory_swap = hc["MemorySwap"].as_i64().filter(|m| *m != 0);
    o.pids_limit = hc["PidsLimit"].as_i64().filter(|p| *p != 0);
    o.cpus = hc["NanoCpus"]
        .as_i64()
        .filter(|n| *n > 0)
        .map(|n| n as f64 / 1e9);
    o.cpu_shares = hc["CpuShares"].as_u64().filter(|n| *n > 0);
    o.cpuset_cpus = text(&hc["CpusetCpus"]);
    o.read_only = hc["ReadonlyRootfs"].as_bool().unwrap_or(false);
    o.auto_remove = hc["AutoRemove"].as_bool().unwrap_or(false);
    o.cap_add = strings(&hc["CapAdd"]);
    o.cap_drop = strings(&hc["CapDrop"]);
    if hc["Privileged"].as_bool().unwrap_or(false) {
        o.cap_add.push("ALL".into());
        o.seccomp_unconfined = true;
    }
    o.init = hc["Init"].as_bool().unwrap_or(false);
    for s in strings(&hc["SecurityOpt"]) {
        o.security_opt(&s).map_err(|e| e.to_string())?;
    }
    for b in strings(&hc["Binds"]) {
        o.binds
            .push(b.parse().map_err(|e: berth_engine::Error| e.to_string())?);
    }
    for m in hc["Mounts"].as_array().into_iter().flatten() {
        mount(m, o)?;
    }
    if let Some(t) = hc["Tmpfs"].as_object() {
        for (p, opts) in t {
            let opts = opts.as_str().unwrap_or("");
            o.tmpfs.push(if opts.is_empty() {
                p.clone()
            } else {
                format!("{p}:{opts}")
            });
        }
    }
    for u in hc["Ulimits"].as_array().into_iter().flatten() {
        let name = u["Name"]
            .as_str()
            .ok_or("HostConfig.Ulimits: Name is required")?;
        o.ulimits.push(format!(
            "{name}={}:{}",
            u["Soft"].as_i64().unwrap_or(0),
            u["Hard"].as_i64().unwrap_or(0)
        ));
    }
    if let Some(c) = hc["LogConfig"]["Config"].as_object() {
        for (k, v) in c {
            o.log
                .set(&format!("{k}={}", v.as_str().unwrap_or("")))
                .map_err(|e| e.to_string())?;
        }
    }
    if let Some([h, w]) = hc["ConsoleSize"].as_array().map(|a| a.as_slice()) {
        let (h, w) = (h.as_u64().unwrap_or(0), w.as_u64().unwrap_or(0));
        if h > 0 && w > 0 {
            o.console_size = Some((h.min(u16::MAX as u64) as u16, w.min(u16::MAX as u64) as u16));
        }
    }
    Ok(())
}

/// One of HostConfig.Mounts (`--mount`).
fn mount(m: &Value, o: &mut CreateOptions) -> Result<(), String> {
    let target = m["Target"]
        .as_str()
        .ok_or("HostConfig.Mounts: Target is required")?;
    let ro = m["ReadOnly"].as_bool().unwrap_or(false);
    let mode = if ro { ":ro" } else { "" };
    match m["Type"].as_str().unwrap_or("volume") {
        "tmpfs" => {
            let size = m["TmpfsOptions"]["SizeBytes"].as_i64().filter(|s| *s > 0);
            o.tmpfs
                .push(size.map_or(target.to_string(), |s| format!("{target}:size={s}")));
        }
        "bind" => {
            let src = m["Source"]
                .as_str()
                .filter(|s| s.starts_with('/'))
                .ok_or("HostConfig.Mounts: a bind mount needs an absolute Source")?;
            o.binds.push(
                format!("{src}:{target}{mode}")
                    .parse()
                    .map_err(|e: berth_engine::Error| e.to_string())?,
            );
        }
        "volume" => {
            let src = match m["Source"].as_str().filter(|s| !s.is_empty()) {
                Some(s) => s.to_string(),
                None => berth_engine::names::new_id().map_err(|e| e.to_string())?,
            };
            o.binds.push(
                format!("{src}:{target}{mode}")
                    .parse()
                    .map_err(|e: berth_engine::Error| e.to_string())?,
            );
        }
        t => {
            return Err(format!(
                "HostConfig.Mounts: type {t:?} is not supported: use bind, volume or tmpfs"
            ))
        }
    }
    Ok(())
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
    if let Err(m) = super::host_options::check_platform(req.query.get("platform")) {
        return Reply::error(400, m);
    }
    let mut opts = match create_options(&body, name) {
        Ok(o) => o,
        Err(m) => return Reply::error(400, m),
    };
    // docker's daemon checks, before anything is made; what it drops, with a warning
    let mut warnings = super::host_options::warnings(&body);
    match berth_engine::hostconfig::check(&mut opts) {
        Ok(w) => warnings.extend(w),
        Err(e) => return engine_error(e),
    }
    for vf in strings(&body["HostConfig"]["VolumesFrom"]) {
        if let Err(r) = volumes_from(ctx, &vf, &mut opts) {
            return r;
        }
    }
    match ctx.engine.create(&opts) {
        Ok(id) => {
            publish_now(ctx, "create", &id, Vec::new());
            Reply::json(201, &json!({"Id": id, "Warnings": warnings}))
        }
        Err(berth_engine::Error::Image(berth_image::Error::NotFound(_))) => {
            Reply::error(404, format!("No such image: {}", opts.image))
        }
        Err(berth_engine::Error::Invalid(m)) if m.starts_with("unable to find image") => {
            Reply::error(404, format!("No such image: {}", opts.image))
        }
        Err(e) => engine_error(e),
    }
}

/// `--volumes-from CONTAINER[:ro|:rw]`: that container's volumes and bind mounts,
/// unless a mount of ours has the same target.
fn volumes_from(ctx: &Ctx, spec: &str, o: &mut CreateOptions) -> Result<(), Reply> {
    let (src, mode) = match spec.rsplit_once(':') {
        Some((c, m)) if m == "ro" || m == "rw" => (c, Some(m == "ro")),
        _ => (spec, None),
    };
    let s = ctx.engine.inspect(src).map_err(engine_error)?;
    for b in &s.record.options.binds {
        if o.binds.iter().any(|x| x.target == b.target) {
            continue;
        }
        let mut b = b.clone();
        if let Some(ro) = mode {
            b.readonly = ro;
        }
        o.binds.push(b);
    }
    Ok(())
}

/// Watches a shim until its container exits, for `wait`.
fn watch(ctx: &Arc<Ctx>, id: String, shim: Shim) {
    let ctx = ctx.clone();
    let (name, image) = ctx
        .engine
        .inspect(&id)
        .map(|s| (s.record.name, s.record.options.image))
        .unwrap_or_default();
    std::thread::spawn(move || {
        let mut shim = shim;
        // at the report, not at the supervisor's end: an --rm container's files are
        // deleted after it (see Engine::empty_trash)
        let code = shim.exit_code().unwrap_or(-1);
        let now = ctx.engine.inspect(&id);
        // its name now (renamed meanwhile), or as it was (an --rm container is gone)
        let name = now.as_ref().map_or(name, |s| s.record.name.clone());
        publish(
            &ctx,
            "die",
            &id,
            &name,
            &image,
            vec![("exitCode", code.to_string())],
        );
        if matches!(now, Err(berth_engine::Error::NotFound(_))) {
            publish(&ctx, "destroy", &id, &name, &image, Vec::new());
        }
        ctx.containers.record_exit(&id, code);
        shim.reap();
    });
}

/// Starts `id`, handing its parked attach clients to the shim first.
pub(crate) fn start_container(ctx: &Arc<Ctx>, id: &str) -> berth_engine::Result<bool> {
    let full = ctx.engine.resolve(id)?;
    let mut hand_over = |dir: &std::path::Path| {
        let clients = lock(&ctx.containers.pending)
            .remove(&full)
            .unwrap_or_default();
        for (c, o) in clients {
            let _ = berth_engine::attach::send(
                dir,
                berth_engine::attach::SOCKET,
                &berth_engine::attach::Request::Attach(o),
                Some(std::os::fd::AsFd::as_fd(&c)),
            );
        }
    };
    // watched from before the start: a waiter must not take a quick exit and
    // removal (--rm) for a lost status
    let was_watched = !lock(&ctx.containers.watched).insert(full.clone());
    match ctx.engine.start_existing(&full, &mut hand_over) {
        Ok(Some(shim)) => {
            publish_now(ctx, "start", &full, Vec::new());
            watch(ctx, full, shim);
            Ok(true)
        }
        other => {
            if !was_watched {
                lock(&ctx.containers.watched).remove(&full);
            }
            other.map(|_| false)
        }
    }
}

fn start(ctx: &Arc<Ctx>, id: &str) -> Reply {
    match start_container(ctx, id) {
        Ok(true) => Reply::empty(204),
        Ok(false) => Reply::empty(304),
        Err(e) => engine_error(e),
    }
}

fn restart(ctx: &Arc<Ctx>, id: &str, t: Option<Duration>, signal: Option<&str>) -> Reply {
    if let Err(e) = ctx.engine.stop_with(id, t, signal) {
        return engine_error(e);
    }
    match start_container(ctx, id) {
        Ok(_) => Reply::empty(204),
        Err(e) => engine_error(e),
    }
}

/// Headers now, `{"StatusCode": …}` once the container has exited.
fn wait_streaming(
    ctx: &Arc<Ctx>,
    req: &Request,
    id: &str,
    w: &mut UnixStream,
) -> std::io::Result<()> {
    use std::io::Write;
    let full = match ctx.engine.inspect(id) {
        Ok(s) => s.record.id,
        Err(e) => {
            let r = engine_error(e);
            return crate::http::respond(w, r.status, r.content_type, &r.body);
        }
    };
    let condition = req
        .query
        .get("condition")
        .map_or("not-running", |c| c.as_str());
    if !["not-running", "next-exit", "removed"].contains(&condition) {
        let r = Reply::error(
            400,
            format!("invalid condition {condition:?}: use not-running, next-exit or removed"),
        );
        return crate::http::respond(w, r.status, r.content_type, &r.body);
    }
    let seen = ctx.containers.exit_seen(&full).map_or(0, |e| e.0);
    write!(
        w,
        "HTTP/1.1 200 OK\r\nApi-Version: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        crate::API_VERSION
    )?;
    w.flush()?;
    // the wait goes on in a thread of its own: this one ends, and with it its stack,
    // which the request's handling made deep (a waiting client costs what it uses)
    let (ctx, condition, mut w) = (ctx.clone(), condition.to_string(), w.try_clone()?);
    std::thread::Builder::new()
        .name("wait".into())
        .stack_size(WAIT_STACK)
        .spawn(move || {
            let body = match wait_exit(&ctx, &full, &condition, seen, &w) {
                Some(Ok(code)) => json!({"StatusCode": code, "Error": null}),
                Some(Err(e)) => json!({"StatusCode": -1, "Error": {"Message": e.to_string()}}),
                None => return, // the client went away
            };
            let _ = w.write_all(body.to_string().as_bytes());
            let _ = w.flush();
        })?;
    Ok(())
}

/// Stack of a thread waiting for a container's exit: as a connection's (the same
/// engine calls), virtual: it gives back what it no longer uses before it blocks.
const WAIT_STACK: usize = 2 << 20;

/// Waits for `condition`: learns of exits from the shims' reports (at once), and of
/// those of containers a previous daemon started from their supervisor's pidfd (at
/// once too). `None` when `client` hangs up first.
fn wait_exit(
    ctx: &Ctx,
    id: &str,
    condition: &str,
    seen: u64,
    client: &UnixStream,
) -> Option<berth_engine::Result<i32>> {
    // the code of an adopted container's exit we saw (its supervisor ended)
    let mut adopted_exit = None;
    loop {
        let reported = ctx.containers.exit_seen(id);
        let fresh = reported.filter(|e| e.0 > seen).map(|e| e.1);
        let s = match ctx.engine.inspect(id) {
            Ok(s) => s,
            // removed (--rm) before its shim's report reached us: wait for it
            Err(berth_engine::Error::NotFound(_))
                if fresh.is_none() && ctx.containers.exit_pending(id) =>
            {
                ctx.containers
                    .wait_change(id, reported.map(|e| e.0), Duration::from_millis(250));
                continue;
            }
            Err(berth_engine::Error::NotFound(_)) => {
                return Some(reported.map(|e| e.1).or(adopted_exit).ok_or_else(|| {
                    berth_engine::Error::Conflict(
                        "container was removed before its exit status was seen".into(),
                    )
                }));
            }
            Err(e) => return Some(Err(e)),
        };
        match (condition, s.state) {
            ("next-exit", _) if fresh.is_some() => return Some(Ok(fresh.unwrap_or(0))),
            ("next-exit", State::Exited(c)) if adopted_exit.is_some() => return Some(Ok(c)),
            ("not-running", State::Exited(c)) => return Some(Ok(c)),
            (_, State::Dead) => {
                return Some(Err(berth_engine::Error::Conflict(format!(
                    "container {} is dead: its exit status is unknown",
                    &id[..12.min(id.len())]
                ))))
            }
            _ => {}
        }
        if super::peer_gone(client) {
            return None;
        }
        // started by a previous daemon (or a CLI on the engine): no shim report comes;
        // its supervisor's end does
        let adopted = s.state == State::Running && !ctx.containers.exit_pending(id);
        let supervisor = adopted
            .then(|| ctx.engine.live_supervisor(&s.record))
            .flatten()
            .and_then(|pid| berth_sys::proc::pidfd_open(pid).ok());
        // a waiting client costs only the stack it still uses
        let _ = berth_sys::proc::release_idle_stack();
        match supervisor {
            Some(fd) => {
                if wait_readable(&fd, client) {
                    // it recorded the exit, unless it was killed: then record it now
                    if let Err(e) = ctx.engine.supervisor_gone(id) {
                        tracing::warn!(container = %id, error = %e, "cannot record the exit");
                    }
                    if let Ok(s) = ctx.engine.inspect(id) {
                        if let State::Exited(c) = s.state {
                            adopted_exit = Some(c);
                        }
                    }
                }
            }
            // the shims' reports wake us; the timeout catches a removal (condition
            // `removed`) and starts by something else than this daemon
            None => ctx
                .containers
                .wait_change(id, reported.map(|e| e.0), Duration::from_secs(1)),
        }
    }
}

/// Blocks until `fd` (a pidfd) is readable (the process ended) or `client` hangs up;
/// whether the process ended.
fn wait_readable(fd: &std::os::fd::OwnedFd, client: &UnixStream) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [
        PollFd::new(fd.as_fd(), PollFlags::POLLIN),
        PollFd::new(client.as_fd(), PollFlags::POLLIN),
    ];
    if poll(&mut fds, PollTimeout::NONE).is_err() {
        return false;
    }
    fds[0].revents().is_some_and(|r| !r.is_empty())
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`.
fn commit(ctx: &Ctx, req: &Request) -> Reply {
    let q = |k: &str| req.query.get(k).cloned().unwrap_or_default();
    let container = q("container");
    if container.is_empty() {
        return Reply::error(400, "commit: container is required (?container=)");
    }
    let (repo, tag) = (q("repo"), q("tag"));
    let reference = match (repo.is_empty(), tag.is_empty()) {
        (true, _) => None,
        (false, true) => Some(repo),
        (false, false) => Some(format!("{repo}:{tag}")),
    };
    let o = berth_engine::CommitOptions {
        reference,
        changes: q("changes")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        comment: q("comment"),
        author: q("author"),
        pause: req
            .query
            .get("pause")
            .is_none_or(|p| p != "0" && p != "false"),
    };
    match ctx.engine.commit(&container, &o) {
        Ok(id) => {
            publish_now(ctx, "commit", &container, Vec::new());
            Reply::json(201, &json!({"Id": id}))
        }
        Err(e) => engine_error(e),
    }
}

/// `POST /containers/{id}/update`: docker's UpdateConfig; zero and empty values
/// (which docker's CLI sends for every flag not given) leave the value as it is.
fn update(ctx: &Ctx, id: &str, req: &Request) -> Reply {
    let b: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(_) if req.body.is_empty() => json!({}),
        Err(e) => return Reply::error(400, format!("update: the body is not JSON: {e}")),
    };
    let restart = match b["RestartPolicy"]["Name"]
        .as_str()
        .filter(|n| !n.is_empty())
    {
        Some(n) => {
            let max = b["RestartPolicy"]["MaximumRetryCount"]
                .as_i64()
                .unwrap_or(0);
            match berth_engine::RestartPolicy::from_docker(n, max) {
                Ok(p) => Some(p),
                Err(e) => return engine_error(e),
            }
        }
        None => None,
    };
    let text = |k: &str| b[k].as_str().filter(|s| !s.is_empty()).map(String::from);
    let u = berth_engine::Update {
        memory: b["Memory"].as_i64().filter(|m| *m > 0),
        memory_swap: b["MemorySwap"].as_i64().filter(|m| *m != 0),
        memory_reservation: b["MemoryReservation"].as_i64().filter(|m| *m > 0),
        cpus: b["NanoCpus"]
            .as_i64()
            .filter(|n| *n > 0)
            .map(|n| n as f64 / 1e9),
        cpu_shares: b["CpuShares"].as_u64().filter(|n| *n > 0),
        cpu_period: b["CpuPeriod"].as_u64().filter(|n| *n > 0),
        cpu_quota: b["CpuQuota"].as_i64().filter(|n| *n != 0),
        cpuset_cpus: text("CpusetCpus"),
        cpuset_mems: text("CpusetMems"),
        blkio_weight: b["BlkioWeight"]
            .as_u64()
            .filter(|n| *n > 0)
            .map(|n| n.min(u16::MAX as u64) as u16),
        pids_limit: b["PidsLimit"].as_i64().filter(|n| *n != 0),
        cpu_rt_period: b["CpuRealtimePeriod"].as_u64().filter(|n| *n > 0),
        cpu_rt_runtime: b["CpuRealtimeRuntime"].as_i64().filter(|n| *n != 0),
        restart,
    };
    match ctx.engine.update(id, &u) {
        Ok((_, warnings)) => Reply::json(200, &json!({"Warnings": warnings})),
        Err(e) => engine_error(e),
    }
}

/// `POST /containers/prune`: every container that is not running, narrowed by the
/// `until`, `label` and `label!` filters.
fn prune(ctx: &Ctx, req: &Request) -> Reply {
    let f = match super::system::PruneFilter::parse(req, &["until"]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let pick = |s: &Summary| f.matches(Some(unix(&s.record.created)), &s.record.options.labels);
    match ctx.engine.prune_matching(pick) {
        Ok(ids) => Reply::json(200, &json!({"ContainersDeleted": ids, "SpaceReclaimed": 0})),
        Err(e) => engine_error(e),
    }
}

fn changes(ctx: &Ctx, id: &str) -> Reply {
    match ctx.engine.diff(id) {
        Ok(c) => Reply::json(
            200,
            &Value::Array(
                c.iter()
                    .map(|(k, p)| {
                        let kind = match k.letter() {
                            'A' => 1,
                            'D' => 2,
                            _ => 0,
                        };
                        json!({"Path": p, "Kind": kind})
                    })
                    .collect(),
            ),
        ),
        Err(e) => engine_error(e),
    }
}

/// `top`: the host's `ps` (with `ps_args`) cut to the container's processes.
fn top(ctx: &Ctx, id: &str, ps_args: &str) -> Reply {
    let pids = match ctx.engine.top(id) {
        Ok(p) => p,
        Err(e) => return engine_error(e),
    };
    let out = match std::process::Command::new("ps")
        .args(ps_args.split_whitespace())
        .output()
    {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            return Reply::error(
                500,
                format!(
                    "ps {ps_args}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
            )
        }
        Err(e) => return Reply::error(500, format!("top needs ps(1) (procps) on the host: {e}")),
    };
    match parse_ps(&String::from_utf8_lossy(&out.stdout), &pids) {
        Ok(v) => Reply::json(200, &v),
        Err(m) => Reply::error(500, m),
    }
}

/// `ps` output → docker's `{"Titles": […], "Processes": [[…]]}`, keeping `pids`.
fn parse_ps(out: &str, pids: &[i32]) -> Result<Value, String> {
    let mut lines = out.lines();
    let titles: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let pid_col = titles
        .iter()
        .position(|t| *t == "PID")
        .ok_or("ps output has no PID column: pass ps_args that include it (e.g. -ef)")?;
    let mut procs = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < titles.len() {
            continue;
        }
        let Ok(pid) = f[pid_col].parse::<i32>() else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        let mut row: Vec<String> = f[..titles.len() - 1]
            .iter()
            .map(|s| s.to_string())
            .collect();
        row.push(f[titles.len() - 1..].join(" "));
        procs.push(row);
    }
    Ok(json!({"Titles": titles, "Processes": procs}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(3), "3 seconds");
        assert_eq!(human_duration(70), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }

    #[test]
    fn ps_output_is_cut_to_the_container() {
        let out = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init\nroot 42 1 0 10:00 ? 00:00:00 sleep 100\n";
        let v = parse_ps(out, &[42]).expect("parse");
        assert_eq!(
            v["Processes"],
            json!([[
                "root",
                "42",
                "1",
                "0",
                "10:00",
                "?",
                "00:00:00",
                "sleep 100"
            ]])
        );
        assert!(parse_ps("USER COMMAND\n", &[1]).is_err());
    }

    #[test]
    fn create_body_maps_host_config() {
        let body = json!({"Image": "i", "Cmd": ["sh"], "Entrypoint": [""], "StopTimeout": 3,
            "HostConfig": {"Memory": 67108864, "NanoCpus": 500000000, "CapAdd": ["NET_ADMIN"],
                "Tmpfs": {"/t": "size=1m"}, "Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 20}],
                "Binds": ["/a:/b:ro"], "Mounts": [{"Type": "tmpfs", "Target": "/m"}],
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "1k"}}, "ConsoleSize": [30, 100]}});
        let o = create_options(&body, Some("n".into())).expect("maps");
        assert_eq!(o.memory, Some(64 << 20));
        assert_eq!(o.cpus, Some(0.5));
        assert_eq!(o.entrypoint.as_deref(), Some(""));
        assert_eq!(o.tmpfs, ["/m", "/t:size=1m"]);
        assert_eq!(o.ulimits, ["nofile=10:20"]);
        assert!(o.binds[0].readonly);
        assert_eq!(o.log.max_size, 1024);
        assert_eq!(o.console_size, Some((30, 100)));
        assert!(create_options(
            &json!({"Image": "i", "HostConfig": {"NetworkMode": "container:"}}),
            None
        )
        .is_err());
        assert!(create_options(&json!({}), None).is_err());
    }

    #[test]
    fn filters_parse_both_shapes() {
        let f = parse_filters(Some(
            &r#"{"status":["exited"],"name":{"web":true}}"#.to_string(),
        ))
        .expect("filters");
        assert!(f.contains(&("status".into(), "exited".into())));
        assert!(f.contains(&("name".into(), "web".into())));
        assert!(parse_filters(Some(&r#"{"bogus":["x"]}"#.to_string())).is_err());
    }
}
