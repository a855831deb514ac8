//! berthd: serves the Docker Engine API on a unix socket, over the engine library.
//!
//! A first slice: ping, version, info, container list/create/inspect/start/wait/stop/
//! kill/remove/logs and image list, with and without the `/vX.YY` prefix, errors as
//! docker's `{"message": …}`. One thread per connection; a malformed request gets a 400
//! and never disturbs other clients.
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
pub mod routes;

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
            std::process::exit(0);
        })?;
    Ok(())
}

/// Listen on `socket` (0660) and serve until the process ends.
pub fn serve(ctx: Arc<routes::Ctx>, socket: &Path) -> anyhow::Result<()> {
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
        std::thread::spawn(move || handle(&ctx, conn));
    }
    Ok(())
}

fn handle(ctx: &Arc<routes::Ctx>, conn: UnixStream) {
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
                    let Some(mut reply) = routes::route(ctx, &req, &mut conn) else {
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
