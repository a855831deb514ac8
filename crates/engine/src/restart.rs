//! Restart policies (`--restart no|on-failure[:N]|always|unless-stopped`): the policy
//! type, the per-container restart bookkeeping (`restart.json`: how often it was
//! restarted, whether the user stopped it, whether a restart is pending) and docker's
//! decision and back-off rules.
//!
//! Where restarts happen: in the daemon, not in the supervisor. The decision depends
//! on what users do through the daemon (`stop` and `kill` cancel a pending restart,
//! `start` resets the count, `rm` ends it), the back-off timer must be cancellable by
//! those, and after a daemon restart the same decision brings `always` and
//! `unless-stopped` containers back. Keeping it out of the supervisor also keeps the
//! per-container process small. As with dockerd, nothing restarts while no daemon
//! runs: the next daemon catches up when it starts ([`Engine::reconcile`]).

use crate::error::{Error, Result};
use crate::list::State;
use crate::record::{read_json, write_json};
use crate::Engine;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The restart policy's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartName {
    /// never restart (docker's default)
    #[default]
    No,
    /// restart after a non-zero exit, at most `max_retries` times (0: no limit)
    OnFailure,
    /// always restart; a container the user stopped comes back only when the daemon
    /// restarts
    Always,
    /// as `always`, but a container the user stopped stays stopped
    UnlessStopped,
}

/// A container's restart policy (`HostConfig.RestartPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RestartPolicy {
    /// which policy
    pub name: RestartName,
    /// `on-failure:N`: at most N restarts (0: unlimited)
    #[serde(default)]
    pub max_retries: u32,
}

impl RestartPolicy {
    /// docker's name of the policy (`HostConfig.RestartPolicy.Name`).
    pub fn docker_name(&self) -> &'static str {
        match self.name {
            RestartName::No => "no",
            RestartName::OnFailure => "on-failure",
            RestartName::Always => "always",
            RestartName::UnlessStopped => "unless-stopped",
        }
    }

    /// The policy from docker's `{Name, MaximumRetryCount}`.
    pub fn from_docker(name: &str, max_retries: i64) -> Result<Self> {
        let name = match name {
            "" | "no" => RestartName::No,
            "on-failure" => RestartName::OnFailure,
            "always" => RestartName::Always,
            "unless-stopped" => RestartName::UnlessStopped,
            other => {
                return Err(Error::Invalid(format!(
                    "invalid restart policy {other:?}: use no, on-failure[:max-retries], always or unless-stopped"
                )))
            }
        };
        if max_retries < 0 {
            return Err(Error::Invalid(
                "invalid restart policy: maximum retry count cannot be negative".into(),
            ));
        }
        if max_retries > 0 && name != RestartName::OnFailure {
            return Err(Error::Invalid(format!(
                "invalid restart policy: maximum retry count can only be used with 'on-failure', not {:?}",
                RestartPolicy { name, max_retries: 0 }.docker_name()
            )));
        }
        Ok(RestartPolicy {
            name,
            max_retries: u32::try_from(max_retries).unwrap_or(u32::MAX),
        })
    }
}

impl std::str::FromStr for RestartPolicy {
    type Err = Error;
    /// `--restart` as docker's CLI takes it: `no`, `always`, `unless-stopped`,
    /// `on-failure` or `on-failure:N`.
    fn from_str(s: &str) -> Result<Self> {
        let (name, max) = match s.split_once(':') {
            Some((n, m)) => {
                let max = m.parse::<i64>().map_err(|_| {
                    Error::Invalid(format!(
                        "--restart {s:?}: the maximum retry count must be a whole number, e.g. on-failure:3"
                    ))
                })?;
                (n, max)
            }
            None => (s, 0),
        };
        RestartPolicy::from_docker(name, max)
    }
}

/// The daemon's restart bookkeeping of one container (`restart.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartState {
    /// restarts by the policy since the user last started it (`RestartCount`)
    #[serde(default)]
    pub count: u32,
    /// the user stopped or killed it (cancels the policy until the next start)
    #[serde(default)]
    pub manually_stopped: bool,
    /// a restart is pending (back-off): `State.Restarting`
    #[serde(default)]
    pub restarting: bool,
    /// the current back-off delay in milliseconds (0: none yet)
    #[serde(default)]
    pub backoff_ms: u64,
}

/// First back-off delay, as docker's.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// Largest back-off delay, as docker's.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A container that ran this long has its back-off reset.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);

/// Whether the policy restarts a container that exited with `code`. `daemon_start`:
/// the decision is made by a daemon starting up (where `always` also brings back a
/// container the user stopped, as docker does).
pub fn should_restart(
    policy: &RestartPolicy,
    st: &RestartState,
    code: i32,
    daemon_start: bool,
) -> bool {
    match policy.name {
        RestartName::No => false,
        RestartName::Always => daemon_start || !st.manually_stopped,
        RestartName::UnlessStopped => !st.manually_stopped,
        RestartName::OnFailure => {
            !st.manually_stopped
                && code != 0
                && (policy.max_retries == 0 || st.count < policy.max_retries)
        }
    }
}

/// The next back-off delay after a run that lasted `ran_for`: 100 ms, doubling with
/// each quick exit, up to a minute; reset once a run lasted 10 s (docker's rules).
pub fn next_backoff(previous: Duration, ran_for: Duration) -> Duration {
    let prev = if ran_for >= BACKOFF_RESET_AFTER {
        Duration::ZERO
    } else {
        previous
    };
    if prev.is_zero() {
        BACKOFF_START
    } else {
        (prev * 2).min(BACKOFF_MAX)
    }
}

impl Engine {
    /// The restart bookkeeping of container `id` (default when none is stored).
    pub fn restart_state(&self, id: &str) -> RestartState {
        read_json(&self.dir(id).dir.join("restart.json")).unwrap_or_default()
    }

    /// Changes the restart bookkeeping of `id` under the container's lock.
    pub fn update_restart_state(&self, id: &str, f: impl FnOnce(&mut RestartState)) -> Result<()> {
        let dir = self.dir(id);
        let Some(_lock) = crate::reconcile::lock_if_present(&dir)? else {
            return Err(Error::NotFound(id.into()));
        };
        let mut st = self.restart_state(id);
        f(&mut st);
        write_json(&dir.dir.join("restart.json"), &st)
    }

    /// The user stopped or killed `id`: no policy restarts it until it is started again.
    pub(crate) fn mark_stopped_by_user(&self, id: &str) {
        let _ = self.update_restart_state(id, |s| {
            s.manually_stopped = true;
            s.restarting = false;
        });
    }

    /// The user starts `id`: the policy applies again, with its count reset.
    pub(crate) fn mark_started_by_user(&self, id: &str) {
        if self.dir(id).dir.join("restart.json").exists() {
            let _ = self.update_restart_state(id, |s| *s = RestartState::default());
        }
    }

    /// How the policy answers the exit of container `id` right now: the back-off to
    /// wait before restarting it, or `None`. Marks it restarting when it will be.
    pub fn plan_restart(&self, id: &str, daemon_start: bool) -> Result<Option<Duration>> {
        let s = self.inspect(id)?;
        let State::Exited(code) = s.state else {
            return Ok(None);
        };
        let st = self.restart_state(id);
        if !should_restart(&s.record.options.restart, &st, code, daemon_start) {
            return Ok(None);
        }
        let ran_for = match (&s.record.started_at, &s.exit) {
            (Some(a), Some(e)) => elapsed(a, &e.finished_at),
            _ => Duration::ZERO,
        };
        let delay = next_backoff(Duration::from_millis(st.backoff_ms), ran_for);
        self.update_restart_state(id, |s| {
            s.restarting = true;
            s.backoff_ms = delay.as_millis() as u64;
        })?;
        Ok(Some(delay))
    }

    /// Restarts `id` for its policy once its back-off has passed, unless the user
    /// stopped, started or removed it meanwhile. Returns whether it restarted.
    pub fn restart_by_policy(&self, id: &str) -> Result<bool> {
        let s = match self.inspect(id) {
            Ok(s) => s,
            Err(Error::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let st = self.restart_state(id);
        if !st.restarting || st.manually_stopped || !matches!(s.state, State::Exited(_)) {
            return Ok(false);
        }
        // `update --restart no` during the back-off cancels the pending restart
        if s.record.options.restart.name == RestartName::No {
            self.update_restart_state(id, |s| s.restarting = false)?;
            return Ok(false);
        }
        // counted now, still "restarting" until the new run has started
        self.update_restart_state(id, |s| s.count += 1)?;
        self.prepare_restart(id)?;
        let started = self.start(id, &mut |_| {});
        self.update_restart_state(id, |s| s.restarting = false)?;
        drop(started?);
        tracing::info!(container = %id, count = st.count + 1, "restarted by its policy");
        Ok(true)
    }
}

/// Time from `start` to `end` (RFC 3339), zero when unknown.
fn elapsed(start: &str, end: &str) -> Duration {
    match (
        chrono::DateTime::parse_from_rfc3339(start),
        chrono::DateTime::parse_from_rfc3339(end),
    ) {
        (Ok(a), Ok(b)) => (b - a).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(s: &str) -> RestartPolicy {
        s.parse().expect("policy")
    }

    #[test]
    fn policies_parse_like_docker() {
        assert_eq!(policy("no"), RestartPolicy::default());
        assert_eq!(
            policy("on-failure:3"),
            RestartPolicy {
                name: RestartName::OnFailure,
                max_retries: 3
            }
        );
        assert_eq!(policy("unless-stopped").docker_name(), "unless-stopped");
        assert!("always:2".parse::<RestartPolicy>().is_err());
        assert!("sometimes".parse::<RestartPolicy>().is_err());
        assert!("on-failure:x".parse::<RestartPolicy>().is_err());
        assert!(RestartPolicy::from_docker("on-failure", -1).is_err());
    }

    #[test]
    fn decisions_follow_the_policy() {
        let fresh = RestartState::default();
        let stopped = RestartState {
            manually_stopped: true,
            ..Default::default()
        };
        assert!(!should_restart(&policy("no"), &fresh, 1, false));
        assert!(should_restart(&policy("always"), &fresh, 0, false));
        assert!(!should_restart(&policy("always"), &stopped, 0, false));
        assert!(should_restart(&policy("always"), &stopped, 0, true));
        assert!(!should_restart(
            &policy("unless-stopped"),
            &stopped,
            0,
            true
        ));
        assert!(should_restart(&policy("unless-stopped"), &fresh, 0, true));
        let of = policy("on-failure:2");
        assert!(!should_restart(&of, &fresh, 0, false));
        assert!(should_restart(&of, &fresh, 1, false));
        let twice = RestartState {
            count: 2,
            ..Default::default()
        };
        assert!(!should_restart(&of, &twice, 1, false));
        assert!(should_restart(&policy("on-failure"), &twice, 1, false));
    }

    #[test]
    fn backoff_doubles_and_resets_after_ten_seconds() {
        let quick = Duration::from_millis(5);
        let mut d = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..4 {
            d = next_backoff(d, quick);
            seen.push(d.as_millis());
        }
        assert_eq!(seen, [100, 200, 400, 800]);
        assert_eq!(next_backoff(d, Duration::from_secs(10)), BACKOFF_START);
        assert_eq!(next_backoff(Duration::from_secs(50), quick), BACKOFF_MAX);
    }

    #[test]
    fn elapsed_reads_rfc3339() {
        assert_eq!(
            elapsed("2024-01-01T00:00:00Z", "2024-01-01T00:00:12.5Z"),
            Duration::from_millis(12500)
        );
        assert_eq!(elapsed("bogus", "2024-01-01T00:00:00Z"), Duration::ZERO);
    }
}
