//! `POST /build`: the legacy builder protocol (`DOCKER_BUILDKIT=0 docker build`): a tar
//! context in the body, options in the query, docker's JSON lines back
//! (`{"stream"}`, `{"aux":{"ID"}}`, `{"error","errorDetail"}`).
//!
//! RUN steps fork through the runtime, which must not happen in this multi-threaded
//! daemon: each build runs in a child process, `berth build-worker`, which reads the
//! context from its stdin and writes docker's classic build output on its stdout; the
//! daemon relays both ways and turns the output into JSON lines.

use super::{flag, lock, Conn, Ctx, Reply};
use crate::http::{self, BodyReader, Request};
use serde_json::{json, Map, Value};
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// What this module serves.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/build")];

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

/// The `berth` binary that runs builds: `BERTH_BIN`, else next to berthd.
pub fn berth_bin() -> PathBuf {
    std::env::var_os("BERTH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("berth")))
                .unwrap_or_else(|| "berth".into())
        })
}

/// A JSON object of strings from a query value (`buildargs`, `labels`); `null` values
/// (docker's "take it from the environment") are dropped.
fn json_map(req: &Request, k: &str) -> Result<Map<String, Value>, String> {
    let Some(raw) = req.query.get(k).filter(|v| !v.is_empty()) else {
        return Ok(Map::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| format!("invalid {k} {raw:?}: {e}; send a JSON object of strings"))?;
    let Value::Object(o) = v else {
        return Err(format!(
            "invalid {k} {raw:?}: send a JSON object of strings"
        ));
    };
    let mut out = Map::new();
    for (key, val) in o {
        match val {
            Value::String(_) => {
                out.insert(key, val);
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

/// What the worker is asked to do (it parses the same JSON).
fn worker_request(req: &Request) -> Result<Value, String> {
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
    Ok(json!({
        "dockerfile": dockerfile,
        "tags": tags,
        "build_args": json_map(req, "buildargs")?,
        "labels": json_map(req, "labels")?,
        "target": req.query.get("target").filter(|t| !t.is_empty()),
        "no_cache": flag(req, "nocache"),
        "pull": flag(req, "pull"),
        // berth's own: its CLI asks for BuildKit's displays on a terminal
        "progress": progress_mode(req)?,
        "width": req.query.get("width").and_then(|w| w.parse::<u16>().ok()).unwrap_or(80),
    }))
}

/// `progress` (berth's extension; docker clients get the classic output): classic,
/// plain or tty.
fn progress_mode(req: &Request) -> Result<String, String> {
    match req.query.get("progress").map(String::as_str) {
        None | Some("") | Some("classic") => Ok("classic".into()),
        Some(m @ ("plain" | "tty")) => Ok(m.into()),
        Some(m) => Err(format!("progress {m:?}: use classic, plain or tty")),
    }
}

/// Registry credentials of `X-Registry-Config` (base64 JSON `{"host": {"username",
/// "password"}}`) as berth's credentials file, for the worker's base-image pulls.
fn write_registry_config(req: &Request, dir: &std::path::Path) -> Result<(), String> {
    use base64::Engine as _;
    let Some(h) = req
        .headers
        .get("x-registry-config")
        .filter(|h| !h.trim().is_empty())
    else {
        return Ok(());
    };
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let raw = [URL_SAFE, URL_SAFE_NO_PAD, STANDARD]
        .iter()
        .find_map(|e| e.decode(h.trim()).ok())
        .ok_or("X-Registry-Config is not base64")?;
    let v: Map<String, Value> = serde_json::from_slice(&raw)
        .map_err(|e| format!("X-Registry-Config is not base64 of a JSON object: {e}"))?;
    let creds = berth_registry::Credentials::new(dir.join("auth.json"));
    for (host, a) in v {
        let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        if !s("username").is_empty() {
            let host = super::system::registry_host(&host);
            creds
                .set(&host, &s("username"), &s("password"))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// `X-Berth-Build-Secrets` (berth's own header: base64 JSON `{"id": base64(value)}`,
/// for `RUN --mount=type=secret`) as files, mode 0600, that the worker reads.
fn write_secrets(req: &Request, dir: &std::path::Path) -> Result<(), String> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use std::os::unix::fs::OpenOptionsExt;
    let Some(h) = req
        .headers
        .get("x-berth-build-secrets")
        .filter(|h| !h.trim().is_empty())
    else {
        return Ok(());
    };
    let bad = |e: &dyn std::fmt::Display| {
        format!("X-Berth-Build-Secrets: {e}: send base64 of {{\"id\": base64(value)}}")
    };
    let raw = STANDARD.decode(h.trim()).map_err(|e| bad(&e))?;
    let v: Map<String, Value> = serde_json::from_slice(&raw).map_err(|e| bad(&e))?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for (id, val) in v {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(format!("secret id {id:?} is not a plain name"));
        }
        let data = STANDARD
            .decode(val.as_str().unwrap_or_default())
            .map_err(|e| bad(&e))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join(&id))
            .map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut f, &data).map_err(|e| e.to_string())?;
    }
    Ok(())
}

struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The build's scratch directory (`<data-root>/tmp/build-PID-N`): the request, the
/// registry credentials and secrets for the worker, and the id it writes.
fn prepare(ctx: &Ctx, req: &Request, wreq: &Value) -> Result<TmpDir, String> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = ctx
        .data_root
        .join("tmp")
        .join(format!("build-{}-{n}", std::process::id()));
    let tmp = TmpDir(dir.clone());
    std::fs::create_dir_all(dir.join("config")).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("request.json"), wreq.to_string()).map_err(|e| e.to_string())?;
    write_registry_config(req, &dir.join("config"))?;
    write_secrets(req, &dir.join("secrets"))?;
    Ok(tmp)
}

fn spawn_worker(ctx: &Ctx, dir: &std::path::Path) -> Result<Child, Reply> {
    let bin = berth_bin();
    Command::new(&bin)
        .arg("--data-root")
        .arg(&ctx.data_root)
        .arg("build-worker")
        .arg("--request")
        .arg(dir.join("request.json"))
        .arg("--iidfile")
        .arg(dir.join("iid"))
        .env("BERTH_CONFIG", dir.join("config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Reply::error(
                500,
                format!("cannot start the build worker {}: {e}", bin.display()),
            )
        })
}

/// The worker's output to the client, one `{"stream"}` message per line as docker
/// sends them (docker-py finds the image id in a message that is exactly
/// `Successfully built ID`); with `raw` (a terminal display, which redraws without
/// newlines) a partial line goes out at once. Whole UTF-8 characters per message. A
/// failed write means the client left: the build is interrupted and the rest drained.
fn relay_output(
    mut o: impl Read,
    w: &mut UnixStream,
    raw: bool,
    quiet: bool,
    gone: &Mutex<bool>,
    pid: u32,
) {
    let mut buf = vec![0u8; 16 << 10];
    let mut pending: Vec<u8> = Vec::new();
    let send = |text: String, w: &mut UnixStream| {
        if text.is_empty() || quiet || *lock(gone) {
            return;
        }
        let msg = json!({ "stream": text });
        if http::write_chunk(w, format!("{msg}\n").as_bytes()).is_err() {
            *lock(gone) = true;
            interrupt(pid);
        }
    };
    loop {
        let n = match o.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(p) = pending.iter().position(|&c| c == b'\n') {
            let mut line: Vec<u8> = pending.drain(..=p).collect();
            send(utf8_prefix(&mut line), w);
        }
        if raw {
            send(utf8_prefix(&mut pending), w);
        }
    }
    send(String::from_utf8_lossy(&pending).into_owned(), w);
}

/// docker's error message for a failed build: the worker's last line; a failed RUN
/// carries its exit code, which the docker CLI exits with (as with dockerd).
fn error_message(stderr: &str) -> Value {
    let msg = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("the build failed")
        .trim_start_matches("Error: ")
        .to_string();
    let code = msg
        .rsplit_once("returned a non-zero code: ")
        .and_then(|(_, c)| c.trim().parse::<i64>().ok());
    let mut detail = json!({ "message": msg });
    if let Some(c) = code {
        detail["code"] = json!(c);
    }
    json!({"errorDetail": detail, "error": msg})
}

fn build(ctx: &Ctx, req: &Request, conn: &mut Conn) -> Option<Reply> {
    let wreq = match worker_request(req) {
        Ok(w) => w,
        Err(e) => return Some(Reply::error(400, e)),
    };
    let tmp = match prepare(ctx, req, &wreq) {
        Ok(t) => t,
        Err(e) => return Some(Reply::error(400, e)),
    };
    let reader = &mut *conn.reader;
    if let Err(e) = BodyReader::new(&mut *reader, &req.headers) {
        return Some(Reply::error(400, e));
    }
    let mut child = match spawn_worker(ctx, &tmp.0) {
        Ok(c) => c,
        Err(r) => return Some(r),
    };
    let quiet = flag(req, "q");
    let w = &mut *conn.writer;
    if http::start_chunked(w, 200, "application/json").is_err() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let pid = child.id();
    let (gone, done) = (Mutex::new(false), Mutex::new(false));
    let err_text = std::thread::scope(|s| {
        // The context, into the worker; then watch the client: when it goes away (or
        // half-closes, as berth does on Ctrl-C) the build is interrupted, as docker's.
        let (done, gone) = (&done, &gone);
        s.spawn(move || {
            if let (Some(mut i), Ok(mut body)) =
                (stdin, BodyReader::new(&mut *reader, &req.headers))
            {
                let _ = std::io::copy(&mut body, &mut i);
            }
            while !*lock(done) {
                if http::peer_closed(reader) {
                    interrupt(pid);
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
        let err = s.spawn(move || {
            let mut t = String::new();
            if let Some(mut e) = stderr {
                let _ = e.read_to_string(&mut t);
            }
            t
        });
        if let Some(o) = stdout {
            let raw = wreq["progress"] == "tty";
            relay_output(o, w, raw, quiet, gone, pid);
        }
        let t = err.join().unwrap_or_default();
        *lock(done) = true;
        t
    });
    let status = child.wait();
    let id = std::fs::read_to_string(tmp.0.join("iid")).unwrap_or_default();
    // Gone before the last message, so a client that reads it finds nothing left over.
    drop(tmp);
    if *lock(&gone) {
        return None; // nobody to tell; a client that only half-closed gets the end
    }
    let mut send = |v: Value| http::write_chunk(w, format!("{v}\n").as_bytes());
    let id = id.trim();
    if status.is_ok_and(|s| s.success()) && !id.is_empty() {
        let _ = send(json!({"aux": {"ID": id}}));
        // (the worker's renderer printed "Successfully built/tagged" already)
        if quiet {
            let _ = send(json!({ "stream": format!("{id}\n") }));
        }
        for t in wreq["tags"].as_array().into_iter().flatten() {
            ctx.events
                .publish("image", "tag", id, [("name", t.as_str().unwrap_or(""))]);
        }
    } else {
        let _ = send(error_message(&err_text));
    }
    let _ = http::end_chunked(w);
    None
}

/// Takes the longest prefix of `b` that is whole UTF-8 (invalid bytes replaced),
/// leaving an incomplete trailing character for the next read.
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

/// Interrupt a build worker as Ctrl-C would: it fails the build and cleans up.
fn interrupt(pid: u32) {
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
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
    fn query_to_worker_request() {
        let r = worker_request(&req(&[
            ("t", "a:1"),
            ("t", "b"),
            ("buildargs", r#"{"V":"2","U":null}"#),
            ("nocache", "1"),
        ]))
        .expect("test input");
        assert_eq!(r["tags"], json!(["a:1", "b"]));
        assert_eq!(r["build_args"], json!({"V": "2"}));
        assert_eq!(r["dockerfile"], "Dockerfile");
        assert_eq!(r["no_cache"], true);
    }

    #[test]
    fn build_errors_carry_the_run_status() {
        let e = error_message(
            "step 2\nError: The command '/bin/sh -c exit 3' returned a non-zero code: 3\n",
        );
        assert_eq!(e["errorDetail"]["code"], 3);
        assert_eq!(
            e["error"],
            "The command '/bin/sh -c exit 3' returned a non-zero code: 3"
        );
        assert_eq!(error_message("")["error"], "the build failed");
        assert!(error_message("Error: bad Dockerfile")["errorDetail"]
            .get("code")
            .is_none());
    }

    #[test]
    fn output_goes_out_a_line_per_message() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let gone = Mutex::new(false);
        let out = "Step 1/1 : FROM x\nSuccessfully built 0123\ntail";
        relay_output(out.as_bytes(), &mut a, false, false, &gone, 0);
        drop(a);
        let mut got = String::new();
        std::io::Read::read_to_string(&mut &b, &mut got).expect("read");
        let streams: Vec<String> = got
            .split("\r\n")
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object) // not the chunk sizes
            .map(|v| v["stream"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            streams,
            ["Step 1/1 : FROM x\n", "Successfully built 0123\n", "tail"]
        );
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
        ] {
            assert!(worker_request(&req(&q)).is_err(), "{q:?}");
        }
    }
}
