//! Progress rendering: indicatif bars on a terminal, one plain line per finished item
//! otherwise, nothing with `--quiet`.

use berth_content::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

/// Bars on a terminal.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress for Bars {
    fn start(&self, id: &str, total: Option<u64>) {
        let pb = ProgressBar::new(total.unwrap_or(0));
        let style =
            ProgressStyle::with_template("{prefix}: {msg} [{bar:40}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        pb.set_style(style);
        pb.set_prefix(id.to_string());
        pb.set_message("Working");
        let pb = self.multi.add(pb);
        if let Ok(mut m) = self.bars.lock() {
            m.insert(id.to_string(), pb);
        }
    }
    fn advance(&self, id: &str, n: u64) {
        if let Some(pb) = self.bars.lock().ok().and_then(|m| m.get(id).cloned()) {
            pb.inc(n);
        }
    }
    fn finish(&self, id: &str, status: &str) {
        let pb = self.bars.lock().ok().and_then(|mut m| m.remove(id));
        match pb {
            Some(pb) => {
                pb.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                pb.finish_with_message(status.to_string());
            }
            None => {
                let _ = self.multi.println(format!("{id}: {status}"));
            }
        }
    }
}

impl Bars {
    /// A transfer's byte count from the daemon (`current` so far of `total`), with its
    /// status as the bar's label; `seen` keeps the last count of each bar.
    fn update(
        &self,
        seen: &mut HashMap<String, u64>,
        id: &str,
        status: &str,
        current: u64,
        total: Option<u64>,
    ) {
        let prev = match seen.get(id) {
            Some(p) => *p,
            None => {
                self.start(id, total);
                if let Some(pb) = self.bars.lock().ok().and_then(|m| m.get(id).cloned()) {
                    pb.set_message(status.to_string()); // Downloading, Pushing
                }
                0
            }
        };
        self.advance(id, current.saturating_sub(prev));
        seen.insert(id.to_string(), current);
    }
}

/// Shows the daemon's JSON progress stream (pull, push, load, import, build) as docker
/// does: bars on a terminal; on a pipe the status lines only (`id: Pull complete`),
/// without byte counts; nothing with `quiet`. `{"stream"}` text goes to stdout as it
/// is. Returns the `aux` objects (build id, push digest) and the status lines; an
/// `{"error"}` message becomes the error.
pub fn show_json_stream(
    r: impl std::io::Read,
    quiet: bool,
) -> anyhow::Result<(Vec<serde_json::Value>, Vec<String>)> {
    show_json_stream_to(r, quiet, &mut std::io::stdout().lock())
}

/// [`show_json_stream`] with its text lines written to `out` (`run`'s pull: stderr,
/// as docker, so that stdout is the container's alone).
pub fn show_json_stream_to(
    r: impl std::io::Read,
    quiet: bool,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<(Vec<serde_json::Value>, Vec<String>)> {
    use std::io::BufRead;
    let bars = if quiet || !std::io::stderr().is_terminal() {
        None
    } else {
        Some(Bars {
            multi: MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        })
    };
    let mut seen: HashMap<String, u64> = HashMap::new();
    let (mut aux, mut statuses) = (Vec::new(), Vec::new());
    for line in std::io::BufReader::new(r).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
            anyhow::anyhow!("the daemon sent an invalid progress line {line:?}: {e}")
        })?;
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            anyhow::bail!("{e}");
        }
        if let Some(a) = v.get("aux") {
            aux.push(a.clone());
            continue;
        }
        if let Some(s) = v.get("stream").and_then(|s| s.as_str()) {
            if !quiet {
                // as it comes: a build's terminal display redraws in place
                out.write_all(s.as_bytes())?;
                out.flush()?;
            }
            continue;
        }
        let Some(status) = v.get("status").and_then(|s| s.as_str()) else {
            continue;
        };
        let id = v.get("id").and_then(|i| i.as_str());
        let detail = &v["progressDetail"];
        let current = detail.get("current").and_then(|c| c.as_u64());
        if let (Some(id), Some(cur)) = (id, current) {
            // a byte count: bars only
            if let Some(b) = &bars {
                let total = detail.get("total").and_then(|t| t.as_u64());
                b.update(&mut seen, id, status, cur, total);
            }
            continue;
        }
        let text = match id {
            Some(id) if !id.is_empty() => format!("{id}: {status}"),
            _ => status.to_string(),
        };
        statuses.push(status.to_string());
        if quiet {
            continue;
        }
        match (&bars, id) {
            (Some(b), Some(id)) if seen.remove(id).is_some() => b.finish(id, status),
            (Some(b), _) => {
                let _ = b.multi.println(text);
            }
            (None, _) => writeln!(out, "{text}")?,
        }
    }
    Ok((aux, statuses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_stream_collects_aux_and_statuses_and_fails_on_error() {
        let ok = concat!(
            "{\"status\":\"Pulling from x\",\"id\":\"1\"}\n",
            "{\"status\":\"Downloading\",\"progressDetail\":{\"current\":5,\"total\":9},\"id\":\"ab\"}\n",
            "{\"status\":\"Pull complete\",\"progressDetail\":{},\"id\":\"ab\"}\n",
            "{\"aux\":{\"ID\":\"sha256:1\"}}\n",
            "\n",
        );
        let (aux, st) = show_json_stream(ok.as_bytes(), true).expect("stream");
        assert_eq!(aux, [serde_json::json!({"ID": "sha256:1"})]);
        assert_eq!(
            st,
            ["Pulling from x", "Pull complete"],
            "byte counts are not statuses"
        );
        let bad =
            "{\"stream\":\"Step 1/2\\n\"}\n{\"error\":\"no such image\",\"errorDetail\":{}}\n";
        let e = show_json_stream(bad.as_bytes(), true).expect_err("error line");
        assert_eq!(e.to_string(), "no such image");
        assert!(show_json_stream("not json\n".as_bytes(), true).is_err());
    }
}
