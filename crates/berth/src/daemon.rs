//! Finding the daemon: the CLI talks to berthd over the Docker Engine API, and starts
//! one in the background (saying so once on stderr) when none answers, so a user never
//! needs a separate step.

use anyhow::{bail, Context};
use berth_client::Client;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The socket to use: `BERTH_HOST` (`unix://PATH`) or the data root's default.
pub fn socket(data_root: &Path) -> anyhow::Result<PathBuf> {
    match std::env::var("BERTH_HOST") {
        Ok(h) if !h.is_empty() => Ok(PathBuf::from(h.strip_prefix("unix://").with_context(
            || format!("BERTH_HOST={h:?}: only unix:// sockets are supported, e.g. unix:///run/berth/berth.sock"),
        )?)),
        _ => Ok(berth_client::default_socket(data_root)),
    }
}

/// A client of the daemon serving `data_root`, started first if none answers.
pub fn client(data_root: &Path) -> anyhow::Result<Client> {
    let sock = socket(data_root)?;
    let c = Client::new(&sock);
    // A daemon accepts on its socket: a bare connect (no request) is enough to know,
    // and saves every command a round trip; a stale socket file refuses the connect.
    if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        return Ok(c);
    }
    start(data_root, &sock)?;
    Ok(c)
}

/// berthd: `BERTHD_BIN`, else next to this executable, else on PATH.
fn berthd() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTHD_BIN") {
        return p.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("berthd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "berthd".into())
}

fn start(data_root: &Path, sock: &Path) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(data_root)
        .with_context(|| format!("create the data root {}", data_root.display()))?;
    let log_path = data_root.join("berthd.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let bin = berthd();
    let mut child = std::process::Command::new(&bin)
        .arg("--data-root")
        .arg(data_root)
        .arg("--host")
        .arg(format!("unix://{}", sock.display()))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // its own process group: a Ctrl-C at this terminal must not reach the daemon
        .process_group(0)
        .spawn()
        .with_context(|| {
            format!(
                "no berth daemon answers on {} and starting {} failed: install berthd next to berth or set BERTHD_BIN",
                sock.display(),
                bin.display()
            )
        })?;
    let c = Client::new(sock);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if c.ping() {
            // Another client may have started the daemon first; ours then exits (the
            // data root is locked) and there is nothing to announce.
            if !matches!(child.try_wait(), Ok(Some(_))) {
                eprintln!(
                    "berth: started the berth daemon on unix://{} (log: {})",
                    sock.display(),
                    log_path.display()
                );
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "started {} but it does not answer on {} after 15 s: see {}",
                bin.display(),
                sock.display(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
