//! The CLI's side of attached streams (`run`, `start -a`, `attach`, `exec`) and of
//! `cp`: the hijacked connection relayed to our terminal (raw mode with `-t`, window
//! size changes sent as resizes, docker's detach keys), signals proxied to the
//! container without a terminal, and tar archives to and from the daemon.

use anyhow::{anyhow, bail, Context};
use berth_client::{enc, Body, Client};
use nix::sys::signal::{SigSet, Signal};
use serde_json::{json, Value};
use std::io::{BufReader, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What a session relays.
pub struct Streams {
    /// our stdin goes to the process (`-i`)
    pub stdin: bool,
    /// the process's stdout comes to us
    pub stdout: bool,
    /// the process's stderr comes to us
    pub stderr: bool,
    /// the process has a terminal (`-t`): raw bytes, no frames
    pub tty: bool,
    /// `--detach-keys`
    pub detach_keys: Option<String>,
    /// pass the signals we get on to the container (`--sig-proxy`)
    pub sig_proxy: bool,
}

/// How a session ended.
pub enum Ended {
    /// the stream ended: the process exited
    Exited,
    /// the user typed the detach keys: the process runs on
    Detached,
}

/// An upgraded connection.
pub struct Session {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// Our terminal's size (rows, columns) when stdin or stdout is one.
pub fn terminal_size() -> Option<(u16, u16)> {
    let (inp, out) = (std::io::stdin(), std::io::stdout());
    let size = |fd| {
        berth_sys::proc::window_size(fd)
            .ok()
            .filter(|(r, c): &(u16, u16)| *r > 0 && *c > 0)
    };
    let found = size(inp.as_fd()).or_else(|| size(out.as_fd()));
    found
}

/// Sends our terminal's size to `path` (`/containers/{id}/resize`, `/exec/{id}/resize`).
pub fn resize(c: &Client, path: &str) {
    if let Some((h, w)) = terminal_size() {
        let _ = c.request("POST", &format!("{path}?h={h}&w={w}"), Body::Empty);
    }
}

fn upgrade(c: &Client, method: &str, path: &str, body: Body) -> anyhow::Result<Session> {
    let r = c
        .request_with(
            method,
            path,
            body,
            &[("Connection", "Upgrade"), ("Upgrade", "tcp")],
        )?
        .ok()?;
    let (reader, writer) = r.upgraded()?;
    Ok(Session { reader, writer })
}

/// Attaches to container `id` (before its start, or running).
pub fn attach_container(c: &Client, id: &str, s: &Streams) -> anyhow::Result<Session> {
    let mut q = format!(
        "/containers/{id}/attach?stream=1&stdout={}&stderr={}&stdin={}",
        s.stdout as u8, s.stderr as u8, s.stdin as u8
    );
    if let Some(k) = &s.detach_keys {
        q.push_str(&format!("&detachKeys={}", enc(k)));
    }
    upgrade(c, "POST", &q, Body::Empty)
}

/// Starts exec `id` attached.
pub fn start_exec(c: &Client, id: &str, s: &Streams) -> anyhow::Result<Session> {
    let mut body = json!({"Detach": false, "Tty": s.tty});
    if let Some((h, w)) = terminal_size().filter(|_| s.tty) {
        body["ConsoleSize"] = json!([h, w]);
    }
    upgrade(c, "POST", &format!("/exec/{id}/start"), Body::Json(&body))
}

/// Puts our terminal in raw mode until dropped.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    /// Raw mode on our stdin, if it is a terminal. With `take_input`, what was typed
    /// before (complete lines, and end-of-file keys) is returned, to be sent first.
    fn enter(take_input: bool) -> (RawMode, Vec<u8>) {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return (RawMode(None), Vec::new());
        }
        let Ok(saved) = nix::sys::termios::tcgetattr(stdin.as_fd()) else {
            return (RawMode(None), Vec::new());
        };
        let early = if take_input {
            // From here on an end-of-file key is an ordinary byte of a line the
            // terminal holds (so it reaches the container as ^D once raw); the ones
            // that came before are read out now. Without this, one arriving between
            // the read and raw mode turned into a NUL.
            let mut no_eof = saved.clone();
            no_eof.control_chars[nix::sys::termios::SpecialCharacterIndices::VEOF as usize] = 0; // _POSIX_VDISABLE
            let _ = nix::sys::termios::tcsetattr(
                stdin.as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                &no_eof,
            );
            typed_ahead(&saved)
        } else {
            Vec::new()
        };
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ =
            nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &raw);
        (RawMode(Some(saved)), early)
    }
}

/// What the line discipline holds of our (canonical) terminal's input: the complete
/// lines, and each end-of-file key as the terminal's EOF character. Left there, an EOF
/// key (script(1) sends one when its own stdin ends) turns into a NUL byte once the
/// terminal is raw, which the container's terminal then echoes as `^@`.
fn typed_ahead(t: &nix::sys::termios::Termios) -> Vec<u8> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::termios::{LocalFlags, SpecialCharacterIndices};
    let mut out = Vec::new();
    if !t.local_flags.contains(LocalFlags::ICANON) {
        return out;
    }
    let eof = t.control_chars[SpecialCharacterIndices::VEOF as usize];
    let stdin = std::io::stdin();
    let mut buf = [0u8; 4096];
    // canonical: readable means a whole line or an end-of-file key is waiting
    for _ in 0..64 {
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        let ready = matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1))
            && fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN) && !r.contains(PollFlags::POLLHUP));
        if !ready {
            break;
        }
        match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(0) => out.push(eof),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

/// Blocks `sigs` in this thread (and the threads it starts after) and returns a
/// descriptor to read them from.
fn signal_fd(sigs: &[Signal]) -> Option<nix::sys::signalfd::SignalFd> {
    let mut set = SigSet::empty();
    for s in sigs {
        set.add(*s);
    }
    set.thread_block().ok()?;
    nix::sys::signalfd::SignalFd::with_flags(&set, nix::sys::signalfd::SfdFlags::SFD_CLOEXEC).ok()
}

/// The detach sequence: `--detach-keys`, else ctrl-p,ctrl-q.
fn detach_keys(s: &Streams) -> anyhow::Result<Vec<u8>> {
    match &s.detach_keys {
        Some(k) => Ok(berth_engine::attach::parse_detach_keys(k)?),
        None => Ok(berth_engine::attach::DEFAULT_DETACH_KEYS.to_vec()),
    }
}

impl Session {
    /// Relays the container's streams; `id`'s resizes and signals go to the daemon.
    pub fn relay(self, c: &Client, id: &str, s: &Streams) -> anyhow::Result<Ended> {
        self.run(c, &format!("/containers/{id}"), s, Some(id))
    }

    /// Relays an exec's streams.
    pub fn relay_exec(self, c: &Client, id: &str, s: &Streams) -> anyhow::Result<Ended> {
        self.run(c, &format!("/exec/{id}"), s, None)
    }

    fn run(
        self,
        c: &Client,
        base: &str,
        s: &Streams,
        container: Option<&str>,
    ) -> anyhow::Result<Ended> {
        let keys = detach_keys(s)?;
        let detached = Arc::new(AtomicBool::new(false));
        let (_raw, early) = if s.tty {
            let (r, early) = RawMode::enter(s.stdin);
            (Some(r), early)
        } else {
            (None, Vec::new())
        };
        // signals: window changes become resizes; others go to the container
        let mut sigs = vec![];
        if s.tty {
            sigs.push(Signal::SIGWINCH);
        }
        if s.sig_proxy && container.is_some() {
            sigs.extend([
                Signal::SIGINT,
                Signal::SIGTERM,
                Signal::SIGHUP,
                Signal::SIGQUIT,
                Signal::SIGUSR1,
                Signal::SIGUSR2,
            ]);
        }
        if s.tty {
            resize(c, &format!("{base}/resize"));
        }
        if !sigs.is_empty() {
            relay_signals(c, base, &sigs);
        }
        if s.stdin {
            // the detach keys are ours to spot only with a terminal (docker's CLI); the
            // daemon's side spots them in every stream
            let local_keys = if s.tty { keys } else { Vec::new() };
            let w = self.writer.try_clone()?;
            relay_stdin(w, early, local_keys, detached.clone());
        }
        let mut reader = self.reader;
        let res = if s.tty {
            copy_raw(&mut reader, &mut std::io::stdout())
        } else {
            berth_client::demux(&mut reader, &mut std::io::stdout(), &mut std::io::stderr())
        };
        let _ = std::io::stdout().flush();
        if detached.load(Ordering::SeqCst) {
            return Ok(Ended::Detached);
        }
        if let Err(e) = res {
            if e.kind() != std::io::ErrorKind::ConnectionReset {
                return Err(e).context("reading the container's output");
            }
        }
        // the daemon ends the stream at the detach keys too (without a terminal, or
        // for another client): then the container still runs
        if s.stdin {
            if let Some(id) = container {
                let running = c
                    .get_json(&format!("/containers/{id}/json"))
                    .map(|v| v["State"]["Running"].as_bool().unwrap_or(false))
                    .unwrap_or(false);
                if running {
                    return Ok(Ended::Detached);
                }
            } else if let Some(id) = base.strip_prefix("/exec/") {
                let running = c
                    .get_json(&format!("/exec/{id}/json"))
                    .map(|v| v["Running"].as_bool().unwrap_or(false))
                    .unwrap_or(false);
                if running {
                    return Ok(Ended::Detached);
                }
            }
        }
        Ok(Ended::Exited)
    }
}

/// Window changes become resizes of `base`, other signals kills of it (sig-proxy).
fn relay_signals(c: &Client, base: &str, sigs: &[Signal]) {
    let Some(fd) = signal_fd(sigs) else { return };
    let (c, base) = (c.clone(), base.to_string());
    std::thread::spawn(move || loop {
        let Ok(Some(info)) = fd.read_signal() else {
            return;
        };
        if info.ssi_signo == Signal::SIGWINCH as u32 {
            resize(&c, &format!("{base}/resize"));
        } else {
            let _ = c.request(
                "POST",
                &format!("{base}/kill?signal={}", info.ssi_signo),
                Body::Empty,
            );
        }
    });
}

/// Copies `early` and then our stdin to the connection until EOF (then half-closes
/// it) or until the detach `keys` (then closes it and sets `detached`). A connection
/// the other side closed (the container ended) ends the copy, not the session: the
/// container's output is still to be read.
fn relay_stdin(mut w: UnixStream, early: Vec<u8>, keys: Vec<u8>, detached: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        if !early.is_empty() && w.write_all(&early).is_err() {
            return;
        }
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 8192];
        let mut matched = 0;
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut out = Vec::with_capacity(n);
            for &b in &buf[..n] {
                if !keys.is_empty() && b == keys[matched] {
                    matched += 1;
                    if matched == keys.len() {
                        detached.store(true, Ordering::SeqCst);
                        let _ = w.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    continue;
                }
                out.extend_from_slice(&keys[..matched]);
                matched = 0;
                if !keys.is_empty() && b == keys[0] {
                    matched = 1;
                } else {
                    out.push(b);
                }
            }
            if w.write_all(&out).is_err() {
                return;
            }
        }
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
}

fn copy_raw(r: &mut impl Read, w: &mut impl Write) -> std::io::Result<()> {
    let mut buf = [0u8; 16384];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        w.flush()?;
    }
}

/// `CONTAINER:PATH` (a local path with a colon starts with `/` or `.`).
fn split_container(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    s.split_once(':')
}

/// The stat header of `path` in container `c`, if it exists.
fn stat(c: &Client, ctr: &str, path: &str) -> anyhow::Result<Option<Value>> {
    let r = c.request(
        "HEAD",
        &format!("/containers/{}/archive?path={}", enc(ctr), enc(path)),
        Body::Empty,
    )?;
    if r.status == 404 {
        return Ok(None);
    }
    let r = r.ok()?;
    let Some(h) = r.headers.get("x-docker-container-path-stat") else {
        return Ok(None);
    };
    let raw = base64_decode(h).context("bad path stat header")?;
    Ok(Some(serde_json::from_slice(&raw)?))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let b: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in b.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// `cp`: between a container and a local path, in either direction.
pub fn cp(c: &Client, src: &str, dest: &str) -> anyhow::Result<()> {
    match (split_container(src), split_container(dest)) {
        (Some((ctr, p)), None) => copy_from(c, ctr, p, Path::new(dest)),
        (None, Some((ctr, p))) => copy_to(c, Path::new(src), ctr, p),
        _ => bail!(
            "copying between containers or between local paths is not supported: one side must be CONTAINER:PATH"
        ),
    }
}

/// Container → host: the daemon's tar, extracted here with its top entry renamed to
/// the destination's name (docker's rules); entries never leave the destination.
fn copy_from(c: &Client, ctr: &str, path: &str, dest: &Path) -> anyhow::Result<()> {
    let r = c
        .request(
            "GET",
            &format!("/containers/{}/archive?path={}", enc(ctr), enc(path)),
            Body::Empty,
        )?
        .ok()?;
    let src_name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into());
    let (into, name) = if dest.is_dir() {
        (dest.to_path_buf(), src_name.clone())
    } else {
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow!("{}: not a file name", dest.display()))?;
        if !parent.is_dir() {
            bail!("destination directory {} does not exist", parent.display());
        }
        (parent, name)
    };
    let tmp = tempdir_in(&into)?;
    let res = (|| -> anyhow::Result<()> {
        let mut a = tar::Archive::new(r.reader());
        a.set_preserve_permissions(true);
        a.set_overwrite(true);
        for e in a.entries()? {
            let mut e = e?;
            let p = e.path()?.into_owned();
            if p.components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                bail!(
                    "archive entry {}: refused (it leaves the destination)",
                    p.display()
                );
            }
            // unpack_in refuses entries that would land outside the directory, through
            // symlinks in the archive too
            e.unpack_in(&tmp.0)?;
        }
        // to the end of the response: the daemon ends it once its helper is done
        // with the container (a stopped one's rootfs is unmounted again by then)
        std::io::copy(&mut a.into_inner(), &mut std::io::sink())
            .context("the daemon's archive stream broke off")?;
        std::fs::rename(tmp.0.join(&src_name), into.join(&name))
            .with_context(|| format!("move {} into {}", src_name, into.join(&name).display()))
    })();
    drop(tmp);
    res
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh directory inside `dir` (on the same filesystem, so a rename moves it).
fn tempdir_in(dir: &Path) -> anyhow::Result<TempDir> {
    for i in 0..100u32 {
        let p = dir.join(format!(".berth-cp-{}-{i}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(TempDir(p)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("create {}", p.display())),
        }
    }
    bail!("cannot create a temporary directory in {}", dir.display())
}

/// Host → container: a tar of `src` with its top entry named as docker would at the
/// destination, extracted by the daemon inside the container's root.
fn copy_to(c: &Client, src: &Path, ctr: &str, path: &str) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(src).with_context(|| format!("{}", src.display()))?;
    let dest_is_dir = stat(c, ctr, path)?
        .is_some_and(|st| st["mode"].as_u64().is_some_and(|m| m & (1 << 31) != 0));
    let (dir, name) = if dest_is_dir {
        let n = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow!("{}: not a file name", src.display()))?;
        (path.to_string(), n)
    } else {
        let p = Path::new(path);
        let parent = p
            .parent()
            .map(|x| x.display().to_string())
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| "/".into());
        let n = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow!("{path}: not a file name"))?;
        (parent, n)
    };
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    if meta.is_dir() {
        b.append_dir_all(&name, src)?;
    } else {
        b.append_path_with_name(src, &name)?;
    }
    let data = b.into_inner()?;
    let r = c.request(
        "PUT",
        &format!("/containers/{}/archive?path={}", enc(ctr), enc(&dir)),
        Body::Bytes(&data, "application/x-tar"),
    )?;
    r.ok()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        assert_eq!(base64_decode("eyJhIjoxfQ==").expect("decode"), b"{\"a\":1}");
        assert_eq!(base64_decode("Zm9v").expect("decode"), b"foo");
    }

    #[test]
    fn container_paths_split() {
        assert_eq!(split_container("c:/etc"), Some(("c", "/etc")));
        assert_eq!(split_container("./a:b"), None);
        assert_eq!(split_container("/tmp/x"), None);
    }
}
