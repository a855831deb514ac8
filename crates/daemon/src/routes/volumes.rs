//! Volume routes: create, list (filters), inspect, remove (force), prune.

use super::events::{label_matches, parse_filters};
use super::{engine_error, flag, Ctx, Reply};
use crate::http::Request;
use berth_engine::Volume;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// What this module serves; `{id}` stands for a volume name.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/volumes/create"),
    ("GET", "/volumes"),
    ("GET", "/volumes/{id}"),
    ("DELETE", "/volumes/{id}"),
    ("POST", "/volumes/prune"),
];

/// Dispatch within this module; `None` when the route is not ours.
pub fn route(ctx: &Ctx, req: &Request, parts: &[&str]) -> Option<Reply> {
    Some(match (req.method.as_str(), parts) {
        ("POST", ["volumes", "create"]) => create(ctx, req),
        ("GET", ["volumes"]) => list(ctx, req),
        ("POST", ["volumes", "prune"]) => prune(ctx, req),
        ("GET", ["volumes", name]) => match ctx.engine.volume_inspect(name) {
            Ok(v) => Reply::json(200, &doc(&v)),
            Err(e) => volume_error(name, e),
        },
        ("DELETE", ["volumes", name]) => remove(ctx, name, flag(req, "force")),
        _ => return None,
    })
}

/// docker's volume document.
pub fn doc(v: &Volume) -> Value {
    json!({
        "CreatedAt": v.created_at, "Driver": "local", "Labels": v.labels,
        "Mountpoint": v.mountpoint, "Name": v.name, "Options": v.options, "Scope": "local",
    })
}

fn create(ctx: &Ctx, req: &Request) -> Reply {
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return Reply::error(400, format!("invalid JSON body: {e}")),
        }
    };
    let Some(body) = body.as_object() else {
        return Reply::error(
            400,
            "the body must be a JSON object like {\"Name\":\"data\"}",
        );
    };
    let name = match body.get("Name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => return Reply::error(400, format!("Name must be a string, not {other}")),
    };
    match body.get("Driver") {
        None | Some(Value::Null) => {}
        Some(Value::String(d)) if d.is_empty() || d == "local" => {}
        Some(d) => {
            return Reply::error(
                400,
                format!("volume driver {d} is not supported: berth has the local driver only"),
            )
        }
    }
    if body.get("ClusterVolumeSpec").is_some_and(|c| !c.is_null()) {
        return Reply::error(
            400,
            "a cluster volume spec (--scope, --sharing, --availability, --group, --secret, --topology-*, --limit-bytes, --required-bytes) is only supported for cluster volumes (swarm), which berth does not run",
        );
    }
    let opts = match string_map(body.get("DriverOpts"), "DriverOpts") {
        Ok(o) => o,
        Err(r) => return r,
    };
    let labels = match string_map(body.get("Labels"), "Labels") {
        Ok(l) => l,
        Err(r) => return r,
    };
    let existed = name.is_some_and(|n| ctx.engine.volume_inspect(n).is_ok());
    match ctx.engine.volume_create_with(name, labels, opts, false) {
        Ok(v) => {
            if !existed {
                ctx.events
                    .publish("volume", "create", &v.name, [("driver", "local")]);
            }
            Reply::json(201, &doc(&v))
        }
        Err(e) => engine_error(e),
    }
}

/// A `{"k": "v"}` object of strings (absent or null: empty).
pub(crate) fn string_map(v: Option<&Value>, what: &str) -> Result<BTreeMap<String, String>, Reply> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(Reply::error(
                    400,
                    format!("{what}: the value of {k:?} must be a string, not {other}"),
                )),
            })
            .collect(),
        Some(other) => Err(Reply::error(
            400,
            format!("{what} must be an object of strings, not {other}"),
        )),
    }
}

fn list(ctx: &Ctx, req: &Request) -> Reply {
    let filters = match parse_filters(req) {
        Ok(f) => f,
        Err(e) => return Reply::error(400, e),
    };
    for k in filters.keys() {
        if !["name", "label", "dangling", "driver"].contains(&k.as_str()) {
            return Reply::error(
                400,
                format!("invalid filter {k:?}: use name, label, dangling or driver"),
            );
        }
    }
    let vols = match ctx.engine.volume_list() {
        Ok(v) => v,
        Err(e) => return engine_error(e),
    };
    let mut out = Vec::new();
    for v in vols {
        let ok = |k: &str, p: &dyn Fn(&str) -> bool| {
            filters.get(k).is_none_or(|vs| vs.iter().any(|x| p(x)))
        };
        let dangling = || {
            ctx.engine
                .volume_users(&v.name)
                .map(|u| u.is_empty())
                .unwrap_or(false)
        };
        if ok("name", &|x| v.name.contains(x))
            && filters
                .get("label")
                .is_none_or(|vs| vs.iter().all(|x| label_matches(x, &v.labels)))
            && ok("driver", &|x| x == "local")
            && ok("dangling", &|x| matches!(x, "true" | "1") == dangling())
        {
            out.push(doc(&v));
        }
    }
    Reply::json(200, &json!({"Volumes": out, "Warnings": []}))
}

fn remove(ctx: &Ctx, name: &str, force: bool) -> Reply {
    match ctx.engine.volume_remove(name) {
        Ok(()) => {
            ctx.events
                .publish("volume", "destroy", name, [("driver", "local")]);
            Reply::empty(204)
        }
        Err(berth_engine::Error::Missing(_)) if force => Reply::empty(204),
        Err(e) => volume_error(name, e),
    }
}

/// docker's wording for a missing volume (`get NAME: no such volume`).
fn volume_error(name: &str, e: berth_engine::Error) -> Reply {
    match e {
        berth_engine::Error::Missing(_) => Reply::error(404, format!("get {name}: no such volume")),
        e => engine_error(e),
    }
}

/// Bytes under `p` (files only, not following links).
pub(crate) fn du(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !md.is_dir() {
        return md.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}

fn prune(ctx: &Ctx, req: &Request) -> Reply {
    let f = match super::system::PruneFilter::parse(req, &["all"]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let all = f
        .rest
        .get("all")
        .is_some_and(|v| v.iter().any(|x| matches!(x.as_str(), "true" | "1")));
    let vols = match ctx.engine.volume_list() {
        Ok(v) => v,
        Err(e) => return engine_error(e),
    };
    let mut deleted = Vec::new();
    let mut bytes = 0;
    for v in vols {
        let labelled = f.matches(None, &v.labels);
        if !(all || v.anonymous) || !labelled {
            continue;
        }
        if !ctx
            .engine
            .volume_users(&v.name)
            .map(|u| u.is_empty())
            .unwrap_or(false)
        {
            continue;
        }
        let size = du(&v.mountpoint);
        if ctx.engine.volume_remove(&v.name).is_ok() {
            ctx.events
                .publish("volume", "destroy", &v.name, [("driver", "local")]);
            bytes += size;
            deleted.push(v.name);
        }
    }
    ctx.events
        .publish("volume", "prune", "", [("reclaimed", bytes.to_string())]);
    Reply::json(
        200,
        &json!({"VolumesDeleted": deleted, "SpaceReclaimed": bytes}),
    )
}
