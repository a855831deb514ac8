//! The lifecycle flags of `run`/`create` (`--restart`, `--health-*`,
//! `--no-healthcheck`) as one flattened group, mapped into engine options or into the
//! API's create body; and the hidden `health-monitor` command a container's
//! supervisor starts.

use berth_engine::{health, CreateOptions, Engine, HealthConfig, RestartPolicy};
use clap::Args;
use serde_json::{json, Value};
use std::path::Path;

/// `--restart` and the healthcheck flags.
#[derive(Args, Debug, Clone, Default)]
pub struct LifecycleArgs {
    /// Restart policy to apply when a container exits: no, on-failure[:max-retries],
    /// always, unless-stopped
    #[arg(long, default_value = "no")]
    restart: String,
    /// Command to run to check health (run with /bin/sh -c in the container)
    #[arg(long)]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 30s)
    #[arg(long)]
    health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 30s)
    #[arg(long)]
    health_timeout: Option<String>,
    /// Start period for the container to initialize before failures count (ms|s|m|h)
    #[arg(long)]
    health_start_period: Option<String>,
    /// Consecutive failures needed to report unhealthy (default 3)
    #[arg(long)]
    health_retries: Option<u32>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    no_healthcheck: bool,
}

impl LifecycleArgs {
    /// The restart policy asked for.
    pub fn restart_policy(&self) -> Result<RestartPolicy, berth_engine::Error> {
        self.restart.parse()
    }

    /// The healthcheck asked for (`None`: the image's applies unchanged).
    pub fn healthcheck(&self) -> Result<Option<HealthConfig>, berth_engine::Error> {
        let any = self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_start_period.is_some()
            || self.health_retries.is_some();
        if self.no_healthcheck {
            if any {
                return Err(berth_engine::Error::Invalid(
                    "--no-healthcheck conflicts with --health-* options: use one or the other"
                        .into(),
                ));
            }
            return Ok(Some(HealthConfig {
                test: vec!["NONE".into()],
                ..Default::default()
            }));
        }
        if !any {
            return Ok(None);
        }
        let dur = |flag: &str, v: &Option<String>| -> Result<u64, berth_engine::Error> {
            v.as_deref()
                .map(health::parse_duration)
                .transpose()
                .map(Option::unwrap_or_default)
                .map_err(|e| berth_engine::Error::Invalid(format!("--{flag}: {e}")))
        };
        let h = HealthConfig {
            test: self
                .health_cmd
                .as_ref()
                .map(|c| vec!["CMD-SHELL".to_string(), c.clone()])
                .unwrap_or_default(),
            interval: dur("health-interval", &self.health_interval)?,
            timeout: dur("health-timeout", &self.health_timeout)?,
            start_period: dur("health-start-period", &self.health_start_period)?,
            retries: self.health_retries.unwrap_or(0),
        };
        h.validate()?;
        Ok(Some(h))
    }

    /// Sets the restart policy and healthcheck of `o` (whose `auto_remove` is set).
    pub fn apply(&self, o: &mut CreateOptions) -> Result<(), berth_engine::Error> {
        o.restart = self.restart_policy()?;
        if o.auto_remove && o.restart != RestartPolicy::default() {
            return Err(berth_engine::Error::Invalid(
                "conflicting options: --restart and --rm: a container that removes itself cannot be restarted".into(),
            ));
        }
        o.healthcheck = self.healthcheck()?;
        Ok(())
    }

    /// Sets `HostConfig.RestartPolicy` and `Healthcheck` of an API create body.
    // for `run`/`create` through the API (the container commands are moving there)
    #[allow(dead_code)]
    pub fn apply_to_body(&self, body: &mut Value) -> Result<(), berth_engine::Error> {
        let p = self.restart_policy()?;
        body["HostConfig"]["RestartPolicy"] =
            json!({"Name": p.docker_name(), "MaximumRetryCount": p.max_retries});
        if let Some(h) = self.healthcheck()? {
            body["Healthcheck"] = json!(h);
        }
        Ok(())
    }
}

/// The hidden `container-shim-finish` command: `berth-shim` hands a container's exit
/// back with it.
#[derive(Args)]
pub struct FinishArgs {
    /// Descriptor on which to report the exit
    #[arg(long)]
    status_fd: Option<i32>,
    id: String,
    code: i32,
}

/// Records the exit of a container the slim supervisor ran and exits.
pub fn finish(data_root: &Path, a: &FinishArgs) -> anyhow::Result<()> {
    let code = engine(data_root)?.finish_handed_back(&a.id, a.code, a.status_fd);
    std::process::exit(code)
}

fn engine(data_root: &Path) -> anyhow::Result<Engine> {
    let runtime_root =
        std::env::var_os("BERTH_RUNTIME_ROOT").unwrap_or_else(|| "/run/berth/runtime".into());
    Ok(Engine::new(data_root, runtime_root)?)
}

/// The hidden `health-monitor` command: runs container `id`'s healthcheck until it
/// stops (started by the container's supervisor).
pub fn health_monitor(data_root: &Path, id: &str) -> anyhow::Result<()> {
    engine(data_root)?.health_monitor(id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        l: LifecycleArgs,
    }

    fn parse(args: &[&str]) -> LifecycleArgs {
        T::parse_from(std::iter::once("t").chain(args.iter().copied())).l
    }

    #[test]
    fn flags_map_to_options_and_body() {
        let l = parse(&[
            "--restart",
            "on-failure:2",
            "--health-cmd",
            "test -f /ok",
            "--health-interval",
            "1s",
            "--health-retries",
            "2",
        ]);
        let mut o = CreateOptions::default();
        l.apply(&mut o).expect("apply");
        assert_eq!(o.restart.max_retries, 2);
        let h = o.healthcheck.expect("check");
        assert_eq!(h.test, ["CMD-SHELL", "test -f /ok"]);
        assert_eq!((h.interval, h.retries), (1_000_000_000, 2));
        let mut body = json!({});
        l.apply_to_body(&mut body).expect("body");
        assert_eq!(body["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
        assert_eq!(body["Healthcheck"]["Interval"], 1_000_000_000u64);
        let none = parse(&["--no-healthcheck"])
            .healthcheck()
            .expect("none")
            .expect("some");
        assert_eq!(none.test, ["NONE"]);
        assert!(parse(&["--no-healthcheck", "--health-retries", "1"])
            .healthcheck()
            .is_err());
        assert!(parse(&["--restart", "always:3"]).restart_policy().is_err());
        let mut rm = CreateOptions {
            auto_remove: true,
            ..Default::default()
        };
        assert!(parse(&["--restart", "always"]).apply(&mut rm).is_err());
        assert!(parse(&[]).healthcheck().expect("default").is_none());
    }
}
