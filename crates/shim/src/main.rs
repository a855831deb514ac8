//! `berth-shim`: see the library doc. Exits 125 on bad arguments (it is only started by
//! berth's own supervisor, which passes them right).

use berth_shim::{json_entry, numbered, Lines};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitStatus};
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

struct Args {
    pid: i32,
    out: RawFd,
    err: RawFd,
    log: OsString,
    max_size: u64,
    max_files: u32,
    /// the attach socket's listener
    listen: Option<RawFd>,
    /// attached clients: descriptor, wants stdout, wants stderr
    clients: Vec<(RawFd, bool, bool)>,
    finish: Vec<OsString>,
}

fn parse() -> Option<Args> {
    let mut a = Args {
        pid: 0,
        out: -1,
        err: -1,
        log: OsString::new(),
        max_size: 20 << 20,
        max_files: 5,
        listen: None,
        clients: Vec::new(),
        finish: Vec::new(),
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(k) = it.next() {
        if k == "--" {
            a.finish = it.collect();
            break;
        }
        let v = it.next()?;
        let n = || v.to_str().and_then(|s| s.parse::<i64>().ok());
        match k.to_str()? {
            "--id" => {}
            "--pid" => a.pid = n()? as i32,
            "--out" => a.out = n()? as RawFd,
            "--err" => a.err = n()? as RawFd,
            "--log" => a.log = v,
            "--max-size" => a.max_size = n()? as u64,
            "--max-files" => a.max_files = n()? as u32,
            "--listen" => a.listen = Some(n()? as RawFd),
            "--client" => {
                let v = v.to_str()?;
                let mut f = v.split(':');
                let fd = f.next()?.parse().ok()?;
                a.clients.push((fd, f.next()? == "1", f.next()? == "1"));
            }
            _ => return None,
        }
    }
    (a.pid > 0 && a.out > 2 && a.err > 2 && !a.log.is_empty() && !a.finish.is_empty()).then_some(a)
}

/// The json-file log with rotation (as the engine's `RotatingFile`).
struct Log {
    path: OsString,
    file: Option<File>,
    size: u64,
    max_size: u64,
    max_files: u32,
    line: Vec<u8>,
}

impl Log {
    fn open(path: &OsStr) -> Option<File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    }

    fn entry(&mut self, text: &[u8], stream: &str) {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME)
            .map(|t| (t.tv_sec(), t.tv_nsec() as u32))
            .unwrap_or((0, 0));
        self.line.clear();
        json_entry(&mut self.line, text, stream, now.0, now.1);
        if self.size > 0 && self.size + self.line.len() as u64 > self.max_size {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(&self.line).is_ok() {
                self.size += self.line.len() as u64;
            }
        }
    }

    fn rotate(&mut self) {
        let keep = self.max_files.max(1);
        if keep == 1 {
            if let Some(f) = &self.file {
                let _ = f.set_len(0);
            }
            self.size = 0;
            return;
        }
        let _ = std::fs::remove_file(numbered(&self.path, keep - 1));
        for i in (1..keep - 1).rev() {
            let _ = std::fs::rename(numbered(&self.path, i), numbered(&self.path, i + 1));
        }
        let _ = std::fs::rename(&self.path, numbered(&self.path, 1));
        self.file = Log::open(&self.path);
        self.size = 0;
    }
}

/// A client attached to the output (a connection already upgraded to docker's raw
/// stream): it gets docker's frames of the streams it asked for.
struct Client {
    sock: std::os::unix::net::UnixStream,
    wants: [bool; 2],
}

/// The output side of the attach protocol (see berth's engine, `attach`): one request
/// line per connection with the client's descriptor; resize and start need nothing
/// here (no terminal, already started).
fn accept(listener: &std::os::unix::net::UnixListener, clients: &mut Vec<Client>) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let Ok((s, _)) = listener.accept() else {
        return;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut buf = [0u8; 512];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let Ok(msg) = recvmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(&s),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    ) else {
        return;
    };
    let mut fd = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for f in fds {
                    // recvmsg just installed it; nothing else owns it
                    let owned = own(f);
                    fd = fd.or(Some(owned));
                }
            }
        }
    }
    let n = msg.bytes;
    let line = String::from_utf8_lossy(&buf[..n]);
    let mut words = line.split_whitespace();
    if words.next() != Some("attach") {
        return;
    }
    let mut wants = [true, true];
    for kv in words {
        match kv.split_once('=') {
            Some(("stdout", v)) => wants[0] = v == "1",
            Some(("stderr", v)) => wants[1] = v == "1",
            _ => {}
        }
    }
    if let Some(fd) = fd {
        let sock = std::os::unix::net::UnixStream::from(fd);
        let _ = sock.set_nonblocking(false);
        clients.push(Client { sock, wants });
    }
}

/// Sends `data` of stream `i` to the clients that want it, as one docker frame
/// (`[stream, 0, 0, 0, len BE]` + data); drops the clients that are gone.
fn fan_out(clients: &mut Vec<Client>, i: usize, data: &[u8]) {
    let mut head = [0u8; 8];
    head[0] = i as u8 + 1;
    head[4..].copy_from_slice(&(data.len() as u32).to_be_bytes());
    clients.retain_mut(|c| {
        !c.wants[i] || (c.sock.write_all(&head).is_ok() && c.sock.write_all(data).is_ok())
    });
}

/// Copies both streams into the log and to the attached clients until both end.
fn pump(
    fds: [OwnedFd; 2],
    listener: Option<std::os::unix::net::UnixListener>,
    clients: &mut Vec<Client>,
    log: &mut Log,
) {
    let mut open = [true, true];
    let mut lines = Lines::default();
    let mut buf = [0u8; 8192];
    const NAMES: [&str; 2] = ["stdout", "stderr"];
    while open[0] || open[1] {
        // slots: the open streams, then the listener
        let mut which = [0usize; 3];
        let mut pfds: [Option<PollFd>; 3] = [None, None, None];
        let mut n = 0;
        for i in 0..2 {
            if open[i] {
                which[n] = i;
                pfds[n] = Some(PollFd::new(fds[i].as_fd(), PollFlags::POLLIN));
                n += 1;
            }
        }
        if let Some(l) = &listener {
            which[n] = 2;
            pfds[n] = Some(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            n += 1;
        }
        let mut polled: Vec<PollFd> = pfds.iter().take(n).flatten().cloned().collect();
        match poll(&mut polled, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return,
        }
        let ready: Vec<bool> = polled
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(polled);
        for (k, r) in ready.iter().enumerate() {
            if !r {
                continue;
            }
            let i = which[k];
            if i == 2 {
                if let Some(l) = &listener {
                    accept(l, clients);
                }
                continue;
            }
            match nix::unistd::read(fds[i].as_fd(), &mut buf) {
                Ok(0) | Err(nix::Error::EIO) => {
                    lines.finish(i, |l| log.entry(l, NAMES[i]));
                    open[i] = false;
                }
                Ok(got) => {
                    lines.push(i, &buf[..got], |l| log.entry(l, NAMES[i]));
                    fan_out(clients, i, &buf[..got]);
                }
                Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
                Err(_) => {
                    lines.finish(i, |l| log.entry(l, NAMES[i]));
                    open[i] = false;
                }
            }
        }
    }
}

/// Waits for `pid` (reaping any other child on the way): its code as docker gives it.
fn reap(pid: i32) -> i32 {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, c)) if p.as_raw() == pid => return c,
            Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == pid => return 128 + s as i32,
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return 255,
        }
    }
}

fn main() {
    let Some(a) = parse() else {
        eprintln!("berth-shim: started by berth's supervisor only (bad arguments)");
        std::process::exit(125);
    };
    let file = Log::open(&a.log);
    let size = file
        .as_ref()
        .and_then(|f| f.metadata().ok())
        .map(|m| m.len())
        .unwrap_or(0);
    let mut log = Log {
        path: a.log.clone(),
        file,
        size,
        max_size: a.max_size,
        max_files: a.max_files,
        line: Vec::new(),
    };
    let fds = [own(a.out), own(a.err)];
    let listener = a
        .listen
        .map(|fd| std::os::unix::net::UnixListener::from(own(fd)));
    let mut clients: Vec<Client> = a
        .clients
        .iter()
        .map(|(fd, o, e)| Client {
            sock: std::os::unix::net::UnixStream::from(own(*fd)),
            wants: [*o, *e],
        })
        .collect();
    pump(fds, listener, &mut clients, &mut log);
    drop(log);
    // the clients' streams end here (the finisher records the exit); a client that
    // waits for the exit code asks the daemon's `wait`
    drop(clients);
    let code = reap(a.pid);
    // hand the exit back to berth, which records it and tears the container down
    let mut argv: Vec<CString> = a
        .finish
        .iter()
        .filter_map(|s| CString::new(s.as_bytes()).ok())
        .collect();
    argv.extend(CString::new(code.to_string()).ok());
    if let Some(prog) = argv.first().cloned() {
        let _ = nix::unistd::execv(&prog, &argv);
    }
    eprintln!("berth-shim: cannot run the finisher: the exit ({code}) is recorded by the daemon");
    std::process::exit(1);
}

/// Takes over a descriptor inherited across exec (its number is on our command line,
/// written by the supervisor that exec'd us; nothing else in this process uses it).
fn own(fd: RawFd) -> OwnedFd {
    berth_sys::proc::own_fd(fd)
}
