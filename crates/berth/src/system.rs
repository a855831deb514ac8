//! `berth events` and `berth info`, over the daemon's API with docker's output.

use crate::format::render;
use anyhow::{bail, Result};
use clap::Args;
use serde_json::Value;
use std::io::{BufRead, Write};
use std::path::Path;

#[derive(Args)]
pub struct EventsArgs {
    /// Show events created since this time (unix seconds, RFC 3339, or a duration like 10m)
    #[arg(long)]
    since: Option<String>,
    /// Stream events until this time (same forms as --since)
    #[arg(long)]
    until: Option<String>,
    /// Filter output (type=, event=, image=, container=, volume=, network=, label=)
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a Go-template subset ({{.Type}}, {{.Action}}, {{json .}})
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InfoArgs {
    /// Format output using a Go-template subset ({{.Images}}, {{json .}})
    #[arg(short, long)]
    format: Option<String>,
}

/// A time flag as the API takes it: a duration (`90s`, `10m`, `2h`) becomes the unix
/// time that long ago; numbers and RFC 3339 go as they are.
pub fn api_time(s: &str) -> Result<String> {
    let now = chrono::Utc::now().timestamp();
    if s.split_once('.')
        .map_or(s, |(a, _)| a)
        .parse::<i64>()
        .is_ok()
        || chrono::DateTime::parse_from_rfc3339(s).is_ok()
    {
        return Ok(s.to_string());
    }
    if let Some((n, unit)) = s
        .char_indices()
        .last()
        .and_then(|(i, u)| s[..i].parse::<i64>().ok().map(|n| (n, u)))
    {
        let secs = match unit {
            's' => n,
            'm' => n * 60,
            'h' => n * 3600,
            _ => bail!("invalid time {s:?}: use unix seconds, RFC 3339, or a duration like 10m"),
        };
        return Ok((now - secs).to_string());
    }
    bail!("invalid time {s:?}: use unix seconds, RFC 3339, or a duration like 10m")
}

/// One event as docker prints it:
/// `2024-01-02T03:04:05.000000006Z image tag sha256:… (name=app:2)`.
fn event_line(e: &Value) -> String {
    let nanos = e["timeNano"].as_i64().unwrap_or(0);
    let t = chrono::DateTime::from_timestamp(nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        })
        .unwrap_or_default();
    let attrs: Vec<String> = e["Actor"]["Attributes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    let mut line = format!(
        "{t} {} {} {}",
        s("Type"),
        s("Action"),
        e["Actor"]["ID"].as_str().unwrap_or_default()
    );
    if !attrs.is_empty() {
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

pub fn events(root: &Path, a: &EventsArgs) -> Result<()> {
    let c = crate::daemon::client(root)?;
    let mut q = format!(
        "/events?filters={}",
        crate::image::filters_query(&a.filter, &[])?
    );
    if let Some(s) = &a.since {
        q.push_str(&format!("&since={}", berth_client::enc(&api_time(s)?)));
    }
    if let Some(u) = &a.until {
        q.push_str(&format!("&until={}", berth_client::enc(&api_time(u)?)));
    }
    let r = c.request("GET", &q, berth_client::Body::Empty)?.ok()?;
    let mut out = std::io::stdout().lock();
    for line in std::io::BufReader::new(r.reader()).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let e: Value = serde_json::from_str(&line)?;
        let text = match &a.format {
            Some(f) => render(f, &e)?,
            None => event_line(&e),
        };
        writeln!(out, "{text}")?;
        out.flush()?;
    }
    Ok(())
}

pub fn info(root: &Path, a: &InfoArgs) -> Result<()> {
    let c = crate::daemon::client(root)?;
    let v = c.get_json("/info")?;
    if let Some(f) = &a.format {
        println!("{}", render(f, &v)?);
        return Ok(());
    }
    let s = |k: &str| match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    println!(
        "Client:\n Version:    {}\n Context:    default\n",
        env!("CARGO_PKG_VERSION")
    );
    println!("Server:");
    println!(" Containers: {}", s("Containers"));
    println!("  Running: {}", s("ContainersRunning"));
    println!("  Paused: {}", s("ContainersPaused"));
    println!("  Stopped: {}", s("ContainersStopped"));
    println!(" Images: {}", s("Images"));
    println!(" Server Version: {}", s("ServerVersion"));
    println!(" Storage Driver: {}", s("Driver"));
    println!(" Logging Driver: {}", s("LoggingDriver"));
    println!(" Cgroup Driver: {}", s("CgroupDriver"));
    println!(" Cgroup Version: {}", s("CgroupVersion"));
    println!(" Default Runtime: {}", s("DefaultRuntime"));
    println!(" Kernel Version: {}", s("KernelVersion"));
    println!(" Operating System: {}", s("OperatingSystem"));
    println!(" OSType: {}", s("OSType"));
    println!(" Architecture: {}", s("Architecture"));
    println!(" CPUs: {}", s("NCPU"));
    println!(" Name: {}", s("Name"));
    println!(" ID: {}", s("ID"));
    println!(" Docker Root Dir: {}", s("DockerRootDir"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_flags() {
        assert_eq!(api_time("1700000000").expect("secs"), "1700000000");
        assert_eq!(api_time("1700000000.5").expect("frac"), "1700000000.5");
        assert!(api_time("2024-01-01T00:00:00Z").is_ok());
        let ago: i64 = api_time("10m").expect("duration").parse().expect("number");
        assert!(chrono::Utc::now().timestamp() - ago >= 600);
        assert!(api_time("soon").is_err());
        assert!(api_time("3x").is_err());
    }

    #[test]
    fn event_lines_as_docker_prints_them() {
        let e = serde_json::json!({"Type": "volume", "Action": "create", "Actor": {"ID": "v1", "Attributes": {"driver": "local"}}, "timeNano": 1_000_000_007i64});
        let l = event_line(&e);
        assert!(l.ends_with(" volume create v1 (driver=local)"), "{l}");
        assert!(l.contains(".000000007"), "{l}");
    }
}
