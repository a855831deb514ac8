//! berth-shim: the slim supervisor a running container is handed to.
//!
//! `berth container-shim` creates and starts the container through the runtime (that
//! needs the whole runtime library), then replaces itself (`execve`, same pid, same
//! children) with this small program for the container's life: it copies the
//! container's stdout/stderr into the docker json-file log (rotated), reaps the
//! container, and then replaces itself again with berth's finisher, which records the
//! exit and tears the runtime state and mount down. Memory is what this is about: a
//! supervisor per running container, so it dirties as few pages as it can (no
//! argument parser, no serde, no logging framework, one fixed buffer).
//!
//! ```text
//! berth-shim --id ID --pid PID --out FD --err FD --log PATH --max-size N --max-files N \
//!            -- FINISH-PROGRAM ARGS…      (the exit code is appended)
//! ```
//!
//! ```
//! let mut line = Vec::new();
//! berth_shim::json_entry(&mut line, b"hi\n", "stdout", 0, 5);
//! assert_eq!(line, b"{\"log\":\"hi\\n\",\"stream\":\"stdout\",\"time\":\"1970-01-01T00:00:00.000000005Z\"}\n");
//! ```

use std::io::Write;

/// Longest line piece kept before it is written without a newline (docker's 16 KiB).
pub const MAX_PARTIAL: usize = 16 * 1024;

/// Appends one json-file entry (`{"log":…,"stream":…,"time":…}` and a newline) for
/// `text` at `secs`.`nanos` since the epoch, escaped as serde_json escapes strings
/// (invalid UTF-8 becomes U+FFFD), so `berth logs` reads it like the engine's own.
pub fn json_entry(out: &mut Vec<u8>, text: &[u8], stream: &str, secs: i64, nanos: u32) {
    out.extend_from_slice(b"{\"log\":\"");
    escape(out, &String::from_utf8_lossy(text));
    out.extend_from_slice(b"\",\"stream\":\"");
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    rfc3339(out, secs, nanos);
    out.extend_from_slice(b"\"}\n");
}

fn escape(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC) for `secs` since the epoch.
pub fn rfc3339(out: &mut Vec<u8>, secs: i64, nanos: u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

/// Howard Hinnant's days-to-civil: (year, month, day) of day `z` since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Splits output into log lines per stream: complete lines at once, a partial line
/// when it reaches [`MAX_PARTIAL`] or at the stream's end (as the engine's writer).
#[derive(Default)]
pub struct Lines {
    partial: [Vec<u8>; 2],
}

impl Lines {
    /// Takes `data` of stream `i` (0 stdout, 1 stderr); calls `emit` per entry.
    pub fn push(&mut self, i: usize, data: &[u8], mut emit: impl FnMut(&[u8])) {
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let (line, tail) = rest.split_at(pos + 1);
            if self.partial[i].is_empty() {
                emit(line);
            } else {
                self.partial[i].extend_from_slice(line);
                emit(&self.partial[i]);
                self.partial[i].clear();
            }
            rest = tail;
        }
        self.partial[i].extend_from_slice(rest);
        if self.partial[i].len() >= MAX_PARTIAL {
            emit(&self.partial[i]);
            self.partial[i].clear();
        }
    }

    /// The stream ended: what is left of it.
    pub fn finish(&mut self, i: usize, mut emit: impl FnMut(&[u8])) {
        if !self.partial[i].is_empty() {
            emit(&self.partial[i]);
            self.partial[i] = Vec::new();
        }
    }
}

/// Log rotation: the name of rotated file `n` (`<path>.n`).
pub fn numbered(path: &std::ffi::OsStr, n: u32) -> std::ffi::OsString {
    let mut s = path.to_os_string();
    s.push(format!(".{n}"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_escapes_match_the_engine() {
        let mut out = Vec::new();
        rfc3339(&mut out, 1_704_164_645, 123_456_789);
        assert_eq!(out, b"2024-01-02T03:04:05.123456789Z");
        let mut out = Vec::new();
        rfc3339(&mut out, 951_782_400, 0); // 2000-02-29 (leap day)
        assert_eq!(out, b"2000-02-29T00:00:00.000000000Z");
        let mut e = Vec::new();
        json_entry(&mut e, b"a\"b\\c\t\x01\xff\xc3\xa9\n", "stderr", 0, 0);
        assert_eq!(
            String::from_utf8(e).expect("utf-8"),
            "{\"log\":\"a\\\"b\\\\c\\t\\u0001\u{fffd}\u{e9}\\n\",\"stream\":\"stderr\",\"time\":\"1970-01-01T00:00:00.000000000Z\"}\n"
        );
    }

    #[test]
    fn lines_split_like_the_engine() {
        let mut l = Lines::default();
        let mut got: Vec<Vec<u8>> = Vec::new();
        l.push(0, b"one\ntw", |x| got.push(x.to_vec()));
        l.push(0, b"o\nthree", |x| got.push(x.to_vec()));
        l.finish(0, |x| got.push(x.to_vec()));
        assert_eq!(
            got,
            [b"one\n".to_vec(), b"two\n".to_vec(), b"three".to_vec()]
        );
        let mut big = 0;
        l.push(1, &vec![b'x'; MAX_PARTIAL + 10], |x| big = x.len());
        assert_eq!(big, MAX_PARTIAL + 10);
    }
}
