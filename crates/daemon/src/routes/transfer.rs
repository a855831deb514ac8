//! Image transfers: pull and import (`POST /images/create`), push, load and save, with
//! docker's JSON progress stream. Registry credentials come with each request in
//! `X-Registry-Auth` (base64 JSON, as the docker CLI sends them): the daemon keeps
//! none of its own.

use super::images::{image_error, reference, store};
use super::{flag, Conn, Ctx, Reply};
use crate::http::{self, BodyReader, Request};
use base64::Engine as _;
use berth_content::Progress;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;

/// Per item: (bytes so far, total, bytes at the last message).
type Bars = HashMap<String, (u64, Option<u64>, u64)>;

/// A JSON-lines reply written as it happens: the headers go out with the first
/// message, so an error before any progress still gets its own status code.
pub(crate) struct JsonStream {
    w: Mutex<(UnixStream, bool)>,
    bars: Mutex<Bars>,
    /// the status of a running transfer ("Downloading", "Pushing", "Loading layer")
    verb: &'static str,
}

impl JsonStream {
    pub(crate) fn new(w: &UnixStream, verb: &'static str) -> std::io::Result<JsonStream> {
        Ok(JsonStream {
            w: Mutex::new((w.try_clone()?, false)),
            bars: Mutex::default(),
            verb,
        })
    }

    /// Send one message (errors of a gone client are ignored: the work finishes).
    pub(crate) fn send(&self, v: &Value) {
        let mut g = super::lock(&self.w);
        let (w, started) = &mut *g;
        if !*started {
            *started = true;
            let _ = http::start_chunked(w, 200, "application/json");
        }
        let _ = http::write_chunk(w, format!("{v}\n").as_bytes());
    }

    pub(crate) fn status(&self, s: &str) {
        self.send(&json!({ "status": s }));
    }

    pub(crate) fn started(&self) -> bool {
        super::lock(&self.w).1
    }

    /// An error: as the stream's last message once it started, else as a reply.
    pub(crate) fn fail(&self, status: u16, msg: impl std::fmt::Display) -> Option<Reply> {
        let msg = msg.to_string();
        if !self.started() {
            return Some(Reply::error(status, msg));
        }
        self.send(&json!({"errorDetail": {"message": msg}, "error": msg}));
        self.end();
        None
    }

    pub(crate) fn end(&self) {
        let mut g = super::lock(&self.w);
        if !g.1 {
            g.1 = true;
            let _ = http::start_chunked(&mut g.0, 200, "application/json");
        }
        let _ = http::end_chunked(&mut g.0);
    }
}

fn bar(current: u64, total: Option<u64>) -> String {
    match total.filter(|t| *t > 0) {
        Some(t) => {
            let w = 50;
            let done = usize::try_from(current.min(t) * w / t).unwrap_or(0);
            let arrow = if done < 50 { ">" } else { "" };
            format!(
                "[{}{arrow}{}] {}/{}",
                "=".repeat(done),
                " ".repeat(50usize.saturating_sub(done + arrow.len())),
                current,
                t
            )
        }
        None => format!("{current}B"),
    }
}

impl Progress for JsonStream {
    fn start(&self, id: &str, total: Option<u64>) {
        super::lock(&self.bars).insert(id.to_string(), (0, total, 0));
        let first = if self.verb == "Downloading" {
            "Pulling fs layer"
        } else {
            "Preparing"
        };
        self.send(&json!({"status": first, "progressDetail": {}, "id": id}));
    }
    fn advance(&self, id: &str, n: u64) {
        let msg = {
            let mut bars = super::lock(&self.bars);
            let Some((cur, total, last)) = bars.get_mut(id) else {
                return;
            };
            *cur += n;
            let step = total.map_or(1 << 20, |t| (t / 50).max(256 << 10));
            if *cur - *last < step && total.is_none_or(|t| *cur < t) {
                return;
            }
            *last = *cur;
            json!({"status": self.verb, "progressDetail": {"current": *cur, "total": total},
                   "progress": bar(*cur, *total), "id": id})
        };
        self.send(&msg);
    }
    fn finish(&self, id: &str, status: &str) {
        super::lock(&self.bars).remove(id);
        self.send(&json!({"status": status, "progressDetail": {}, "id": id}));
    }
}

/// Credentials of one request in a private file the registry client reads, removed
/// with the guard (the daemon keeps no credentials between requests).
struct AuthFile(PathBuf);

impl Drop for AuthFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `X-Registry-Auth`: base64 (URL or standard alphabet) of `{"username","password"}`
/// or `{"auth": base64("user:password")}`; `{}` means anonymous.
pub(crate) fn decode_auth(h: &str) -> Result<Option<(String, String)>, String> {
    let h = h.trim();
    if h.is_empty() {
        return Ok(None);
    }
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let raw = [URL_SAFE, URL_SAFE_NO_PAD, STANDARD, STANDARD_NO_PAD]
        .iter()
        .find_map(|e| e.decode(h).ok())
        .ok_or("X-Registry-Auth is not base64: send base64 of {\"username\",\"password\"}")?;
    let v: Value = serde_json::from_slice(&raw)
        .map_err(|e| format!("X-Registry-Auth is not base64 of a JSON object: {e}"))?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (mut user, mut pass) = (s("username"), s("password"));
    if user.is_empty() && !s("auth").is_empty() {
        let pair = STANDARD
            .decode(s("auth"))
            .map_err(|_| "X-Registry-Auth: auth is not base64 of user:password")?;
        let pair = String::from_utf8_lossy(&pair).into_owned();
        if let Some((u, p)) = pair.split_once(':') {
            (user, pass) = (u.to_string(), p.to_string());
        }
    }
    Ok((!user.is_empty()).then_some((user, pass)))
}

/// A registry client for `domain` with the request's credentials (if any).
fn registry(
    ctx: &Ctx,
    req: &Request,
    domain: &str,
) -> Result<(berth_registry::Client, AuthFile), String> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = ctx
        .data_root
        .join("tmp")
        .join(format!("auth-{}-{n}", std::process::id()));
    let guard = AuthFile(dir.clone());
    let creds = berth_registry::Credentials::new(dir.join("auth.json"));
    if let Some((u, p)) = decode_auth(
        req.headers
            .get("x-registry-auth")
            .map_or("", String::as_str),
    )? {
        creds.set(domain, &u, &p).map_err(|e| e.to_string())?;
    }
    let opts = berth_registry::Options {
        credentials: creds,
        ..Default::default()
    };
    Ok((berth_registry::Client::new(opts), guard))
}

fn registry_status(e: &berth_registry::Error) -> u16 {
    use berth_registry::Error as E;
    match e {
        E::NotFound(_) => 404,
        E::Unauthorized { .. } => 401,
        E::Reference(_) | E::Invalid(_) => 400,
        E::Image(berth_image::Error::NotFound(_)) => 404,
        _ => 500,
    }
}

/// `POST /images/create`: pull (`fromImage`, `tag`) or import (`fromSrc=-`, body).
pub fn create(ctx: &Ctx, req: &Request, conn: &mut Conn) -> Option<Reply> {
    if let Some(src) = req.query.get("fromSrc") {
        return import(ctx, req, src, conn);
    }
    let Some(from) = req.query.get("fromImage").filter(|f| !f.is_empty()) else {
        return Some(Reply::error(
            400,
            "give fromImage (pull) or fromSrc (import)",
        ));
    };
    if let Some(p) = req.query.get("platform").filter(|p| !p.is_empty()) {
        if !matches!(p.as_str(), "linux" | "linux/amd64") {
            return Some(Reply::error(
                400,
                format!("platform {p} is not supported: berth runs linux/amd64 images"),
            ));
        }
    }
    let name = match req.query.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.clone(),
    };
    let r = match reference(&name) {
        Ok(r) => r,
        Err(reply) => return Some(reply),
    };
    let (client, auth) = match registry(ctx, req, &r.domain) {
        Ok(c) => c,
        Err(e) => return Some(Reply::error(400, e)),
    };
    let images = match store(ctx) {
        Ok(i) => i,
        Err(r) => return Some(r),
    };
    let out = match JsonStream::new(conn.writer, "Downloading") {
        Ok(o) => o,
        Err(e) => return Some(Reply::error(500, e)),
    };
    // docker's API: no tag and no digest pulls every tag of the repository
    let names = if berth_image::reference::names_tag(&name) {
        vec![(name.clone(), r.clone())]
    } else {
        match client.tags(&r) {
            Ok(tags) if tags.is_empty() => {
                return out.fail(404, format!("repository {} has no tags", r.repository()))
            }
            Ok(tags) => tags
                .iter()
                .filter_map(|t| {
                    let n = format!("{}:{t}", r.repository());
                    reference(&n).ok().map(|r| (n, r))
                })
                .collect(),
            Err(e) => return out.fail(registry_status(&e), e),
        }
    };
    let mut downloaded = false;
    for (name, r) in &names {
        out.send(&json!({"status": format!("Pulling from {}", r.path), "id": r.tag.as_deref().or(r.digest.as_deref()).unwrap_or("latest")}));
        match client.pull(&images, name, &out) {
            Ok(p) => {
                out.status(&format!("Digest: {}", p.digest));
                downloaded |= p.downloaded;
                ctx.events
                    .publish("image", "pull", &r.familiar(), [("name", r.familiar())]);
            }
            Err(e) => return out.fail(registry_status(&e), e),
        }
    }
    drop(auth);
    let what = if downloaded {
        "Downloaded newer image"
    } else {
        "Image is up to date"
    };
    let shown = if names.len() == 1 && berth_image::reference::names_tag(&name) {
        r.familiar()
    } else {
        r.familiar_repository()
    };
    out.status(&format!("Status: {what} for {shown}"));
    out.end();
    None
}

fn import(ctx: &Ctx, req: &Request, src: &str, conn: &mut Conn) -> Option<Reply> {
    if src != "-" {
        return Some(Reply::error(400, format!("fromSrc={src:?}: berth imports from the request body only (fromSrc=-); download the file and send it")));
    }
    let reference = match (
        req.query.get("repo").filter(|r| !r.is_empty()),
        req.query.get("tag").filter(|t| !t.is_empty()),
    ) {
        (Some(r), Some(t)) => Some(format!("{r}:{t}")),
        (Some(r), None) => Some(r.clone()),
        (None, _) => None,
    };
    if let Some(Err(reply)) = reference.as_deref().map(super::images::reference) {
        return Some(reply);
    }
    let images = match store(ctx) {
        Ok(i) => i,
        Err(r) => return Some(r),
    };
    let body = match BodyReader::new(conn.reader, &req.headers) {
        Ok(b) => b,
        Err(e) => return Some(Reply::error(400, e)),
    };
    let changes = req.query_all("changes");
    let message = req.query.get("message").cloned().unwrap_or_default();
    match images.import(body, reference.as_deref(), &changes, &message) {
        Ok(id) => {
            ctx.events.publish(
                "image",
                "import",
                &id,
                [("name", reference.unwrap_or_default())],
            );
            let out = JsonStream::new(conn.writer, "Importing").ok()?;
            out.status(&id);
            out.end();
            None
        }
        Err(e) => Some(image_error(e)),
    }
}

/// `POST /images/{name}/push?tag=`; without a tag (docker's `push --all-tags`), every
/// local tag of the repository.
pub fn push(ctx: &Ctx, req: &Request, name: &str, conn: &mut Conn) -> Option<Reply> {
    let name = match req.query.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name.to_string(),
    };
    let r = match reference(&name) {
        Ok(r) => r,
        Err(reply) => return Some(reply),
    };
    let images = match store(ctx) {
        Ok(i) => i,
        Err(r) => return Some(r),
    };
    let names: Vec<(String, berth_image::Reference)> = if berth_image::reference::names_tag(&name) {
        if let Err(e) = images.resolve(&name) {
            return Some(image_error(e));
        }
        vec![(name.clone(), r.clone())]
    } else {
        let list = match images.list() {
            Ok(l) => l,
            Err(e) => return Some(image_error(e)),
        };
        let mut tagged: Vec<(String, berth_image::Reference)> = list
            .iter()
            .flat_map(|i| i.tags.iter())
            .filter_map(|t| reference(t).ok().map(|x| (t.clone(), x)))
            .filter(|(_, x)| x.repository() == r.repository())
            .collect();
        tagged.sort_by(|a, b| a.0.cmp(&b.0));
        if tagged.is_empty() {
            return Some(Reply::error(
                404,
                format!(
                    "An image does not exist locally with the tag: {}: tag one first (berth tag IMAGE {}:TAG)",
                    r.familiar_repository(),
                    r.familiar_repository()
                ),
            ));
        }
        tagged
    };
    let (client, auth) = match registry(ctx, req, &r.domain) {
        Ok(c) => c,
        Err(e) => return Some(Reply::error(400, e)),
    };
    let out = match JsonStream::new(conn.writer, "Pushing") {
        Ok(o) => o,
        Err(e) => return Some(Reply::error(500, e)),
    };
    out.status(&format!(
        "The push refers to repository [{}]",
        r.repository()
    ));
    for (name, r) in &names {
        match client.push(&images, name, &out) {
            Ok((digest, size)) => {
                let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
                out.status(&format!("{tag}: digest: {digest} size: {size}"));
                out.send(&json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest.to_string(), "Size": size}}));
                ctx.events
                    .publish("image", "push", &r.familiar(), [("name", r.familiar())]);
            }
            Err(e) => return out.fail(registry_status(&e), e),
        }
    }
    drop(auth);
    out.end();
    None
}

/// `POST /images/load`: a docker-archive (or OCI) tar of any size in the body.
pub fn load(ctx: &Ctx, req: &Request, conn: &mut Conn) -> Option<Reply> {
    let images = match store(ctx) {
        Ok(i) => i,
        Err(r) => return Some(r),
    };
    let body = match BodyReader::new(conn.reader, &req.headers) {
        Ok(b) => b,
        Err(e) => return Some(Reply::error(400, e)),
    };
    let out = match JsonStream::new(conn.writer, "Loading layer") {
        Ok(o) => o,
        Err(e) => return Some(Reply::error(500, e)),
    };
    let quiet = flag(req, "quiet");
    let loaded = if quiet {
        images.load_reader(body, &berth_content::NoProgress)
    } else {
        images.load_reader(body, &out)
    };
    match loaded {
        Ok(list) if list.is_empty() => out.fail(
            400,
            "the archive holds no image: give a tar made by docker save or an OCI layout",
        ),
        Ok(list) => {
            for l in list {
                if l.names.is_empty() {
                    out.send(&json!({"stream": format!("Loaded image ID: {}\n", l.id)}));
                }
                for n in &l.names {
                    out.send(&json!({"stream": format!("Loaded image: {n}\n")}));
                }
                ctx.events
                    .publish("image", "load", &l.id, [("name", l.names.join(","))]);
            }
            out.end();
            None
        }
        Err(e) => {
            // Drain nothing more: the connection closes with the reply.
            let r = image_error(e);
            let msg = serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|v| v["message"].as_str().map(String::from))
                .unwrap_or_default();
            out.fail(r.status, msg)
        }
    }
}

/// Chunked-encoding writer for a binary reply.
struct Chunked<'a>(&'a mut UnixStream);

impl Write for Chunked<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        http::write_chunk(self.0, b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `GET /images/{name}/get`, `GET /images/get?names=…`: a docker-archive tar.
pub fn save(ctx: &Ctx, names: &[String], conn: &mut Conn) -> Option<Reply> {
    if names.is_empty() {
        return Some(Reply::error(
            400,
            "give the images to save: GET /images/get?names=NAME",
        ));
    }
    let images = match store(ctx) {
        Ok(i) => i,
        Err(r) => return Some(r),
    };
    for n in names {
        if let Err(e) = images.resolve(n) {
            return Some(image_error(e));
        }
    }
    if http::start_chunked(conn.writer, 200, "application/x-tar").is_err() {
        return None;
    }
    let w = std::io::BufWriter::with_capacity(1 << 20, Chunked(conn.writer));
    match images.save(names, w, &berth_content::NoProgress) {
        Ok(()) => {
            let _ = http::end_chunked(conn.writer);
            for n in names {
                ctx.events
                    .publish("image", "save", n, [("name", n.as_str())]);
            }
        }
        // Headers are out: leave the chunked body unterminated so the client sees
        // a truncated reply rather than a tar that looks complete.
        Err(e) => eprintln!("berthd: save {names:?} failed: {e}"),
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_auth_header_forms() {
        assert_eq!(decode_auth("e30=").expect("test input"), None);
        assert_eq!(decode_auth("").expect("test input"), None);
        let b = base64::engine::general_purpose::URL_SAFE
            .encode(r#"{"username":"u","password":"p?>"}"#);
        assert_eq!(
            decode_auth(&b).expect("test input"),
            Some(("u".into(), "p?>".into()))
        );
        let inner = base64::engine::general_purpose::STANDARD.encode("a:b:c");
        let b =
            base64::engine::general_purpose::STANDARD.encode(format!(r#"{{"auth":"{inner}"}}"#));
        assert_eq!(
            decode_auth(&b).expect("test input"),
            Some(("a".into(), "b:c".into()))
        );
        assert!(decode_auth("!!!").is_err());
        assert!(decode_auth("bm90IGpzb24=").is_err());
    }

    #[test]
    fn progress_bar_text() {
        assert!(bar(5, Some(10)).starts_with("[=========================>"));
        assert_eq!(bar(7, None), "7B");
    }
}
