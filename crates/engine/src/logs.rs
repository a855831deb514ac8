//! docker's json-file log format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`.
//! Output is split at newlines; a line without one is written when it reaches 16 KiB
//! or when the stream ends, as docker does.

use crate::error::{Error, Result};
use crate::record::LogOptions;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

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
}
