//! `berthd [--host unix:///run/berth/berth.sock] [--data-root /var/lib/berth]`

use anyhow::{bail, Context};
use std::ffi::OsString;
use std::path::PathBuf;

fn main() {
    if let Err(e) = run() {
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let mut host =
        std::env::var("BERTH_HOST").unwrap_or_else(|_| "unix:///run/berth/berth.sock".into());
    let mut data_root = PathBuf::from(
        std::env::var_os("BERTH_DATA_ROOT").unwrap_or_else(|| "/var/lib/berth".into()),
    );
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--host" | "-H" => {
                host = args
                    .next()
                    .context("--host needs a value like unix:///run/berth/berth.sock")?
            }
            "--data-root" => {
                data_root = args.next().context("--data-root needs a directory")?.into()
            }
            "--version" | "-v" => {
                println!("berthd {}", env!("CARGO_PKG_VERSION"));
                return Ok(());
            }
            other => {
                bail!("unknown argument {other:?}: use --host unix://PATH and --data-root DIR")
            }
        }
    }
    let socket = PathBuf::from(
        host.strip_prefix("unix://")
            .context("--host: only unix:// sockets are supported")?,
    );
    let runtime_root =
        std::env::var_os("BERTH_RUNTIME_ROOT").unwrap_or_else(|| "/run/berth/runtime".into());
    // Containers are supervised by `berth container-shim`, from the berth binary installed
    // next to us (or BERTH_BIN).
    let berth = std::env::var_os("BERTH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("berth")))
                .unwrap_or_else(|| "berth".into())
        });
    if !berth.exists() {
        bail!(
            "the berth binary is needed next to berthd ({}) or in BERTH_BIN",
            berth.display()
        );
    }
    let engine = berth_engine::Engine::new(&data_root, runtime_root)?;
    let shim: Vec<OsString> = vec![
        berth.into(),
        "--data-root".into(),
        engine.data_root().into(),
        "container-shim".into(),
    ];
    let ctx = berth_daemon::routes::Ctx::new(engine.with_shim(shim), data_root);
    eprintln!(
        "berthd: serving the Docker Engine API on {}",
        socket.display()
    );
    berth_daemon::serve(ctx, &socket)
}
