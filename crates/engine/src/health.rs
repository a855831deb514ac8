//! Healthchecks: the image's `Healthcheck` and `--health-*` options merged into one
//! [`HealthConfig`], a monitor that runs the check inside the container every
//! interval, and the result docker shows as `State.Health` (`health.json`).
//!
//! The monitor is a thread of the daemon, as docker's (started when the daemon starts
//! or adopts a container with a check, ending with the container's supervisor): each
//! check runs through the exec helper ([`Engine::spawn_exec`]), a short-lived process,
//! since the runtime's exec forks. The supervisor only resets `health.json` to
//! `starting` at each start. Containers without a check pay nothing.

use crate::error::{Error, Result};
use crate::record::{read_json, write_json, Record};
use crate::Engine;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// docker's defaults.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// docker's default timeout of one check.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// docker's default number of failures before `unhealthy`.
pub const DEFAULT_RETRIES: u32 = 3;
/// docker keeps this many results.
pub const LOG_ENTRIES: usize = 5;
/// docker keeps this much of a check's output.
pub const MAX_OUTPUT: usize = 4096;

/// docker's `HealthConfig` (image config and `Config.Healthcheck`); durations in ns,
/// 0 meaning "inherit, else docker's default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `[]` inherit, `["NONE"]` disabled, `["CMD", args…]` or `["CMD-SHELL", command]`
    #[serde(default)]
    pub test: Vec<String>,
    /// time between checks
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    /// time one check may take
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    /// failures in this time after the start do not count
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    /// consecutive failures before `unhealthy`
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub retries: u32,
    /// time between checks during the start period, until the first success
    /// (docker's default 5 s)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: u64,
}

/// docker's default time between checks during the start period.
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);

fn is_zero(n: &u64) -> bool {
    *n == 0
}
fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl HealthConfig {
    /// Whether a check runs (a command is given and it is not `NONE`).
    pub fn active(&self) -> bool {
        matches!(
            self.test.first().map(String::as_str),
            Some("CMD" | "CMD-SHELL")
        ) && self.test.len() > 1
    }

    /// The command to run in the container.
    pub fn command(&self) -> Vec<String> {
        match self.test.first().map(String::as_str) {
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), self.test[1..].join(" ")],
            Some("CMD") => self.test[1..].to_vec(),
            _ => Vec::new(),
        }
    }

    /// Checks the values (`Test` form, no negative or tiny durations).
    pub fn validate(&self) -> Result<()> {
        match self.test.first().map(String::as_str) {
            None | Some("NONE") => {}
            Some("CMD" | "CMD-SHELL") if self.test.len() > 1 => {}
            Some(other) => {
                return Err(Error::Invalid(format!(
                    "Healthcheck.Test: {other:?} is not a check: use [\"CMD\", args…], [\"CMD-SHELL\", command] or [\"NONE\"]"
                )))
            }
        }
        for (what, ns) in [
            ("interval", self.interval),
            ("timeout", self.timeout),
            ("start period", self.start_period),
            ("start interval", self.start_interval),
        ] {
            if ns != 0 && ns < 1_000_000 {
                return Err(Error::Invalid(format!(
                    "healthcheck {what} must be at least 1 ms (or 0 for the default)"
                )));
            }
        }
        Ok(())
    }

    fn interval(&self) -> Duration {
        nonzero(self.interval).unwrap_or(DEFAULT_INTERVAL)
    }
    fn timeout(&self) -> Duration {
        nonzero(self.timeout).unwrap_or(DEFAULT_TIMEOUT)
    }
    fn retries(&self) -> u32 {
        if self.retries == 0 {
            DEFAULT_RETRIES
        } else {
            self.retries
        }
    }
}

fn nonzero(ns: u64) -> Option<Duration> {
    (ns > 0).then(|| Duration::from_nanos(ns))
}

/// The container's check: its own, with what it leaves out taken from the image's
/// (docker's merge). `None` when neither has one.
pub fn merge(own: Option<&HealthConfig>, image: Option<HealthConfig>) -> Option<HealthConfig> {
    let Some(own) = own else { return image };
    let Some(img) = image else {
        return Some(own.clone());
    };
    let pick = |a: u64, b: u64| if a == 0 { b } else { a };
    Some(HealthConfig {
        test: if own.test.is_empty() {
            img.test
        } else {
            own.test.clone()
        },
        interval: pick(own.interval, img.interval),
        timeout: pick(own.timeout, img.timeout),
        start_period: pick(own.start_period, img.start_period),
        start_interval: pick(own.start_interval, img.start_interval),
        retries: if own.retries == 0 {
            img.retries
        } else {
            own.retries
        },
    })
}

/// The check a container created from `opts` runs: its own merged with its image's.
pub(crate) fn for_container(
    images: &berth_image::Images,
    opts: &crate::CreateOptions,
) -> Option<HealthConfig> {
    // `NONE` needs nothing from the image
    if opts
        .healthcheck
        .as_ref()
        .is_some_and(|h| h.test.first().is_some_and(|t| t == "NONE"))
    {
        return opts.healthcheck.clone();
    }
    let image = images.resolve(&opts.image).ok();
    merge(
        opts.healthcheck.as_ref(),
        image.and_then(|i| from_image(&i.raw_config)),
    )
}

/// The image's `config.Healthcheck`, if any.
pub fn from_image(raw_config: &serde_json::Value) -> Option<HealthConfig> {
    let h = raw_config.get("config")?.get("Healthcheck")?;
    serde_json::from_value(h.clone()).ok()
}

/// One check's result (docker's `HealthcheckResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Probe {
    /// RFC 3339
    pub start: String,
    /// RFC 3339
    pub end: String,
    /// 0 healthy, else a failure (-1: it timed out or could not run)
    pub exit_code: i32,
    /// what it printed (at most 4 KiB)
    pub output: String,
}

/// docker's `State.Health` (`health.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`
    pub status: String,
    /// consecutive failures
    pub failing_streak: u32,
    /// the last results, oldest first
    pub log: Vec<Probe>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        }
    }
}

impl Health {
    /// Takes in one result: docker's rules (success: healthy; failures after the start
    /// period count, `retries` in a row make it unhealthy).
    pub fn record(&mut self, p: Probe, retries: u32, in_start_period: bool) {
        if p.exit_code == 0 {
            self.status = "healthy".into();
            self.failing_streak = 0;
        } else if !in_start_period {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(p);
        if self.log.len() > LOG_ENTRIES {
            let extra = self.log.len() - LOG_ENTRIES;
            self.log.drain(..extra);
        }
    }

    /// What `ps` adds to "Up …": ` (healthy)`, ` (unhealthy)`, ` (health: starting)`.
    pub fn ps_suffix(&self) -> String {
        match self.status.as_str() {
            "starting" => " (health: starting)".into(),
            s => format!(" ({s})"),
        }
    }
}

impl Engine {
    /// The container's health, when it has a check and it ran since its start.
    pub fn health(&self, id: &str) -> Option<Health> {
        read_json(&self.dir(id).dir.join("health.json")).ok()
    }

    /// Marks the health of a container that just started with a check as `starting`
    /// (called by its supervisor; the daemon's monitor takes it from there).
    pub(crate) fn reset_health(&self, rec: &Record) {
        if rec.options.healthcheck.as_ref().is_some_and(|h| h.active()) {
            let _ = write_json(
                &self.dir(&rec.id).dir.join("health.json"),
                &Health::default(),
            );
        }
    }

    /// The health monitor of container `id` while its supervisor `supervisor` runs
    /// (see the module doc); returns at once for a container without a check. Blocks:
    /// the daemon runs it on a thread of its own.
    pub fn monitor_health(&self, id: &str, supervisor: i32) -> Result<()> {
        let dir = self.dir(id);
        let rec = dir.load()?;
        let Some(cfg) = rec.options.healthcheck.clone().filter(|h| h.active()) else {
            return Ok(());
        };
        let ended = berth_sys::proc::pidfd_open(supervisor)
            .map_err(|e| Error::io("watch the supervisor of", &dir.dir, e))?;
        let path = dir.dir.join("health.json");
        // a monitor taking over (the daemon restarted) goes on from what was recorded
        let mut health: Health = read_json(&path).unwrap_or_default();
        let started = rec
            .started_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let start_period =
            chrono::Duration::nanoseconds(cfg.start_period.min(i64::MAX as u64) as i64);
        let running = || {
            dir.exit_status().ok().flatten().is_none()
                && dir.load().is_ok_and(|r| r.shim_pid == Some(supervisor))
        };
        loop {
            // between checks the thread keeps only the stack it uses
            let _ = berth_sys::proc::release_idle_stack();
            // the interval, or the supervisor's end
            let mut fds = [PollFd::new(ended.as_fd(), PollFlags::POLLIN)];
            // docker: during the start period, until the first success, the start interval
            let starting = health.status == "starting"
                && started
                    .is_some_and(|s| chrono::Utc::now().signed_duration_since(s) < start_period);
            let interval = if starting {
                nonzero(cfg.start_interval).unwrap_or(DEFAULT_START_INTERVAL)
            } else {
                cfg.interval()
            };
            let ms = u16::try_from(interval.as_millis()).unwrap_or(u16::MAX);
            let mut left = interval;
            let t0 = Instant::now();
            while !left.is_zero() {
                let step =
                    PollTimeout::from(ms.min(u16::try_from(left.as_millis()).unwrap_or(u16::MAX)));
                if matches!(poll(&mut fds, step), Ok(n) if n > 0) {
                    return Ok(());
                }
                left = interval.saturating_sub(t0.elapsed());
            }
            if !running() {
                return Ok(());
            }
            let p = self.probe(id, &cfg);
            // stopped while it ran: its failure is not the container's health
            if !running() {
                return Ok(());
            }
            let in_start_period =
                started.is_some_and(|s| chrono::Utc::now().signed_duration_since(s) < start_period);
            health.record(p, cfg.retries(), in_start_period);
            write_json(&path, &health)?;
        }
    }

    /// Runs the check once in the container, its output captured, within the timeout.
    fn probe(&self, id: &str, cfg: &HealthConfig) -> Probe {
        let start = crate::record::now();
        let (exit_code, output) = match self.run_check(id, cfg) {
            Ok(r) => r,
            Err(e) => (-1, format!("the health check could not run: {e}")),
        };
        Probe {
            start,
            end: crate::record::now(),
            exit_code,
            output,
        }
    }

    /// The check through the exec helper: its output (both streams) arrives on a
    /// socket pair as an attached client's would; killed at the timeout.
    fn run_check(&self, id: &str, cfg: &HealthConfig) -> Result<(i32, String)> {
        let exec_id = crate::names::new_id()?;
        let opts = crate::ExecOptions {
            cmd: cfg.command(),
            ..Default::default()
        };
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Error::io("create a socket pair for", "the health check", e))?;
        let attach = crate::attach::AttachOptions {
            stdin: false,
            stdout: true,
            stderr: true,
            detach_keys: Vec::new(),
        };
        let h = self.spawn_exec(id, &exec_id, &opts, Some((&theirs, attach)))?;
        drop(theirs);
        let output = collect(ours, cfg.timeout());
        let exit = self
            .dir(id)
            .dir
            .join("execs")
            .join(format!("{exec_id}.exit"));
        let result = match output {
            Some(out) => (h.wait_exit().unwrap_or(-1), out),
            None => {
                h.kill();
                (
                    -1,
                    format!("Health check exceeded timeout ({})", human(cfg.timeout())),
                )
            }
        };
        let _ = std::fs::remove_file(exit);
        Ok(result)
    }
}

/// Reads docker's frames from `s` until it ends: the payloads (both streams, at most
/// [`MAX_OUTPUT`] bytes) as text; `None` at the timeout.
fn collect(mut s: std::os::unix::net::UnixStream, timeout: Duration) -> Option<String> {
    use std::io::Read;
    let deadline = Instant::now() + timeout;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if raw.len() < 4 * MAX_OUTPUT => raw.extend_from_slice(&buf[..n]),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => break,
        }
    }
    let mut out = Vec::new();
    let mut rest = raw.as_slice();
    while rest.len() >= 8 {
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = (8 + len).min(rest.len());
        out.extend_from_slice(&rest[8..end]);
        rest = &rest[end..];
    }
    out.truncate(MAX_OUTPUT);
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `30s`, `1.5s`, `200ms` as Go prints durations.
fn human(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// Parses docker's durations for `--health-*` (`30s`, `1m30s`, `500ms`, `2h`) into ns.
pub fn parse_duration(s: &str) -> Result<u64> {
    let bad = || {
        Error::Invalid(format!(
            "invalid duration {s:?}: use a number with a unit, e.g. 30s, 500ms, 1m30s"
        ))
    };
    let mut total: f64 = 0.0;
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mul = match &rest[..u_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mul;
        rest = &rest[u_end..];
    }
    Ok(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(code: i32) -> Probe {
        Probe {
            start: "s".into(),
            end: "e".into(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn failures_count_after_the_start_period_and_success_resets() {
        let mut h = Health::default();
        h.record(probe(1), 2, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        h.record(probe(1), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 1));
        h.record(probe(1), 2, false);
        assert_eq!(h.status, "unhealthy");
        h.record(probe(0), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        for _ in 0..10 {
            h.record(probe(0), 2, false);
        }
        assert_eq!(h.log.len(), LOG_ENTRIES);
        assert_eq!(h.ps_suffix(), " (healthy)");
        assert_eq!(Health::default().ps_suffix(), " (health: starting)");
    }

    #[test]
    fn commands_and_merge() {
        let shell = HealthConfig {
            test: vec!["CMD-SHELL".into(), "test -f /ok".into()],
            ..Default::default()
        };
        assert_eq!(shell.command(), ["/bin/sh", "-c", "test -f /ok"]);
        assert!(shell.active());
        let none = HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        assert!(!none.active());
        let img = HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            interval: 5,
            retries: 7,
            ..Default::default()
        };
        let own = HealthConfig {
            interval: 9,
            ..Default::default()
        };
        let m = merge(Some(&own), Some(img.clone())).expect("merged");
        assert_eq!(
            (m.test.clone(), m.interval, m.retries),
            (img.test.clone(), 9, 7)
        );
        assert!(!merge(Some(&none), Some(img.clone()))
            .expect("none")
            .active());
        assert_eq!(merge(None, Some(img.clone())), Some(img));
        assert!(HealthConfig {
            test: vec!["BOGUS".into()],
            ..Default::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn image_config_and_durations() {
        let raw = serde_json::json!({"config": {"Healthcheck": {"Test": ["CMD", "x"], "Interval": 1000000000u64, "Retries": 2}}});
        let h = from_image(&raw).expect("from image");
        assert_eq!(h.interval(), Duration::from_secs(1));
        assert_eq!(h.retries(), 2);
        assert_eq!(h.timeout(), DEFAULT_TIMEOUT);
        assert_eq!(parse_duration("1m30s").expect("1m30s"), 90_000_000_000);
        assert_eq!(parse_duration("500ms").expect("ms"), 500_000_000);
        assert_eq!(parse_duration("0").expect("0"), 0);
        assert!(parse_duration("5").is_err() && parse_duration("3x").is_err());
        assert_eq!(human(Duration::from_secs(2)), "2s");
    }
}
