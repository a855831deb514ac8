//! docker's json-file log format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`.
//! Output is split at newlines; a line without one is written when it reaches 16 KiB
//! or when the stream ends, as docker does.

use crate::error::{Error, Result};
use crate::record::LogOptions;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest line piece kept in memory before it is written without a newline.
const MAX_PARTIAL: usize = 16 * 1024;

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// the text, with its newline when it had one
    pub log: String,
    /// "stdout" or "stderr"
    pub stream: String,
    /// RFC 3339 with nanoseconds
    pub time: String,
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// standard output
    Stdout,
    /// standard error
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Appends entries to a json-file log, buffering partial lines per stream.
pub struct Writer<W: Write> {
    out: W,
    partial: [Vec<u8>; 2],
}

impl<W: Write> Writer<W> {
    /// A writer appending to `out`.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            partial: [Vec::new(), Vec::new()],
        }
    }

    /// Adds output of `stream`; complete lines are written at once.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let i = stream as usize;
        self.partial[i].extend_from_slice(data);
        while let Some(pos) = self.partial[i].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial[i].drain(..=pos).collect();
            self.entry(stream, &line)?;
        }
        if self.partial[i].len() >= MAX_PARTIAL {
            let line = std::mem::take(&mut self.partial[i]);
            self.entry(stream, &line)?;
        }
        Ok(())
    }

    /// Writes what is left of `stream` (at its end).
    pub fn flush_stream(&mut self, stream: Stream) -> std::io::Result<()> {
        let line = std::mem::take(&mut self.partial[stream as usize]);
        if !line.is_empty() {
            self.entry(stream, &line)?;
        }
        self.out.flush()
    }

    fn entry(&mut self, stream: Stream, line: &[u8]) -> std::io::Result<()> {
        let e = Entry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream: stream.name().into(),
            time: crate::record::now(),
        };
        let mut s = serde_json::to_string(&e).map_err(std::io::Error::other)?;
        s.push('\n');
        self.out.write_all(s.as_bytes())
    }
}

/// A log file that rotates to `<path>.1`, `<path>.2`, … (oldest dropped) before an
/// entry would take it past its size limit. Entries are never split across files:
/// [`Writer`] hands each one over in a single `write_all`.
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    opts: LogOptions,
}

impl RotatingFile {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, opts: LogOptions) -> Result<Self> {
        let file = append(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            opts,
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let keep = self.opts.max_files.max(1);
        if keep == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(numbered(&self.path, keep - 1));
        for i in (1..keep - 1).rev() {
            let _ = std::fs::rename(numbered(&self.path, i), numbered(&self.path, i + 1));
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))?;
        self.file = append(&self.path).map_err(std::io::Error::other)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.opts.max_size {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn append(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open log", path, e))
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Reads every entry of the log at `path` and its rotated files, oldest first (a
/// missing log has none; unparsable lines are skipped).
pub fn read(path: &Path) -> Result<Vec<Entry>> {
    let mut files = vec![path.to_path_buf()];
    for n in 1.. {
        let p = numbered(path, n);
        if !p.exists() {
            break;
        }
        files.push(p);
    }
    let mut out = Vec::new();
    for p in files.iter().rev() {
        let text = match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read", p, e)),
        };
        out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    Ok(out)
}

/// Follows a json-file log for `logs -f`: reads from a descriptor it holds, so what
/// was written stays readable after the container is removed (a client that removes
/// the container before it has read the stream still gets every line), goes on into
/// the next file when the writer rotates, and sleeps on inotify until the log or the
/// directories given change (the container's directory: its exit is recorded there).
///
/// A follower that sees the container exited and then reads to the end has every
/// line: supervisors write the log before they record the exit.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    /// the held file's (device, inode)
    id: (u64, u64),
    pos: u64,
    partial: Vec<u8>,
    inotify: Option<Inotify>,
}

impl Follower {
    /// Follows the log at `path` (which may not exist yet), waking also on changes in
    /// the directories `also`.
    pub fn open(path: &Path, also: &[&Path]) -> Follower {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok();
        if let Some(i) = &inotify {
            let changes = AddWatchFlags::IN_MODIFY
                | AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_DELETE_SELF;
            let dirs = path.parent().into_iter().chain(also.iter().copied());
            for d in dirs {
                if let Err(e) = i.add_watch(d, changes) {
                    tracing::debug!(dir = %d.display(), error = %e, "cannot watch for log changes");
                }
            }
        }
        let mut f = Follower {
            path: path.to_path_buf(),
            file: None,
            id: (0, 0),
            pos: 0,
            partial: Vec::new(),
            inotify,
        };
        f.reopen();
        f
    }

    fn reopen(&mut self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(file) = File::open(&self.path) else {
            return false;
        };
        let Ok(m) = file.metadata() else {
            return false;
        };
        self.id = (m.dev(), m.ino());
        self.file = Some(file);
        self.pos = 0;
        self.partial.clear();
        true
    }

    /// Every entry so far, the rotated files' first (oldest first).
    pub fn history(&mut self) -> Vec<Entry> {
        use std::os::unix::fs::MetadataExt;
        let mut rotated = Vec::new();
        for n in 1.. {
            let p = numbered(&self.path, n);
            match std::fs::metadata(&p) {
                // the held file, rotated since it was opened, is read below
                Ok(m) if self.file.is_some() && (m.dev(), m.ino()) == self.id => {}
                Ok(_) => rotated.push(p),
                Err(_) => break,
            }
        }
        let mut out = Vec::new();
        for p in rotated.iter().rev() {
            if let Ok(text) = std::fs::read_to_string(p) {
                out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
            }
        }
        out.extend(self.next_entries());
        out
    }

    /// The entries written since the last call (complete lines only), through
    /// rotations.
    pub fn next_entries(&mut self) -> Vec<Entry> {
        use std::io::{Read, Seek};
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            if self.file.is_none() && !self.reopen() {
                return out;
            }
            let Some(file) = self.file.as_mut() else {
                return out;
            };
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.pos += n as u64;
                        self.partial.extend_from_slice(&buf[..n]);
                        take_lines(&mut self.partial, &mut out);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            // at the end of the held file: rotated away, or cut to nothing (one file)?
            let now = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
            match now {
                Ok(id) if id != self.id => {
                    // entries never span files: a piece left over is not one; the
                    // files rotated after the held one come before the current one
                    self.file = None;
                    self.read_rotated_since_held(&mut out);
                }
                _ => {
                    let len = file.metadata().map(|m| m.len()).unwrap_or(self.pos);
                    if len >= self.pos {
                        return out;
                    }
                    if file.seek(std::io::SeekFrom::Start(0)).is_err() {
                        return out;
                    }
                    self.pos = 0;
                    self.partial.clear();
                }
            }
        }
    }

    /// After the held file was rotated away: the whole of every file rotated after it
    /// (`<path>.k-1` … `<path>.1` when it is now `<path>.k`).
    fn read_rotated_since_held(&self, out: &mut Vec<Entry>) {
        use std::os::unix::fs::MetadataExt;
        let mut newer = Vec::new();
        for n in 1.. {
            let p = numbered(&self.path, n);
            match std::fs::metadata(&p) {
                Ok(m) if (m.dev(), m.ino()) == self.id => break,
                Ok(_) => newer.push(p),
                // the held file is not among them: rotation dropped it (every
                // file left is newer), or they went with the container
                Err(_) => break,
            }
        }
        for p in newer.iter().rev() {
            if let Ok(text) = std::fs::read_to_string(p) {
                out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
            }
        }
    }

    /// Blocks until the log or a watched directory changes, `also` (a client's
    /// connection) has something to say or hangs up, or `timeout` passes. Whether
    /// `also` is ready.
    pub fn wait(&self, also: Option<BorrowedFd>, timeout: Duration) -> bool {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds: Vec<PollFd> = Vec::new();
        if let Some(i) = &self.inotify {
            fds.push(PollFd::new(i.as_fd(), PollFlags::POLLIN));
        }
        if let Some(a) = also {
            fds.push(PollFd::new(a, PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::from(ms)).is_err() {
            return false;
        }
        let also_ready = also.is_some()
            && fds
                .last()
                .and_then(|p| p.revents())
                .is_some_and(|r| !r.is_empty());
        drop(fds);
        if let Some(i) = &self.inotify {
            // drain: the events only wake us, what changed is read from the files
            while i.read_events().is_ok_and(|e| !e.is_empty()) {}
        }
        also_ready
    }
}

/// Moves the complete lines of `buf` into `out` as entries (unparsable ones skipped).
fn take_lines(buf: &mut Vec<u8>, out: &mut Vec<Entry>) {
    let Some(last) = buf.iter().rposition(|b| *b == b'\n') else {
        return;
    };
    for line in buf[..last].split(|b| *b == b'\n') {
        if let Ok(e) = serde_json::from_slice(line) {
            out.push(e);
        }
    }
    buf.drain(..=last);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(buf: &[u8]) -> Vec<Entry> {
        String::from_utf8_lossy(buf)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    #[test]
    fn lines_are_split_and_partials_held() {
        let mut buf = Vec::new();
        {
            let mut w = Writer::new(&mut buf);
            w.write(Stream::Stdout, b"a\nb").expect("write");
            w.write(Stream::Stderr, b"err\n").expect("write");
            w.write(Stream::Stdout, b"c\n").expect("write");
            w.write(Stream::Stdout, b"tail").expect("write");
            w.flush_stream(Stream::Stdout).expect("flush");
        }
        let e = entries(&buf);
        let got: Vec<(&str, &str)> = e
            .iter()
            .map(|e| (e.stream.as_str(), e.log.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("stdout", "a\n"),
                ("stderr", "err\n"),
                ("stdout", "bc\n"),
                ("stdout", "tail")
            ]
        );
        assert!(e[0].time.ends_with('Z'));
    }

    #[test]
    fn long_lines_are_cut() {
        let mut buf = Vec::new();
        {
            let mut w = Writer::new(&mut buf);
            w.write(Stream::Stdout, &vec![b'x'; MAX_PARTIAL + 1])
                .expect("write");
        }
        assert_eq!(entries(&buf)[0].log.len(), MAX_PARTIAL + 1);
    }

    #[test]
    fn rotation_keeps_max_files_and_reads_oldest_first() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("c-json.log");
        let opts = LogOptions {
            max_size: 200,
            max_files: 3,
            ..Default::default()
        };
        {
            let mut w = Writer::new(RotatingFile::open(&p, opts).expect("open"));
            for i in 0..40 {
                w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                    .expect("write");
            }
        }
        assert!(p.exists() && numbered(&p, 1).exists() && numbered(&p, 2).exists());
        assert!(!numbered(&p, 3).exists());
        for f in [p.clone(), numbered(&p, 1), numbered(&p, 2)] {
            assert!(std::fs::metadata(&f).expect("meta").len() <= 200);
        }
        let e = read(&p).expect("read");
        assert_eq!(e.last().map(|e| e.log.as_str()), Some("line 39\n"));
        let nums: Vec<u32> = e
            .iter()
            .filter_map(|e| e.log.trim().strip_prefix("line ")?.parse().ok())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert!(nums[0] > 0, "the oldest lines were dropped");
    }

    #[test]
    fn format_matches_docker() {
        let line = r#"{"log":"hi\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}"#;
        let e: Entry = serde_json::from_str(line).expect("parse");
        assert_eq!(serde_json::to_string(&e).expect("ser"), line);
    }

    fn logs(e: &[Entry]) -> Vec<&str> {
        e.iter().map(|e| e.log.as_str()).collect()
    }

    #[test]
    fn follower_reads_on_through_rotation_and_after_removal() {
        // 3 files: rotation drops the held one; 5: it is kept as .3, behind .2 and .1
        for max_files in [3, 5] {
            follow_rotations(max_files);
        }
    }

    fn follow_rotations(max_files: u32) {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("c-json.log");
        let opts = LogOptions {
            max_size: 300,
            max_files,
            ..Default::default()
        };
        let mut w = Writer::new(RotatingFile::open(&p, opts).expect("open"));
        w.write(Stream::Stdout, b"one\ntwo\n").expect("write");
        let mut f = Follower::open(&p, &[]);
        assert_eq!(logs(&f.history()), ["one\n", "two\n"]);
        assert!(f.next_entries().is_empty());
        // enough lines to rotate three times while the follower holds the first file
        for i in 0..8 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .expect("write");
        }
        w.write(Stream::Stderr, b"half").expect("write");
        let got = f.next_entries();
        let want: Vec<String> = (0..8).map(|i| format!("line {i}\n")).collect();
        assert_eq!(logs(&got), want, "every line once, in order, across files");
        w.flush_stream(Stream::Stderr).expect("flush");
        w.write(Stream::Stdout, b"last\n").expect("write");
        drop(w);
        // the container is removed before the follower reads its last lines
        std::fs::remove_file(&p).expect("remove log");
        assert_eq!(logs(&f.next_entries()), ["half", "last\n"]);
    }

    #[test]
    fn follower_waits_for_a_log_that_is_not_there_yet_and_wakes_on_writes() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("c-json.log");
        let mut f = Follower::open(&p, &[]);
        assert!(f.history().is_empty());
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            let mut w = Writer::new(RotatingFile::open(&p2, LogOptions::default()).expect("open"));
            w.write(Stream::Stdout, b"hello\n").expect("write");
        });
        let mut got = Vec::new();
        while got.is_empty() {
            // woken by the write; the long timeout only bounds a lost wake-up
            f.wait(None, Duration::from_secs(30));
            got = f.next_entries();
        }
        t.join().expect("writer");
        assert_eq!(logs(&got), ["hello\n"]);
    }

    #[test]
    fn follower_starts_over_when_a_single_file_is_cut() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("c-json.log");
        let opts = LogOptions {
            max_size: 200,
            max_files: 1,
            ..Default::default()
        };
        let mut w = Writer::new(RotatingFile::open(&p, opts).expect("open"));
        w.write(
            Stream::Stdout,
            b"aaaaaaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n",
        )
        .expect("write");
        let mut f = Follower::open(&p, &[]);
        assert_eq!(f.history().len(), 2);
        w.write(Stream::Stdout, b"c\n").expect("write");
        assert_eq!(logs(&f.next_entries()), ["c\n"]);
    }
}
