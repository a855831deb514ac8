//! Build progress: the executor reports [`Event`]s, a [`Progress`] renders them.
//!
//! Every step of the build (a stage's FROM, each instruction) is one *vertex*
//! with a number (`id`, 1-based, in the order steps start). Stages build in
//! parallel, so the events of several vertices interleave; all events are
//! delivered on the thread that called [`super::build_with`], in order, so a
//! renderer needs no locking.
//!
//! Renderers:
//! - [`Tty`]: BuildKit's live display for a terminal: finished steps scroll
//!   up once (`=> CACHED [gen 2/3] COPY …  0.0s`), running steps and the last
//!   lines of their output are redrawn in place with their running time;
//! - [`Plain`]: one line per event (`#3 [gen 3/3] RUN …`, `#3 0.152 output`,
//!   `#3 DONE 1.2s`, `#2 CACHED`), for logs and pipes;
//! - [`Classic`]: docker's legacy builder output (`Step 1/5 : FROM …`,
//!   ` ---> Using cache`), what [`super::build`] writes;
//! - [`JsonLines`]: the classic text as the Docker API's `POST /build` JSON
//!   messages (`{"stream":"Step 1/5 : …\n"}`, then `{"aux":{"ID":"sha256:…"}}`);
//! - [`Quiet`] shows nothing.
//!
//! [`for_mode`] picks one for `--progress auto|plain|tty|quiet`;
//! [`for_stderr`] does so for standard error, with the terminal's width.
//!
//! ```
//! use berth_build::exec::progress::{Event, Plain, Progress, StepInfo, StepKind};
//! let mut out = Vec::new();
//! let mut p = Plain::new(&mut out);
//! let info = StepInfo { id: 1, stage: "build".into(), index: 2, count: 3,
//!                       text: "RUN make".into(), kind: StepKind::Exec };
//! p.event(&Event::Start(info));
//! p.event(&Event::Done { id: 1, elapsed: std::time::Duration::from_millis(1200), result: None });
//! drop(p);
//! assert_eq!(String::from_utf8(out).unwrap(), "#1 [build 2/3] RUN make\n#1 DONE 1.2s\n");
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// What kind of step a vertex is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// The stage's FROM.
    From,
    /// An instruction that only changes the config (ENV, CMD, LABEL...).
    Meta,
    /// RUN, COPY, ADD or WORKDIR: runs or is taken from the cache.
    Exec,
}

/// One step of the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInfo {
    /// The vertex number (1-based, in the order steps start).
    pub id: usize,
    /// The stage's name (`stage-N` for an unnamed one).
    pub stage: String,
    /// The step's place in its stage (1 is the FROM).
    pub index: usize,
    /// The stage's number of steps.
    pub count: usize,
    /// The instruction as written (first line).
    pub text: String,
    /// What kind of step.
    pub kind: StepKind,
}

impl StepInfo {
    /// `[stage index/count] text`, as BuildKit names a step.
    pub fn label(&self) -> String {
        format!(
            "[{} {}/{}] {}",
            self.stage, self.index, self.count, self.text
        )
    }
}

/// What happens during a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The build starts: `steps` steps in `stages` stages.
    Plan {
        /// Steps of every needed stage (FROMs included).
        steps: usize,
        /// Stages the target needs.
        stages: usize,
    },
    /// A remark about the Dockerfile (line 0: about the build as a whole).
    Warning {
        /// The Dockerfile line.
        line: usize,
        /// The remark.
        message: String,
    },
    /// A step starts.
    Start(StepInfo),
    /// The step's result is taken from the cache (a `Done` follows).
    Cached {
        /// The vertex.
        id: usize,
    },
    /// A RUN step's container starts.
    Running {
        /// The vertex.
        id: usize,
        /// The container's (short) id.
        container: String,
    },
    /// Output of a RUN step (raw bytes, lines may be split across events).
    Output {
        /// The vertex.
        id: usize,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A step finished.
    Done {
        /// The vertex.
        id: usize,
        /// How long it took.
        elapsed: Duration,
        /// The short id of the result (classic output's ` ---> 0123456789ab`).
        result: Option<String>,
    },
    /// A step failed (the build fails with the same message), or was
    /// stopped because of another failure (message [`CANCELLED`]).
    Failed {
        /// The vertex.
        id: usize,
        /// What went wrong.
        message: String,
    },
    /// The image is written.
    Finished {
        /// The image id (`sha256:…`).
        image: String,
        /// Its tags.
        tags: Vec<String>,
    },
}

/// The message of [`Event::Failed`] for a step stopped because another
/// stage failed or the build was interrupted.
pub const CANCELLED: &str = "build cancelled";

/// Renders build events.
pub trait Progress {
    /// One event.
    fn event(&mut self, e: &Event);
    /// Called about ten times a second while the build runs (live redraws).
    fn tick(&mut self) {}
}

/// Shows nothing.
#[derive(Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn event(&mut self, _e: &Event) {}
}

/// Collects the events (tests, or a caller that maps them itself).
#[derive(Debug, Default)]
pub struct Collect(pub Vec<Event>);

impl Progress for Collect {
    fn event(&mut self, e: &Event) {
        self.0.push(e.clone());
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Complete lines of a vertex's output; the unfinished tail is kept.
#[derive(Debug, Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    fn push(&mut self, data: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(p) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=p).collect();
            out.push(clean(&line[..line.len() - 1]));
        }
        out
    }

    fn rest(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| clean(&std::mem::take(&mut self.partial)))
    }
}

/// A line of output made safe to print: no carriage returns or escapes.
fn clean(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let s = s.rsplit('\r').find(|p| !p.is_empty()).unwrap_or("");
    s.chars()
        .filter(|c| !c.is_control() || *c == '\t')
        .collect()
}

/// BuildKit's plain progress: one line per event.
pub struct Plain<W: Write> {
    out: W,
    started: BTreeMap<usize, (Instant, Lines)>,
}

impl<W: Write> Plain<W> {
    /// Lines to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            started: BTreeMap::new(),
        }
    }

    fn line(&mut self, s: &str) {
        let _ = writeln!(self.out, "{s}");
        let _ = self.out.flush();
    }

    fn flush_rest(&mut self, id: usize) {
        if let Some((t, mut lines)) = self.started.remove(&id) {
            if let Some(r) = lines.rest() {
                let s = format!("#{id} {:.3} {r}", t.elapsed().as_secs_f64());
                self.line(&s);
            }
        }
    }
}

impl<W: Write> Progress for Plain<W> {
    fn event(&mut self, e: &Event) {
        match e {
            Event::Plan { .. } | Event::Running { .. } | Event::Finished { .. } => {}
            Event::Warning { line, message } => match line {
                0 => self.line(&format!("WARNING: {message}")),
                l => self.line(&format!("WARNING: line {l}: {message}")),
            },
            Event::Start(s) => {
                if s.kind != StepKind::Meta {
                    self.started
                        .insert(s.id, (Instant::now(), Lines::default()));
                    self.line(&format!("#{} {}", s.id, s.label()));
                }
            }
            Event::Cached { id } => {
                if self.started.contains_key(id) {
                    self.line(&format!("#{id} CACHED"));
                }
            }
            Event::Output { id, data } => {
                let Some((t, lines)) = self.started.get_mut(id) else {
                    return;
                };
                let at = t.elapsed().as_secs_f64();
                for l in lines.push(data) {
                    let s = format!("#{id} {at:.3} {l}");
                    self.line(&s);
                }
            }
            Event::Done { id, elapsed, .. } => {
                if self.started.contains_key(id) {
                    self.flush_rest(*id);
                    self.line(&format!("#{id} DONE {}", secs(*elapsed)));
                }
            }
            Event::Failed { id, message } if message == CANCELLED => {
                self.flush_rest(*id);
                self.line(&format!("#{id} CANCELED"));
            }
            Event::Failed { id, message } => {
                self.flush_rest(*id);
                self.line(&format!("#{id} ERROR: {message}"));
            }
        }
    }
}

/// docker's legacy builder output (`Step 1/5 : …`, ` ---> Using cache`).
pub struct Classic<W: Write> {
    out: W,
    total: usize,
    n: usize,
    mid_line: bool,
    running: BTreeMap<usize, String>,
    summary: bool,
}

impl<W: Write> Classic<W> {
    /// Text to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            total: 0,
            n: 0,
            mid_line: false,
            running: BTreeMap::new(),
            summary: false,
        }
    }

    /// Also end with docker's `Successfully built …` / `Successfully tagged …`
    /// lines (off by default: the CLI prints them itself).
    pub fn with_summary(mut self, on: bool) -> Self {
        self.summary = on;
        self
    }

    fn line(&mut self, s: &str) {
        if std::mem::take(&mut self.mid_line) {
            let _ = writeln!(self.out);
        }
        let _ = writeln!(self.out, "{s}");
        let _ = self.out.flush();
    }
}

impl<W: Write> Progress for Classic<W> {
    fn event(&mut self, e: &Event) {
        match e {
            Event::Plan { steps, .. } => self.total = *steps,
            Event::Warning { line: 0, message } => self.line(&format!("[WARNING]: {message}")),
            Event::Warning { line, message } => {
                self.line(&format!("[WARNING]: line {line}: {message}"))
            }
            Event::Start(s) => {
                self.n += 1;
                let s = format!("Step {}/{} : {}", self.n, self.total, s.text);
                self.line(&s);
            }
            Event::Cached { .. } => self.line(" ---> Using cache"),
            Event::Running { id, container } => {
                self.running.insert(*id, container.clone());
                self.line(&format!(" ---> Running in {container}"))
            }
            Event::Output { data, .. } => {
                if let Some(last) = data.last() {
                    self.mid_line = *last != b'\n';
                }
                let _ = self.out.write_all(data);
                let _ = self.out.flush();
            }
            Event::Done { id, result, .. } => {
                if let Some(c) = self.running.remove(id) {
                    self.line(&format!(" ---> Removed intermediate container {c}"));
                }
                if let Some(r) = result {
                    self.line(&format!(" ---> {r}"));
                }
            }
            Event::Failed { id, .. } => {
                self.running.remove(id);
                if std::mem::take(&mut self.mid_line) {
                    let _ = writeln!(self.out);
                }
            }
            Event::Finished { image, tags } if self.summary => {
                let id = image.strip_prefix("sha256:").unwrap_or(image);
                self.line(&format!(
                    "Successfully built {}",
                    id.get(..12).unwrap_or(id)
                ));
                for t in tags {
                    self.line(&format!("Successfully tagged {t}"));
                }
            }
            Event::Finished { .. } => {}
        }
    }
}

/// The Docker API's `POST /build` reply: the classic text as JSON messages
/// (`{"stream":"…"}` per line), the image id as `{"aux":{"ID":"…"}}`.
/// Errors are the caller's to send (`{"error":…,"errorDetail":{"message":…}}`).
pub struct JsonLines<W: Write> {
    classic: Classic<StreamJson<W>>,
}

/// Wraps each complete line written to it in `{"stream": line}`.
struct StreamJson<W: Write> {
    out: W,
    partial: Vec<u8>,
}

impl<W: Write> StreamJson<W> {
    fn emit(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let msg = serde_json::json!({ "stream": String::from_utf8_lossy(bytes) });
        writeln!(self.out, "{msg}")?;
        self.out.flush()
    }
}

impl<W: Write> Write for StreamJson<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(b);
        while let Some(p) = self.partial.iter().position(|&c| c == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=p).collect();
            self.emit(&line)?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> JsonLines<W> {
    /// JSON lines to `out`.
    pub fn new(out: W) -> Self {
        Self {
            classic: Classic::new(StreamJson {
                out,
                partial: Vec::new(),
            })
            .with_summary(true),
        }
    }
}

impl<W: Write> Progress for JsonLines<W> {
    fn event(&mut self, e: &Event) {
        let w = &mut self.classic.out;
        if !w.partial.is_empty() && !matches!(e, Event::Output { .. }) {
            // A RUN's output without a final newline ends with its step.
            let rest = std::mem::take(&mut w.partial);
            let _ = w.emit(&rest);
        }
        self.classic.event(e);
        if let Event::Finished { image, .. } = e {
            let msg = serde_json::json!({ "aux": { "ID": image } });
            let _ = writeln!(self.classic.out.out, "{msg}");
            let _ = self.classic.out.out.flush();
        }
    }
}

/// A running or finished vertex of the [`Tty`] display.
struct Vertex {
    info: StepInfo,
    start: Instant,
    done: Option<Duration>,
    cached: bool,
    failed: bool,
    cancelled: bool,
    lines: Lines,
    tail: Vec<String>,
}

/// BuildKit-style live display for a terminal.
///
/// Finished steps are printed once, in the order they finish; the running
/// steps (with up to [`Tty::TAIL`] lines of their latest output each) and a
/// header with the elapsed time form a block at the bottom that is erased
/// and redrawn on every event and tick.
pub struct Tty<W: Write> {
    out: W,
    width: usize,
    begin: Instant,
    total: usize,
    vertices: BTreeMap<usize, Vertex>,
    /// Lines of the live block on screen.
    live: usize,
    warnings: Vec<String>,
    last_draw: Option<Instant>,
    finished: bool,
}

impl<W: Write> Tty<W> {
    /// Output lines a running step shows.
    pub const TAIL: usize = 6;

    /// A display on `out`, lines cut to `width` columns.
    pub fn new(out: W, width: usize) -> Self {
        Self {
            out,
            width: width.max(40),
            begin: Instant::now(),
            total: 0,
            vertices: BTreeMap::new(),
            live: 0,
            warnings: Vec::new(),
            last_draw: None,
            finished: false,
        }
    }

    fn fit(&self, s: &str, right: &str) -> String {
        let room = self.width.saturating_sub(right.chars().count() + 1);
        let mut left: String = s.chars().take(room).collect();
        let pad = room.saturating_sub(left.chars().count());
        left.push_str(&" ".repeat(pad));
        format!("{left} {right}")
    }

    fn step_line(&self, v: &Vertex) -> String {
        let time = secs(v.done.unwrap_or_else(|| v.start.elapsed()));
        let mark = match (v.cached, v.failed) {
            (_, true) if v.cancelled => "CANCELED ",
            (_, true) => "ERROR ",
            (true, _) => "CACHED ",
            _ => "",
        };
        self.fit(&format!(" => {mark}{}", v.info.label()), &time)
    }

    fn header(&self) -> String {
        let done = self.vertices.values().filter(|v| v.done.is_some()).count();
        format!(
            "[+] Building {} ({done}/{}){}",
            secs(self.begin.elapsed()),
            self.total.max(self.vertices.len()),
            if self.finished { " FINISHED" } else { "" }
        )
    }

    /// Erase the live block, print `finished` lines for good, draw the block again.
    fn draw(&mut self, finished: &[String]) {
        let mut s = String::new();
        if self.live > 0 {
            s.push_str(&format!("\x1b[{}A\r\x1b[J", self.live));
        }
        for l in finished {
            s.push_str(l);
            s.push('\n');
        }
        let mut block = vec![self.header()];
        for v in self.vertices.values().filter(|v| v.done.is_none()) {
            block.push(self.step_line(v));
            for t in &v.tail {
                block.push(self.fit(&format!(" => => # {t}"), ""));
            }
        }
        for l in &block {
            s.push_str(l.trim_end());
            s.push('\n');
        }
        self.live = block.len();
        let _ = self.out.write_all(s.as_bytes());
        let _ = self.out.flush();
        self.last_draw = Some(Instant::now());
    }

    fn finish(&mut self, id: usize) -> Vec<String> {
        let Some(v) = self.vertices.get(&id) else {
            return Vec::new();
        };
        let mut out = vec![self.step_line(v)];
        if v.failed {
            out.extend(v.tail.iter().map(|t| format!(" => => # {t}")));
        }
        out
    }
}

impl<W: Write> Progress for Tty<W> {
    fn event(&mut self, e: &Event) {
        let mut finished = Vec::new();
        match e {
            Event::Plan { steps, .. } => self.total = *steps,
            Event::Warning { line, message } => {
                let w = match line {
                    0 => format!("WARNING: {message}"),
                    l => format!("WARNING: line {l}: {message}"),
                };
                self.warnings.push(w.clone());
                finished.push(w);
            }
            Event::Start(info) => {
                if info.kind == StepKind::Meta {
                    // Not shown: the count of steps to show shrinks.
                    self.total = self.total.saturating_sub(1);
                    return;
                }
                self.vertices.insert(
                    info.id,
                    Vertex {
                        info: info.clone(),
                        start: Instant::now(),
                        done: None,
                        cached: false,
                        failed: false,
                        cancelled: false,
                        lines: Lines::default(),
                        tail: Vec::new(),
                    },
                );
            }
            Event::Cached { id } => {
                if let Some(v) = self.vertices.get_mut(id) {
                    v.cached = true;
                }
            }
            Event::Running { .. } => {}
            Event::Output { id, data } => {
                let Some(v) = self.vertices.get_mut(id) else {
                    return;
                };
                v.tail.extend(v.lines.push(data));
                let n = v.tail.len().saturating_sub(Self::TAIL);
                v.tail.drain(..n);
                // Output alone redraws at most every 50 ms.
                if self
                    .last_draw
                    .is_some_and(|t| t.elapsed() < Duration::from_millis(50))
                {
                    return;
                }
            }
            Event::Done { id, elapsed, .. } => {
                let Some(v) = self.vertices.get_mut(id) else {
                    return;
                };
                v.done = Some(*elapsed);
                finished = self.finish(*id);
            }
            Event::Failed { id, message } => {
                let Some(v) = self.vertices.get_mut(id) else {
                    return;
                };
                if let Some(r) = v.lines.rest() {
                    v.tail.push(r);
                }
                v.failed = true;
                v.cancelled = message == CANCELLED;
                v.done = Some(v.start.elapsed());
                finished = self.finish(*id);
            }
            Event::Finished { image, tags } => {
                self.finished = true;
                finished.push(format!(" => writing image {image}"));
                finished.extend(tags.iter().map(|t| format!(" => naming to {t}")));
            }
        }
        self.draw(&finished);
    }

    fn tick(&mut self) {
        if self.vertices.values().any(|v| v.done.is_none()) {
            self.draw(&[]);
        }
    }
}

/// Chooses the renderer for docker's `--progress`: `auto` (a [`Tty`] when
/// `is_terminal`, else [`Plain`]), `plain`, `tty`, `quiet`, or `classic`
/// (docker's legacy output, ending with its `Successfully built …` lines).
/// `width` is the terminal's width.
pub fn for_mode<'a, W: Write + 'a>(
    mode: &str,
    out: W,
    is_terminal: bool,
    width: usize,
) -> Option<Box<dyn Progress + 'a>> {
    Some(match mode {
        "auto" if is_terminal => Box::new(Tty::new(out, width)),
        "auto" | "plain" => Box::new(Plain::new(out)),
        "tty" => Box::new(Tty::new(out, width)),
        "quiet" => Box::new(Quiet),
        "classic" => Box::new(Classic::new(out).with_summary(true)),
        _ => return None,
    })
}

/// The renderer for `--progress mode` on standard error, as docker's CLI
/// shows build progress: `auto` is the live display when stderr is a
/// terminal (at its width), plain lines otherwise. None for an unknown mode.
pub fn for_stderr(mode: &str) -> Option<Box<dyn Progress>> {
    use std::io::IsTerminal;
    use std::os::fd::AsFd;
    let err = std::io::stderr();
    let tty = err.is_terminal();
    let width = berth_sys::proc::window_size(err.as_fd())
        .ok()
        .map(|(_, cols)| cols as usize)
        .filter(|c| *c > 0)
        .unwrap_or(80);
    for_mode(mode, err, tty, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: usize, index: usize, text: &str, kind: StepKind) -> StepInfo {
        StepInfo {
            id,
            stage: "gen".into(),
            index,
            count: 3,
            text: text.into(),
            kind,
        }
    }

    fn events() -> Vec<Event> {
        vec![
            Event::Plan {
                steps: 4,
                stages: 1,
            },
            Event::Start(info(1, 1, "FROM base", StepKind::From)),
            Event::Done {
                id: 1,
                elapsed: Duration::ZERO,
                result: Some("aaaa".into()),
            },
            Event::Start(info(2, 2, "COPY a /a", StepKind::Exec)),
            Event::Cached { id: 2 },
            Event::Done {
                id: 2,
                elapsed: Duration::from_millis(10),
                result: Some("bbbb".into()),
            },
            Event::Start(info(3, 3, "ENV A=1", StepKind::Meta)),
            Event::Done {
                id: 3,
                elapsed: Duration::ZERO,
                result: Some("bbbb".into()),
            },
            Event::Start(info(4, 4, "RUN make", StepKind::Exec)),
            Event::Running {
                id: 4,
                container: "cccc".into(),
            },
            Event::Output {
                id: 4,
                data: b"one\ntw".to_vec(),
            },
            Event::Output {
                id: 4,
                data: b"o\nthree".to_vec(),
            },
            Event::Done {
                id: 4,
                elapsed: Duration::from_millis(1500),
                result: Some("dddd".into()),
            },
            Event::Finished {
                image: "sha256:0123456789abcdef".into(),
                tags: vec!["app:1".into()],
            },
        ]
    }

    fn render(p: &mut dyn Progress) {
        for e in events() {
            p.event(&e);
        }
    }

    #[test]
    fn plain_lines_with_cached_marks_and_output() {
        let mut out = Vec::new();
        render(&mut Plain::new(&mut out));
        let text = String::from_utf8(out).unwrap();
        let stripped: Vec<String> = text
            .lines()
            .map(|l| {
                // the output's timestamps vary: keep `#4 <t> line` as `#4 line`
                let mut w: Vec<&str> = l.split(' ').collect();
                if w.len() > 2 && w[1].contains('.') && w[1].parse::<f64>().is_ok() {
                    w.remove(1);
                }
                w.join(" ")
            })
            .collect();
        assert_eq!(
            stripped,
            [
                "#1 [gen 1/3] FROM base",
                "#1 DONE 0.0s",
                "#2 [gen 2/3] COPY a /a",
                "#2 CACHED",
                "#2 DONE 0.0s",
                "#4 [gen 4/3] RUN make",
                "#4 one",
                "#4 two",
                "#4 three",
                "#4 DONE 1.5s",
            ]
        );
    }

    #[test]
    fn classic_is_dockers_legacy_output() {
        let mut out = Vec::new();
        render(&mut Classic::new(&mut out).with_summary(true));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Step 1/4 : FROM base\n ---> aaaa\nStep 2/4 : COPY a /a\n ---> Using cache\n ---> bbbb\n\
             Step 3/4 : ENV A=1\n ---> bbbb\nStep 4/4 : RUN make\n ---> Running in cccc\none\ntwo\nthree\n\
             \x20---> Removed intermediate container cccc\n ---> dddd\n\
             Successfully built 0123456789ab\nSuccessfully tagged app:1\n"
        );
        let mut out = Vec::new();
        render(&mut Classic::new(&mut out));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(" ---> dddd\n"),
            "no summary by default: {text}"
        );
    }

    #[test]
    fn json_lines_wrap_each_line_and_end_with_the_id() {
        let mut out = Vec::new();
        render(&mut JsonLines::new(&mut out));
        let text = String::from_utf8(out).unwrap();
        let msgs: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            msgs[0],
            serde_json::json!({"stream": "Step 1/4 : FROM base\n"})
        );
        assert!(
            msgs.contains(&serde_json::json!({"stream": "three"})),
            "{text}"
        );
        assert_eq!(
            msgs.last().unwrap(),
            &serde_json::json!({"aux": {"ID": "sha256:0123456789abcdef"}})
        );
        assert!(msgs[..msgs.len() - 1]
            .iter()
            .all(|m| m["stream"].as_str().is_some()));
    }

    #[test]
    fn tty_redraws_the_live_block_and_keeps_finished_steps() {
        let mut out = Vec::new();
        let mut t = Tty::new(&mut out, 60);
        let evs = events();
        for e in &evs[..11] {
            t.event(e);
        }
        t.tick();
        let live = t.live;
        assert_eq!(
            live, 3,
            "header, the RUN step, its one complete output line"
        );
        for e in &evs[11..] {
            t.event(e);
        }
        drop(t);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\x1b[3A\r\x1b[J"),
            "the block is erased in place"
        );
        // What the terminal shows in the end: finished steps once each,
        // CACHED marked, with durations; the live block is gone but for the header.
        let screen = screen(&text);
        let cached: Vec<&String> = screen.iter().filter(|l| l.contains("CACHED")).collect();
        assert_eq!(cached.len(), 1, "{screen:#?}");
        assert!(cached[0].contains("[gen 2/3] COPY a /a") && cached[0].ends_with("0.0s"));
        let run_done: Vec<&String> = screen
            .iter()
            .filter(|l| l.starts_with(" => [gen 4/3] RUN make") && l.ends_with("1.5s"))
            .collect();
        assert_eq!(run_done.len(), 1, "{screen:#?}");
        assert!(
            text.contains(" => => # one"),
            "output was shown while running"
        );
        assert!(!text.contains("ENV A=1"), "metadata steps are not shown");
        assert!(screen.iter().any(|l| l.contains("naming to app:1")));
        let last = screen.last().unwrap();
        assert!(
            last.starts_with("[+] Building") && last.ends_with("(3/3) FINISHED"),
            "{last}"
        );
        assert!(
            screen.iter().all(|l| l.chars().count() <= 60),
            "{screen:#?}"
        );
    }

    /// The lines a terminal shows after `text` (only the escapes Tty uses).
    fn screen(text: &str) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        let mut rest = text;
        while let Some(p) = rest.find('\x1b') {
            lines.extend(rest[..p].lines().map(str::to_string));
            let esc = &rest[p..];
            let end = esc.find("\x1b[J").expect("an erase follows a cursor move") + 3;
            let n: usize = esc[2..esc.find('A').unwrap()].parse().unwrap();
            lines.truncate(lines.len() - n);
            rest = &esc[end..];
        }
        lines.extend(rest.lines().map(str::to_string));
        lines
    }

    #[test]
    fn tty_shows_a_failed_steps_last_output() {
        let mut out = Vec::new();
        let mut t = Tty::new(&mut out, 80);
        t.event(&Event::Start(info(1, 2, "RUN false", StepKind::Exec)));
        t.event(&Event::Output {
            id: 1,
            data: b"it broke".to_vec(),
        });
        t.event(&Event::Failed {
            id: 1,
            message: "exit 1".into(),
        });
        drop(t);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(" => ERROR [gen 2/3] RUN false"), "{text}");
        assert!(text.contains(" => => # it broke"), "{text}");
    }

    #[test]
    fn output_is_cleaned_of_control_characters() {
        let mut l = Lines::default();
        assert_eq!(l.push(b"50%\r100%\x1b[0m done\nnext"), ["100%[0m done"]);
        assert_eq!(l.rest().as_deref(), Some("next"));
    }

    #[test]
    fn classic_mode_ends_with_dockers_summary() {
        let mut out = Vec::new();
        let mut p = for_mode("classic", &mut out, false, 80).unwrap();
        render(p.as_mut());
        drop(p);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text.matches("Successfully built 0123456789ab").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn modes() {
        for (m, ok) in [
            ("auto", true),
            ("plain", true),
            ("tty", true),
            ("quiet", true),
            ("x", false),
        ] {
            assert_eq!(for_mode(m, Vec::new(), false, 80).is_some(), ok, "{m}");
        }
    }
}
