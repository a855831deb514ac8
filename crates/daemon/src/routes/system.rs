//! System routes: ping, version, info, disk usage, and `/auth` (checks credentials
//! against a registry as `docker login` asks; the daemon does not keep them).

use super::{Ctx, Reply};
use crate::http::Request;
use berth_engine::State;
use serde_json::{json, Value};

/// What this module serves.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/_ping"),
    ("HEAD", "/_ping"),
    ("GET", "/version"),
    ("GET", "/info"),
    ("GET", "/system/df"),
    ("POST", "/auth"),
];

/// Dispatch within this module; `None` when the route is not ours.
pub fn route(ctx: &Ctx, req: &Request, parts: &[&str]) -> Option<Reply> {
    Some(match (req.method.as_str(), parts) {
        ("GET" | "HEAD", ["_ping"]) => Reply {
            status: 200,
            content_type: "text/plain",
            body: b"OK".to_vec(),
        },
        ("GET", ["version"]) => Reply::json(200, &version()),
        ("GET", ["info"]) => info(ctx),
        ("GET", ["system", "df"]) => df(ctx),
        ("POST", ["auth"]) => auth(req),
        _ => return None,
    })
}

/// The `filters` of a prune (`POST /containers|images|networks|volumes/prune`):
/// `until` (a unix time, an RFC 3339 time or a duration back from now) keeps what was
/// created at or after it; `label=k[=v]` keeps only matches (all of them must match);
/// `label!=k[=v]` spares matches (any of them).
#[derive(Debug, Default)]
pub(crate) struct PruneFilter {
    /// unix seconds: only what was created before goes
    pub until: Option<i64>,
    labels: Vec<String>,
    not_labels: Vec<String>,
    /// other filters the caller handles itself (`dangling`, `all`)
    pub rest: std::collections::BTreeMap<String, Vec<String>>,
}

impl PruneFilter {
    /// Parses the request's `filters`; `allowed` names the filters the route takes
    /// besides `label` and `label!` (docker's 400 "invalid filter" for the others).
    pub fn parse(req: &Request, allowed: &[&str]) -> Result<Self, Reply> {
        let f = super::events::parse_filters(req).map_err(|e| Reply::error(400, e))?;
        let mut out = PruneFilter::default();
        for (k, vs) in f {
            match k.as_str() {
                "label" => out.labels = vs,
                "label!" => out.not_labels = vs,
                "until" if allowed.contains(&"until") => {
                    let u = vs.first().map(String::as_str).unwrap_or("");
                    if vs.len() > 1 {
                        return Err(Reply::error(400, "more than one until filter specified"));
                    }
                    let t = super::events::parse_time_or_ago(u).ok_or_else(|| {
                        Reply::error(
                            400,
                            format!("invalid until {u:?}: give a unix timestamp, an RFC 3339 time or a duration like 24h"),
                        )
                    })?;
                    out.until = Some(t.div_euclid(1_000_000_000));
                }
                k if allowed.contains(&k) => {
                    out.rest.insert(k.to_string(), vs);
                }
                k => {
                    let mut names: Vec<&str> = allowed.to_vec();
                    names.extend(["label", "label!"]);
                    return Err(Reply::error(
                        400,
                        format!("invalid filter '{k}': use {}", names.join(", ")),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Whether a `label` or `label!` filter was given.
    pub fn has_labels(&self) -> bool {
        !self.labels.is_empty() || !self.not_labels.is_empty()
    }

    /// Whether an object created at `created` (unix seconds, `None` when unknown)
    /// with `labels` is to be pruned.
    pub fn matches(
        &self,
        created: Option<i64>,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        let old = self.until.is_none_or(|u| created.is_some_and(|c| c < u));
        old && self
            .labels
            .iter()
            .all(|l| super::events::label_matches(l, labels))
            && !self
                .not_labels
                .iter()
                .any(|l| super::events::label_matches(l, labels))
    }
}

fn version() -> Value {
    let uts = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": env!("CARGO_PKG_VERSION"), "Details": {"ApiVersion": crate::API_VERSION, "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64", "KernelVersion": uts.trim()}}],
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": crate::API_VERSION,
        "MinAPIVersion": "1.24",
        "GitCommit": "berth",
        "GoVersion": "none (Rust)",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": uts.trim(),
        "BuildTime": ""
    })
}

fn info(ctx: &Ctx) -> Reply {
    let all = ctx.engine.list(true).unwrap_or_default();
    let running = all
        .iter()
        .filter(|s| s.state == State::Running && !s.paused)
        .count();
    let paused = all.iter().filter(|s| s.paused).count();
    let images = berth_image::Images::open(&ctx.data_root)
        .and_then(|i| i.list())
        .map(|l| l.len())
        .unwrap_or(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    Reply::json(
        200,
        &json!({
            "ID": "berth", "Containers": all.len(), "ContainersRunning": running,
            "ContainersPaused": paused, "ContainersStopped": all.len() - running - paused,
            "Images": images, "Driver": "overlayfs", "DriverStatus": [],
            "DockerRootDir": ctx.data_root, "Name": host.trim(), "ServerVersion": env!("CARGO_PKG_VERSION"),
            "OperatingSystem": "linux", "OSType": "linux", "Architecture": "x86_64",
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "MemTotal": 0, "KernelVersion": kernel.trim(), "CgroupDriver": "cgroupfs",
            "CgroupVersion": if v2 { "2" } else { "1" }, "LoggingDriver": "json-file",
            "Runtimes": {"berth": {"path": "berth-runtime"}}, "DefaultRuntime": "berth",
            "SecurityOptions": ["name=seccomp,profile=berth"], "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Log": ["json-file"]},
            "Labels": [], "ExperimentalBuild": false, "Swarm": {"LocalNodeState": "inactive"}, "Warnings": []
        }),
    )
}

fn df(ctx: &Ctx) -> Reply {
    let images = match super::images::store(ctx) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let list = match images.list() {
        Ok(l) => l,
        Err(e) => return super::images::image_error(e),
    };
    let layers: u64 = images.disk_usage().map(|d| d.images_size).unwrap_or(0);
    let imgs: Vec<Value> = list
        .iter()
        .map(|i| {
            json!({
                "Id": i.id, "ParentId": "", "RepoTags": i.tags, "RepoDigests": i.repo_digests,
                "Created": i.created.as_deref().map(super::unix).unwrap_or(0), "Size": i.size,
                "SharedSize": 0, "VirtualSize": i.size, "Labels": {}, "Containers": i.containers
            })
        })
        .collect();
    let containers: Vec<Value> = ctx
        .engine
        .list(true)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let r = &s.record;
            let size = images
                .snapshotter()
                .usage(&format!("container-{}", r.id))
                .map(|u| u.size)
                .unwrap_or(0);
            let state = match s.state {
                State::Running => "running",
                State::Created => "created",
                State::Exited(_) => "exited",
                State::Dead => "dead",
            };
            json!({
                "Id": r.id, "Names": [format!("/{}", r.name)], "Image": r.options.image,
                "Command": r.path, "Created": super::unix(&r.created), "State": state,
                "Status": super::containers::status_text(s), "SizeRw": size, "SizeRootFs": size,
                "Labels": r.options.labels,
                "Mounts": r.volumes.iter().map(|v| json!({"Type": "volume", "Name": v, "Driver": "local"})).collect::<Vec<_>>()
            })
        })
        .collect();
    let volumes: Vec<Value> = ctx
        .engine
        .volume_list()
        .unwrap_or_default()
        .iter()
        .map(|v| {
            let mut d = super::volumes::doc(v);
            let refs = ctx
                .engine
                .volume_users(&v.name)
                .map(|u| u.len())
                .unwrap_or(0);
            d["UsageData"] = json!({"Size": super::volumes::du(&v.mountpoint), "RefCount": refs});
            d
        })
        .collect();
    Reply::json(
        200,
        &json!({"LayersSize": layers, "Images": imgs, "Containers": containers, "Volumes": volumes, "BuildCache": []}),
    )
}

/// A registry's host as berth's credentials name it: `https://127.0.0.1:5000/` →
/// `127.0.0.1:5000`, docker.io's many spellings → `docker.io`.
pub fn registry_host(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or("");
    match s {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        other => other.to_string(),
    }
}

fn auth(req: &Request) -> Reply {
    let v: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => {
            return Reply::error(
                400,
                format!(
                    "invalid JSON body: {e}; send {{\"username\",\"password\",\"serveraddress\"}}"
                ),
            )
        }
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(user), Some(pass)) = (s("username"), s("password")) else {
        return Reply::error(400, "username and password are required (strings)");
    };
    let host = registry_host(&s("serveraddress").unwrap_or_default());
    let client = berth_registry::Client::new(berth_registry::Options::default());
    match client.check_login(&host, &user, &pass) {
        Ok(()) => Reply::json(
            200,
            &json!({"Status": "Login Succeeded", "IdentityToken": ""}),
        ),
        Err(berth_registry::Error::Unauthorized { .. }) => Reply::error(
            401,
            format!("login attempt to {host} failed: unauthorized: incorrect username or password"),
        ),
        Err(e) => Reply::error(500, format!("login to {host} failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prune_req(filters: &str) -> Request {
        Request {
            method: "POST".into(),
            path: "/containers/prune".into(),
            query: [("filters".to_string(), filters.to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn prune_filters_follow_docker() {
        let labels = |kv: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let f = PruneFilter::parse(
            &prune_req(r#"{"label":["env=test","team"],"label!":["keep"],"until":["1000"]}"#),
            &["until"],
        )
        .unwrap_or_else(|r| panic!("{}", String::from_utf8_lossy(&r.body)));
        assert_eq!(f.until, Some(1000));
        let test = labels(&[("env", "test"), ("team", "a")]);
        assert!(f.matches(Some(999), &test));
        assert!(!f.matches(Some(1000), &test), "created at until: kept");
        assert!(!f.matches(None, &test), "unknown age: kept");
        assert!(!f.matches(Some(1), &labels(&[("env", "prod"), ("team", "a")])));
        let mut kept = test.clone();
        kept.insert("keep".into(), String::new());
        assert!(!f.matches(Some(1), &kept));
        // the old {"label":{"k":true}} shape, and an RFC 3339 until
        let f = PruneFilter::parse(
            &prune_req(r#"{"label":{"a=1":true},"until":{"2001-09-09T01:46:40Z":true}}"#),
            &["until"],
        )
        .unwrap_or_else(|r| panic!("{}", String::from_utf8_lossy(&r.body)));
        assert_eq!(f.until, Some(1_000_000_000));
        assert!(f.matches(Some(5), &labels(&[("a", "1")])));
        for bad in [r#"{"colour":["red"]}"#, r#"{"until":["soon"]}"#, "not json"] {
            assert!(
                PruneFilter::parse(&prune_req(bad), &["until"]).is_err(),
                "{bad}"
            );
        }
        assert!(PruneFilter::parse(&prune_req(r#"{"until":["1h"]}"#), &[]).is_err());
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(registry_host("http://localhost:5000/"), "localhost:5000");
    }
}
