//! The attach channel of a container (and of an exec): the supervisor keeps the
//! process's stdin (a pipe or the pty master) and its output, and serves requests on a
//! unix socket in the container's directory (`attach.sock`, `exec-<id>.sock`).
//!
//! The contract is one line per connection, sent in a single message:
//! - `attach stdin=0|1 stdout=0|1 stderr=0|1 keys=<hex>` with a descriptor (SCM_RIGHTS):
//!   the client's connection, already upgraded to docker's raw stream. The supervisor
//!   writes the output to it (docker's 8-byte frames without a TTY, raw bytes with
//!   one), reads stdin from it, and drops it at the detach keys or at the exit.
//! - `resize <rows> <cols>`: sets the pty's window size.
//! - `start`: the container's own supervisor waits for this before it starts the
//!   program, so the clients attached before `start` see all of its output.
//!
//! Unix socket paths are limited to 108 bytes and container directories are long, so
//! both sides reach the socket through `/proc/self/fd/<dir fd>/<name>`.

use crate::error::{Error, Result};
use crate::logs::{RotatingFile, Stream, Writer};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

/// The container supervisor's socket, in the container's directory.
pub const SOCKET: &str = "attach.sock";

/// docker's default detach keys: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[0x10, 0x11];

/// Which streams an attached client wants, and its detach sequence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttachOptions {
    /// the client's bytes go to the process's stdin
    pub stdin: bool,
    /// the process's stdout goes to the client
    pub stdout: bool,
    /// the process's stderr goes to the client
    pub stderr: bool,
    /// the byte sequence on stdin that ends the attach (empty: none)
    pub detach_keys: Vec<u8>,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            stdin: false,
            stdout: true,
            stderr: true,
            detach_keys: DEFAULT_DETACH_KEYS.to_vec(),
        }
    }
}

/// One request on the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// attach the connection sent along
    Attach(AttachOptions),
    /// set the pty's window size
    Resize {
        /// rows
        rows: u16,
        /// columns
        cols: u16,
    },
    /// start the program
    Start,
}

impl Request {
    fn encode(&self) -> String {
        let b = |x: bool| u8::from(x);
        match self {
            Request::Attach(a) => {
                let keys: String = a.detach_keys.iter().map(|k| format!("{k:02x}")).collect();
                format!(
                    "attach stdin={} stdout={} stderr={} keys={keys}\n",
                    b(a.stdin),
                    b(a.stdout),
                    b(a.stderr)
                )
            }
            Request::Resize { rows, cols } => format!("resize {rows} {cols}\n"),
            Request::Start => "start\n".into(),
        }
    }

    fn parse(line: &str) -> Option<Request> {
        let mut w = line.split_whitespace();
        match w.next()? {
            "start" => Some(Request::Start),
            "resize" => Some(Request::Resize {
                rows: w.next()?.parse().ok()?,
                cols: w.next()?.parse().ok()?,
            }),
            "attach" => {
                let mut a = AttachOptions::default();
                for kv in w {
                    let (k, v) = kv.split_once('=')?;
                    match k {
                        "stdin" => a.stdin = v == "1",
                        "stdout" => a.stdout = v == "1",
                        "stderr" => a.stderr = v == "1",
                        "keys" => {
                            a.detach_keys = (0..v.len() / 2)
                                .map(|i| u8::from_str_radix(&v[2 * i..2 * i + 2], 16).ok())
                                .collect::<Option<_>>()?
                        }
                        _ => {}
                    }
                }
                Some(Request::Attach(a))
            }
            _ => None,
        }
    }
}

/// docker's `--detach-keys`: comma-separated keys, each a letter or `ctrl-<x>` with x
/// one of a-z, @, [, \, ], ^, _.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    let bad = || {
        Error::Invalid(format!(
            "invalid detach keys {s:?}: use a comma-separated list like ctrl-p,ctrl-q (ctrl-<a-z@[\\]^_> or single characters)"
        ))
    };
    let mut out = Vec::new();
    for k in s.split(',') {
        if let Some(c) = k.strip_prefix("ctrl-") {
            let c = c.as_bytes();
            match c {
                [x @ b'a'..=b'z'] => out.push(x - b'a' + 1),
                [x @ (b'@' | b'[' | b'\\' | b']' | b'^' | b'_')] => out.push(x - b'@'),
                _ => return Err(bad()),
            }
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(bad());
        }
    }
    Ok(out)
}

/// The socket `name` in `dir`, through a short `/proc/self/fd` path; the returned
/// descriptor must live while the path is used.
fn short_path(dir: &Path, name: &str) -> Result<(OwnedFd, String)> {
    let d = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", dir.display()), e))?;
    let fd = d;
    let p = format!("/proc/self/fd/{}/{name}", fd.as_raw_fd());
    Ok((fd, p))
}

/// Listens on `dir/name` (replacing a stale socket).
pub fn listen(dir: &Path, name: &str) -> Result<UnixListener> {
    let _ = std::fs::remove_file(dir.join(name));
    let (_fd, p) = short_path(dir, name)?;
    let l = UnixListener::bind(&p).map_err(|e| Error::io("listen on", dir.join(name), e))?;
    // the socket hands out the container's stdin: its owner (root) only
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("restrict", dir.join(name), e))?;
    Ok(l)
}

/// Sends `req` (with `fd` for an attach) to the supervisor listening on `dir/name`.
pub fn send(dir: &Path, name: &str, req: &Request, fd: Option<BorrowedFd>) -> Result<()> {
    let (_d, p) = short_path(dir, name)?;
    let s = UnixStream::connect(&p).map_err(|e| {
        Error::Conflict(format!(
            "cannot reach the supervisor at {}: {e}: is the container running?",
            dir.join(name).display()
        ))
    })?;
    let line = req.encode();
    let iov = [IoSlice::new(line.as_bytes())];
    let fds: Vec<RawFd> = fd.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg: Vec<ControlMessage> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&fds)]
    };
    sendmsg::<()>(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| Error::sys("send to the container supervisor", e))?;
    Ok(())
}

/// Reads one request (and its descriptor) from an accepted connection.
fn receive(s: &UnixStream) -> Option<(Request, Option<OwnedFd>)> {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 512];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    let mut fd = None;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for f in fds {
                // recvmsg just installed this descriptor; nothing else owns it
                let owned = berth_sys::proc::own_fd(f);
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
        }
    }
    let n = msg.bytes;
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    Some((Request::parse(&line)?, fd))
}

/// One of docker's frames: raw with a TTY, else `[stream, 0, 0, 0, len BE]` + data.
pub fn frame(tty: bool, stream: Stream, data: &[u8]) -> Vec<u8> {
    if tty {
        return data.to_vec();
    }
    let mut f = Vec::with_capacity(8 + data.len());
    f.push(if stream == Stream::Stderr { 2 } else { 1 });
    f.extend_from_slice(&[0, 0, 0]);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// An attached client.
struct Client {
    sock: UnixStream,
    opts: AttachOptions,
    /// still reading its stdin
    reading: bool,
    /// how much of the detach sequence it has typed
    matched: usize,
    gone: bool,
}

impl Client {
    /// Filters `data` for the detach keys: the bytes to pass on, and whether the
    /// client detached.
    fn scan(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let keys = &self.opts.detach_keys;
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if keys.is_empty() {
                out.push(b);
                continue;
            }
            if b == keys[self.matched] {
                self.matched += 1;
                if self.matched == keys.len() {
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&keys[..self.matched]);
            self.matched = 0;
            if b == keys[0] {
                self.matched = 1;
                if keys.len() == 1 {
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// The process's stdio as its supervisor holds it, and the clients attached to it.
pub(crate) struct Session {
    tty: bool,
    /// stdout (or the pty master)
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    /// where client stdin goes (the pipe, or a copy of the pty master)
    stdin: Option<OwnedFd>,
    /// close the process's stdin when an attached client closes its own
    stdin_once: bool,
    /// the pty master, for resizes
    master: Option<OwnedFd>,
    clients: Vec<Client>,
    listener: Option<UnixListener>,
}

impl Session {
    /// A session over the process's output ends and its stdin.
    pub(crate) fn new(
        tty: bool,
        out: Option<OwnedFd>,
        err: Option<OwnedFd>,
        stdin: Option<OwnedFd>,
        stdin_once: bool,
        listener: Option<UnixListener>,
    ) -> Session {
        let master = if tty {
            out.as_ref().and_then(|m| m.try_clone().ok())
        } else {
            None
        };
        Session {
            tty,
            out,
            err,
            stdin,
            stdin_once,
            master,
            clients: Vec::new(),
            listener,
        }
    }

    /// What the slim supervisor takes over (see [`crate::slim`]): the output ends,
    /// the listener and the clients; `None` when the session relays a terminal or
    /// stdin, which only the full supervisor does.
    pub(crate) fn slim_parts(&self) -> Option<crate::slim::Parts<'_>> {
        if self.tty || self.stdin.is_some() {
            return None;
        }
        Some(crate::slim::Parts {
            out: self.out.as_ref()?,
            err: self.err.as_ref()?,
            listener: self.listener.as_ref(),
            clients: self
                .clients
                .iter()
                .filter(|c| !c.gone)
                .map(|c| (&c.sock, c.opts.stdout, c.opts.stderr))
                .collect(),
        })
    }

    /// Adds a client connection.
    pub(crate) fn add_client(&mut self, sock: UnixStream, opts: AttachOptions) {
        let reading = opts.stdin && self.stdin.is_some();
        self.clients.push(Client {
            sock,
            opts,
            reading,
            matched: 0,
            gone: false,
        });
    }

    /// Sets the pty's window size.
    pub(crate) fn resize(&self, rows: u16, cols: u16) {
        if let Some(m) = &self.master {
            let _ = berth_sys::proc::set_window_size(m.as_fd(), rows, cols);
        }
    }

    /// Serves the socket until a `start` request (attaches and resizes before the
    /// program runs); an error when nothing asks to start within `timeout`.
    pub(crate) fn serve_until_start(&mut self, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let Some(l) = &self.listener else {
                return Ok(());
            };
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(Error::Shim("nothing asked the container to start".into()));
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut p = [PollFd::new(l.as_fd(), PollFlags::POLLIN)];
            match poll(&mut p, PollTimeout::from(ms)) {
                Ok(0) | Err(nix::Error::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(Error::sys("wait for start", e)),
            }
            if self.accept() == Some(Request::Start) {
                return Ok(());
            }
        }
    }

    /// Accepts and handles one request.
    fn accept(&mut self) -> Option<Request> {
        let (s, _) = self.listener.as_ref()?.accept().ok()?;
        let (req, fd) = receive(&s)?;
        match &req {
            Request::Attach(o) => {
                let sock = UnixStream::from(fd?);
                let _ = sock.set_nonblocking(false);
                self.add_client(sock, o.clone());
            }
            Request::Resize { rows, cols } => self.resize(*rows, *cols),
            Request::Start => {}
        }
        Some(req)
    }

    /// Copies the output into `log` and to the clients, and client stdin to the
    /// process, until the output ends.
    pub(crate) fn run(&mut self, mut log: Option<&mut Writer<RotatingFile>>) {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            self.clients.retain(|c| !c.gone);
            if self.out.is_none() && self.err.is_none() {
                break;
            }
            // 0: out, 1: err, 2: listener, 3..: clients reading stdin
            let mut slots: Vec<usize> = Vec::new();
            let mut pfds: Vec<PollFd> = Vec::new();
            if let Some(o) = &self.out {
                slots.push(0);
                pfds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
            }
            if let Some(e) = &self.err {
                slots.push(1);
                pfds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
            }
            if let Some(l) = &self.listener {
                slots.push(2);
                pfds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            }
            for (i, c) in self.clients.iter().enumerate() {
                if c.reading {
                    slots.push(3 + i);
                    pfds.push(PollFd::new(c.sock.as_fd(), PollFlags::POLLIN));
                }
            }
            match poll(&mut pfds, PollTimeout::NONE) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(_) => return,
            }
            let ready: Vec<usize> = pfds
                .iter()
                .zip(&slots)
                .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, s)| *s)
                .collect();
            drop(pfds);
            for slot in ready {
                match slot {
                    0 | 1 => self.output(slot, &mut buf, log.as_deref_mut()),
                    2 => {
                        self.accept();
                    }
                    i => self.input(i - 3, &mut buf),
                }
            }
        }
        if let Some(l) = log {
            let _ = l.flush_stream(Stream::Stdout);
            let _ = l.flush_stream(Stream::Stderr);
        }
    }

    fn output(&mut self, slot: usize, buf: &mut [u8], log: Option<&mut Writer<RotatingFile>>) {
        let (fd, stream) = if slot == 0 {
            (&mut self.out, Stream::Stdout)
        } else {
            (&mut self.err, Stream::Stderr)
        };
        let Some(f) = fd.as_ref() else { return };
        match nix::unistd::read(f.as_fd(), buf) {
            Ok(0) | Err(nix::Error::EIO) => {
                *fd = None;
                if let Some(l) = log {
                    let _ = l.flush_stream(stream);
                }
            }
            Ok(n) => {
                if let Some(l) = log {
                    let _ = l.write(stream, &buf[..n]);
                }
                let tty = self.tty;
                for c in &mut self.clients {
                    let wanted = match stream {
                        Stream::Stdout => c.opts.stdout,
                        Stream::Stderr => c.opts.stderr,
                    };
                    if wanted
                        && !c.gone
                        && c.sock.write_all(&frame(tty, stream, &buf[..n])).is_err()
                    {
                        c.gone = true;
                    }
                }
            }
            Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
            Err(_) => *fd = None,
        }
    }

    fn input(&mut self, i: usize, buf: &mut [u8]) {
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        let n = match c.sock.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Err(_) => 0,
        };
        if n == 0 {
            c.reading = false;
            if self.stdin_once && !self.tty {
                self.stdin = None;
            }
            return;
        }
        let (data, detached) = c.scan(&buf[..n]);
        if detached {
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
            c.gone = true;
        }
        if let Some(s) = &self.stdin {
            if !data.is_empty() && write_fd(s, &data).is_err() {
                self.stdin = None;
            }
        }
    }

    /// Ends every client's stream (after the exit is recorded).
    pub(crate) fn close_clients(&mut self) {
        for c in &self.clients {
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
        }
        self.clients.clear();
    }
}

fn write_fd(fd: &OwnedFd, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Start,
            Request::Resize { rows: 24, cols: 80 },
            Request::Attach(AttachOptions {
                stdin: true,
                stdout: false,
                stderr: true,
                detach_keys: vec![0x10, 0x11],
            }),
            Request::Attach(AttachOptions {
                detach_keys: Vec::new(),
                ..Default::default()
            }),
        ] {
            assert_eq!(Request::parse(&r.encode()), Some(r));
        }
        assert_eq!(Request::parse("bogus"), None);
    }

    #[test]
    fn detach_keys_parse_like_docker() {
        assert_eq!(
            parse_detach_keys("ctrl-p,ctrl-q").expect("default"),
            [16, 17]
        );
        assert_eq!(parse_detach_keys("a,ctrl-@").expect("mixed"), [b'a', 0]);
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("ab").is_err());
    }

    #[test]
    fn detach_scan_passes_partial_sequences_through() {
        let (a, _b) = UnixStream::pair().expect("pair");
        let mut c = Client {
            sock: a,
            opts: AttachOptions::default(),
            reading: true,
            matched: 0,
            gone: false,
        };
        assert_eq!(c.scan(b"ab\x10c"), (b"ab\x10c".to_vec(), false));
        assert_eq!(c.scan(b"x\x10"), (b"x".to_vec(), false));
        assert_eq!(c.scan(b"\x11rest"), (Vec::new(), true));
    }

    #[test]
    fn frames_have_docker_headers() {
        assert_eq!(
            frame(false, Stream::Stderr, b"hi"),
            [2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']
        );
        assert_eq!(frame(true, Stream::Stderr, b"hi"), b"hi");
    }
}
