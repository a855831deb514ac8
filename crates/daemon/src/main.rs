//! `berthd [--host unix:///run/berth/berth.sock] [--data-root /var/lib/berth]`

use anyhow::{bail, Context};
use std::ffi::OsString;
use std::path::PathBuf;

fn main() {
    // `berthd build-spawner`: the RUN helper of this daemon's builds (started by the
    // daemon itself; single-threaded, so it may fork the containers)
    if std::env::args().nth(1).as_deref() == Some(berth_daemon::routes::build::SPAWNER_ARG) {
        std::process::exit(berth_daemon::routes::build::serve_spawner());
    }
    // a thread per connection (and per waiting client): one shared heap, not one each
    berth_sys::proc::limit_malloc_arenas(2);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    if let Err(e) = run() {
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    // before any thread starts, so none of them takes the signal's default action
    let signals = berth_daemon::block_stop_signals()?;
    let mut host = std::env::var("BERTH_HOST").ok();
    let mut data_root = PathBuf::from(
        std::env::var_os("BERTH_DATA_ROOT")
            .unwrap_or_else(|| berth_client::DEFAULT_DATA_ROOT.into()),
    );
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--host" | "-H" => {
                host = Some(
                    args.next()
                        .context("--host needs a value like unix:///run/berth/berth.sock")?,
                )
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
    let socket = match host {
        Some(h) => PathBuf::from(h.strip_prefix("unix://").context(
            "--host: only unix:// sockets are supported, e.g. unix:///run/berth/berth.sock",
        )?),
        None => berth_client::default_socket(&data_root),
    };
    // One daemon per data root: the lock is held for the life of the process.
    std::fs::create_dir_all(&data_root)
        .with_context(|| format!("create the data root {}", data_root.display()))?;
    let lock_path = data_root.join("berthd.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "another berthd already serves the data root {} (see {}): stop it first or pass another --data-root",
            data_root.display(),
            data_root.join("berthd.pid").display()
        );
    }
    std::fs::write(
        data_root.join("berthd.pid"),
        format!("{}\n", std::process::id()),
    )?;
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
    // bridges, rules and DNS responders back; what a crash left behind reconciled
    let engine = engine
        .with_shim(shim)
        .with_networking()
        .context("set up networking")?;
    engine
        .reconcile_network()
        .context("reconcile networking after the last stop")?;
    // Before serving: adopt running containers, record the exits of those whose
    // supervisor died, clean leftovers, and restart what the policies say.
    let watch = berth_daemon::supervise::Watch::start(engine.clone())?;
    let ctx = berth_daemon::routes::Ctx::new(engine, data_root);
    berth_daemon::stop_on_signals(signals, ctx.clone())?;
    eprintln!(
        "berthd: serving the Docker Engine API on {}",
        socket.display()
    );
    berth_daemon::serve_watched(ctx, &socket, Some(watch))
}
