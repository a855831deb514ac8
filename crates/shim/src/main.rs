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

/// Copies both streams into the log until both end.
fn pump(out: OwnedFd, err: OwnedFd, log: &mut Log) {
    let fds = [out, err];
    let mut open = [true, true];
    let mut lines = Lines::default();
    let mut buf = [0u8; 8192];
    const NAMES: [&str; 2] = ["stdout", "stderr"];
    while open[0] || open[1] {
        let idx: [usize; 2] = if open[0] { [0, 1] } else { [1, 0] };
        let count = open.iter().filter(|o| **o).count();
        let mut pfds = [
            PollFd::new(fds[idx[0]].as_fd(), PollFlags::POLLIN),
            PollFd::new(fds[idx[1]].as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut pfds[..count], PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return,
        }
        let ready: [bool; 2] = [
            pfds[0].revents().is_some_and(|r| !r.is_empty()),
            count > 1 && pfds[1].revents().is_some_and(|r| !r.is_empty()),
        ];
        for (k, i) in idx.iter().take(count).enumerate() {
            if !ready[k] {
                continue;
            }
            match nix::unistd::read(fds[*i].as_fd(), &mut buf) {
                Ok(0) | Err(nix::Error::EIO) => {
                    lines.finish(*i, |l| log.entry(l, NAMES[*i]));
                    open[*i] = false;
                }
                Ok(n) => lines.push(*i, &buf[..n], |l| log.entry(l, NAMES[*i])),
                Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
                Err(_) => {
                    lines.finish(*i, |l| log.entry(l, NAMES[*i]));
                    open[*i] = false;
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
    let out = own(a.out);
    let err = own(a.err);
    pump(out, err, &mut log);
    drop(log);
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
