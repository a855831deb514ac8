//! System routes: ping, version, info.

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
        _ => return None,
    })
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
