//! berthd: serves the Docker Engine API on a unix socket, over the engine library.
//!
//! The routes ([`routes::all_routes`], listed in `api/openapi.yaml`): system (ping,
//! version, info, df, auth, events), containers and exec, images (list, inspect,
//! history, tag, remove, prune, pull and import, push, load, save), volumes and the
//! legacy builder's `POST /build` (built in this process; RUN containers come from one
//! `berthd build-spawner` helper, since forking here is not safe), with and without the
//! `/vX.YY` prefix, errors as docker's `{"message": …}`.
//! One thread per connection; a malformed request gets a 4xx and never disturbs other
//! clients. Route modules publish what happens on the event bus (`ctx.events`).
//!
//! Hijacked streams (attach, exec start) are handed to the process that holds the
//! container's stdio (its shim, or an exec helper), so the daemon is not in the data path.
//!
//! ```no_run
//! let ctx = berth_daemon::routes::Ctx::new(
//!     berth_engine::Engine::new("/var/lib/berth", "/run/berth/runtime")?,
//!     "/var/lib/berth".into(),
//! );
//! berth_daemon::serve(ctx, "/run/berth/berth.sock".as_ref())?;
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod http;
pub mod lifecycle;
pub mod routes;
pub mod supervise;

use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

/// The API version we advertise.
pub const API_VERSION: &str = "1.45";

/// Blocks SIGTERM and SIGINT in the calling thread, and so in every thread it spawns
/// later (child processes get a clean mask from `Command`): call it first in `main`,
/// then hand the set to [`stop_on_signals`].
pub fn block_stop_signals() -> anyhow::Result<nix::sys::signal::SigSet> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()?;
    Ok(set)
}

/// On SIGTERM or SIGINT (blocked by [`block_stop_signals`]): take networking down when
/// no container runs (bridges, rules and DNS responders come back with the next start),
/// then exit.
pub fn stop_on_signals(set: nix::sys::signal::SigSet, ctx: Arc<routes::Ctx>) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("berthd-signals".into())
        .spawn(move || {
            let _ = set.wait();
            if let Some(n) = ctx.engine.networking() {
                let running = ctx.engine.list(false).map_or(true, |l| !l.is_empty());
                n.shutdown(running);
            }
            // the shared parent cgroups, where no container is left in them
            ctx.engine.release_shared_cgroups();
            std::process::exit(0);
        })?;
    Ok(())
}

/// Listen on `socket` (0660) and serve until the process ends.
pub fn serve(ctx: Arc<routes::Ctx>, socket: &Path) -> anyhow::Result<()> {
    serve_watched(ctx, socket, None)
}

/// [`serve`], telling `watch` about every container start it serves so the exit is
/// noticed at once (restart policies, supervisors that die).
pub fn serve_watched(
    ctx: Arc<routes::Ctx>,
    socket: &Path,
    watch: Option<Arc<supervise::Watch>>,
) -> anyhow::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if socket.exists() {
        if UnixStream::connect(socket).is_ok() {
            anyhow::bail!(
                "{} is in use by a running daemon: stop it first or pass another --host",
                socket.display()
            );
        }
        std::fs::remove_file(socket)?;
    }
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))?;
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let ctx = ctx.clone();
        let watch = watch.clone();
        std::thread::spawn(move || handle(&ctx, conn, watch.as_deref()));
    }
    Ok(())
}

/// The container a request starts (`POST /containers/{id}/start` or `/restart`).
fn starts(req: &http::Request) -> Option<&str> {
    if req.method != "POST" {
        return None;
    }
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let parts = match parts.first() {
        Some(v) if v.starts_with('v') && v[1..].contains('.') => &parts[1..],
        _ => &parts[..],
    };
    match parts {
        ["containers", id, "start" | "restart"] => Some(id),
        _ => None,
    }
}

fn handle(ctx: &Arc<routes::Ctx>, conn: UnixStream, watch: Option<&supervise::Watch>) {
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    let reply = match http::read_head(&mut r) {
        Ok(mut req) => {
            let body = if routes::streams_body(&req) {
                Ok(Vec::new())
            } else {
                http::read_body(&mut r, &req.headers)
            };
            match body {
                Ok(b) => {
                    req.body = b;
                    let mut conn = routes::Conn {
                        reader: &mut r,
                        writer: &mut w,
                    };
                    let reply = routes::route(ctx, &req, &mut conn);
                    if let (Some(w), Some(id)) = (watch, starts(&req)) {
                        w.started(id);
                    }
                    let Some(mut reply) = reply else {
                        return; // answered on the connection itself
                    };
                    if req.method == "HEAD" {
                        reply.body.clear();
                    }
                    reply
                }
                Err(http::Error::TooLarge) => routes::Reply::error(413, http::Error::TooLarge),
                Err(e) => routes::Reply::error(400, e),
            }
        }
        Err(http::Error::TooLarge) => routes::Reply::error(413, http::Error::TooLarge),
        Err(e) => routes::Reply::error(400, e),
    };
    let _ = http::respond(&mut w, reply.status, reply.content_type, &reply.body);
}
