//! docker's json-file log format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`.
//! Output is split at newlines; a line without one is written when it reaches 16 KiB
//! or when the stream ends, as docker does.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

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

/// Reads every entry of the log at `path` (a missing log has none; unparsable lines
/// are skipped).
pub fn read(path: &Path) -> Result<Vec<Entry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
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
    fn format_matches_docker() {
        let line = r#"{"log":"hi\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}"#;
        let e: Entry = serde_json::from_str(line).expect("parse");
        assert_eq!(serde_json::to_string(&e).expect("ser"), line);
    }
}
