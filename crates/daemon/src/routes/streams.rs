//! Container routes that stream: attach (hijacked; the connection is handed to the
//! container's shim), logs (followed), stats, archive (GET/HEAD/PUT through an
//! archive helper process, since the copy forks), export.

use super::{engine_error, flag, Conn, Ctx, Reply};
use crate::http::{BodyReader, Request};
use berth_engine::attach::{frame, parse_detach_keys, AttachOptions};
use berth_engine::logs::{Entry, Stream};
use berth_engine::State;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

/// What this module serves.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/containers/{id}/attach"),
    ("GET", "/containers/{id}/logs"),
    ("GET", "/containers/{id}/stats"),
    ("GET", "/containers/{id}/archive"),
    ("HEAD", "/containers/{id}/archive"),
    ("PUT", "/containers/{id}/archive"),
    ("GET", "/containers/{id}/export"),
];

/// Whether `req` uploads a body this module reads itself (archive PUT).
pub fn streams_body(req: &Request) -> bool {
    req.method == "PUT" && req.path.ends_with("/archive")
}

/// Dispatch within this module; every route answers on the connection.
pub fn route(
    ctx: &Arc<Ctx>,
    req: &Request,
    parts: &[&str],
    conn: &mut Conn,
) -> Option<Option<Reply>> {
    let r = match (req.method.as_str(), parts) {
        ("POST", ["containers", id, "attach"]) => attach(ctx, req, id, conn),
        ("GET", ["containers", id, "logs"]) => logs(ctx, req, id, conn.writer),
        ("GET", ["containers", id, "stats"]) => stats(ctx, req, id, conn.writer),
        ("GET" | "HEAD", ["containers", id, "archive"]) => archive_get(ctx, req, id, conn.writer),
        ("PUT", ["containers", id, "archive"]) => archive_put(ctx, req, id, conn),
        ("GET", ["containers", id, "export"]) => export(ctx, id, conn.writer),
        _ => return None,
    };
    Some(r.err().flatten())
}

/// A reply to send as is, or an I/O failure on the connection (nothing to send).
type Streamed = Result<(), Option<Reply>>;

fn fail(r: Reply) -> Streamed {
    Err(Some(r))
}

fn io(_: std::io::Error) -> Option<Reply> {
    None
}

fn stream_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// Headers of a reply whose body is the rest of the connection.
fn head(w: &mut impl Write, status: &str, ct: &str, extra: &str) -> std::io::Result<()> {
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nApi-Version: {}\r\n{extra}Connection: close\r\n\r\n",
        crate::API_VERSION
    )?;
    w.flush()
}

/// `POST /containers/{id}/attach`: upgrade, replay the log with `logs=1`, then hand
/// the connection to the shim (at once when it runs, at its next start when created
/// or exited).
fn attach(ctx: &Arc<Ctx>, req: &Request, id: &str, conn: &mut Conn) -> Streamed {
    let s = ctx.engine.inspect(id).map_err(|e| Some(engine_error(e)))?;
    let keys = match req.query.get("detachKeys").filter(|k| !k.is_empty()) {
        Some(k) => parse_detach_keys(k).map_err(|e| Some(Reply::error(400, e)))?,
        None => berth_engine::attach::DEFAULT_DETACH_KEYS.to_vec(),
    };
    let opts = AttachOptions {
        stdin: flag(req, "stdin") && s.record.options.interactive,
        stdout: flag(req, "stdout"),
        stderr: flag(req, "stderr"),
        detach_keys: keys,
    };
    let stream = flag(req, "stream");
    // a stopped container is attached to as a created one: its next start hands the
    // stream over (`start -a` of an exited container); only docker's CLI refuses it
    if stream && s.state == State::Dead {
        return fail(Reply::error(
            409,
            format!(
                "container {} is dead (its supervisor died): remove it with `docker rm -f {}`",
                &s.record.id[..12],
                s.record.name
            ),
        ));
    }
    let tty = s.record.options.tty;
    let upgrade = req
        .headers
        .get("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("tcp"));
    let (status, extra) = if upgrade {
        ("101 UPGRADED", "Upgrade: tcp\r\n")
    } else {
        ("200 OK", "")
    };
    let w = &mut *conn.writer;
    head(w, status, stream_type(tty), extra).map_err(io)?;
    if flag(req, "logs") {
        let entries =
            berth_engine::logs::read(&ctx.engine.log_path(&s.record.id)).unwrap_or_default();
        for e in entries {
            let st = stream_of(&e);
            if (st == Stream::Stdout && opts.stdout) || (st == Stream::Stderr && opts.stderr) {
                w.write_all(&frame(tty, st, e.log.as_bytes())).map_err(io)?;
            }
        }
        w.flush().map_err(io)?;
    }
    if !stream {
        return Ok(());
    }
    let client = conn.writer.try_clone().map_err(io)?;
    super::containers::publish_now(ctx, "attach", &s.record.id, Vec::new());
    match s.state {
        State::Created | State::Exited(_) | State::Dead => {
            ctx.containers.park(&s.record.id, client, opts)
        }
        _ => {
            // the container may have exited meanwhile: then the stream just ends
            if let Err(e) = ctx.engine.attach(&s.record.id, &client, &opts) {
                eprintln!("berthd: attach to {}: {e}", s.record.id);
            }
        }
    }
    Ok(())
}

fn stream_of(e: &Entry) -> Stream {
    if e.stream == "stderr" {
        Stream::Stderr
    } else {
        Stream::Stdout
    }
}

/// docker's `since`/`until`: unix seconds with an optional fraction → RFC 3339 with
/// nanoseconds (comparable with the log's times as strings).
fn log_time(v: &str) -> Option<String> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, "0"));
    let secs: i64 = secs.parse().ok()?;
    let nanos: u32 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    let t = chrono::DateTime::from_timestamp(secs, nanos)?;
    Some(t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
}

/// Which log entries a `logs` request wants, and how.
struct LogFilter {
    since: Option<String>,
    until: Option<String>,
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    tty: bool,
    /// `details`: docker's attributes (`k=v,…`, URL-encoded, sorted) and a space
    /// before each line
    details: Option<String>,
}

/// docker's `logs --details` attributes of a container: the values of the label and
/// environment keys its `--log-opt labels=`/`env=` named, as `k=v` pairs sorted by
/// key and URL-encoded, joined by commas (empty without any).
fn log_details(ctx: &Ctx, r: &berth_engine::Record) -> String {
    // the container's whole environment (the image's too), from its spec
    let spec_env: Vec<String> = ctx
        .engine
        .runtime_spec(&r.id)
        .ok()
        .and_then(|v| serde_json::from_value(v["process"]["env"].clone()).ok())
        .unwrap_or_else(|| r.options.env.clone());
    let mut attrs: std::collections::BTreeMap<&str, &str> = Default::default();
    for k in &r.options.log.labels {
        if let Some(v) = r.options.labels.get(k) {
            attrs.insert(k, v);
        }
    }
    for k in &r.options.log.env {
        if let Some(v) = spec_env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix(k.as_str())?.strip_prefix('='))
        {
            attrs.insert(k, v);
        }
    }
    // Go's url.QueryEscape: a space is '+'
    let q = |s: &str| berth_client::enc(s).replace("%20", "+");
    attrs
        .iter()
        .map(|(k, v)| format!("{}={}", q(k), q(v)))
        .collect::<Vec<_>>()
        .join(",")
}

impl LogFilter {
    fn wants(&self, e: &Entry) -> bool {
        self.since.as_ref().is_none_or(|s| e.time >= *s)
            && self.until.as_ref().is_none_or(|u| e.time <= *u)
    }

    /// Writes the wanted `entries` as docker's stream.
    fn send(&self, w: &mut impl Write, entries: &[Entry]) -> std::io::Result<()> {
        for e in entries.iter().filter(|e| self.wants(e)) {
            let st = stream_of(e);
            if (st == Stream::Stdout && !self.stdout) || (st == Stream::Stderr && !self.stderr) {
                continue;
            }
            let mut line = String::new();
            if self.timestamps {
                line.push_str(&e.time);
                line.push(' ');
            }
            if let Some(d) = &self.details {
                line.push_str(d);
                line.push(' ');
            }
            line.push_str(&e.log);
            w.write_all(&frame(self.tty, st, line.as_bytes()))?;
        }
        w.flush()
    }
}

/// `GET /containers/{id}/logs`: the json log as docker's stream; with `follow`, new
/// entries as they come until the container stops.
fn logs(ctx: &Arc<Ctx>, req: &Request, id: &str, w: &mut UnixStream) -> Streamed {
    let s = ctx.engine.inspect(id).map_err(|e| Some(engine_error(e)))?;
    if s.record.options.log_driver.as_deref() == Some("none") {
        return Err(Some(Reply::error(
            501,
            "configured logging driver does not support reading: the container was created with --log-driver none",
        )));
    }
    let full = s.record.id.clone();
    let tail: Option<usize> = req
        .query
        .get("tail")
        .filter(|t| *t != "all")
        .and_then(|t| t.parse().ok());
    let time = |k: &str| -> Result<Option<String>, Option<Reply>> {
        match req.query.get(k).filter(|v| !v.is_empty() && *v != "0") {
            None => Ok(None),
            Some(v) => log_time(v).map(Some).ok_or_else(|| {
                Some(Reply::error(
                    400,
                    format!("{k}={v}: use unix seconds (with an optional fraction)"),
                ))
            }),
        }
    };
    let filter = LogFilter {
        since: time("since")?,
        until: time("until")?,
        stdout: flag(req, "stdout"),
        stderr: flag(req, "stderr"),
        timestamps: flag(req, "timestamps"),
        tty: s.record.options.tty,
        details: flag(req, "details").then(|| log_details(ctx, &s.record)),
    };
    let path = ctx.engine.log_path(&full);
    let dir = ctx.engine.container_dir(&full);
    // opened before anything is read: the descriptor keeps the lines readable if the
    // container is removed while we follow it
    let mut log = berth_engine::logs::Follower::open(&path, &[&dir]);
    head(w, "200 OK", stream_type(filter.tty), "").map_err(io)?;
    let mut first = log.history();
    if let Some(n) = tail {
        first.retain(|e| filter.wants(e));
        let skip = first.len().saturating_sub(n);
        first.drain(..skip);
    }
    filter.send(w, &first).map_err(io)?;
    if !flag(req, "follow") {
        return Ok(());
    }
    // followed in a thread of its own: this one ends, and with it its stack, which the
    // request's handling made deep (a following client costs what it uses)
    let (ctx, w) = (ctx.clone(), w.try_clone().map_err(io)?);
    std::thread::Builder::new()
        .name("logs-follow".into())
        .stack_size(FOLLOW_STACK)
        .spawn(move || follow(&ctx, &full, log, &filter, w))
        .map_err(io)?;
    Ok(())
}

/// Stack of a thread following a log: as a connection's (the same engine calls),
/// virtual: it gives back what it no longer uses before it blocks.
const FOLLOW_STACK: usize = 2 << 20;

/// Sends container `id`'s new entries as they come, until it stops and its last ones
/// are sent, or the client `w` hangs up.
fn follow(
    ctx: &Ctx,
    id: &str,
    mut log: berth_engine::logs::Follower,
    filter: &LogFilter,
    mut w: UnixStream,
) {
    loop {
        // looked at before reading: the supervisor writes the log, then records the exit
        let running = ctx
            .engine
            .inspect(id)
            .is_ok_and(|s| matches!(s.state, State::Running | State::Created));
        if filter.send(&mut w, &log.next_entries()).is_err() || !running {
            return;
        }
        let _ = berth_sys::proc::release_idle_stack();
        // the timeout: a safety net for exits no file change announces (a supervisor
        // that died)
        if log.wait(Some(w.as_fd()), Duration::from_secs(1)) && super::peer_gone(&w) {
            return;
        }
    }
}

/// One of docker's stats documents, from two samples.
fn stats_json(
    s: &berth_engine::Summary,
    now: &berth_engine::stats::Stats,
    now_host: u64,
    pre: Option<&(berth_engine::stats::Stats, u64, String)>,
) -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = |st: &berth_engine::stats::Stats, host: u64| {
        json!({"cpu_usage": {"total_usage": st.cpu_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "system_cpu_usage": host, "online_cpus": cpus,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}})
    };
    let blk = |st: &berth_engine::stats::Stats| {
        json!({"io_service_bytes_recursive": [
            {"major": 0, "minor": 0, "op": "read", "value": st.blk_read},
            {"major": 0, "minor": 0, "op": "write", "value": st.blk_write}]})
    };
    json!({
        "read": berth_engine::record::now(),
        "preread": pre.map_or("0001-01-01T00:00:00Z".to_string(), |p| p.2.clone()),
        "id": s.record.id, "name": format!("/{}", s.record.name),
        "pids_stats": {"current": now.pids},
        "cpu_stats": cpu(now, now_host),
        "precpu_stats": pre.map_or(json!({"cpu_usage": {"total_usage": 0}, "throttling_data": {}}), |p| cpu(&p.0, p.1)),
        "memory_stats": {"usage": now.mem_usage, "limit": now.mem_limit, "stats": {}},
        "blkio_stats": blk(now),
        "networks": now.networks.iter().map(|(name, c)| (name.clone(), json!({
            "rx_bytes": c.rx_bytes, "rx_packets": c.rx_packets, "rx_errors": c.rx_errors,
            "rx_dropped": c.rx_dropped, "tx_bytes": c.tx_bytes, "tx_packets": c.tx_packets,
            "tx_errors": c.tx_errors, "tx_dropped": c.tx_dropped,
        }))).collect::<serde_json::Map<String, Value>>(),
    })
}

/// `GET /containers/{id}/stats`: one document (`stream=false`, two samples half a
/// second apart so CPU % means something) or one a second.
fn stats(ctx: &Ctx, req: &Request, id: &str, w: &mut impl Write) -> Streamed {
    let s = ctx.engine.inspect(id).map_err(|e| Some(engine_error(e)))?;
    let stream = req
        .query
        .get("stream")
        .is_none_or(|v| v == "1" || v == "true");
    let one_shot = flag(req, "one-shot");
    let sample = |id: &str| {
        let host = berth_engine::stats::host_cpu_ns();
        let st = if s.state == State::Running {
            ctx.engine.stats(id).unwrap_or_default()
        } else {
            berth_engine::stats::Stats::default()
        };
        (st, host, berth_engine::record::now())
    };
    head(w, "200 OK", "application/json", "").map_err(io)?;
    let mut pre = None;
    if !one_shot {
        pre = Some(sample(&s.record.id));
        std::thread::sleep(Duration::from_millis(500));
    }
    loop {
        let now = sample(&s.record.id);
        let doc = stats_json(&s, &now.0, now.1, pre.as_ref());
        w.write_all(format!("{doc}\n").as_bytes()).map_err(io)?;
        w.flush().map_err(io)?;
        let running = ctx
            .engine
            .inspect(&s.record.id)
            .is_ok_and(|x| x.state == State::Running);
        if !stream || !running {
            return Ok(());
        }
        pre = Some(now);
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Runs an archive helper; its stdout, or its stderr as the error.
fn helper(
    ctx: &Ctx,
    op: &str,
    id: &str,
    path: &str,
    stdin: Stdio,
    stdout: Stdio,
) -> Result<std::process::Child, Option<Reply>> {
    let mut c = ctx
        .engine
        .archive_command(op, id, path)
        .map_err(|e| Some(engine_error(e)))?;
    c.stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Some(Reply::error(500, format!("start the archive helper: {e}"))))
}

/// The archive helper's failure (its stderr) as docker's error reply.
fn helper_failure(stderr: &[u8]) -> Reply {
    let msg = String::from_utf8_lossy(stderr).trim().to_string();
    let msg = msg.trim_start_matches("berth: ").to_string();
    let lower = msg.to_ascii_lowercase();
    let status = if lower.contains("no such") || lower.contains("could not find") {
        404
    } else if lower.contains("not a directory") || lower.contains("refused") {
        400
    } else {
        500
    };
    Reply::error(status, msg)
}

fn path_stat(ctx: &Ctx, id: &str, path: &str) -> Result<String, Option<Reply>> {
    let child = helper(ctx, "stat", id, path, Stdio::null(), Stdio::piped())?;
    let out = child
        .wait_with_output()
        .map_err(|e| Some(Reply::error(500, e)))?;
    if !out.status.success() {
        return Err(Some(helper_failure(&out.stderr)));
    }
    Ok(base64(&out.stdout))
}

/// `GET|HEAD /containers/{id}/archive?path=`: the stat header, then (GET) the tar.
fn archive_get(ctx: &Ctx, req: &Request, id: &str, w: &mut impl Write) -> Streamed {
    let s = ctx.engine.inspect(id).map_err(|e| Some(engine_error(e)))?;
    let Some(path) = req.query.get("path").filter(|p| !p.is_empty()) else {
        return fail(Reply::error(400, "archive: path is required (?path=)"));
    };
    let stat = path_stat(ctx, &s.record.id, path)?;
    let extra = format!("X-Docker-Container-Path-Stat: {stat}\r\n");
    if req.method == "HEAD" {
        head(w, "200 OK", "application/x-tar", &extra).map_err(io)?;
        return Ok(());
    }
    let mut child = helper(
        ctx,
        "get",
        &s.record.id,
        path,
        Stdio::null(),
        Stdio::piped(),
    )?;
    head(w, "200 OK", "application/x-tar", &extra).map_err(io)?;
    if let Some(mut out) = child.stdout.take() {
        let _ = std::io::copy(&mut out, w);
    }
    let _ = child.wait();
    Ok(())
}

/// `PUT /containers/{id}/archive?path=DIR`: extract the uploaded tar into DIR.
fn archive_put(ctx: &Ctx, req: &Request, id: &str, conn: &mut Conn) -> Streamed {
    let s = ctx.engine.inspect(id).map_err(|e| Some(engine_error(e)))?;
    let Some(path) = req.query.get("path").filter(|p| !p.is_empty()) else {
        return fail(Reply::error(400, "archive: path is required (?path=)"));
    };
    // docker's cp -a: keep the archive's uid/gid
    let op = if super::flag(req, "copyUIDGID") {
        "put-owned"
    } else {
        "put"
    };
    let mut child = helper(ctx, op, &s.record.id, path, Stdio::piped(), Stdio::null())?;
    let mut body =
        BodyReader::new(conn.reader, &req.headers).map_err(|e| Some(Reply::error(400, e)))?;
    if let Some(mut stdin) = child.stdin.take() {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if stdin.write_all(&buf[..n]).is_err() {
                        // the helper failed: drain the upload so the client reads our answer
                        let _ = std::io::copy(&mut body, &mut std::io::sink());
                        break;
                    }
                }
                Err(e) => return fail(Reply::error(400, format!("read upload: {e}"))),
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Some(Reply::error(500, e)))?;
    if !out.status.success() {
        return fail(helper_failure(&out.stderr));
    }
    fail(Reply::empty(200))
}

/// `GET /containers/{id}/export`: the filesystem as tar.
fn export(ctx: &Ctx, id: &str, w: &mut impl Write) -> Streamed {
    let s = ctx.engine.inspect(id).map_err(|e| Some(engine_error(e)))?;
    let (r, wr) = std::io::pipe().map_err(|e| Some(Reply::error(500, e)))?;
    let engine = ctx.engine.clone();
    let full = s.record.id.clone();
    let t = std::thread::spawn(move || engine.export(&full, Stdio::from(wr)));
    head(w, "200 OK", "application/x-tar", "").map_err(io)?;
    let mut r = r;
    let _ = std::io::copy(&mut r, w);
    let _ = t.join();
    Ok(())
}

/// Standard base64 (for the path stat header).
fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                o.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                o.push('=');
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"{\"a\":1}"), "eyJhIjoxfQ==");
    }

    #[test]
    fn log_times_from_unix_seconds() {
        assert_eq!(
            log_time("1357133017.5").as_deref(),
            Some("2013-01-02T13:23:37.500000000Z")
        );
        assert_eq!(
            log_time("1357133017").as_deref(),
            Some("2013-01-02T13:23:37.000000000Z")
        );
        assert!(log_time("soon").is_none());
    }
}
