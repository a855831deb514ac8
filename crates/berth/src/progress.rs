//! Progress rendering: indicatif bars on a terminal, one plain line per finished item
//! otherwise, nothing with `--quiet`.

use berth_content::{NoProgress, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

/// Bars on a terminal.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

/// Plain `id: status` lines.
pub struct Lines;

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

impl Progress for Lines {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, id: &str, status: &str) {
        eprintln!("{id}: {status}");
    }
}

/// The right renderer for this invocation.
pub fn for_cli(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(NoProgress)
    } else if std::io::stderr().is_terminal() {
        let multi = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr());
        Box::new(Bars {
            multi,
            bars: Mutex::new(HashMap::new()),
        })
    } else {
        Box::new(Lines)
    }
}
