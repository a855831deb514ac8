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
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
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
    }))
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

struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn build(ctx: &Ctx, req: &Request, conn: &mut Conn) -> Option<Reply> {
    let wreq = match worker_request(req) {
        Ok(w) => w,
        Err(e) => return Some(Reply::error(400, e)),
    };
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = ctx
        .data_root
        .join("tmp")
        .join(format!("build-{}-{n}", std::process::id()));
    let tmp = TmpDir(dir.clone());
    let setup = std::fs::create_dir_all(dir.join("config"))
        .map_err(|e| e.to_string())
        .and_then(|()| {
            std::fs::write(dir.join("request.json"), wreq.to_string()).map_err(|e| e.to_string())
        })
        .and_then(|()| write_registry_config(req, &dir.join("config")));
    if let Err(e) = setup {
        return Some(Reply::error(400, e));
    }
    let body = match BodyReader::new(conn.reader, &req.headers) {
        Ok(b) => b,
        Err(e) => return Some(Reply::error(400, e)),
    };
    let bin = berth_bin();
    let child = Command::new(&bin)
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
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Some(Reply::error(
                500,
                format!("cannot start the build worker {}: {e}", bin.display()),
            ))
        }
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
    let gone = Mutex::new(false);
    let err_text = std::thread::scope(|s| {
        // the context, into the worker
        s.spawn(move || {
            if let Some(mut i) = stdin {
                let mut body = body;
                let _ = std::io::copy(&mut body, &mut i);
            }
        });
        let err = s.spawn(move || {
            let mut t = String::new();
            if let Some(mut e) = stderr {
                let _ = e.read_to_string(&mut t);
            }
            t
        });
        // its output, to the client, line by line
        if let Some(o) = stdout {
            for line in BufReader::new(o).lines() {
                let Ok(line) = line else { break };
                if quiet || *lock(&gone) {
                    continue;
                }
                let msg = json!({ "stream": format!("{line}\n") });
                if http::write_chunk(w, format!("{msg}\n").as_bytes()).is_err() {
                    // The client left: stop the build (the worker cleans up on SIGTERM).
                    *lock(&gone) = true;
                    let _ = Command::new("kill")
                        .arg("-TERM")
                        .arg(pid.to_string())
                        .status();
                }
            }
        }
        err.join().unwrap_or_default()
    });
    let status = child.wait();
    if *lock(&gone) {
        return None;
    }
    let ok = status.is_ok_and(|s| s.success());
    let id = std::fs::read_to_string(dir.join("iid")).unwrap_or_default();
    let mut send = |v: Value| http::write_chunk(w, format!("{v}\n").as_bytes());
    if ok && !id.trim().is_empty() {
        let id = id.trim();
        let _ = send(json!({"aux": {"ID": id}}));
        if quiet {
            let _ = send(json!({ "stream": format!("{id}\n") }));
        } else {
            let short: String = id.trim_start_matches("sha256:").chars().take(12).collect();
            let _ = send(json!({ "stream": format!("Successfully built {short}\n") }));
            for t in wreq["tags"].as_array().into_iter().flatten() {
                let _ = send(
                    json!({ "stream": format!("Successfully tagged {}\n", t.as_str().unwrap_or("")) }),
                );
            }
        }
        for t in wreq["tags"].as_array().into_iter().flatten() {
            ctx.events
                .publish("image", "tag", id, [("name", t.as_str().unwrap_or(""))]);
        }
    } else {
        let msg = err_text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("the build failed")
            .trim_start_matches("Error: ")
            .to_string();
        let _ = send(json!({"errorDetail": {"message": msg}, "error": msg}));
    }
    let _ = http::end_chunked(w);
    drop(tmp);
    None
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
    fn bad_build_queries_are_refused() {
        for q in [
            [("buildargs", "[1]")],
            [("buildargs", r#"{"V":1}"#)],
            [("t", "UPPER:case")],
            [("dockerfile", "../etc/passwd")],
            [("remote", "https://example.invalid/x.git")],
            [("platform", "windows/arm64")],
        ] {
            assert!(worker_request(&req(&q)).is_err(), "{q:?}");
        }
    }
}
