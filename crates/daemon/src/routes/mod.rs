//! Routes of the Docker Engine API that berth serves: each turns a request into an
//! engine call and its result into docker's JSON (STYLE habit 6: no HTTP in the engine).
//!
//! One module per area (system, containers, images, ...), each with its `ROUTES` and a
//! `route` function that returns `None` for a request that is not its own. Routes that
//! stream (wait, attach, logs -f, pull progress, uploads) get the connection ([`Conn`]).

pub mod build;
pub mod containers;
pub mod events;
pub mod exec;
mod host_options;
pub mod images;
pub mod networks;
pub mod streams;
pub mod system;
pub mod transfer;
pub mod volumes;

use crate::http::Request;
use berth_engine::Engine;
use serde_json::{json, Value};
use std::io::BufReader;
use std::os::unix::net::UnixStream;
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
    pub(crate) fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
        }
    }
    pub(crate) fn empty(status: u16) -> Reply {
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
    /// attach clients waiting for a start, and the exits the shims reported
    pub(crate) containers: containers::Shared,
    /// execs by id
    pub(crate) execs: exec::Execs,
    /// what happened, for `GET /events`: `ctx.events.publish(kind, action, id, attrs)`
    pub events: events::Events,
    /// the RUN helper the builds share
    pub(crate) builds: build::Builds,
}

impl Ctx {
    /// Routes over `engine`, with images under `data_root`.
    pub fn new(engine: Engine, data_root: PathBuf) -> Arc<Ctx> {
        Arc::new(Ctx {
            engine,
            data_root,
            containers: containers::Shared::default(),
            execs: exec::Execs::default(),
            events: events::Events::default(),
            builds: build::Builds::default(),
        })
    }
}

pub(crate) fn engine_error(e: berth_engine::Error) -> Reply {
    use berth_engine::Error as E;
    let status = match &e {
        E::NotFound(_) | E::Missing(_) => 404,
        E::Image(berth_image::Error::NotFound(_)) => 404,
        E::NameInUse { .. } | E::Conflict(_) => 409,
        E::Invalid(_) | E::Ambiguous(_) => 400,
        E::CommandNotFound(_) | E::CommandNotExecutable(_) => 400,
        _ => 500,
    };
    if let E::Network(inner) = &e {
        // the client sees only the message: give it the causes too
        let mut msg = inner.to_string();
        let mut src = std::error::Error::source(inner);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        return Reply::error(status, msg);
    }
    Reply::error(status, e)
}

/// Whether the client of a streamed reply (wait, logs -f) hung up; what it sends
/// meanwhile is read and dropped.
pub(crate) fn peer_gone(s: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 512];
    let flags = nix::sys::socket::MsgFlags::MSG_DONTWAIT;
    match nix::sys::socket::recv(s.as_raw_fd(), &mut buf, flags) {
        Ok(0) => true,
        Ok(_) | Err(nix::Error::EAGAIN | nix::Error::EINTR) => false,
        Err(_) => true,
    }
}

pub(crate) fn flag(req: &Request, k: &str) -> bool {
    req.query
        .get(k)
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The connection of a request: its reader (positioned at the body, for routes that
/// stream an upload or a hijacked stdin) and its writer.
pub struct Conn<'a> {
    /// what is left of the request (its body, then a hijacked stream)
    pub reader: &'a mut BufReader<UnixStream>,
    /// the reply side
    pub writer: &'a mut UnixStream,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn unix(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// Every (method, path template) we serve, area by area; `{id}` stands for an object's
/// id or name. Kept in step with the dispatcher and with api/openapi.yaml by the tests.
pub fn all_routes() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    system::ROUTES
        .iter()
        .chain(containers::ROUTES)
        .chain(streams::ROUTES)
        .chain(exec::ROUTES)
        .chain(images::ROUTES)
        .chain(volumes::ROUTES)
        .chain(events::ROUTES)
        .chain(build::ROUTES)
        .chain(networks::ROUTES)
}

/// Whether `req` uploads a body of any size that its route reads from [`Conn::reader`]
/// itself; every other body is read (up to [`crate::http::MAX_BODY`]) before routing.
pub fn streams_body(req: &Request) -> bool {
    streams::streams_body(req) || images::streams_body(req) || build::streams_body(req)
}

fn check_version(req: &Request) -> Option<Reply> {
    let v = req.version.as_ref()?;
    let ok = v.split('.').nth(1).and_then(|m| m.parse::<u32>().ok());
    match ok {
        Some(minor) if minor > 45 => Some(Reply::error(400, format!("client version {v} is too new. Maximum supported API version is {}", crate::API_VERSION))),
        Some(minor) if minor < 24 => Some(Reply::error(400, format!("client version {v} is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"))),
        Some(_) => None,
        None => Some(Reply::error(400, format!("invalid API version {v:?}"))),
    }
}

/// Dispatch one request. `None`: the route answered on the connection itself.
pub fn route(ctx: &Arc<Ctx>, req: &Request, conn: &mut Conn) -> Option<Reply> {
    if let Some(r) = check_version(req) {
        return Some(r);
    }
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let parts = parts.as_slice();
    if let Some(r) = system::route(ctx, req, parts) {
        return Some(r);
    }
    if let Some(r) = containers::route(ctx, req, parts, conn) {
        return r;
    }
    if let Some(r) = streams::route(ctx, req, parts, conn) {
        return r;
    }
    if let Some(r) = exec::route(ctx, req, parts, conn) {
        return r;
    }
    if let Some(r) = images::route(ctx, req, parts, conn) {
        return r;
    }
    if let Some(r) = volumes::route(ctx, req, parts) {
        return Some(r);
    }
    if let Some(r) = events::route(ctx, req, parts, conn) {
        return r;
    }
    if let Some(r) = build::route(ctx, req, parts, conn) {
        return r;
    }
    if let Some(r) = networks::route(ctx, req, parts) {
        return Some(r);
    }
    Some(Reply::error(
        404,
        format!("page not found: {} {}", req.method, req.path),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = include_str!("../../api/openapi.yaml");

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
        for (m, p) in all_routes() {
            assert!(
                spec.iter().any(|(sm, sp)| sm == m && sp == p),
                "{m} {p} is served but missing from api/openapi.yaml"
            );
        }
        for (m, p) in &spec {
            assert!(
                all_routes().any(|(rm, rp)| rm == m && rp == p),
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
        for (m, p) in all_routes() {
            let mut req = Request {
                method: m.to_string(),
                path: p.replace("{id}", "nosuch"),
                ..Default::default()
            };
            if *p == "/events" {
                // a bounded stream (it would follow new events forever)
                req.query.insert("until".into(), "1".into());
            }
            let (a, mut b) = UnixStream::pair().expect("socketpair");
            let mut reader = BufReader::new(a);
            let mut conn = Conn {
                reader: &mut reader,
                writer: &mut b,
            };
            let Some(r) = route(&ctx, &req, &mut conn) else {
                continue; // answered on the connection itself
            };
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
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        let mut reader = BufReader::new(a);
        let mut conn = Conn {
            reader: &mut reader,
            writer: &mut b,
        };
        assert_eq!(
            route(&ctx, &unknown, &mut conn).map(|r| r.status),
            Some(404)
        );
    }
}
