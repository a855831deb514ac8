//! The lifecycle fields of the API (restart policy, healthcheck, restart count,
//! health state) in one place, so the container routes map them with one call each.

use berth_engine::{CreateOptions, Engine, HealthConfig, RestartPolicy, State, Summary};
use serde_json::{json, Value};

/// `HostConfig.RestartPolicy` and `Config.Healthcheck` of a create body into `o`.
/// Errors are messages for a 400.
pub fn create_options(body: &Value, o: &mut CreateOptions) -> Result<(), String> {
    let rp = &body["HostConfig"]["RestartPolicy"];
    if rp.is_object() {
        let name = rp["Name"].as_str().unwrap_or("");
        let max = rp["MaximumRetryCount"].as_i64().unwrap_or(0);
        o.restart = RestartPolicy::from_docker(name, max).map_err(|e| e.to_string())?;
    }
    if o.restart != RestartPolicy::default()
        && body["HostConfig"]["AutoRemove"].as_bool() == Some(true)
    {
        return Err("conflicting options: cannot specify both --restart and --rm: a container that removes itself cannot be restarted".into());
    }
    let hc = &body["Healthcheck"];
    if hc.is_object() {
        let h: HealthConfig = serde_json::from_value(hc.clone()).map_err(|e| {
            format!("Healthcheck: {e}: durations are nanoseconds, Retries a whole number")
        })?;
        h.validate().map_err(|e| e.to_string())?;
        o.healthcheck = Some(h);
    }
    Ok(())
}

/// Adds `RestartCount`, `State.Restarting`, `State.Health`, `HostConfig.RestartPolicy`
/// and `Config.Healthcheck` to an inspect document.
pub fn inspect(engine: &Engine, s: &Summary, doc: &mut Value) {
    let id = &s.record.id;
    let rs = engine.restart_state(id);
    // between the old run's exit and the new one's start (its exit cleared, no
    // supervisor yet) the container is restarting, not dead or created
    let restarting = rs.restarting && !matches!(s.state, State::Running);
    doc["RestartCount"] = json!(rs.count);
    doc["State"]["Restarting"] = json!(restarting);
    if restarting {
        doc["State"]["Status"] = json!("restarting");
        doc["State"]["Dead"] = json!(false);
    }
    let p = s.record.options.restart;
    doc["HostConfig"]["RestartPolicy"] =
        json!({"Name": p.docker_name(), "MaximumRetryCount": p.max_retries});
    if let Some(h) = &s.record.options.healthcheck {
        doc["Config"]["Healthcheck"] = json!(h);
        if h.active() {
            // "starting" from the start, before the monitor's first word
            let health = match (engine.health(id), s.state) {
                (Some(h), _) => Some(h),
                (None, State::Running) => Some(berth_engine::Health::default()),
                (None, _) => None,
            };
            if let Some(health) = health {
                doc["State"]["Health"] = json!(health);
            }
        }
    }
}

/// Adjusts one `containers/json` row: `restarting` state, and the health after "Up …"
/// (`Up 5 seconds (healthy)`).
pub fn list_row(engine: &Engine, s: &Summary, row: &mut Value) {
    let id = &s.record.id;
    if s.state != State::Running {
        if engine.restart_state(id).restarting {
            let code = s.exit.as_ref().map_or(0, |e| e.code);
            row["State"] = json!("restarting");
            row["Status"] = json!(format!("Restarting ({code})"));
        }
        return;
    }
    if s.state != State::Running || s.paused {
        return;
    }
    if s.record
        .options
        .healthcheck
        .as_ref()
        .is_some_and(|h| h.active())
    {
        let h = engine.health(id).unwrap_or_default();
        let status = row["Status"].as_str().unwrap_or("Up").to_string();
        row["Status"] = json!(format!("{status}{}", h.ps_suffix()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_and_health_from_the_create_body() {
        let mut o = CreateOptions::default();
        let body = json!({"HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}},
            "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000u64, "Retries": 1}});
        create_options(&body, &mut o).expect("valid");
        assert_eq!(o.restart.docker_name(), "on-failure");
        assert_eq!(o.restart.max_retries, 2);
        assert!(o.healthcheck.expect("check").active());
        let bad =
            json!({"HostConfig": {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}});
        assert!(create_options(&bad, &mut CreateOptions::default()).is_err());
        let rm = json!({"HostConfig": {"AutoRemove": true, "RestartPolicy": {"Name": "always"}}});
        assert!(create_options(&rm, &mut CreateOptions::default()).is_err());
        let test = json!({"Healthcheck": {"Test": ["WHAT"]}});
        assert!(create_options(&test, &mut CreateOptions::default()).is_err());
        let none = json!({"HostConfig": {"RestartPolicy": {"Name": ""}}});
        create_options(&none, &mut CreateOptions::default()).expect("empty name is no");
    }
}
